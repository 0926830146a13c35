"""proxymap(8): lookup tables served to other processes (Postfix's src/proxymap).

A multi-server daemon. Clients (the proxy: table type, maps/dict_proxy.py) send
attribute-protocol requests: open, lookup, update, delete and sequence, each naming a
table (`type:name`) and the client's dictionary flags. A table is served only when it
appears as `proxy:type:name` in proxy_read_maps (the proxymap service) or in
proxy_write_maps (the proxywrite service, the only one that updates or deletes); a
request for any other table is denied with Postfix's `request for unapproved table`
warnings. Each table is opened once per combination of name and instance flags and
kept open, so that many smtpd processes share one connection to an SQL or LDAP server.

A read-only proxymap exits before it accepts a new client when a table file changed
(`table ... has changed -- restarting`), and master starts a fresh one.
"""

import os

from pyfix.common import attr, msg
from pyfix.common.strings import CHARS_BRACE, CHARS_COMMA_SP, extract_parens, tokens_quoted

from pyfix.daemons.skeleton.multi import ClientStreams, multi_server_main
from pyfix.daemons.skeleton.server import ServerExit
from pyfix.maps import dict_proxy as proto
from pyfix.maps.cfg_parser import use_config
from pyfix.maps.dict import ERR_RETRY, STAT_SUCCESS, dict_open
from pyfix.maps.types import opener

SERVICE_PROXYMAP = "proxymap"
SERVICE_PROXYWRITE = "proxywrite"
PROXY_COLON = "proxy:"
NESTED_TYPES = ("unionmap:", "pipemap:")
READ_PARAM, WRITE_PARAM = "proxy_read_maps", "proxy_write_maps"
REQUEST_TIMEOUT = 1.0           # Postfix's deadline for reading and answering a request


class Proxymap:
    """The state of one proxymap process."""

    def __init__(self):
        self.writer = False
        self.approved = set()
        self.tables = {}            # "type:name:flags" -> Dict
        self.sequences = {}         # id(Dict) -> iterator of (key, value)
        self.clients = ClientStreams(proto.PROTO_PROXYMAP)

    @property
    def param_name(self):
        return WRITE_PARAM if self.writer else READ_PARAM

    # -- start-up -----------------------------------------------------------------------------

    def pre_init(self, server):
        """Before the privilege drop: load the code of the approved table types (their
        client libraries may live where mail_owner cannot read)."""
        use_config(server.config)
        self.writer = server.name == SERVICE_PROXYWRITE
        self.authorize(server.config.get(self.param_name) or "")
        for type_name in self.approved:
            try:
                opener(type_name.partition(":")[0])
            except Exception:   # noqa: BLE001 - dict_open() reports it when a client asks
                pass

    def post_init(self, server):
        if server.name not in (SERVICE_PROXYMAP, SERVICE_PROXYWRITE):
            msg.fatal("service name must be one of %s or %s"
                      % (SERVICE_PROXYMAP, SERVICE_PROXYMAP))
        if self.writer:
            try:
                os.setsid()     # a master signal must not interrupt a database update
            except OSError:
                pass

    def authorize(self, text):
        """authorize_proxied_maps(): remember every proxy:type:name in text."""
        for type_name in tokens_quoted(text, CHARS_COMMA_SP, CHARS_BRACE):
            if type_name.startswith("{"):
                inner, err = extract_parens(type_name, CHARS_BRACE)
                if err:
                    msg.warn("bad %s parameter value: %s" % (self.param_name, err))
                    continue
                words = tokens_quoted(inner, CHARS_COMMA_SP, CHARS_BRACE)
                if not words:
                    continue
                type_name = words[0]
            nested = _nested_name(type_name)
            if nested is not None:
                if nested.startswith("{"):
                    inner, err = extract_parens(nested, CHARS_BRACE)
                    if err:
                        msg.warn("bad %s parameter value: %s" % (self.param_name, err))
                        continue
                    self.authorize(inner)
                continue
            if not type_name.startswith(PROXY_COLON):
                continue
            while type_name.startswith(PROXY_COLON):
                type_name = type_name[len(PROXY_COLON):]
            if ":" in type_name and type_name not in self.approved:
                self.approved.add(type_name)
                if msg.verbose:
                    msg.info("allowlisting %s from %s" % (type_name, self.param_name))

    # -- tables -------------------------------------------------------------------------------

    def find(self, map_name, request_flags):
        """proxy_map_find(): (table, status); the table is None when denied."""
        while map_name.startswith(PROXY_COLON):
            map_name = map_name[len(PROXY_COLON):]
        if ":" not in map_name:
            return None, proto.STAT_BAD
        if map_name not in self.approved:
            msg.warn('request for unapproved table: "%s"' % map_name)
            msg.warn("to approve this table for %s access, list %s%s in %s:%s"
                     % ("read-write" if self.writer else "read-only", PROXY_COLON, map_name,
                        "main.cf", self.param_name))
            return None, proto.STAT_DENY
        key = "%s:%s" % (map_name, proto.flags_str(request_flags & proto.FLAG_INST_MASK))
        if msg.verbose:
            msg.info("proxy_map_find: %s" % key)
        table = self.tables.get(key)
        if table is None:
            open_flags = os.O_RDWR | os.O_CREAT if self.writer else os.O_RDONLY
            table = self.tables[key] = dict_open(map_name, open_flags, request_flags)
        table.error = 0
        return table, proto.STAT_OK

    def changed_name(self):
        for key, table in self.tables.items():
            if table.changed():
                return key
        return None

    # -- requests -----------------------------------------------------------------------------

    def service(self, conn, server):
        if server.argv:
            msg.fatal("unexpected command-line argument: %s" % server.argv[0])
        stream = self.clients.stream(conn, "%s socket" % server.name, REQUEST_TIMEOUT)
        while True:
            count, values = stream.scan([(attr.STR, proto.ATTR_REQ)],
                                        attr.FLAG_MORE | attr.FLAG_STRICT)
            if count < 0:
                break
            if count == 1:
                self.dispatch(stream, values[proto.ATTR_REQ])
            # Postfix clients wait for each reply; input already buffered is served
            # here, since the socket will not become readable for it.
            if not stream.pending():
                break
        if stream.eof:
            server.disconnect(conn)

    def dispatch(self, stream, request):
        handler = {proto.REQ_LOOKUP: self.lookup, proto.REQ_UPDATE: self.update,
                   proto.REQ_DELETE: self.delete, proto.REQ_SEQUENCE: self.sequence,
                   proto.REQ_OPEN: self.open}.get(request)
        if handler is None:
            msg.warn('unrecognized request: "%s", ignored' % request)
            stream.send([(proto.ATTR_STATUS, proto.STAT_BAD)])
            return
        stream.send(handler(stream))

    @staticmethod
    def _scan(stream, wanted):
        count, values = stream.scan(wanted, attr.FLAG_STRICT)
        return values if count == len(wanted) else None

    @staticmethod
    def _set_request_flags(table, request_flags, extra=0):
        table.flags = (table.flags & ~proto.FLAG_RQST_MASK) \
            | (request_flags & proto.FLAG_RQST_MASK) | extra

    @staticmethod
    def _error_status(table):
        if table.error == 0:
            return proto.STAT_NOKEY
        return proto.STAT_RETRY if table.error == ERR_RETRY else proto.STAT_CONFIG

    def lookup(self, stream):
        req = self._scan(stream, [(attr.STR, proto.ATTR_TABLE), (attr.INT, proto.ATTR_FLAGS),
                                  (attr.STR, proto.ATTR_KEY)])
        status, value = proto.STAT_BAD, ""
        if req is not None:
            table, status = self.find(req[proto.ATTR_TABLE], req[proto.ATTR_FLAGS])
            if table is not None:
                self._set_request_flags(table, req[proto.ATTR_FLAGS])
                found = table.lookup(req[proto.ATTR_KEY])
                if found is not None:
                    status, value = proto.STAT_OK, found
                else:
                    status = self._error_status(table)
        return [(proto.ATTR_STATUS, status), (proto.ATTR_VALUE, value)]

    def update(self, stream):
        req = self._scan(stream, [(attr.STR, proto.ATTR_TABLE), (attr.INT, proto.ATTR_FLAGS),
                                  (attr.STR, proto.ATTR_KEY), (attr.STR, proto.ATTR_VALUE)])
        return [(proto.ATTR_STATUS, self._change(req, proto.REQ_UPDATE))]

    def delete(self, stream):
        req = self._scan(stream, [(attr.STR, proto.ATTR_TABLE), (attr.INT, proto.ATTR_FLAGS),
                                  (attr.STR, proto.ATTR_KEY)])
        return [(proto.ATTR_STATUS, self._change(req, proto.REQ_DELETE))]

    def _change(self, req, request):
        if req is None:
            return proto.STAT_BAD
        if not self.writer:
            msg.warn("refusing %s %s request on non-%s service"
                     % (req[proto.ATTR_TABLE], request, SERVICE_PROXYWRITE))
            return proto.STAT_DENY
        table, status = self.find(req[proto.ATTR_TABLE], req[proto.ATTR_FLAGS])
        if table is None:
            return status
        extra = proto.FLAG_SYNC_UPDATE
        if request == proto.REQ_UPDATE:
            self._set_request_flags(table, req[proto.ATTR_FLAGS],
                                    extra | proto.FLAG_DUP_REPLACE)
            result = table.update(req[proto.ATTR_KEY], req[proto.ATTR_VALUE])
        else:
            self._set_request_flags(table, req[proto.ATTR_FLAGS], extra)
            result = table.delete(req[proto.ATTR_KEY])
        if result in (None, STAT_SUCCESS) and table.error == 0:
            return proto.STAT_OK
        return self._error_status(table)

    def sequence(self, stream):
        req = self._scan(stream, [(attr.STR, proto.ATTR_TABLE), (attr.INT, proto.ATTR_FLAGS),
                                  (attr.INT, proto.ATTR_FUNC)])
        reply = [(proto.ATTR_STATUS, proto.STAT_BAD), (proto.ATTR_KEY, ""),
                 (proto.ATTR_VALUE, "")]
        if req is None or req[proto.ATTR_FUNC] not in (proto.SEQ_FIRST, proto.SEQ_NEXT):
            return reply
        table, status = self.find(req[proto.ATTR_TABLE], req[proto.ATTR_FLAGS])
        if table is None:
            return [(proto.ATTR_STATUS, status), (proto.ATTR_KEY, ""), (proto.ATTR_VALUE, "")]
        self._set_request_flags(table, req[proto.ATTR_FLAGS])
        if req[proto.ATTR_FUNC] == proto.SEQ_FIRST or id(table) not in self.sequences:
            self.sequences[id(table)] = iter(table.items())
        try:
            key, value = next(self.sequences[id(table)])
        except StopIteration:
            self.sequences.pop(id(table), None)
            return [(proto.ATTR_STATUS, self._error_status(table)), (proto.ATTR_KEY, ""),
                    (proto.ATTR_VALUE, "")]
        return [(proto.ATTR_STATUS, proto.STAT_OK), (proto.ATTR_KEY, key),
                (proto.ATTR_VALUE, value)]

    def open(self, stream):
        req = self._scan(stream, [(attr.STR, proto.ATTR_TABLE), (attr.INT, proto.ATTR_FLAGS)])
        status, flags = proto.STAT_BAD, 0
        if req is not None:
            table, status = self.find(req[proto.ATTR_TABLE], req[proto.ATTR_FLAGS])
            if table is not None:
                flags = table.flags
        return [(proto.ATTR_STATUS, status), (proto.ATTR_FLAGS, flags)]

    # -- connections --------------------------------------------------------------------------

    def pre_accept(self, server):
        if not self.writer:
            name = self.changed_name()
            if name is not None:
                msg.info("table %s has changed -- restarting" % name)
                raise ServerExit(0)


def _nested_name(type_name):
    for prefix in NESTED_TYPES:
        if type_name.startswith(prefix):
            return type_name[len(prefix):]
    return None


def main(argv):
    proxymap = Proxymap()
    multi_server_main(argv, proxymap.service, pre_init=proxymap.pre_init,
                      post_init=proxymap.post_init,
                      pre_accept=proxymap.pre_accept,
                      post_accept=proxymap.clients.announce,
                      pre_disconnect=proxymap.clients.forget)

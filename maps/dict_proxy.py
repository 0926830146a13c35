"""proxy: tables, looked up through the proxymap(8) service (Postfix's
global/dict_proxy.c, with the client side of clnt_stream.c and mail_connect.c).

`proxy:hash:/etc/postfix/virtual` sends every lookup to the proxymap service
($queue_directory/private/proxymap) over Postfix's attribute protocol, so that many
processes share the service's one open table (one database connection, one LDAP
connection, a table outside a chroot jail). A table opened for writing goes to the
proxywrite service instead. Requests and replies are those of Postfix 3.7 (request
names, attribute names, status codes), so pyfix's client works with Postfix's proxymap
and Postfix's programs work with pyfix's proxymap.

A request that fails on the wire (the service is not running, the connection broke) is
retried once a second, as Postfix does; the service saying "try again" is ERR_RETRY;
a table that the service refuses (not listed in proxy_read_maps / proxy_write_maps) is
Postfix's fatal error. Processes without an event loop close an idle connection when
they next use it (ipc_idle), and a connection older than ipc_ttl is replaced.
"""

import errno
import os
import select
import socket
import time

from pyfix.common import attr, msg

from pyfix.maps.dict import FLAG_DUP_IGNORE, FLAG_DUP_REPLACE, FLAG_DUP_WARN, \
    FLAG_FIXED, FLAG_FOLD_ANY, FLAG_LOCK, FLAG_MULTI_WRITER, FLAG_NO_PROXY, \
    FLAG_NO_REGSUB, FLAG_NO_UNAUTH, FLAG_PATTERN, FLAG_SYNC_UPDATE, FLAG_UTF8_REQUEST, \
    ERR_CONFIG, ERR_NONE, ERR_RETRY, STAT_ERROR, STAT_FAIL, STAT_SUCCESS, Dict, dict_open

TYPE = "proxy"

# global/mail_proto.h and dict_proxy.h
ATTR_PROTO = "protocol"
PROTO_PROXYMAP = "proxymap_protocol"
ATTR_REQ, ATTR_TABLE, ATTR_FLAGS = "request", "table", "flags"
ATTR_KEY, ATTR_VALUE, ATTR_STATUS, ATTR_FUNC = "key", "value", "status", "function"
REQ_OPEN, REQ_LOOKUP, REQ_UPDATE = "open", "lookup", "update"
REQ_DELETE, REQ_SEQUENCE = "delete", "sequence"
STAT_OK, STAT_NOKEY, STAT_RETRY, STAT_BAD, STAT_DENY, STAT_CONFIG = range(6)
SEQ_FIRST, SEQ_NEXT = 0, 1

# util/dict.h: which flags belong to the table, the requester, or the instance.
FLAG_PARANOID = FLAG_NO_REGSUB | FLAG_NO_PROXY | FLAG_NO_UNAUTH
FLAG_IMPL_MASK = FLAG_FIXED | FLAG_PATTERN | FLAG_MULTI_WRITER
FLAG_RQST_MASK = (FLAG_FOLD_ANY | FLAG_LOCK | FLAG_DUP_REPLACE | FLAG_DUP_WARN
                  | FLAG_DUP_IGNORE | FLAG_SYNC_UPDATE | FLAG_PARANOID | FLAG_UTF8_REQUEST)
FLAG_INST_MASK = ~(FLAG_IMPL_MASK | FLAG_RQST_MASK) & 0xFFFFFFFF

_FLAG_NAMES = ("warn_dup", "ignore_dup", "try0null", "try1null", "fixed", "pattern", "lock",
               "replace", "sync_update", "debug", None, "no_regsub", "no_proxy",
               "no_unauth", "fold_fix", "fold_mul", "open_lock", "bulk_update",
               "multi_writer", "utf8_request", "utf8_active", "src_rhs_is_file")

# A broken pipe or a missing socket is expected once (the service restarted): no warning.
_QUIET_ERRNOS = (0, errno.EPIPE, errno.ENOENT)
RETRY_DELAY = 1                 # seconds between attempts of a failed request
CONNECT_DELAY = 10              # seconds between connection attempts
CONNECT_TRIES = 10              # connection attempts before giving up


def flags_str(flags):
    """dict_flags_str(): `lock|fold_fix`, unknown bits as a hex number."""
    names = []
    flags &= 0xFFFFFFFF
    for bit, name in enumerate(_FLAG_NAMES):
        if name and flags & (1 << bit):
            names.append(name)
            flags &= ~(1 << bit)
    if flags:
        names.append("0x%x" % flags)
    return "|".join(names)


class ClientStream:
    """A shared connection to one service that reconnects as needed (clnt_stream.c)."""

    def __init__(self, prefix, service, idle, ttl, timeout):
        self.prefix = prefix
        self.service = service
        self.idle = idle
        self.ttl = ttl
        self.timeout = timeout
        self.stream = None
        self.opened = 0.0
        self.used = 0.0
        self.errno = 0

    @property
    def path(self):
        return "%s/%s" % (self.prefix, self.service)

    def access(self):
        """An open stream that has completed the handshake, or None."""
        now = time.monotonic()
        if self.stream is not None and (self._server_left() or now - self.used >= self.idle
                                        or now - self.opened >= self.ttl):
            self.close()
        handshake = self.stream is None
        if handshake:
            self._open()
        self.used = time.monotonic()
        if handshake and not self._handshake():
            return None
        return self.stream

    def _server_left(self):
        """Readable while idle means the server closed the connection (or misbehaved)."""
        try:
            readable, _, _ = select.select([self.stream.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _open(self):
        """mail_connect_wait(): connect, retrying; fatal after CONNECT_TRIES attempts."""
        count = 0
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                break
            except OSError as exc:
                sock.close()
                count += 1
                text = "connect #%d to subsystem %s/%s: %s" % (count, self.prefix,
                                                                self.service,
                                                                msg.strerror(exc))
                if count > CONNECT_TRIES:
                    msg.fatal(text)
                msg.warn(text)
                time.sleep(CONNECT_DELAY)
        self.stream = attr.AttrStream(sock, "%s socket" % self.path, self.timeout)
        self.opened = time.monotonic()

    def _handshake(self):
        count, _ = self.stream.scan([(attr.STREQ, ATTR_PROTO, PROTO_PROXYMAP)],
                                    attr.FLAG_STRICT)
        return count == 0 and not self.stream.eof

    def request(self, attrs, wanted):
        """Send a request and read the reply: the reply's values, or None on failure."""
        self.errno = 0
        stream = self.access()
        if stream is None:
            return None
        try:
            stream.write(attr.print0(attrs))
        except OSError as exc:
            self.errno = exc.errno or 0
            return None
        count, values = stream.scan(wanted, attr.FLAG_STRICT)
        if count != len(wanted):
            if stream.timed_out:
                self.errno = errno.ETIMEDOUT
            return None
        return values

    def close(self):
        if self.stream is not None:
            if msg.verbose:
                msg.info("%s stream disconnect" % self.service)
            self.stream.sock.close()
            self.stream = None


_streams = {}


def _client_stream(writer):
    """The process's shared stream to proxymap (reading) or proxywrite (writing)."""
    from pyfix.maps.cfg_parser import process_config
    config = process_config()
    service = config.get("proxywrite_service_name" if writer else "proxymap_service_name")
    stream = _streams.get(writer)
    if stream is None:
        relative = "private/%s" % service
        prefix = "private" if os.access(relative, os.F_OK) \
            else "%s/private" % config.get("queue_directory")
        stream = _streams[writer] = ClientStream(
            prefix, service, config.get_time("ipc_idle"), config.get_time("ipc_ttl"),
            config.get_time("ipc_timeout"))
    return stream


class ProxyDict(Dict):
    type = TYPE

    def __init__(self, name, open_flags, dict_flags, clnt):
        super().__init__(name, open_flags, dict_flags)
        self.clnt = clnt
        self.service = clnt.service
        self.inst_flags = dict_flags & FLAG_INST_MASK

    def _request_flags(self):
        return self.inst_flags | (self.flags & FLAG_RQST_MASK)

    def _call(self, what, attrs, wanted, keytext):
        """Send until the service answers; its status and reply values."""
        count = 0
        while True:
            count += 1
            reply = self.clnt.request(attrs, wanted)
            if reply is not None:
                status = reply[ATTR_STATUS]
                if msg.verbose:
                    msg.info("dict_proxy_%s: table=%s flags=%s%s -> status=%d"
                             % (what, self.name, flags_str(self._request_flags()), keytext,
                                status))
                if status in (STAT_OK, STAT_NOKEY, STAT_RETRY, STAT_CONFIG, STAT_BAD,
                              STAT_DENY):
                    return status, reply
                msg.warn('%s %s failed for table "%s"%s: unexpected reply status %d'
                         % (self.service, what, self.name, keytext, status))
            elif msg.verbose or count > 1 or self.clnt.errno not in _QUIET_ERRNOS:
                msg.warn("dict_proxy_%s: service %s: %s"
                         % (what, self.service, os.strerror(self.clnt.errno)))
            self.clnt.close()
            time.sleep(RETRY_DELAY)

    def _status(self, status, what, keytext, deny="service is not configured"):
        """The common statuses: fatal for BAD and DENY, else the dict error."""
        if status == STAT_BAD:
            msg.fatal('%s %s failed for table "%s"%s: invalid request'
                      % (self.service, what, self.name, keytext))
        if status == STAT_DENY:
            msg.fatal('%s %s for table "%s"' % (self.service, deny, self.name))
        self.error = {STAT_RETRY: ERR_RETRY, STAT_CONFIG: ERR_CONFIG}.get(status, ERR_NONE)

    # -- the table operations -----------------------------------------------------------------

    def lookup(self, key):
        self.error = ERR_NONE
        keytext = ' key "%s"' % key
        status, reply = self._call(
            REQ_LOOKUP,
            [(ATTR_REQ, REQ_LOOKUP), (ATTR_TABLE, self.name),
             (ATTR_FLAGS, self._request_flags()), (ATTR_KEY, key)],
            [(attr.INT, ATTR_STATUS), (attr.STR, ATTR_VALUE)], keytext)
        self._status(status, REQ_LOOKUP, keytext)
        return reply[ATTR_VALUE] if status == STAT_OK else None

    def update(self, key, value):
        return self._change(REQ_UPDATE, key, [(ATTR_KEY, key), (ATTR_VALUE, value)])

    def delete(self, key):
        return self._change(REQ_DELETE, key, [(ATTR_KEY, key)])

    def _change(self, request, key, attrs):
        self.error = ERR_NONE
        keytext = ' key "%s"' % key
        status, _ = self._call(
            request,
            [(ATTR_REQ, request), (ATTR_TABLE, self.name), (ATTR_FLAGS, self._request_flags())]
            + attrs, [(attr.INT, ATTR_STATUS)], keytext)
        self._status(status, request, keytext, deny="update access is not configured")
        return {STAT_OK: STAT_SUCCESS, STAT_NOKEY: STAT_FAIL}.get(status, STAT_ERROR)

    def items(self):
        function = SEQ_FIRST
        while True:
            self.error = ERR_NONE
            keytext = " function %d" % function
            status, reply = self._call(
                REQ_SEQUENCE,
                [(ATTR_REQ, REQ_SEQUENCE), (ATTR_TABLE, self.name),
                 (ATTR_FLAGS, self._request_flags()), (ATTR_FUNC, function)],
                [(attr.INT, ATTR_STATUS), (attr.STR, ATTR_KEY), (attr.STR, ATTR_VALUE)],
                keytext)
            self._status(status, REQ_SEQUENCE, keytext)
            if status != STAT_OK:
                return
            yield reply[ATTR_KEY], reply[ATTR_VALUE]
            function = SEQ_NEXT

    def handshake_open(self, dict_flags):
        """The open request: the service opens the table and tells its flags."""
        while True:
            reply = self.clnt.request(
                [(ATTR_REQ, REQ_OPEN), (ATTR_TABLE, self.name), (ATTR_FLAGS, self.inst_flags)],
                [(attr.INT, ATTR_STATUS), (attr.INT, ATTR_FLAGS)])
            if reply is None:
                if msg.verbose or self.clnt.errno not in (errno.EPIPE, errno.ENOENT):
                    msg.warn("dict_proxy_open: service %s: %s"
                             % (self.service, os.strerror(self.clnt.errno)))
            else:
                status = reply[ATTR_STATUS]
                if msg.verbose:
                    msg.info("dict_proxy_open: connect to map=%s status=%d server_flags=%s"
                             % (self.name, status, flags_str(reply[ATTR_FLAGS])))
                if status == STAT_BAD:
                    msg.fatal('%s open failed for table "%s": invalid request'
                              % (self.service, self.name))
                if status == STAT_DENY:
                    msg.fatal('%s service is not configured for table "%s"'
                              % (self.service, self.name))
                if status == STAT_OK:
                    self.flags = (dict_flags & ~FLAG_IMPL_MASK) \
                        | (reply[ATTR_FLAGS] & FLAG_IMPL_MASK)
                    return self
                msg.warn('%s open failed for table "%s": unexpected status %d'
                         % (self.service, self.name, status))
            self.clnt.close()
            time.sleep(RETRY_DELAY)


def open_proxy(name, open_flags, dict_flags):
    if dict_flags & FLAG_NO_PROXY:
        return dict_open(name, open_flags, dict_flags)
    if open_flags == os.O_RDONLY:
        writer = False
    elif open_flags & os.O_RDWR == os.O_RDWR:
        writer = True
    else:
        msg.fatal("%s: %s map open requires O_RDONLY or O_RDWR mode" % (name, TYPE))
    table = ProxyDict(name, open_flags, dict_flags, _client_stream(writer))
    return table.handshake_open(dict_flags)

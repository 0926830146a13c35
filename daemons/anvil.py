"""anvil(8): connection count and rate limiting state for smtpd (Postfix's src/anvil/anvil.c).

A multi-server daemon that should run as a single process (master.cf `anvil unix - - n
- 1 anvil`). Clients (smtpd) keep a connection open and send requests in Postfix's
plain attribute format (`name=value` lines, an empty line ends a request):

    request=connect     ident=<service>:<client address>  -> status, count, rate
    request=disconnect  ident=...                          -> status
    request=message | recipient | newtls | auth ident=...  -> status, rate
    request=newtls_status ident=...                        -> status, rate (no update)
    request=lookup      ident=...                          -> status, count, rate, mail,
                                                              rcpt, newtls, auth

Rates count events per anvil_rate_time_unit, starting with the first event of the
window. Connections a client counted are dropped when that client disconnects (an smtpd
that dies does not leave its connections counted). A (service, client) entry with no
connections expires one time unit later. The largest rates and counts are logged
every anvil_status_update_time and at exit:
`statistics: max connection rate 3/60s for (smtp:192.0.2.7) at Mar  4 12:34:56`.
"""

import time

from pyfix.common import msg

from pyfix.daemons.skeleton.multi import multi_server_main

STAT_OK = 0
STAT_FAIL = -1
EXPIRE_TIMER = "anvil-expire"
STATUS_TIMER = "anvil-status"


def plain_print(attrs):
    """attr_print_plain(): `name=value` lines and an empty line."""
    return "".join("%s=%s\n" % (name, value) for name, value in attrs).encode() + b"\n"


def plain_requests(buffer):
    """Complete requests at the front of buffer (a bytearray, consumed): lists of
    (name, value); an empty request is an empty list."""
    requests = []
    while True:
        if buffer[:1] == b"\n":
            del buffer[:1]
            requests.append([])
            continue
        end = buffer.find(b"\n\n")
        if end < 0:
            return requests
        block = bytes(buffer[:end])
        del buffer[:end + 2]
        requests.append([tuple(line.partition("=")[::2])
                         for line in block.decode("utf-8", "replace").split("\n")])


class Remote:
    """One (service, client address) entry (ANVIL_REMOTE)."""

    __slots__ = ("ident", "count", "rate", "mail", "rcpt", "ntls", "auth", "start")

    def __init__(self, ident, now):
        self.ident = ident
        self.count = 1
        self.rate = 1
        self.mail = self.rcpt = self.ntls = self.auth = 0
        self.start = now

    def reset_rates(self, start):
        self.rate = self.mail = self.rcpt = self.ntls = self.auth = 0
        self.start = start


class Maximum:
    __slots__ = ("value", "ident", "when")

    def __init__(self):
        self.value = 0
        self.ident = None
        self.when = 0

    def update(self, value, ident):
        if value > self.value:
            self.value, self.ident, self.when = value, ident, time.time()


def _ctime(when):
    return time.strftime("%b %e %H:%M:%S", time.localtime(when))


class Anvil:
    def __init__(self):
        self.remotes = {}
        self.locals = {}            # client fd -> {ident: connections it counted}
        self.buffers = {}
        self.unit = 60
        self.status_time = 600
        self.server = None
        self.maxima = {name: Maximum() for name in
                       ("conn_rate", "conn_count", "mail", "rcpt", "ntls", "auth")}
        self.max_cache = 0
        self.max_cache_time = 0

    def post_init(self, server):
        self.server = server
        self.unit = server.config.get_time("anvil_rate_time_unit")
        self.status_time = server.config.get_time("anvil_status_update_time")
        server.max_idle = 0                 # anvil must not go away while smtpd counts
        server.events.request_timer(STATUS_TIMER, self.status_update, self.status_time)
        server.events.request_timer(EXPIRE_TIMER, self.expire, self.unit)

    # -- the state --------------------------------------------------------------------------

    def _incr(self, remote, what):
        now = time.time()
        if remote.start + self.unit < now:
            remote.reset_rates(now)
        setattr(remote, what, getattr(remote, what) + 1)

    def conn_update(self, fd, ident):
        remote = self.remotes.get(ident)
        if remote is None:
            remote = self.remotes[ident] = Remote(ident, time.time())
            if len(self.remotes) > self.max_cache:
                self.max_cache, self.max_cache_time = len(self.remotes), time.time()
        else:
            self._incr(remote, "rate")
            remote.count += 1
        local = self.locals.setdefault(fd, {})
        local[ident] = local.get(ident, 0) + 1
        return remote

    def _existing(self, fd, ident):
        remote = self.remotes.get(ident)
        return remote if remote is not None else self.conn_update(fd, ident)

    def connect(self, fd, ident):
        remote = self.conn_update(fd, ident)
        self.maxima["conn_rate"].update(remote.rate, ident)
        self.maxima["conn_count"].update(remote.count, ident)
        return [("status", STAT_OK), ("count", remote.count), ("rate", remote.rate)]

    def event(self, fd, ident, what, maximum):
        remote = self._existing(fd, ident)
        self._incr(remote, what)
        self.maxima[maximum].update(getattr(remote, what), ident)
        return [("status", STAT_OK), ("rate", getattr(remote, what))]

    def newtls_status(self, fd, ident):
        remote = self.remotes.get(ident)
        rate = 0
        if remote is not None:
            if remote.start and remote.start + self.unit < time.time():
                remote.reset_rates(0)
            rate = remote.ntls
        return [("status", STAT_OK), ("rate", rate)]

    def disconnect(self, fd, ident):
        local = self.locals.get(fd, {})
        remote = self.remotes.get(ident)
        if remote is not None and local.get(ident):
            self._drop_one(remote)
            local[ident] -= 1
            if not local[ident]:
                del local[ident]
        return [("status", STAT_OK)]

    def lookup(self, fd, ident):
        remote = self.remotes.get(ident)
        if remote is None:
            return [("status", STAT_OK), ("count", 0), ("rate", 0), ("mail", 0), ("rcpt", 0),
                    ("newtls", 0), ("auth", 0)]
        if remote.start + self.unit < time.time():
            remote.reset_rates(0)
        return [("status", STAT_OK), ("count", remote.count), ("rate", remote.rate),
                ("mail", remote.mail), ("rcpt", remote.rcpt), ("newtls", remote.ntls),
                ("auth", remote.auth)]

    @staticmethod
    def _drop_one(remote):
        if remote.count > 0:
            remote.count -= 1

    def expire(self):
        """Forget entries without connections whose time unit is over."""
        now = time.time()
        for ident in [i for i, r in self.remotes.items()
                      if r.count == 0 and r.start + self.unit < now]:
            del self.remotes[ident]
        self.server.events.request_timer(EXPIRE_TIMER, self.expire, self.unit)

    def status_dump(self, *unused):
        m = self.maxima
        for key, name in (("conn_rate", "connection"),):
            self._rate_report(m[key], name)
        if m["conn_count"].value > 0:
            msg.info("statistics: max connection count %d for (%s) at %s"
                     % (m["conn_count"].value, m["conn_count"].ident,
                        _ctime(m["conn_count"].when)))
            m["conn_count"].value = 0
        for key, name in (("mail", "message"), ("rcpt", "recipient"), ("ntls", "newtls"),
                          ("auth", "auth")):
            self._rate_report(m[key], name)
        if self.max_cache > 0:
            msg.info("statistics: max cache size %d at %s"
                     % (self.max_cache, _ctime(self.max_cache_time)))
            self.max_cache = 0

    def _rate_report(self, maximum, name):
        if maximum.value > 0:
            msg.info("statistics: max %s rate %d/%ds for (%s) at %s"
                     % (name, maximum.value, self.unit, maximum.ident, _ctime(maximum.when)))
            maximum.value = 0

    def status_update(self):
        self.status_dump()
        self.server.events.request_timer(STATUS_TIMER, self.status_update, self.status_time)

    # -- the protocol -----------------------------------------------------------------------

    def service(self, conn, server):
        if server.argv:
            msg.fatal("unexpected command-line argument: %s" % server.argv[0])
        fd = conn.fileno()
        buffer = self.buffers.setdefault(fd, bytearray())
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            server.disconnect(conn)
            return
        buffer += data
        out = b""
        for attrs in plain_requests(buffer):
            values = dict(attrs)
            if "request" not in values or "ident" not in values:
                server.disconnect(conn)
                return
            out += plain_print(self.dispatch(fd, values["request"], values["ident"]))
        if out:
            try:
                conn.sendall(out)
            except OSError:
                server.disconnect(conn)

    def dispatch(self, fd, request, ident):
        if request == "connect":
            return self.connect(fd, ident)
        if request == "disconnect":
            return self.disconnect(fd, ident)
        if request == "message":
            return self.event(fd, ident, "mail", "mail")
        if request == "recipient":
            return self.event(fd, ident, "rcpt", "rcpt")
        if request == "newtls":
            return self.event(fd, ident, "ntls", "ntls")
        if request == "auth":
            return self.event(fd, ident, "auth", "auth")
        if request == "newtls_status":
            return self.newtls_status(fd, ident)
        if request == "lookup":
            return self.lookup(fd, ident)
        msg.warn('unrecognized request: "%s", ignored' % request)
        return [("status", STAT_FAIL)]

    @staticmethod
    def post_accept(conn, server):
        try:
            conn.sendall(plain_print([("protocol", "anvil_protocol")]))
        except OSError:
            pass

    def pre_disconnect(self, conn, server):
        """anvil_service_done(): drop the connections this client counted."""
        fd = conn.fileno()
        self.buffers.pop(fd, None)
        for ident, count in self.locals.pop(fd, {}).items():
            remote = self.remotes.get(ident)
            for _ in range(count):
                if remote is not None:
                    self._drop_one(remote)


def main(argv):
    anvil = Anvil()
    multi_server_main(argv, anvil.service, post_init=anvil.post_init,
                      post_accept=anvil.post_accept, pre_disconnect=anvil.pre_disconnect,
                      on_exit=anvil.status_dump)

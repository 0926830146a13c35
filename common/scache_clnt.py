"""The client of the connection cache service scache(8) (Postfix's global/scache_clnt.c,
with util/auto_clnt.c's connection keeping and unix_send_fd.c / unix_recv_fd.c).

A delivery agent (smtp, lmtp) that has finished a session hands the open connection
to scache instead of closing it, and a later delivery to the same destination or
server asks for it back. The cache has two levels, as Postfix's:

    destination label -> endpoint label(s)      save_dest() / find_dest()
    endpoint label    -> open connection(s)     save_endp() / find_endp()

Labels and properties are opaque strings chosen by the agent (Postfix's smtp_reuse.c
builds them; a property typically carries what is needed to resume the session).

Use, as Postfix's smtp does with scache_clnt_create():

    from pyfix.common.scache_clnt import ScacheClient
    cache = ScacheClient.from_config(config)     # or ScacheClient(service, timeout,
                                                 #                 idle_limit, ttl_limit)
    cache.save_endp(ttl, endp_label, endp_prop, sock.detach())   # always closes the fd
    cache.save_dest(ttl, dest_label, dest_prop, endp_label)
    fd, dest_prop, endp_prop = cache.find_dest(dest_label)       # fd -1: nothing cached
    fd, endp_prop = cache.find_endp(endp_label)                  # fd -1: nothing cached
    cache.close()

A found fd is the caller's: wrap it with socket.socket(fileno=fd). The process's
current directory must be the queue directory (the service is private/<name>), as it
is in every daemon. ttl values must be > 0 seconds; scache itself caps them at
connection_cache_ttl_limit.

The wire protocol (attr0 on private/scache, announced as `protocol=
connection_cache_protocol`) on Linux, where Postfix defines CANT_WRITE_BEFORE_SENDING_FD
and MUST_READ_AFTER_SENDING_FD:

    save_endp:  C: request=save_endp ttl label property   S: dummy=
                C: <fd>                                    S: status
    find_endp:  C: request=find_endp label                 S: status property
                (status 0:) C: dummy=   S: <fd>   C: dummy=
    save_dest:  C: request=save_dest ttl label property label   S: status
    find_dest:  C: request=find_dest label                 S: status property property
                (status 0:) C: dummy=   S: <fd>   C: dummy=

An fd travels as one NUL byte with SCM_RIGHTS. After two failed attempts (one second
apart) the client logs `disabling connection caching` and answers "not found" from
then on, as Postfix's does.
"""

import errno
import os
import select
import socket
import time

from pyfix.common import attr, msg

PROTO_SCACHE = "connection_cache_protocol"

REQ_FIND_ENDP = "find_endp"
REQ_SAVE_ENDP = "save_endp"
REQ_FIND_DEST = "find_dest"
REQ_SAVE_DEST = "save_dest"

STAT_OK = 0
STAT_BAD = 1
STAT_FAIL = 2

MAX_TRIES = 2
QUIET_ERRORS = (errno.EPIPE, errno.ENOENT)
RETRY_SLEEP = 1             # seconds between attempts (Postfix: "XXX make configurable")


class ProtocolError(Exception):
    """One exchange failed; errno is what Postfix's %m would print."""

    def __init__(self, err=0):
        super().__init__(err)
        self.errno = err


def send_fd(sock, fd):
    """unix_send_fd(): one NUL byte carrying fd."""
    socket.send_fds(sock, [b"\0"], [fd])


def recv_fd(sock):
    """unix_recv_fd(): the fd that comes with one byte; raises ProtocolError without one."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(sock, 1, 1)
    except OSError as exc:
        raise ProtocolError(exc.errno or 0)
    if not data or not fds:
        for fd in fds:
            os.close(fd)
        raise ProtocolError(0)
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]


class AutoConnection:
    """auto_clnt: one connection to private/<service>, opened on demand with the
    protocol handshake, closed when idle for max_idle or older than max_ttl seconds
    (0: no limit), or when the server has hung up."""

    def __init__(self, path, timeout, max_idle, max_ttl):
        self.path = path
        self.timeout = timeout
        self.max_idle = max_idle
        self.max_ttl = max_ttl
        self.sock = None
        self.stream = None
        self.opened = self.used = 0.0

    def _expired(self, now):
        if self.max_ttl > 0 and now - self.opened >= self.max_ttl:
            return True
        if self.max_idle > 0 and now - self.used >= self.max_idle:
            return True
        # auto_clnt_event(): any input (or EOF) while idle means the server is gone.
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def access(self):
        """The open stream, or None (after a warning) when it cannot be had."""
        now = time.monotonic()
        if self.sock is not None and self._expired(now):
            self.close()
        if self.sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                msg.warn("connect to %s: %s" % (self.path, msg.strerror(exc)))
                return None
            self.sock = sock
            self.stream = attr.AttrStream(sock, self.path, self.timeout or None)
            self.opened = now
            count, _ = self.stream.scan([(attr.STREQ, "protocol", PROTO_SCACHE)],
                                        attr.FLAG_STRICT)
            if count != 0 or self.stream.eof:
                # The stream stays open, as auto_clnt leaves it; the caller recovers.
                self.used = now
                return None
        self.used = now
        return self.stream

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = self.stream = None


class ScacheClient:
    """scache_clnt_create(server, timeout, idle_limit, ttl_limit)."""

    def __init__(self, service="scache", timeout=5, idle_limit=5, ttl_limit=1000):
        self.service = service
        self.conn = AutoConnection("private/" + service, timeout, idle_limit, ttl_limit)

    @classmethod
    def from_config(cls, config):
        """The client as Postfix's smtp creates it: connection_cache_service_name,
        connection_cache_protocol_timeout, ipc_idle, ipc_ttl."""
        return cls(config.get("connection_cache_service_name"),
                   config.get_time("connection_cache_protocol_timeout"),
                   config.get_time("ipc_idle"), config.get_time("ipc_ttl"))

    # -- the retry loop shared by the four requests -------------------------------------

    @staticmethod
    def _complain(err, what, attempts):
        """Whether a failed exchange is worth a warning: Postfix keeps quiet about a
        server that hung up (EPIPE, ENOENT), and save_endp also about errno 0 on its
        first attempt (the server closed an idle connection)."""
        if msg.verbose:
            return True
        if what == REQ_SAVE_ENDP:
            return attempts > 1 or (err != 0 and err not in QUIET_ERRORS)
        return err not in QUIET_ERRORS

    def _call(self, exchange, what=None):
        """Run exchange(stream) up to MAX_TRIES times; its result, or None when the
        service failed (and caching is then disabled)."""
        tries = 0
        attempts = 0
        while self.conn is not None:
            stream = self.conn.access()
            if stream is not None:
                attempts += 1
                try:
                    return exchange(stream)
                except ProtocolError as exc:
                    if self._complain(exc.errno, what, attempts):
                        msg.warn("problem talking to service %s: %s"
                                 % (self.conn.path, os.strerror(exc.errno)))
            if tries >= MAX_TRIES - 1:
                msg.warn("disabling connection caching")
                self.conn.close()
                self.conn = None
                return None
            time.sleep(RETRY_SLEEP)
            self.conn.close()
            tries += 1
        return None

    @staticmethod
    def _send(stream, attrs):
        try:
            stream.write(attr.print0(attrs))
        except OSError as exc:
            raise ProtocolError(exc.errno or 0)

    @staticmethod
    def _scan(stream, wanted):
        count, values = stream.scan(wanted, attr.FLAG_STRICT)
        if count != len(wanted):
            raise ProtocolError(errno.ETIMEDOUT if stream.timed_out else 0)
        return values

    # -- the requests -------------------------------------------------------------------

    def save_endp(self, endp_ttl, endp_label, endp_prop, fd):
        """Cache the open connection fd under endp_label; fd is closed here, always."""
        if endp_ttl <= 0:
            msg.panic("scache_clnt_save_endp: bad endp_ttl: %d" % endp_ttl)
        if msg.verbose:
            msg.info("scache_clnt_save_endp: endp=%s prop=%s fd=%d"
                     % (endp_label, endp_prop, fd))

        def exchange(stream):
            self._send(stream, [("request", REQ_SAVE_ENDP), ("ttl", endp_ttl),
                                ("label", endp_label), ("property", endp_prop)])
            self._scan(stream, [(attr.STR, "dummy")])
            try:
                send_fd(stream.sock, fd)
            except OSError as exc:
                raise ProtocolError(exc.errno or 0)
            status = self._scan(stream, [(attr.INT, "status")])["status"]
            if msg.verbose and status != 0:
                msg.warn("scache_clnt_save_endp: descriptor save failed with status %d"
                         % status)
            return status

        try:
            self._call(exchange, what=REQ_SAVE_ENDP)
        finally:
            try:
                os.close(fd)
            except OSError as exc:
                msg.warn("scache_clnt_save_endp: close(%d): %s" % (fd, msg.strerror(exc)))

    def _receive(self, stream):
        """The fd after a found answer (CANT_WRITE_BEFORE / MUST_READ_AFTER dummies)."""
        self._send(stream, [("dummy", "")])
        ready, _, _ = select.select([stream.sock], [], [], self.conn.timeout or None)
        if not ready:
            raise ProtocolError(errno.ETIMEDOUT)
        fd = recv_fd(stream.sock)
        try:
            stream.write(attr.print0([("dummy", "")]))
        except OSError:
            pass
        return fd

    def find_endp(self, endp_label):
        """(fd, endp_prop) of a cached connection to endp_label, removed from the
        cache; (-1, "") when there is none."""
        def exchange(stream):
            self._send(stream, [("request", REQ_FIND_ENDP), ("label", endp_label)])
            values = self._scan(stream, [(attr.INT, "status"), (attr.STR, "property")])
            if values["status"] != STAT_OK:
                if msg.verbose:
                    msg.info("scache_clnt_find_endp: not found: %s" % endp_label)
                return -1, ""
            fd = self._receive(stream)
            if msg.verbose:
                msg.info("scache_clnt_find_endp: endp=%s prop=%s fd=%d"
                         % (endp_label, values["property"], fd))
            return fd, values["property"]

        return self._call(exchange) or (-1, "")

    def save_dest(self, dest_ttl, dest_label, dest_prop, endp_label):
        """Record that dest_label can be reached through endp_label."""
        if dest_ttl <= 0:
            msg.panic("scache_clnt_save_dest: bad dest_ttl: %d" % dest_ttl)
        if msg.verbose:
            msg.info("scache_clnt_save_dest: dest_label=%s dest_prop=%s endp_label=%s"
                     % (dest_label, dest_prop, endp_label))

        def exchange(stream):
            self._send(stream, [("request", REQ_SAVE_DEST), ("ttl", dest_ttl),
                                ("label", dest_label), ("property", dest_prop),
                                ("label", endp_label)])
            status = self._scan(stream, [(attr.INT, "status")])["status"]
            if msg.verbose and status != 0:
                msg.warn("scache_clnt_save_dest: destination save failed with status %d"
                         % status)
            return status

        self._call(exchange)

    def find_dest(self, dest_label):
        """(fd, dest_prop, endp_prop) of a cached connection for dest_label, removed
        from the cache; (-1, "", "") when there is none."""
        def exchange(stream):
            self._send(stream, [("request", REQ_FIND_DEST), ("label", dest_label)])
            # Two attributes of the same name: scan them one at a time.
            first = self._scan_more(stream, [(attr.INT, "status"), (attr.STR, "property")])
            second = self._scan(stream, [(attr.STR, "property")])
            if first["status"] != STAT_OK:
                if msg.verbose:
                    msg.info("scache_clnt_find_dest: not found: %s" % dest_label)
                return -1, "", ""
            fd = self._receive(stream)
            if msg.verbose:
                msg.info("scache_clnt_find_dest: dest=%s dest_prop=%s endp_prop=%s fd=%d"
                         % (dest_label, first["property"], second["property"], fd))
            return fd, first["property"], second["property"]

        return self._call(exchange) or (-1, "", "")

    @staticmethod
    def _scan_more(stream, wanted):
        count, values = stream.scan(wanted, attr.FLAG_STRICT | attr.FLAG_MORE)
        if count != len(wanted):
            raise ProtocolError(errno.ETIMEDOUT if stream.timed_out else 0)
        return values

    def close(self):
        """scache_free(): drop the connection to the service."""
        if self.conn is not None:
            self.conn.close()

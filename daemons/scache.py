"""scache(8): the shared connection cache (Postfix's src/scache/scache.c with the
in-memory cache of global/scache_multi.c).

smtp and lmtp processes hand open SMTP sessions to this one process (master.cf `scache
unix - - n - 1 scache`) when a delivery is done, and ask for them back for the next
delivery to the same destination, so that one connection serves many deliveries from
different agent processes. The cache has two levels:

    destination label -> endpoint labels (with a destination property)
    endpoint label    -> open sessions   (with an endpoint property and the descriptor)

A lookup hands out the oldest session of an endpoint and forgets it; each binding goes
away after its time to live, which the client chooses and connection_cache_ttl_limit
caps. The protocol, with the descriptor passed over the Unix socket, is described in
common/scache_clnt.py (the client side). Hit and miss counts and the largest cache
sizes are logged every connection_cache_status_update_time and at exit:

    statistics: start interval Nov 25 21:40:00
    statistics: domain lookup hits=3 miss=1 success=75%
    statistics: address lookup hits=0 miss=1 success=0%
    statistics: max simultaneous domains=1 addresses=1 connection=2
"""

import os
import select
import time

from pyfix.common import attr, msg
from pyfix.common.scache_clnt import PROTO_SCACHE, REQ_FIND_DEST, REQ_FIND_ENDP, \
    REQ_SAVE_DEST, REQ_SAVE_ENDP, STAT_BAD, STAT_FAIL, STAT_OK, recv_fd, send_fd, \
    ProtocolError

from pyfix.daemons.skeleton.multi import ClientStreams, multi_server_main

STATUS_TIMER = "scache-status"


class Session:
    """An endpoint->session binding (SCACHE_MULTI_ENDP)."""

    __slots__ = ("fd", "endp_prop")

    def __init__(self, fd, endp_prop):
        self.fd = fd
        self.endp_prop = endp_prop


class Route:
    """A destination->endpoint binding (SCACHE_MULTI_DEST)."""

    __slots__ = ("endp_label", "dest_prop")

    def __init__(self, endp_label, dest_prop):
        self.endp_label = endp_label
        self.dest_prop = dest_prop


class MultiCache:
    """scache_multi: both levels in memory, each binding with its own expiry timer.
    Lists keep insertion order: a lookup takes the oldest entry first (Postfix's
    ring_prepend() to the list head, ring_succ() from it)."""

    def __init__(self, events):
        self.events = events
        self.dest_cache = {}            # dest label -> [Route]
        self.endp_cache = {}            # endp label -> [Session]
        self.sess_count = 0

    # -- endpoints ----------------------------------------------------------------------

    def save_endp(self, ttl, endp_label, endp_prop, fd):
        session = Session(fd, endp_prop)
        self.endp_cache.setdefault(endp_label, []).append(session)
        self.sess_count += 1
        self.events.request_timer(("endp", id(session)),
                                  lambda: self._drop_endp(endp_label, session), ttl)
        if msg.verbose:
            msg.info("scache_multi_save_endp: endp_label=%s -> endp_prop=%s fd=%d"
                     % (endp_label, endp_prop, fd))

    def _drop_endp(self, endp_label, session):
        self.events.cancel_timer(("endp", id(session)))
        sessions = self.endp_cache.get(endp_label, [])
        if session in sessions:
            sessions.remove(session)
            self.sess_count -= 1
        if not sessions:
            self.endp_cache.pop(endp_label, None)
        if session.fd >= 0:
            try:
                os.close(session.fd)
            except OSError as exc:
                msg.warn("scache_multi_drop_endp: close(%d): %s"
                         % (session.fd, msg.strerror(exc)))

    def find_endp(self, endp_label):
        """(fd, endp_prop) of the oldest session, now the caller's; (-1, None)."""
        sessions = self.endp_cache.get(endp_label)
        if not sessions:
            if msg.verbose:
                msg.info("scache_multi_find_endp: no endpoint cache: endp_label=%s"
                         % endp_label)
            return -1, None
        session = sessions[0]
        fd, session.fd = session.fd, -1
        if msg.verbose:
            msg.info("scache_multi_find_endp: found: endp_label=%s -> endp_prop=%s fd=%d"
                     % (endp_label, session.endp_prop, fd))
        self._drop_endp(endp_label, session)
        return fd, session.endp_prop

    # -- destinations -------------------------------------------------------------------

    def save_dest(self, ttl, dest_label, dest_prop, endp_label):
        routes = self.dest_cache.setdefault(dest_label, [])
        for route in routes:
            if route.endp_label == endp_label and route.dest_prop == dest_prop:
                refresh = True
                break
        else:
            route = Route(endp_label, dest_prop)
            routes.append(route)
            refresh = False
        self.events.request_timer(("dest", id(route)),
                                  lambda: self._drop_dest(dest_label, route), ttl)
        if msg.verbose:
            msg.info("scache_multi_save_dest: dest_label=%s -> dest_prop=%s endp_label=%s%s"
                     % (dest_label, dest_prop, endp_label,
                        " (refreshed)" if refresh else ""))

    def _drop_dest(self, dest_label, route):
        self.events.cancel_timer(("dest", id(route)))
        routes = self.dest_cache.get(dest_label, [])
        if route in routes:
            routes.remove(route)
        if not routes:
            self.dest_cache.pop(dest_label, None)

    def find_dest(self, dest_label):
        """(fd, dest_prop, endp_prop) of the first endpoint with a session; fd -1."""
        for route in list(self.dest_cache.get(dest_label, [])):
            fd, endp_prop = self.find_endp(route.endp_label)
            if fd >= 0:
                return fd, route.dest_prop, endp_prop
        if msg.verbose:
            msg.info("scache_multi_find_dest: not found: dest_label=%s" % dest_label)
        return -1, None, None

    def size(self):
        """(destinations, endpoints, sessions)."""
        return len(self.dest_cache), len(self.endp_cache), self.sess_count


class Scache:
    def __init__(self):
        self.server = None
        self.cache = None
        self.clients = ClientStreams(PROTO_SCACHE)
        self.ttl_limit = 2
        self.stat_time = 600
        self.dest_hits = self.dest_miss = self.dest_count = 0
        self.endp_hits = self.endp_miss = self.endp_count = 0
        self.sess_count = 0
        self.start_time = time.time()

    def post_init(self, server):
        self.server = server
        self.cache = MultiCache(server.events)
        self.ttl_limit = server.config.get_time("connection_cache_ttl_limit")
        self.stat_time = server.config.get_time("connection_cache_status_update_time")
        server.max_use = 0              # leave only when idle (var_use_limit = 0)
        server.events.request_timer(STATUS_TIMER, self.status_update, self.stat_time)
        self.start_time = time.time()

    # -- statistics ---------------------------------------------------------------------

    def _note_size(self):
        dests, endps, sessions = self.cache.size()
        self.dest_count = max(self.dest_count, dests)
        self.endp_count = max(self.endp_count, endps)
        self.sess_count = max(self.sess_count, sessions)

    def status_dump(self, *unused):
        if self.dest_hits or self.dest_miss or self.endp_hits or self.endp_miss \
                or self.dest_count or self.endp_count or self.sess_count:
            msg.info("statistics: start interval %s"
                     % time.strftime("%b %e %H:%M:%S", time.localtime(self.start_time)))
        if self.dest_hits or self.dest_miss:
            msg.info("statistics: domain lookup hits=%d miss=%d success=%d%%"
                     % (self.dest_hits, self.dest_miss,
                        self.dest_hits * 100 // (self.dest_hits + self.dest_miss)))
            self.dest_hits = self.dest_miss = 0
        if self.endp_hits or self.endp_miss:
            msg.info("statistics: address lookup hits=%d miss=%d success=%d%%"
                     % (self.endp_hits, self.endp_miss,
                        self.endp_hits * 100 // (self.endp_hits + self.endp_miss)))
            self.endp_hits = self.endp_miss = 0
        if self.dest_count or self.endp_count or self.sess_count:
            msg.info("statistics: max simultaneous domains=%d addresses=%d connection=%d"
                     % (self.dest_count, self.endp_count, self.sess_count))
            self.dest_count = self.endp_count = self.sess_count = 0
        self.start_time = time.time()

    def status_update(self):
        self.status_dump()
        self.server.events.request_timer(STATUS_TIMER, self.status_update, self.stat_time)

    # -- the protocol -------------------------------------------------------------------

    def service(self, conn, server):
        if server.argv:
            msg.fatal("unexpected command-line argument: %s" % server.argv[0])
        stream = self.clients.stream(conn, "scache socket",
                                     server.config.get_time("ipc_timeout"))
        while True:
            count, values = stream.scan([(attr.STR, "request")],
                                        attr.FLAG_MORE | attr.FLAG_STRICT)
            if count == 1:
                self.dispatch(stream, values["request"])
            # A client's dummy may come right behind its request: serve what is buffered.
            if not stream.pending() or stream.eof:
                break
        if stream.eof:
            server.disconnect(conn)

    def dispatch(self, stream, request):
        if request == REQ_SAVE_DEST:
            self.save_dest_service(stream)
        elif request == REQ_FIND_DEST:
            self.find_dest_service(stream)
        elif request == REQ_SAVE_ENDP:
            self.save_endp_service(stream)
        elif request == REQ_FIND_ENDP:
            self.find_endp_service(stream)
        else:
            msg.warn('unrecognized request: "%s", ignored' % request)
            stream.send([("status", STAT_BAD)])

    def _ttl(self, ttl):
        return min(ttl, self.ttl_limit)

    def save_endp_service(self, stream):
        count, values = stream.scan([(attr.INT, "ttl"), (attr.STR, "label"),
                                     (attr.STR, "property")], attr.FLAG_STRICT)
        ttl = _signed(values.get("ttl", 0))
        if count != 3 or ttl <= 0:
            msg.warn("scache_save_endp_service: bad or missing request parameter")
            stream.send([("status", STAT_BAD)])
            return
        try:
            if not stream.send([("dummy", "")]) or stream.pending():
                raise ProtocolError(0)
            if not select.select([stream.sock], [], [], stream.timeout)[0]:
                raise ProtocolError(110)
            fd = recv_fd(stream.sock)
        except ProtocolError as exc:
            msg.warn("scache_save_endp_service: unable to receive file descriptor: %s"
                     % os.strerror(exc.errno))
            stream.send([("status", STAT_FAIL)])
            return
        self.cache.save_endp(self._ttl(ttl), values["label"], values["property"], fd)
        stream.send([("status", STAT_OK)])
        self._note_size()

    def find_endp_service(self, stream):
        count, values = stream.scan([(attr.STR, "label")], attr.FLAG_STRICT)
        if count != 1:
            msg.warn("scache_find_endp_service: bad or missing request parameter")
            stream.send([("status", STAT_BAD), ("property", "")])
            return
        fd, endp_prop = self.cache.find_endp(values["label"])
        if fd < 0:
            stream.send([("status", STAT_FAIL), ("property", "")])
            self.endp_miss += 1
            return
        stream.send([("status", STAT_OK), ("property", endp_prop)])
        self._hand_over(stream, fd, "scache_find_endp_service")
        self.endp_hits += 1

    def save_dest_service(self, stream):
        count, values = stream.scan([(attr.INT, "ttl"), (attr.STR, "label"),
                                     (attr.STR, "property")],
                                    attr.FLAG_STRICT | attr.FLAG_MORE)
        if count == 3:
            more, endp = stream.scan([(attr.STR, "label")], attr.FLAG_STRICT)
            count += max(more, 0)
        ttl = _signed(values.get("ttl", 0))
        if count != 4 or ttl <= 0:
            msg.warn("scache_save_dest_service: bad or missing request parameter")
            stream.send([("status", STAT_BAD)])
            return
        self.cache.save_dest(self._ttl(ttl), values["label"], values["property"],
                             endp["label"])
        stream.send([("status", STAT_OK)])
        self._note_size()

    def find_dest_service(self, stream):
        count, values = stream.scan([(attr.STR, "label")], attr.FLAG_STRICT)
        if count != 1:
            msg.warn("scache_find_dest_service: bad or missing request parameter")
            stream.send([("status", STAT_BAD), ("property", ""), ("property", "")])
            return
        fd, dest_prop, endp_prop = self.cache.find_dest(values["label"])
        if fd < 0:
            stream.send([("status", STAT_FAIL), ("property", ""), ("property", "")])
            self.dest_miss += 1
            return
        stream.send([("status", STAT_OK), ("property", dest_prop), ("property", endp_prop)])
        self._hand_over(stream, fd, "scache_find_dest_service")
        self.dest_hits += 1

    @staticmethod
    def _hand_over(stream, fd, myname):
        """Pass fd to the client between its two dummies, then close our copy."""
        try:
            count, _ = stream.scan([(attr.STR, "dummy")], attr.FLAG_STRICT)
            if count != 1 or stream.pending():
                raise ProtocolError(0)
            send_fd(stream.sock, fd)
            count, _ = stream.scan([(attr.STR, "dummy")], attr.FLAG_STRICT)
            if count != 1:
                raise ProtocolError(0)
        except (OSError, ProtocolError) as exc:
            msg.warn("%s: cannot send file descriptor: %s"
                     % (myname, os.strerror(getattr(exc, "errno", 0) or 0)))
        try:
            os.close(fd)
        except OSError as exc:
            msg.warn("close(%d): %s" % (fd, msg.strerror(exc)))


def _signed(value):
    """An attr INT is sent unsigned: -1 arrives as 4294967295."""
    return value - 2 ** 32 if value >= 2 ** 31 else value


def main(argv):
    scache = Scache()
    multi_server_main(argv, scache.service, solitary=True, post_init=scache.post_init,
                      post_accept=scache.clients.announce,
                      pre_disconnect=scache.clients.forget,
                      on_exit=scache.status_dump)

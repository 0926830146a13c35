"""The multi-client server skeleton (Postfix's multi_server.c): many connections, one request
at a time.

trivial-rewrite, proxymap, anvil, scache, verify and tlsmgr keep many client connections
open and answer requests on them; the process is busy only while it handles a request.
A use is one client connection, counted when it closes; the process leaves after max_use
uses once no client is left.
"""

import socket

from pyfix.common import attr, master_proto, msg

from pyfix.daemons.skeleton.server import Server

# A plain int: or-ing the socket module's IntFlag members costs an enum call per request.
_PEEK_NOWAIT = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)


class MultiServer(Server):
    # No accept lock (multi_server.c keeps it under #if 0): a process that waits for
    # the lock cannot answer the clients it already has, while the holder waits only
    # for new ones -- a request can starve until the next connection comes along.
    uses_accept_lock = False

    def __init__(self, argv, service, pre_disconnect=None, post_accept=None, **hooks):
        super().__init__(argv, **hooks)
        self.service = service
        self.pre_disconnect = pre_disconnect
        self.post_accept = post_accept
        self.clients = {}

    def serve(self):
        if self.transport not in ("inet", "unix", "pass"):
            msg.fatal("unsupported transport type: %s" % self.transport)
        self.watch_listeners(self._new_client)
        self.events.enable_read(master_proto.STATUS_FD, lambda fd, ev: self.master_gone())
        self.run(lambda: self.uses_left() or self.clients)

    def _new_client(self, conn, time_left):
        # The idle timer stays off while any client is connected (see disconnect()).
        self.clients[conn.fileno()] = conn
        self.events.enable_read(conn.fileno(), lambda fd, ev: self._execute(fd))
        if self.post_accept:
            # A protocol announcement, as Postfix's multi-server daemons send one.
            self.post_accept(conn, self)

    def _execute(self, fd):
        # A request on a client of ours: let another process wait for new clients
        # meanwhile (multi_server_execute() drops the accept lock first, too).
        self.unlock()
        conn = self.clients.get(fd)
        if conn is None:
            return
        try:
            pending = conn.recv(1, _PEEK_NOWAIT)
        except BlockingIOError:
            return
        except OSError:
            pending = b""
        if not pending:
            self.disconnect(conn)
            return
        self.notify_taken()
        self.service(conn, self)
        self.notify_avail()

    def disconnect(self, conn):
        """Forget a client (the service calls this at EOF or on a protocol error)."""
        fd = conn.fileno()
        if self.clients.pop(fd, None) is None:
            return
        if self.pre_disconnect:
            self.pre_disconnect(conn, self)
        self.events.disable(fd)
        conn.close()
        self.count_use()
        if not self.clients:
            self.arm_idle_timer()


class ClientStreams:
    """The attribute streams of a multi-client daemon's connections: each new client is
    greeted with the daemon's protocol name, as Postfix's multi-server daemons do, and
    keeps one buffered AttrStream until it disconnects. Pass announce() as
    post_accept and forget() as pre_disconnect."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.streams = {}               # client fd -> AttrStream

    def announce(self, conn, server):
        try:
            conn.sendall(attr.print0([("protocol", self.protocol)]))
        except OSError:
            pass

    def forget(self, conn, server):
        self.streams.pop(conn.fileno(), None)

    def stream(self, conn, label, timeout):
        """The client's AttrStream, made at its first request."""
        stream = self.streams.get(conn.fileno())
        if stream is None:
            stream = self.streams[conn.fileno()] = attr.AttrStream(conn, label, timeout)
        return stream


def multi_server_main(argv, service, **hooks):
    """Run service(conn, server) for each request on any client connection;
    post_accept(conn, server), if given, runs once for each new client."""
    MultiServer(argv, service, **hooks).serve()

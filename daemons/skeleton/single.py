"""The single-threaded server skeleton (Postfix's single_server.c): one client at a time.

smtpd, cleanup, smtp, local, bounce, showq, spawn and other daemons that hold a client for
a whole session run on this: the process tells master it is busy when it accepts a
connection and available again when the session is over; each session is one use.
"""

import os
import socket
import sys

from pyfix.common import msg

from pyfix.daemons.skeleton.server import Server


class SingleServer(Server):
    def __init__(self, argv, service, **hooks):
        super().__init__(argv, **hooks)
        self.service = service

    def serve(self):
        if self.stream_mode:
            self.service(_stdio_socket(), self)
            self.exit(0)
        if self.transport not in ("inet", "unix", "pass"):
            msg.fatal("unsupported transport type: %s" % self.transport)
        self.watch_listeners(lambda conn, time_left: self._wakeup(conn))
        self.watch_master()
        self.run(self.uses_left)

    def _wakeup(self, conn):
        self.notify_taken()
        try:
            self.service(conn, self)
        finally:
            try:
                conn.close()
            except OSError:
                pass
        self.notify_avail()
        self.count_use()
        self.arm_idle_timer()


def _stdio_socket():
    """`-S`: serve the client on standard input/output (sendmail -bs)."""
    return socket.socket(fileno=os.dup(sys.stdin.fileno()))


def single_server_main(argv, service, **hooks):
    """Run service(conn, server) for each client, one at a time; never returns."""
    SingleServer(argv, service, **hooks).serve()

"""The datagram server skeleton (Postfix's dgram_server.c): one datagram, one use.

postlogd receives log records this way on the unix-dgram postlog service.
"""

import os

from pyfix.common import msg

from pyfix.daemons.skeleton.server import Server

DGRAM_BUF_SIZE = 8192


class DgramServer(Server):
    def __init__(self, argv, service, **hooks):
        super().__init__(argv, **hooks)
        self.service = service

    def serve(self):
        if self.transport != "unix-dgram":
            msg.fatal("unsupported transport type: %s" % self.transport)
        for listener_fd in range(6, 6 + self.socket_count):
            os.set_blocking(listener_fd, False)
            self.events.enable_read(listener_fd, lambda fd, ev: self._receive(fd))
        self.watch_master()
        self.run(self.uses_left)

    def _receive(self, fd):
        time_left = self.cancel_idle_timer()
        self.unlock()
        try:
            data = os.read(fd, DGRAM_BUF_SIZE)
        except BlockingIOError:
            data = None
        except OSError as exc:
            msg.warn("read datagram: %s" % msg.strerror(exc))
            data = None
        if data is None:
            if time_left is not None:
                self.arm_idle_timer(time_left)
            return
        self.notify_taken()
        self.service(data, self)
        self.notify_avail()
        self.count_use()
        self.arm_idle_timer()


def dgram_server_main(argv, service, **hooks):
    """Run service(data, server) for each datagram received."""
    DgramServer(argv, service, **hooks).serve()

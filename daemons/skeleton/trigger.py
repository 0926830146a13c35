"""The trigger server skeleton (Postfix's trigger_server.c): wake-up requests.

qmgr, pickup and flush wait for a few bytes of trigger (`W`, `I`, `D`, `A`, `F`, ...)
written into their unix socket or FIFO by master's wakeup timer or by another program.
Each trigger is one use.
"""

import os
import select

from pyfix.common import msg

from pyfix.daemons.skeleton.server import Server

TRIGGER_BUF_SIZE = 1024
TRIGGER_READ_TIMEOUT = 10


class TriggerServer(Server):
    def __init__(self, argv, service, **hooks):
        super().__init__(argv, **hooks)
        self.service = service

    def serve(self):
        if self.transport not in ("unix", "fifo", "pass"):
            msg.fatal("unsupported transport type: %s" % self.transport)
        if self.transport == "fifo":
            for listener_fd in range(6, 6 + self.socket_count):
                self.events.enable_read(listener_fd, lambda fd, ev: self._accept_fifo(fd))
        else:
            self.watch_listeners(self._read_trigger)
        self.watch_master()
        self.run(self.uses_left)

    def _accept_fifo(self, fd):
        self.unlock()
        if self.pre_accept:
            self.pre_accept(self)
        self._wakeup(fd)

    def _read_trigger(self, conn, time_left):
        with conn:
            ready, _, _ = select.select([conn], [], [], TRIGGER_READ_TIMEOUT)
            if ready:
                self._wakeup(conn.fileno())
            elif time_left is not None:
                self.arm_idle_timer(time_left)

    def _wakeup(self, fd):
        self.notify_taken()
        try:
            data = os.read(fd, TRIGGER_BUF_SIZE)
        except BlockingIOError:
            data = None
        except OSError:
            data = None
        if data is not None:
            self.service(data, self)
        self.notify_avail()
        self.arm_idle_timer()
        self.count_use()


def trigger_server_main(argv, service, **hooks):
    """Run service(data, server) for each trigger received."""
    TriggerServer(argv, service, **hooks).serve()

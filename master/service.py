"""A running master.cf service: its listeners, status channel, wakeup timer and the bookkeeping
of its children (Postfix's master_service.c, master_avail.c, master_status.c and
master_wakeup.c).

The rule that shapes everything here: master watches a service's listening sockets only
while no child of the service is idle and the service is under its process limit; then a
pending connection makes master fork one child, which counts as idle until it says it is
busy. Idle children accept for themselves.
"""

import os
import socket

from pyfix.common import master_proto, msg, trigger
from pyfix.common.events import EventLoop

from pyfix.master.listen import inet_port, listen_service

STRESS_HOLD = 1000          # seconds a stressed service stays in stress mode
BUSY_WARN_INTERVAL = 1000


class Child:
    """One process of a service (MASTER_PROC)."""

    __slots__ = ("service", "pid", "generation", "use_count", "avail")

    def __init__(self, service, pid, generation):
        self.service = service
        self.pid = pid
        self.generation = generation
        self.use_count = 0
        self.avail = False


class Service:
    """The run-time state of one master.cf entry (MASTER_SERV)."""

    def __init__(self, spec, master):
        self.spec = spec
        self.master = master
        self.listen_fds = []
        self.status_fds = None
        self.avail = 0
        self.total = 0
        self.throttled = False
        self.listening = False
        self.marked = False
        self.conditional_wakeup = spec.conditional_wakeup
        self.stress_expire = 0.0
        self.busy_warn_time = -BUSY_WARN_INTERVAL - 1.0

    @property
    def events(self) -> EventLoop:
        return self.master.events

    @property
    def key(self):
        return self.spec.key

    def describe(self):
        return "%s(%s)" % (self.spec.ext_name, self.spec.name)

    # -- start, stop, restart (master_service.c) ---------------------------------------------

    def start(self):
        backlog = max(self.spec.max_proc, self.master.settings.default_process_limit)
        self.listen_fds = listen_service(self.spec, backlog, self.master.owner_ids)
        self.update_listening()
        self.open_status()
        self.start_wakeup()

    def stop(self):
        self.stop_wakeup()
        self.close_status()
        self.master.delete_children(self)
        self.stop_listening()
        for fd in self.listen_fds:
            os.close(fd)
        self.listen_fds = []
        if self.spec.type in ("unix", "pass", "unix-dgram", "fifo"):
            try:
                os.unlink(self.spec.name)
            except OSError:
                pass

    def restart(self, spec):
        """Reload: new settings for new children; the old ones see their status channel
        close and leave when idle."""
        self.spec = spec
        self.conditional_wakeup = spec.conditional_wakeup
        self.stop_wakeup()
        self.close_status()
        self.open_status()
        self.start_wakeup()
        self.update_listening()

    # -- when to listen (master_avail.c) -------------------------------------------------------

    def under_limit(self, extra=0):
        return self.spec.max_proc == 0 or self.total + extra < self.spec.max_proc

    @property
    def stress_capable(self):
        return self.spec.stress_index is not None

    def update_listening(self):
        """master_avail_listen(): watch the listeners only when a new child is needed."""
        if self.throttled or self.avail > 0:
            wanted = False
        elif self.under_limit():
            wanted = True
        else:
            wanted = False
            self._warn_process_limit()
        if wanted and not self.listening:
            for fd in self.listen_fds:
                self.events.enable_read(fd, self._connection_pending)
            self.listening = True
        elif not wanted and self.listening:
            self.stop_listening()

    def stop_listening(self):
        for fd in self.listen_fds:
            self.events.disable(fd)
        self.listening = False

    def _warn_process_limit(self):
        if not self.stress_capable:
            return
        now = self.master.now()
        if self.busy_warn_time < now - BUSY_WARN_INTERVAL:
            self.busy_warn_time = now
            msg.warn('service "%s" (%s) has reached its process limit "%d": '
                     "new clients may experience noticeable delays"
                     % (self.spec.ext_name, self.spec.name, self.spec.max_proc))
            msg.warn("to avoid this condition, increase the process count in master.cf "
                     "or reduce the service time per client")
            msg.warn("see http://www.postfix.org/STRESS_README.html for examples of "
                     "stress-adapting configuration settings")

    def _connection_pending(self, fd, events):
        """master_avail_event(): a client waits and no child is idle: start one."""
        if self.stress_capable and not self.under_limit(1):
            now = self.master.now()
            if self.stress_expire < now:
                self.restart(self.spec)
            self.stress_expire = now + STRESS_HOLD
        self.master.spawn(self)

    def stressed(self):
        return self.stress_capable and self.stress_expire > self.master.now()

    def child_available(self, child):
        if child.avail:
            msg.panic("master_avail_more: process already available")
        self.avail += 1
        child.avail = True
        self.update_listening()

    def child_busy(self, child):
        if not child.avail:
            msg.panic("master_avail_less: process not available")
        self.avail -= 1
        child.avail = False
        self.update_listening()

    # -- the status channel (master_status.c) ----------------------------------------------

    def open_status(self):
        parent, child = socket.socketpair()
        self.status_fds = (parent.detach(), child.detach())
        self.events.enable_read(self.status_fds[0], self._status_event)

    def close_status(self):
        if self.status_fds is None:
            return
        self.events.disable(self.status_fds[0])
        for fd in self.status_fds:
            os.close(fd)
        self.status_fds = None

    def _status_event(self, fd, events):
        try:
            data = os.read(fd, master_proto.STATUS_SIZE)
        except OSError as exc:
            msg.warn("master_status_event: read: %s" % msg.strerror(exc))
            return
        if not data:
            msg.panic("master_status_event: read EOF status")
        if len(data) != master_proto.STATUS_SIZE:
            pid = int.from_bytes(data[:4].ljust(4, b"\0"), "little", signed=True)
            msg.warn("service %s: child (pid %d) sent partial status update (%d bytes)"
                     % (self.describe(), pid, len(data)))
            return
        pid, generation, avail = master_proto.unpack_status(data)
        self.master.status_update(self, pid, generation, avail)

    # -- wakeup timers (master_wakeup.c) ---------------------------------------------------

    def _timer_key(self):
        return ("wakeup", id(self))

    def start_wakeup(self):
        if self.spec.wakeup_time == 0 or self.conditional_wakeup:
            return
        self._wakeup_event()

    def stop_wakeup(self):
        self.events.cancel_timer(self._timer_key())

    def _wakeup_event(self):
        if self.spec.wakeup_time == 0:
            return
        if not self.throttled:
            try:
                self._send_wakeup()
            except OSError as exc:
                msg.warn("master_wakeup_timer_event: service %s: %s"
                         % (self.describe(), msg.strerror(exc)))
        self.events.request_timer(self._timer_key(), self._wakeup_event,
                                  self.spec.wakeup_time)

    def _send_wakeup(self):
        kind = self.spec.type
        wakeup = trigger.TRIGGER_REQ_WAKEUP
        if kind == "inet":
            address = self.spec.listen_addresses[0].address
            trigger.inet_trigger(address, inet_port(self.spec), wakeup, events=self.events)
        elif kind == "unix":
            trigger.unix_trigger(self.spec.name, wakeup, events=self.events)
        elif kind == "pass":
            trigger.pass_trigger(self.spec.name, wakeup)
        elif kind == "fifo":
            trigger.fifo_trigger(self.spec.name, wakeup)
        else:
            raise OSError(95, os.strerror(95))      # unix-dgram: EOPNOTSUPP

    def first_child_started(self):
        """A `?` wakeup timer starts with the first process of the service."""
        if self.conditional_wakeup:
            self.conditional_wakeup = False
            self.start_wakeup()

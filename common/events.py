"""A small event loop: descriptors and timers (Postfix's util/events.c).

master and the daemon skeletons are single-threaded processes that wait on a few file
descriptors and timers; this is that wait, over the selectors module. Callbacks run one
at a time; a callback may add or remove descriptors and timers, including its own.
"""

import heapq
import itertools
import selectors
import time

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE


class EventLoop:
    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self._timers = []                 # heap of (deadline, seq, key)
        self._timer_keys = {}             # key -> (deadline, seq, callback)
        self._seq = itertools.count()

    # -- descriptors ------------------------------------------------------------------

    def enable_read(self, fd, callback):
        self._enable(fd, READ, callback)

    def enable_write(self, fd, callback):
        self._enable(fd, WRITE, callback)

    def _enable(self, fd, events, callback):
        try:
            self.selector.modify(fd, events, callback)
        except KeyError:
            self.selector.register(fd, events, callback)

    def disable(self, fd):
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def watching(self, fd):
        try:
            self.selector.get_key(fd)
            return True
        except (KeyError, ValueError):
            return False

    # -- timers ---------------------------------------------------------------------------

    def request_timer(self, key, callback, delay):
        """(Re)arm the timer named key: callback() after delay seconds."""
        deadline = time.monotonic() + delay
        seq = next(self._seq)
        self._timer_keys[key] = (deadline, seq, callback)
        heapq.heappush(self._timers, (deadline, seq, key))

    def cancel_timer(self, key):
        """Cancel a timer; the seconds it had left, or None when it was not armed."""
        entry = self._timer_keys.pop(key, None)
        if entry is None:
            return None
        return max(0.0, entry[0] - time.monotonic())

    def timer_armed(self, key):
        return key in self._timer_keys

    def _next_timeout(self):
        while self._timers:
            deadline, seq, key = self._timers[0]
            entry = self._timer_keys.get(key)
            if entry is None or entry[1] != seq:
                heapq.heappop(self._timers)       # cancelled or re-armed
                continue
            return max(0.0, deadline - time.monotonic())
        return None

    def _run_due_timers(self):
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            deadline, seq, key = heapq.heappop(self._timers)
            entry = self._timer_keys.get(key)
            if entry is None or entry[1] != seq:
                continue
            del self._timer_keys[key]
            entry[2]()

    # -- the wait -------------------------------------------------------------------------

    def run_once(self, max_wait=None):
        """Wait for one round of events (at most max_wait seconds) and dispatch them."""
        timeout = self._next_timeout()
        if max_wait is not None and max_wait >= 0:
            timeout = max_wait if timeout is None else min(timeout, max_wait)
        try:
            ready = self.selector.select(timeout)
        except InterruptedError:
            ready = []
        for key, events in ready:
            if self.watching(key.fd) and self.selector.get_key(key.fd).data is key.data:
                key.data(key.fd, events)
        self._run_due_timers()

    def close(self):
        self.selector.close()

"""Transports, per-destination queues and queue entries of the queue manager (Postfix's
qmgr_transport.c, qmgr_queue.c, qmgr_feedback.c, qmgr_entry.c, qmgr_defer.c,
qmgr_error.c and qmgr_enable.c).

A transport (master.cf service) owns one queue per destination (nexthop; with a
destination recipient limit of 1, per recipient); a queue holds entries, each a group of
recipients of one message that one delivery agent gets in one request. A queue's
`window` is its concurrency limit: it starts at initial_destination_concurrency (slow
start), grows by the positive feedback on each delivery without a site problem, shrinks
by the negative feedback on each one with a problem, and after
destination_concurrency_failed_cohort_limit failed cohorts the destination is dead
(window 0, "throttled") for minimal_backoff_time: its waiting recipients are then
deferred. A transport whose agent cannot be reached is dead for
transport_retry_time. How many agents of a transport run at once is master's process
limit (master.cf maxproc, default_process_limit): as in Postfix, qmgr connects to
private/<transport>, at most QMGR_TRANSPORT_MAX_PEND connections at a time, and master
hands each to a free agent or spawns one within the limit.

Scheduling is simpler than nqmgr's job preemption: a transport serves its ready
destinations round-robin, and each destination its entries in arrival order (FIFO).
"""

import collections
import time

from pyfix.common import msg, params
from pyfix.queue.bounce_clnt import Dsn
from pyfix.queue.deliver_request import DEL_REQ_FLAG_CONN_MASK, DEL_REQ_FLAG_CONN_STORE

QUEUE_STAT_THROTTLED = 0
QUEUE_STAT_SUSPENDED = -1
QMGR_TRANSPORT_MAX_PEND = 2
TODO, BUSY = 1, 2
SERVICE_ERROR = "error"
SERVICE_RETRY = "retry"


class Feedback:
    """A concurrency feedback setting: a constant or N/concurrency (qmgr_feedback_init())."""

    def __init__(self, config, name, default_name):
        if not _known(config, name):
            name = default_name
        text = config.get(name)
        self.per_window = False
        self.sqrt = False
        self.base = -1.0
        parts = text.replace("/", " / ").split()
        try:
            if len(parts) == 1:
                self.base = float(parts[0])
            elif len(parts) == 3 and parts[1] == "/":
                if parts[2] in ("concurrency", "win"):
                    self.per_window, self.base = True, float(parts[0])
                elif parts[2] == "sqrt_concurrency":
                    self.sqrt, self.base = True, float(parts[0])
                else:
                    denominator = float(parts[2])
                    if 0 <= float(parts[0]) and 1.0 / 2 ** 31 <= denominator:
                        self.base = float(parts[0]) / denominator
        except ValueError:
            self.base = -1.0
        if not 0 <= self.base <= 1:
            msg.warn("%s: ignoring malformed or unreasonable feedback: %s" % (name, text))
            self.per_window = self.sqrt = False
            self.base = 1.0

    def value(self, window):
        if self.per_window:
            return self.base / window
        if self.sqrt:
            return self.base / window ** 0.5
        return self.base


def _known(config, name):
    """Whether main.cf or -o sets name, or it is a built-in (local_destination_...):
    what get_mail_conf_int2() finds in the configuration dictionary."""
    return name in config.explicit or params.lookup(name) is not None


def _service_param(config, transport, suffix, default_name, kind="int"):
    """`<transport><suffix>`, or the global default (get_mail_conf_int2())."""
    name = transport + suffix
    if not _known(config, name):
        name = default_name
    return config.get_time(name) if kind == "time" else config.get_int(name)


class Transport:
    def __init__(self, config, name):
        self.name = name
        self.dead = False
        self.rate_lock = False
        self.pending = 0
        self.dsn = None
        self.queues = collections.OrderedDict()
        self.rotor = 0
        self.dest_concurrency_limit = _service_param(
            config, name, "_destination_concurrency_limit",
            "default_destination_concurrency_limit")
        self.recipient_limit = _service_param(config, name, "_destination_recipient_limit",
                                              "default_destination_recipient_limit")
        self.init_dest_concurrency = _service_param(config, name,
                                                    "_initial_destination_concurrency",
                                                    "initial_destination_concurrency")
        self.xport_rate_delay = _service_param(config, name, "_transport_rate_delay",
                                               "default_transport_rate_delay", "time")
        self.rate_delay = _service_param(config, name, "_destination_rate_delay",
                                         "default_destination_rate_delay", "time")
        if self.rate_delay > 0:
            self.dest_concurrency_limit = 1
        if 0 < self.dest_concurrency_limit < self.init_dest_concurrency:
            self.init_dest_concurrency = self.dest_concurrency_limit
        self.pos_feedback = Feedback(config,
                                     name + "_destination_concurrency_positive_feedback",
                                     "default_destination_concurrency_positive_feedback")
        self.neg_feedback = Feedback(config,
                                     name + "_destination_concurrency_negative_feedback",
                                     "default_destination_concurrency_negative_feedback")
        self.fail_cohort_limit = _service_param(
            config, name, "_destination_concurrency_failed_cohort_limit",
            "default_destination_concurrency_failed_cohort_limit")


class Queue:
    """One destination of one transport (QMGR_QUEUE)."""

    def __init__(self, transport, name, nexthop):
        self.transport = transport
        self.name = name
        self.nexthop = nexthop
        self.window = transport.init_dest_concurrency
        self.success = self.failure = self.fail_cohorts = 0.0
        self.todo = collections.deque()
        self.busy = []
        self.dsn = None
        self.dflags = 0
        self.last_done = 0

    @property
    def ready(self):
        return self.window > 0

    @property
    def throttled(self):
        return self.window == QUEUE_STAT_THROTTLED

    @property
    def suspended(self):
        return self.window == QUEUE_STAT_SUSPENDED


class Entry:
    """Recipients of one message for one queue, delivered in one request (QMGR_ENTRY)."""

    def __init__(self, message, queue):
        self.message = message
        self.queue = queue
        self.rcpts = []
        self.sock = None


class Scheduler:
    """All transports and queues of one qmgr process."""

    def __init__(self, config, events, on_message_done):
        self.config = config
        self.events = events
        self.on_message_done = on_message_done
        self.transports = collections.OrderedDict()
        self.min_backoff = config.get_time("minimal_backoff_time")
        self.transport_retry_time = config.get_time("transport_retry_time")
        self.queue_count = 0
        self.recipient_count = 0
        self.rcpt_limit = config.get_int("qmgr_message_recipient_limit")

    # -- transports (qmgr_transport.c) -----------------------------------------------------

    def transport_find(self, name):
        return self.transports.get(name)

    def transport_create(self, name):
        transport = Transport(self.config, name)
        self.transports[name] = transport
        self.transports.move_to_end(name, last=False)        # QMGR_LIST_PREPEND
        if msg.verbose:
            msg.info("qmgr_transport_create: %s concurrency %d recipients %d"
                     % (name, transport.dest_concurrency_limit, transport.recipient_limit))
        return transport

    def transport_throttle(self, transport, dsn):
        """The agents of a transport cannot be reached: dead for transport_retry_time."""
        if msg.verbose:
            msg.info("qmgr_transport_throttle: transport %s: status: %s reason: %s"
                     % (transport.name, dsn.status, dsn.reason))
        if not transport.dead:
            transport.dsn = dsn.copy()
            transport.dead = True
            self.events.request_timer(("xport", id(transport)),
                                      lambda: self.transport_unthrottle(transport),
                                      self.transport_retry_time)
        transport.rate_lock = False

    def transport_unthrottle(self, transport):
        transport.rate_lock = False
        if transport.dead:
            transport.dsn = None
            transport.dead = False
            self.events.cancel_timer(("xport", id(transport)))

    def transport_select(self):
        """A transport with work for one more agent (qmgr_transport_select())."""
        for transport in list(self.transports.values()):
            if transport.dead or transport.rate_lock \
                    or transport.pending >= QMGR_TRANSPORT_MAX_PEND:
                continue
            need = transport.pending + 1
            for queue in transport.queues.values():
                if not queue.ready:
                    continue
                need -= min(queue.window - len(queue.busy), len(queue.todo))
                if need <= 0:
                    self.transports.move_to_end(transport.name)      # QMGR_LIST_ROTATE
                    return transport
        return None

    # -- queues (qmgr_queue.c) -------------------------------------------------------------

    def queue_find(self, transport, name):
        return transport.queues.get(name)

    def queue_create(self, transport, name, nexthop):
        queue = Queue(transport, name, nexthop)
        transport.queues[name] = queue
        self.queue_count += 1
        return queue

    def queue_done(self, queue):
        """Forget an empty, ready queue."""
        if queue.todo or queue.busy:
            msg.panic("qmgr_queue_done: queue not empty: %s" % queue.name)
        transport = queue.transport
        if transport.queues.get(queue.name) is queue:
            del transport.queues[queue.name]
            self.queue_count -= 1

    def queue_unthrottle(self, queue):
        """A delivery without a site problem: more concurrency, or the end of a dead
        destination's back-off."""
        transport = queue.transport
        queue.fail_cohorts = 0
        if queue.throttled:
            self.events.cancel_timer(("queue", id(queue)))
            queue.dsn = None
            queue.window = len(queue.busy) if queue.busy else transport.init_dest_concurrency
            queue.success = queue.failure = 0
            return
        if queue.suspended:
            return
        limit = transport.dest_concurrency_limit
        if (limit == 0 or limit > queue.window) \
                and queue.window < len(queue.busy) + transport.init_dest_concurrency:
            feedback = transport.pos_feedback.value(queue.window)
            queue.success += feedback
            while queue.success + feedback / 2 >= 1:
                queue.window += 1
                queue.success -= 1
                queue.failure = 0
            if limit > 0 and queue.window > limit:
                queue.window = limit

    def queue_throttle(self, queue, dsn):
        """A delivery with a site problem: less concurrency; after enough failed cohorts
        the destination is dead for minimal_backoff_time."""
        transport = queue.transport
        if not queue.ready:
            return
        queue.fail_cohorts += 1.0 / queue.window
        if transport.fail_cohort_limit > 0 \
                and queue.fail_cohorts >= transport.fail_cohort_limit:
            queue.window = QUEUE_STAT_THROTTLED
        if queue.ready:
            feedback = transport.neg_feedback.value(queue.window)
            queue.failure -= feedback
            while queue.failure - feedback / 2 < 0:
                queue.window -= 1
                queue.success = 0
                queue.failure += 1
            if queue.window < 1:
                queue.window = 1
        if queue.throttled:
            queue.dsn = dsn.copy()
            self.events.request_timer(("queue", id(queue)),
                                      lambda: self._queue_unthrottle_timer(queue),
                                      self.min_backoff)
            queue.dflags = 0

    def _queue_unthrottle_timer(self, queue):
        if queue.throttled:
            self.queue_unthrottle(queue)
        if queue.ready and not queue.todo and not queue.busy:
            self.queue_done(queue)

    def queue_suspend(self, queue, delay):
        """destination_rate_delay: no delivery to this destination for `delay` seconds."""
        queue.window = QUEUE_STAT_SUSPENDED
        self.events.request_timer(("queue", id(queue)), lambda: self._queue_resume(queue),
                                  delay)

    def _queue_resume(self, queue):
        if queue.suspended:
            queue.window = 1
        if queue.ready and not queue.todo and not queue.busy:
            self.queue_done(queue)

    # -- error and retry destinations (qmgr_error.c) ---------------------------------------

    def error_transport(self, service):
        transport = self.transport_find(service) or self.transport_create(service)
        return None if transport.dead else transport

    def error_queue(self, service, dsn):
        transport = self.error_transport(service)
        if transport is None:
            return None
        nexthop = error_nexthop(dsn)
        queue = self.queue_find(transport, nexthop) or \
            self.queue_create(transport, nexthop, nexthop)
        return None if queue.throttled else queue

    # -- entries (qmgr_entry.c) ------------------------------------------------------------

    def entry_create(self, message, queue):
        entry = Entry(message, queue)
        queue.todo.append(entry)
        message.refcount += 1
        return entry

    def entry_select(self, transport):
        """The next entry to deliver: the ready queues in turn, each in FIFO order."""
        queues = [queue for queue in transport.queues.values()
                  if queue.ready and queue.todo and len(queue.busy) < queue.window]
        if not queues:
            return None
        queue = queues[transport.rotor % len(queues)]
        transport.rotor += 1
        entry = queue.todo.popleft()
        queue.busy.append(entry)
        self._session_caching(queue)
        return entry

    @staticmethod
    def _session_caching(queue):
        """On-demand connection caching: allowed while deliveries to a destination run
        back to back (one finished within the last second) or side by side."""
        back_to_back = queue.last_done + 1 >= int(time.time())
        if not queue.dflags & DEL_REQ_FLAG_CONN_STORE:
            if back_to_back:
                if msg.verbose:
                    msg.info("qmgr_entry_select: allowing on-demand session caching for %s"
                             % queue.name)
                queue.dflags |= DEL_REQ_FLAG_CONN_MASK
        elif not (len(queue.busy) > 1 or back_to_back):
            if msg.verbose:
                msg.info("qmgr_entry_select: disallowing on-demand session caching for %s"
                         % queue.name)
            queue.dflags &= ~DEL_REQ_FLAG_CONN_STORE

    def entry_unselect(self, entry):
        queue = entry.queue
        queue.busy.remove(entry)
        queue.todo.appendleft(entry)

    def entry_move_todo(self, dst_queue, entry):
        """Move a waiting entry to another queue (to the retry transport)."""
        entry.queue.todo.remove(entry)
        old = entry.queue
        entry.queue = dst_queue
        dst_queue.todo.append(entry)
        if old.ready and not old.todo and not old.busy:
            self.queue_done(old)

    def entry_done(self, entry, which):
        """Forget an entry whose recipients were delivered, deferred or bounced; when it
        was the message's last, the message is done."""
        queue = entry.queue
        message = entry.message
        transport = queue.transport
        if which == BUSY:
            queue.busy.remove(entry)
        else:
            queue.todo.remove(entry)
        self.recipient_count -= len(entry.rcpts)
        if which == BUSY and transport.rate_delay > 0:
            if queue.throttled:
                self.queue_unthrottle(queue)
            if queue.ready:
                self.queue_suspend(queue, transport.rate_delay)
        if which == BUSY:
            queue.last_done = int(time.time())
        if not queue.todo and not queue.busy:
            if queue.throttled and self.queue_count > 2 * self.rcpt_limit:
                self.queue_unthrottle(queue)
            if queue.ready:
                self.queue_done(queue)
        message.refcount -= 1
        if message.refcount == 0:
            self.on_message_done(message)

    # -- deferral (qmgr_defer.c) -----------------------------------------------------------

    def defer_transport(self, transport, dsn):
        if msg.verbose:
            msg.info("defer transport %s: %s %s" % (transport.name, dsn.status, dsn.reason))
        for queue in list(transport.queues.values()):
            self.defer_todo(queue, dsn)

    def defer_todo(self, queue, dsn):
        """Defer the waiting recipients of a dead destination: hand them to the retry
        transport, whose agent logs them, or log them here when it is dead too."""
        if msg.verbose:
            msg.info("defer site %s: %s %s" % (queue.name, dsn.status, dsn.reason))
        retry_queue = self.error_queue(SERVICE_RETRY, dsn)
        for entry in list(queue.todo):
            if retry_queue is not None and retry_queue is not queue:
                self.entry_move_todo(retry_queue, entry)
                continue
            for rcpt in entry.rcpts:
                entry.message.defer_recipient(rcpt, dsn)
            self.entry_done(entry, TODO)

    # -- flush (qmgr_enable.c) -------------------------------------------------------------

    def enable_all(self):
        for transport in list(self.transports.values()):
            if transport.dead:
                self.transport_unthrottle(transport)
            for queue in list(transport.queues.values()):
                if queue.throttled:
                    self.queue_unthrottle(queue)
                if queue.ready and not queue.todo and not queue.busy:
                    self.queue_done(queue)


def error_nexthop(dsn):
    """The nexthop of the error and retry agents: `status reason` (qmgr_error_nexthop())."""
    return "%s %s" % (dsn.status, dsn.reason)


def simple_dsn(status, reason):
    return Dsn(status, reason)

"""qmgr's destination concurrency arithmetic (daemons/qmgr/queues.py) worked through
by hand from Postfix's qmgr_queue.c: slow start, feedback, failed cohorts, the dead
destination's back-off, destination rate delay, on-demand connection caching. The
scheduler runs on a real event loop; the message side is a small stand-in object that
only counts its entries (the full path is covered end to end by test_qmgr.py)."""

import time

from pyfix.common.config import Config
from pyfix.common.events import EventLoop
from pyfix.daemons.qmgr.queues import BUSY, Scheduler
from pyfix.queue.bounce_clnt import Dsn
from pyfix.queue.deliver_request import DEL_REQ_FLAG_CONN_MASK


class Message:
    def __init__(self):
        self.refcount = 0
        self.done = False


def scheduler(**settings):
    config = Config()
    for name, value in settings.items():
        config.set(name, value)
    finished = []
    sched = Scheduler(config, EventLoop(), finished.append)
    return sched, finished


def busy_entries(sched, queue, count):
    message = Message()
    entries = [sched.entry_create(message, queue) for _ in range(count)]
    for _ in range(count):
        sched.entry_select(queue.transport)
    return message, entries


def test_transport_parameters_per_service():
    sched, _ = scheduler(default_destination_recipient_limit="7",
                         smtp_destination_concurrency_limit="3",
                         smtp_destination_rate_delay="0s")
    smtp = sched.transport_create("smtp")
    assert (smtp.recipient_limit, smtp.dest_concurrency_limit,
            smtp.init_dest_concurrency) == (7, 3, 3)
    local = sched.transport_create("local")                 # built-in local_* defaults
    assert (local.recipient_limit, local.dest_concurrency_limit) == (1, 2)
    relay = scheduler(relay_destination_rate_delay="2s")[0].transport_create("relay")
    assert relay.rate_delay == 2 and relay.dest_concurrency_limit == 1


def test_slow_start_grows_only_while_busy():
    sched, _ = scheduler()
    transport = sched.transport_create("smtp")
    queue = sched.queue_create(transport, "example.org", "example.org")
    assert queue.window == 5                                   # initial concurrency
    sched.queue_unthrottle(queue)
    assert queue.window == 5                                   # nothing in flight
    busy_entries(sched, queue, 3)
    sched.queue_unthrottle(queue)
    assert queue.window == 6                                   # +1 (feedback 1)


def test_failures_shrink_window_then_throttle():
    sched, _ = scheduler(minimal_backoff_time="1s")
    transport = sched.transport_create("smtp")
    queue = sched.queue_create(transport, "example.org", "example.org")
    dsn = Dsn("4.4.1", "connect to example.org: Connection refused")
    sched.queue_throttle(queue, dsn)
    # failure -1, then the hysteresis loop lowers the window twice (qmgr_queue.c).
    assert queue.window == 3 and not queue.throttled
    sched.queue_throttle(queue, dsn)                   # cohorts 1/5 + 1/3 + 1/1 >= 1
    sched.queue_throttle(queue, dsn)
    assert queue.throttled and queue.dsn.reason == dsn.reason
    # the back-off timer ends the dead state: window back to the initial value
    deadline = time.monotonic() + 5
    while queue.throttled and time.monotonic() < deadline:
        sched.events.run_once(0.2)
    assert not queue.throttled
    assert transport.queues == {}                  # an empty revived queue is forgotten


def test_throttled_destination_sends_waiting_mail_to_retry():
    sched, _ = scheduler(initial_destination_concurrency="1")
    transport = sched.transport_create("smtp")
    queue = sched.queue_create(transport, "example.org", "example.org")
    message = Message()
    waiting = sched.entry_create(message, queue)
    sched.queue_throttle(queue, Dsn("4.4.1", "no route"))
    assert queue.throttled
    sched.defer_todo(queue, queue.dsn)
    retry = sched.transport_find("retry")
    assert waiting.queue is retry.queues["4.4.1 no route"]
    assert message.refcount == 1


def test_entry_done_finishes_message_and_rate_delay_suspends():
    sched, finished = scheduler(default_destination_rate_delay="1s")
    transport = sched.transport_create("smtp")
    queue = sched.queue_create(transport, "example.org", "example.org")
    assert queue.window == 1
    message = Message()
    first = sched.entry_create(message, queue)
    sched.entry_create(message, queue)
    assert sched.entry_select(transport) is first
    assert sched.entry_select(transport) is None               # window 1
    sched.entry_done(first, BUSY)
    assert queue.suspended and finished == []
    assert sched.transport_select() is None                    # nothing ready to go
    deadline = time.monotonic() + 5
    while queue.suspended and time.monotonic() < deadline:
        sched.events.run_once(0.2)
    assert sched.transport_select() is transport
    second = sched.entry_select(transport)
    sched.entry_done(second, BUSY)
    assert finished == [message]


def test_back_to_back_deliveries_allow_connection_caching():
    sched, _ = scheduler()
    transport = sched.transport_create("smtp")
    queue = sched.queue_create(transport, "example.org", "example.org")
    message, (first, second) = busy_entries(sched, queue, 2)
    assert queue.dflags == 0                         # nothing finished yet
    sched.entry_done(first, BUSY)
    sched.entry_create(message, queue)
    sched.entry_select(transport)
    assert queue.dflags & DEL_REQ_FLAG_CONN_MASK == DEL_REQ_FLAG_CONN_MASK

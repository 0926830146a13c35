"""qmgr(8): the queue manager (Postfix's src/qmgr: qmgr.c and qmgr_scan.c here; the
active queue in active.py, messages in message.py, transports and destinations in
queues.py, the delivery agents' protocol in deliver.py; the bounce/defer/trace requests
are queue/bounce_clnt.py's and queue/delivery_status.py's).

A solitary trigger server (master.cf `qmgr unix n - n 300 1 qmgr`). It scans
incoming/ and deferred/ (deferred every queue_run_delay), moves messages into active/
up to qmgr_message_active_limit, resolves their recipients through trivial-rewrite and
hands them to the delivery agents of their transports. Triggers on public/qmgr:

  W, I    scan incoming/           D   scan deferred/
  F       flush: dead transports and destinations come back to life, and the next
          scans ignore defer_transports
  A       the next scans take every file, whatever its retry time

At start the messages a previous qmgr left in active/ go back to incoming/. qmgr
never exits on max_use or max_idle (Postfix sets both to 0). With in_flow_delay, it
puts a token into master's flow pipe for each message it takes from incoming/.
"""

import fcntl
import struct
import termios
import time

from pyfix.common import master_proto, msg
from pyfix.common import info_log_addr_form as log_form
from pyfix.common.mail_flow import mail_flow_get, mail_flow_put
from pyfix.common.resolve_clnt import ResolveClient
from pyfix.common.rewrite_clnt import Rewriter
from pyfix.queue import bounce_clnt
from pyfix.queue.mail_queue import ACTIVE, DEFERRED, INCOMING, QueueLayout
from pyfix.queue.scan import scan_queue

from pyfix.daemons.qmgr.active import QMGR_SCAN_ALL, Active
from pyfix.daemons.qmgr.deliver import Deliverer
from pyfix.daemons.qmgr.message import QMGR_FLUSH_DFXP
from pyfix.daemons.qmgr.queues import Scheduler
from pyfix.daemons.skeleton.trigger import trigger_server_main

QMGR_SCAN_START = 1 << 0
QMGR_FLUSH_ONCE = 1 << 2
QMGR_FLUSH_BEFORE = QMGR_FLUSH_ONCE | QMGR_FLUSH_DFXP
DEFERRED_RUN_TIMER = "deferred-run"


class Scan:
    """One queue directory being walked, with the request for the next walk
    (QMGR_SCAN: flags of this walk, nflags of the next)."""

    def __init__(self, queue):
        self.queue = queue
        self.flags = self.nflags = 0
        self.names = None

    def request(self, qmgr, flags):
        if flags & QMGR_FLUSH_ONCE:
            qmgr.sched.enable_all()
        if self.names is not None and flags & QMGR_SCAN_ALL:
            self.flags |= QMGR_SCAN_ALL
        if self.names is not None and flags & QMGR_FLUSH_DFXP:
            self.flags |= QMGR_FLUSH_DFXP
        self.nflags |= flags
        if self.names is None and flags & QMGR_SCAN_START:
            self.nflags &= ~QMGR_SCAN_START
            self._start()

    def _start(self):
        if msg.verbose:
            msg.info("qmgr_scan_start: %sstart %s queue scan"
                     % ("re" if self.nflags & QMGR_SCAN_START else "", self.queue))
        self.flags = self.nflags
        self.nflags = 0
        self.names = scan_queue(self.queue)

    def next(self):
        name = None
        if self.names is not None:
            name = next(self.names, None)
            if name is None:
                self.names = None
                if msg.verbose and not self.nflags & QMGR_SCAN_START:
                    msg.info("done %s queue scan" % self.queue)
        if self.names is None and self.nflags & QMGR_SCAN_START:
            self._start()
            name = next(self.names, None)
        return name


class Qmgr:
    def __init__(self):
        self.config = None
        self.first_scan = 0

    # -- start-up (qmgr_post_init()) -------------------------------------------------------

    def post_init(self, server):
        config = self.config = server.config
        self.events = server.events
        self.layout = QueueLayout(config)
        log_form.init(config)
        bounce_clnt.configure(config)
        self.active_limit = config.get_int("qmgr_message_active_limit")
        rcpt_limit = config.get_int("qmgr_message_recipient_limit")
        if rcpt_limit < self.active_limit:
            msg.warn("qmgr_message_recipient_limit is smaller than qmgr_message_active_limit"
                     " - adjusting qmgr_message_recipient_limit")
            config.set("qmgr_message_recipient_limit", str(self.active_limit))
        self.max_queue_time = config.get_time("maximal_queue_lifetime")
        self.dsn_queue_time = config.get_time("bounce_queue_lifetime")
        if self.dsn_queue_time > self.max_queue_time:
            msg.warn("bounce_queue_lifetime is larger than maximal_queue_lifetime"
                     " - adjusting bounce_queue_lifetime")
            self.dsn_queue_time = self.max_queue_time
        self.min_backoff = config.get_time("minimal_backoff_time")
        self.max_backoff = config.get_time("maximal_backoff_time")
        self.queue_run_delay = config.get_time("queue_run_delay")
        self.ipc_timeout = config.get_time("qmgr_ipc_timeout")
        self.daemon_timeout = config.get_time("qmgr_daemon_timeout")
        server.daemon_timeout = self.daemon_timeout
        self.defer_transports = set(config.get_list("defer_transports"))
        self.def_filter_nexthop = config.get("default_filter_nexthop") or ""
        self.myhostname = config.get("myhostname")
        self.double_bounce_sender = config.get("double_bounce_sender")
        self.recipient_delimiter = config.get("recipient_delimiter") or ""
        self.smtputf8_enable = config.get_bool("smtputf8_enable")
        self.dsn_delay_cleared = config.get_bool("confirm_delay_cleared")
        self.in_flow_delay = config.get_time("in_flow_delay")
        self.proc_limit = config.get_int("default_process_limit")
        config.set("ipc_timeout", config.get("qmgr_ipc_timeout"))
        self.resolver = ResolveClient(config)
        self.rewriter = Rewriter(config)
        self.sched = Scheduler(config, self.events, self._message_done)
        self.active = Active(self)
        self.deliverer = Deliverer(self)
        server.max_use = 0
        server.max_idle = 0
        self.active.move_all(ACTIVE, INCOMING)
        self.scans = [Scan(INCOMING), Scan(DEFERRED)]
        self.scans[0].request(self, QMGR_SCAN_START)
        self._deferred_run()

    @staticmethod
    def now_tv():
        now = time.time()
        return int(now), int(now * 1000000) % 1000000

    def _message_done(self, message):
        self.active.done(message)

    def _deferred_run(self):
        self.scans[1].request(self, QMGR_SCAN_START)
        self.events.request_timer(DEFERRED_RUN_TIMER, self._deferred_run, self.queue_run_delay)

    # -- triggers (qmgr_trigger_event()) ---------------------------------------------------

    def trigger(self, data, server):
        if server.argv:
            msg.fatal("unexpected command-line argument: %s" % server.argv[0])
        incoming = deferred = 0
        for byte in data:
            char = chr(byte)
            if msg.verbose:
                msg.info("request: %d (%s)" % (byte, char if char.isalnum() else "?"))
            if char in "WI":
                incoming |= QMGR_SCAN_START
            elif char == "D":
                deferred |= QMGR_SCAN_START
            elif char == "F":
                incoming |= QMGR_FLUSH_BEFORE
                deferred |= QMGR_FLUSH_BEFORE
            elif char == "A":
                incoming |= QMGR_SCAN_ALL
                deferred |= QMGR_SCAN_ALL
            elif msg.verbose:
                msg.info("request ignored")
        if incoming:
            self.scans[0].request(self, incoming)
        if deferred:
            self.scans[1].request(self, deferred)

    # -- the main loop (qmgr_loop()) -------------------------------------------------------

    def loop(self, server):
        """Start deliveries, take one more message in; 0 when there is more to do at
        once, -1 to wait for an event."""
        self._drain()
        delay = -1
        feed = 0
        last = self.first_scan
        for step in range(len(self.scans)):
            if self.active.message_count >= self.active_limit:
                break
            last = (step + self.first_scan) % len(self.scans)
            scan = self.scans[last]
            name = scan.next()
            if name is not None:
                delay = 0
                feed = self.active.feed(scan.queue, scan.flags, name)
                if feed:
                    break
        if self.active.message_count < self.active_limit:
            self.first_scan = (last + 1) % len(self.scans)
        else:
            self.first_scan = 0
        if feed:
            self._drain()
        self._flow_control(feed and last == 0)
        return delay

    def _drain(self):
        """qmgr_active_drain(): an agent connection for each transport with work."""
        while True:
            transport = self.sched.transport_select()
            if transport is None:
                return
            if msg.verbose:
                msg.info("qmgr_active_drain: allocate %s" % transport.name)
            self.deliverer.transport_alloc(transport)

    def _flow_control(self, fed_incoming):
        if self.in_flow_delay <= 0:
            return
        tokens = flow_count()
        if tokens < 0:
            return
        if tokens < self.proc_limit:
            if fed_incoming:
                mail_flow_put(1)
            elif self.scans[0].names is None:
                mail_flow_put(self.proc_limit - tokens)
        elif tokens > self.proc_limit:
            mail_flow_get(tokens - self.proc_limit)


def flow_count():
    """mail_flow_count(): the tokens in master's flow pipe, or -1."""
    try:
        data = fcntl.ioctl(master_proto.FLOW_READ, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return -1
    return struct.unpack("i", data)[0]


def main(argv):
    qmgr = Qmgr()
    trigger_server_main(argv, qmgr.trigger, solitary=True, post_init=qmgr.post_init,
                        loop=qmgr.loop)

"""qmgr(8) and the discard/error agents: pyfix's beside Debian's on the same queue
master (pyfix's master, cleanup and pickup; Debian's trivial-rewrite, bounce and smtp),
the same messages and the same smtp-sink.

Each differential test runs one scenario twice (pyfix's qmgr, discard and error, then
Debian's) and compares the log lines of the queue manager and of the agents, with queue
IDs, delays, ports, pids and message-ids masked and the lines sorted (agents run in
parallel, so their order is not deterministic in either). The other tests follow one
message through pyfix's side: back-off and retry, kill -9 of qmgr, R -> D marking,
delay warnings, the process limit, postqueue -f and sendmail end to end.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from master_run import wait_until
from pyfix.common import attr
from pyfix.queue import record as R
from queue_sides import build_message
from qmgr_rig import DEBIAN_QMGR, PYFIX_QMGR, Rig, normalize, rig_available, services, \
    wait_gone

pytestmark = pytest.mark.skipif(not rig_available(),
                                reason="needs root, Debian's Postfix daemons and smtp-sink")

POSTQUEUE = os.path.join(os.path.dirname(sys.executable), "postqueue")
FAST_RETRY = """\
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
"""


def masked(rig, queue_ids):
    # pyfix's postlogd currently dies of a watchdog timeout after ~10 s (not qmgr's
    # business, and timing-dependent): its lines are left out.
    lines = [line for line in rig.log().splitlines()
             if "daemon started" not in line and "postlogd" not in line]
    return sorted(normalize(lines, queue_ids))


def run(qmgr, scenario, main_cf_extra="", sink_options=()):
    """One side: pyfix's qmgr with pyfix's discard and error agents, or Debian's qmgr
    with Debian's; both with Debian's smtp, bounce and trivial-rewrite."""
    rig = Rig(qmgr=qmgr, main_cf_extra=main_cf_extra)
    try:
        if sink_options is not None:
            rig.start_sink(sink_options)
        rig.start()
        queue_ids = scenario(rig)
        rig.quiet()
        return masked(rig, queue_ids), rig.sink.messages() if rig.sink else []
    finally:
        rig.cleanup()


def both(scenario, main_cf_extra="", sink_options=()):
    ours = run(PYFIX_QMGR, scenario, main_cf_extra, sink_options)
    theirs = run(DEBIAN_QMGR, scenario, main_cf_extra, sink_options)
    return ours, theirs


def test_delivery_bounce_discard_like_postfix():
    """smtp to the sink, a discard, an error-transport bounce with its DSN to the sender."""
    def scenario(rig):
        queue_id = rig.submit(rcpts=("bob@example.org", "x@discard.example",
                                     "y@error.example"))
        rig.wait_log(r"status=sent .*\n(.*\n)*.*removed\n(.*\n)*.*removed", count=1)
        assert wait_gone(rig, queue_id)
        return [queue_id]

    (ours, our_sink), (theirs, their_sink) = both(scenario)
    assert ours == theirs
    assert "QID0: from=<alice@example.com>, size=241, nrcpt=3 (queue active)" in ours
    assert "QID0: removed" in ours
    assert len(our_sink) == len(their_sink) == 2          # the message and the bounce
    assert "Undelivered Mail Returned to Sender" in "".join(our_sink)


def test_hard_failure_is_bounced_like_postfix():
    """A 5xx answer to RCPT: bounced, the sender (at a discard domain) gets the DSN."""
    def scenario(rig):
        queue_id = rig.submit(sender="alice@discard.example")
        rig.wait_log(r"sender non-delivery notification")
        rig.wait_log(r"to=<alice@discard.example>.*status=sent")
        assert wait_gone(rig, queue_id)
        return [queue_id]

    (ours, _), (theirs, _) = both(scenario, sink_options=("-f", "RCPT"))
    assert ours == theirs
    assert any("status=bounced (host 127.0.0.1[127.0.0.1] said: 5" in line
               for line in ours), ours


def test_expiry_returns_to_sender_like_postfix():
    """maximal_queue_lifetime = 0: the first deferral expires the message."""
    def scenario(rig):
        queue_id = rig.submit(sender="alice@discard.example")
        rig.wait_log(r"status=expired, returned to sender")
        rig.wait_log(r"to=<alice@discard.example>.*status=sent")
        assert wait_gone(rig, queue_id)
        return [queue_id]

    extra = "maximal_queue_lifetime = 0\nbounce_queue_lifetime = 0\n"
    (ours, _), (theirs, _) = both(scenario, extra, sink_options=("-r", "RCPT"))
    assert ours == theirs
    assert "QID0: from=<alice@discard.example>, status=expired, returned to sender" in ours


def test_bounce_queue_lifetime_for_null_sender_like_postfix():
    """bounce_queue_lifetime = 0 expires a bounce (null sender) at its first deferral;
    a message from a real sender stays queued (maximal_queue_lifetime)."""
    def scenario(rig):
        bounce = rig.submit(sender="")
        normal = rig.submit(rcpts=("carol@example.org",))
        rig.wait_log(r"from=<>, status=expired, returned to sender")
        rig.wait_log(r"%s: to=<carol@example.org>.*status=deferred" % normal)
        assert wait_gone(rig, bounce)
        assert wait_until(lambda: normal in rig.queue_ids("deferred"))
        time.sleep(1)
        return [bounce, normal]

    extra = "bounce_queue_lifetime = 0\n2bounce_notice_recipient = pm@discard.example\n"
    (ours, _), (theirs, _) = both(scenario, extra, sink_options=("-r", "RCPT"))
    assert ours == theirs
    assert "QID0: from=<>, status=expired, returned to sender" in ours
    assert not any("QID1: from=<alice@example.com>, status=expired" in line for line in ours)


def test_dead_destination_defers_waiting_mail_like_postfix():
    """Nobody listens: the destination is dead for minimal_backoff_time, and a message
    arriving meanwhile is deferred by the retry agent without a connection attempt."""
    def scenario(rig):
        first = rig.submit()
        rig.wait_log(r"Connection refused\)")
        second = rig.submit(rcpts=("carol@example.org",))
        rig.wait_log(r"carol@example.org.*status=deferred")
        return [first, second]

    # One failure is a whole failed cohort at concurrency 1.
    extra = "minimal_backoff_time = 300s\ninitial_destination_concurrency = 1\n"
    (ours, _), (theirs, _) = both(scenario, extra, sink_options=None)
    assert ours == theirs
    assert any("to=<carol@example.org>" in line and "relay=none" in line
               and "delivery temporarily suspended: connect to 127.0.0.1" in line
               for line in ours)


def test_notify_success_report_like_postfix():
    """DSN NOTIFY=SUCCESS: after delivery qmgr asks the trace service for the report
    (to a discard destination: smtp would pass NOTIFY on to the DSN-capable sink)."""
    def scenario(rig):
        queue_id = rig.submit(sender="alice@discard.example", rcpts=("bob@discard.example",),
                              envelope=[(R.ATTR, b"notify_flags=2")])
        rig.wait_log(r"%s: sender delivery status notification: " % queue_id)
        rig.wait_log(r"to=<alice@discard.example>.*status=sent")
        assert wait_gone(rig, queue_id)
        return [queue_id]

    (ours, _), (theirs, _) = both(scenario)
    assert ours == theirs


def test_postsuper_expire_like_postfix():
    """`postsuper -e` marks a deferred message; the next attempt returns it to the
    sender as force-expired."""
    def scenario(rig):
        queue_id = rig.submit(sender="alice@discard.example")
        rig.wait_log(r"Connection refused\)")
        assert wait_until(lambda: queue_id in rig.queue_ids("deferred"))
        postsuper = os.path.join(os.path.dirname(sys.executable), "postsuper")
        result = subprocess.run([postsuper, "-c", rig.master.etc, "-e", queue_id],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        result = subprocess.run([POSTQUEUE, "-c", rig.master.etc, "-f"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        rig.wait_log(r"status=force-expired, returned to sender")
        rig.wait_log(r"to=<alice@discard.example>.*status=sent")
        assert wait_gone(rig, queue_id)
        return [queue_id]

    (ours, _), (theirs, _) = both(scenario, "minimal_backoff_time = 300s\n",
                                  sink_options=None)
    assert ours == theirs


def test_missing_transport_like_postfix():
    """A transport that master.cf does not define: qmgr cannot connect, the transport
    is dead and its mail is deferred by the retry agent."""
    def scenario(rig):
        queue_id = rig.submit(rcpts=("bob@nosuch.example",))
        rig.wait_log(r"bob@nosuch.example.*status=deferred")
        assert wait_until(lambda: queue_id in rig.queue_ids("deferred"))
        return [queue_id]

    extra = "transport_maps = inline:{nosuch.example=nosuch:}\n"
    (ours, _), (theirs, _) = both(scenario, extra)
    assert ours == theirs
    assert any("connect to transport private/nosuch" in line for line in ours)
    assert any("status=deferred (mail transport unavailable)" in line for line in ours)


def test_redirect_and_content_filter_like_postfix():
    """A header_checks REDIRECT replaces every recipient by one; a FILTER sends every
    recipient to the filter's transport (here discard, with the default nexthop)."""
    def scenario(rig):
        redirected = rig.submit(rcpts=("bob@example.org", "carol@example.org"),
                                headers=("Subject: please redirect",))
        filtered = rig.submit(rcpts=("dave@example.org",),
                              headers=("Subject: please filter",))
        rig.wait_log(r"%s: removed" % redirected)
        rig.wait_log(r"%s: removed" % filtered)
        return [redirected, filtered]

    extra = ("header_checks = pcre:{{/^Subject: please redirect/ REDIRECT ed@discard.example},"
             " {/^Subject: please filter/ FILTER discard:}}\n")
    (ours, _), (theirs, _) = both(scenario, extra)
    assert ours == theirs
    assert any("QID0: to=<ed@discard.example>" in line for line in ours)
    assert any("QID1: to=<dave@example.org>" in line and "status=sent" in line
               for line in ours)


def test_discard_error_retry_agents_like_postfix():
    """pyfix's discard, error and retry agents: sent, bounced and deferred recipients,
    the NOTIFY=SUCCESS report, the bounce, and expiry of the deferred one."""
    def scenario(rig):
        queue_id = rig.submit(sender="alice@discard.example",
                              rcpts=("x@discard.example", "y@error.example",
                                     "z@later.example"),
                              envelope=[(R.ATTR, b"notify_flags=2")])
        rig.wait_log(r"%s: removed" % queue_id)
        rig.wait_log(r"to=<alice@discard.example>.*status=sent", count=3)
        return [queue_id]

    extra = ("transport_maps = inline:{discard.example=discard:, "
             "{error.example=error:gone away}, {later.example=retry:4.4.7 later}}\n"
             "maximal_queue_lifetime = 0\n")
    (ours, _), (theirs, _) = both(scenario, extra)
    assert ours == theirs
    for text in ("QID0: to=<x@discard.example>, relay=none, delay=D, delays=D, dsn=2.0.0,"
                 " status=sent (discard.example)",
                 "QID0: to=<y@error.example>, relay=none, delay=D, delays=D, dsn=5.0.0,"
                 " status=bounced (gone away)",
                 "QID0: to=<z@later.example>, relay=none, delay=D, delays=D, dsn=4.4.7,"
                 " status=deferred (later)",
                 "QID0: from=<alice@discard.example>, status=expired, returned to sender"):
        assert text in ours


def oldstyle_file():
    """A queue file as Postfix 1.x wrote it: `C` holds only the content size and `M`
    the offset of the extracted records."""
    head = b"".join(R.encode(t, p) for t, p in (
        (R.TIME, b"1795625618"), (R.FROM, b"alice@discard.example"),
        (R.RCPT, b"bob@discard.example")))
    content = R.encode(R.NORM, b"Subject: old") + R.encode(R.NORM, b"") \
        + R.encode(R.NORM, b"old body")
    size = R.encode(R.SIZE, b"%15d" % len(content))
    mesg_len = len(R.encode(R.MESG, b"%15d" % 0))
    extra = len(size) + len(head) + mesg_len + len(content)
    return size + head + R.encode(R.MESG, b"%15d" % extra) + content \
        + R.encode(R.XTRA) + R.encode(R.END)


def damaged_files():
    """Queue files, good and bad in the ways qmgr_message_read() checks."""
    rcpts = ["bob@discard.example"]
    good = dict(sender="alice@discard.example", recipients=rcpts)
    return [
        b"C\x05hello\x00junk",                                       # garbage
        build_message(with_end=False, **good),                     # no E record
        build_message(with_size=False, **good),                    # no C record
        build_message(size=b"12 13", **good),                      # weird C record
        build_message(envelope=[(R.NORM, b"x")], **good),          # N in the envelope
        build_message(envelope=[(R.ATTR, b"novalue")], **good),    # attribute syntax
        build_message(size=R.SIZE_FORMAT % (5, 5, 1, 0x400, 5, 0), **good),  # bad flags
        build_message(sender="alice@discard.example", recipients=rcpts,
                      size=R.SIZE_FORMAT % (len(build_message(**good)), 0, 3, 0, 0, 0)),
        build_message(envelope=[(R.ATTR, b"notify_flags=99"),      # bad DSN, delivered
                                (R.DSN_RET, b"x")], **good),
        build_message(envelope=[(R.VERP, b"+=")], sender="", recipients=rcpts),
        oldstyle_file(),                                           # delivered
    ]


def test_damaged_files_like_postfix():
    """Damaged queue files get Postfix's warnings and go to corrupt/; files with
    ignorable defects get their warnings and are delivered."""
    def scenario(rig):
        ids = []
        for n, data in enumerate(damaged_files()):
            queue_id = "ABCDE%05d" % n
            path = os.path.join(rig.master.spool, "incoming", queue_id)
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, 0o700)
            shutil.chown(path, "postfix")
            ids.append(queue_id)
        rig.trigger(b"I")
        assert wait_until(lambda: all(wait_gone(rig, queue_id, 0) for queue_id in ids), 20)
        time.sleep(0.5)
        return ids

    (ours, _), (theirs, _) = both(scenario)
    assert ours == theirs
    assert sum("saving corrupt file" in line for line in ours) >= 6
    for n in (8, 9, 10):                             # ignorable defects, old style
        assert "QID%d: removed" % n in ours


def test_bounce_service_failure_defers_like_postfix():
    """The error agent cannot reach the bounce service: the recipient is deferred
    (`4.3.0 nobounce or trace service failure`), not lost."""
    def scenario(rig):
        queue_id = rig.submit(rcpts=("y@error.example",))
        rig.wait_log(r"y@error.example.*status=deferred")
        assert wait_until(lambda: queue_id in rig.queue_ids("deferred"))
        return [queue_id]

    (ours, _), (theirs, _) = both(scenario, "bounce_service_name = nobounce\n")
    assert ours == theirs
    assert any("dsn=4.3.0, status=deferred (nobounce or trace service failure)" in line
               for line in ours)


def test_agent_bad_requests_like_postfix():
    """Requests that are not what an agent expects: Postfix's warnings, no traceback,
    the agent keeps serving."""
    def common(rcpt_count):
        return attr.print0(
            [("flags", 3), ("queue_name", "active"), ("queue_id", "NOSUCHFILE"),
             (attr.LONG, "offset", 100), (attr.LONG, "size", 10), ("nexthop", "x"),
             ("encoding", ""), ("smtputf8", 0), ("sender", ""), ("envelope_id", ""),
             ("ret_flags", 0), ("time", b"\0" * 88)]
            + [(name, "") for name in (
                "log_client_name", "log_client_address", "log_client_port",
                "log_protocol_name", "log_helo_name", "sasl_method", "sasl_username",
                "sasl_sender", "log_ident", "rewrite_context")]
            + [("recipient_count", rcpt_count)])

    requests = [
        b"flags\x00zz\x00\x00",                                  # not a number
        b"flags\x000\x00queue_name\x00active\x00\x00",           # attributes missing
        common(0),                                               # no recipients
        common(1) + attr.print0([("original_recipient", ""), ("recipient", "a@b.example"),
                                 (attr.LONG, "offset", 50), ("dsn_orig_rcpt", ""),
                                 ("notify_flags", 0)]),          # no such queue file
    ]

    def scenario(rig):
        for service in ("discard", "error"):
            for data in requests:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(os.path.join(rig.master.spool, "private", service))
                    sock.settimeout(10)
                    assert sock.recv(100).startswith(b"protocol\0")
                    sock.sendall(data)
                    sock.shutdown(socket.SHUT_WR)
                    while sock.recv(100):
                        pass
        time.sleep(1)
        return []

    (ours, _), (theirs, _) = both(scenario)
    assert ours == theirs
    assert any("error receiving common attributes" in line for line in ours)
    assert any("open active NOSUCHFILE: No such file or directory" in line for line in ours)
    assert not any("Traceback" in line or "Error" in line for line in ours)


def test_soft_failure_retried_after_backoff():
    """4xx, deferred (file in deferred/), then delivered after the back-off once the
    destination accepts: removed, nothing left."""
    rig = Rig(main_cf_extra=FAST_RETRY)
    try:
        rig.start_sink(("-r", "RCPT"))
        rig.start()
        queue_id = rig.submit()
        rig.wait_log(r"%s: to=<bob@example.org>.*status=deferred \(host 127.0.0.1"
                     r"\[127.0.0.1\] said: 450" % queue_id)
        assert wait_until(lambda: queue_id in rig.queue_ids("deferred"))
        assert os.path.exists(os.path.join(rig.master.spool, "defer", queue_id)) or \
            queue_id in rig.queue_ids("defer")
        rig.stop_sink()
        rig.start_sink()
        rig.wait_log(r"%s: to=<bob@example.org>.*status=sent" % queue_id, timeout=30)
        rig.wait_log(r"%s: removed" % queue_id)
        assert wait_gone(rig, queue_id)
        assert len(rig.sink.messages()) == 1
        assert rig.queue_ids("defer") == []
    finally:
        rig.cleanup()


def test_postqueue_flush_revives_dead_destination():
    """pyfix's `postqueue -f` (qmgr triggers F A D I) ends the back-off of a dead
    destination and retries the deferred message at once."""
    rig = Rig(main_cf_extra="minimal_backoff_time = 300s\nmaximal_backoff_time = 600s\n")
    try:
        rig.start()
        queue_id = rig.submit()
        rig.wait_log(r"Connection refused\)")
        assert wait_until(lambda: queue_id in rig.queue_ids("deferred"))
        rig.start_sink()
        result = subprocess.run([POSTQUEUE, "-c", rig.master.etc, "-f"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        rig.wait_log(r"%s: to=<bob@example.org>.*status=sent" % queue_id)
        rig.wait_log(r"%s: removed" % queue_id)
    finally:
        rig.cleanup()


def test_kill9_of_qmgr_loses_nothing():
    """qmgr killed while an smtp agent is delivering: the agent finishes and marks the
    recipient done in the queue file; the next qmgr moves active/ back to incoming/,
    finds nothing left to do for that message (no duplicate) and delivers the message
    that arrived while no qmgr ran."""
    rig = Rig()
    try:
        rig.start_sink(("-w", "3"))
        rig.start()
        first = rig.submit()
        rig.wait_log(r"%s: from=.*\(queue active\)" % first)
        pids = rig.qmgr_pids()
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
        assert wait_until(lambda: pids[0] not in rig.qmgr_pids())
        # cleanup's trigger for this one makes master start a new qmgr, which moves
        # the first back to incoming/ and finds it "still being delivered" (locked by
        # the smtp agent): it comes back in 60 seconds, or at once with `A`.
        second = rig.submit(rcpts=("carol@example.org",))
        rig.wait_log(r"%s: to=<bob@example.org>.*status=sent" % first, timeout=20)
        rig.trigger(b"AI")
        rig.wait_log(r"%s: removed" % first, timeout=20)
        rig.wait_log(r"%s: removed" % second, timeout=20)
        assert wait_gone(rig, first) and wait_gone(rig, second)
        sunk = rig.sink.messages()
        assert len(sunk) == 2
        assert rig.log().count("%s: to=<bob@example.org>" % first) == 1
    finally:
        rig.cleanup()


def test_recipient_marked_done_in_place():
    """A message with one delivered and one deferred recipient: the delivered one is a
    `D` record in the deferred queue file, and only the other is tried again."""
    rig = Rig(main_cf_extra=FAST_RETRY +
              "transport_maps = inline:{{later.example=retry:4.4.1 try later}}\n")
    try:
        rig.start_sink()
        rig.start()
        queue_id = rig.submit(rcpts=("bob@example.org", "x@later.example"))
        rig.wait_log(r"%s: to=<x@later.example>.*status=deferred" % queue_id)
        rig.wait_log(r"%s: to=<bob@example.org>.*status=sent" % queue_id)
        assert wait_until(lambda: queue_id in rig.queue_ids("deferred"))
        path = rig.queue_path("deferred", queue_id)
        with open(path, "rb") as f:
            records = [(t, p) for t, p in R.RecordReader(f) if t in (R.RCPT, R.DONE)]
        assert (R.DONE, b"bob@example.org") in records
        assert (R.RCPT, b"x@later.example") in records
        time.sleep(3)                                      # one more retry round
        log = rig.log()
        assert log.count("%s: to=<bob@example.org>" % queue_id) == 1
        assert log.count("%s: to=<x@later.example>" % queue_id) >= 2
        assert re.search(r"%s: from=<alice@example.com>, size=\d+, nrcpt=2 \(queue active\)"
                         % queue_id, log)
    finally:
        rig.cleanup()


def test_destination_recipient_limit_like_postfix():
    """default_destination_recipient_limit = 2: five recipients, three deliveries."""
    def scenario(rig):
        queue_id = rig.submit(rcpts=["r4@b.example", "r1@a.example", "r3@b.example",
                                     "r0@c.example", "r2@a.example"])
        rig.wait_log(r"%s: removed" % queue_id)
        wait_until(lambda: len(rig.sink.messages()) >= 3, 5)
        return [queue_id]

    def groups(sink):
        return sorted(tuple(re.findall(r"X-Rcpt-Args: <([^>]*)>", text)) for text in sink)


    # Whether the agents reuse a connection depends on timing (on-demand caching).
    extra = "default_destination_recipient_limit = 2\nsmtp_connection_cache_on_demand = no\n"
    (ours, our_sink), (theirs, their_sink) = both(scenario, extra)
    assert ours == theirs
    assert len(our_sink) == len(their_sink) == 3
    assert groups(our_sink) == groups(their_sink) == [
        ("r0@c.example",), ("r1@a.example", "r2@a.example"),
        ("r3@b.example", "r4@b.example")]


def test_delay_warning_sent_once():
    """delay_warning_time: one delay notification to the sender, then the W record
    says "sent" (-1) and later retries send no more."""
    rig = Rig(main_cf_extra=FAST_RETRY + "delay_warning_time = 1s\n")
    try:
        rig.start_sink(("-r", "RCPT"))
        rig.start()
        queue_id = rig.submit(sender="alice@discard.example")
        rig.wait_log(r"%s: sender delay notification: " % queue_id, timeout=30)
        rig.wait_log(r"%s: to=<bob@example.org>.*status=deferred" % queue_id, count=3,
                     timeout=30)
        assert rig.log().count("%s: sender delay notification" % queue_id) == 1
        rig.wait_log(r"to=<alice@discard.example>.*status=sent")
        path = wait_until(lambda: rig.queue_path("deferred", queue_id))
        with open(path, "rb") as f:
            warn = [p for t, p in R.RecordReader(f) if t == R.WARN]
        assert warn == [b"%15d" % -1]
    finally:
        rig.cleanup()


def test_kill9_of_delivery_agent_like_postfix():
    """The smtp agent dies while it waits for the answer to DATA: qmgr logs a malformed
    response, defers the message (the recipient is not marked), and the retry after
    the back-off delivers it once."""
    def scenario(rig):
        queue_id = rig.submit()
        assert wait_until(lambda: [p for p in rig.master.children("smtp")
                                   if p.status() != "zombie"], 10)
        time.sleep(1)                        # the agent is waiting in DATA
        for proc in rig.master.children("smtp"):
            os.kill(proc.pid, signal.SIGKILL)
        rig.wait_log(r"private/smtp socket: malformed response")
        rig.wait_log(r"%s: to=<bob@example.org>.*status=sent" % queue_id, timeout=30)
        rig.wait_log(r"%s: removed" % queue_id)
        return [queue_id]

    (ours, our_sink), (theirs, their_sink) = both(scenario, FAST_RETRY,
                                                  sink_options=("-w", "3"))
    assert ours == theirs
    assert len(our_sink) == len(their_sink) == 1


def test_transport_process_limit_is_masters():
    """smtp with maxproc 1 in master.cf: three messages for one destination (window 5),
    one agent at a time (qmgr asks master for agents; master enforces the process
    limit), all delivered."""
    rig = Rig()
    try:
        rig.master.write_master_cf(services(PYFIX_QMGR).replace(
            "smtp unix - - n - - ", "smtp unix - - n - 1 "))
        rig.start_sink(("-w", "1"))
        rig.start()
        ids = [rig.submit(rcpts=("bob@%s.example" % d,)) for d in "abc"]
        most = 0
        while not all(wait_gone(rig, queue_id, 0) for queue_id in ids):
            most = max(most, len(rig.master.children("smtp")))
            time.sleep(0.05)
            assert "fatal" not in rig.log()
        assert most == 1
        assert len(rig.sink.messages()) == 3
    finally:
        rig.cleanup()


def test_sendmail_to_smtp_sink_end_to_end():
    """pyfix's sendmail -> maildrop -> pickup -> cleanup -> qmgr -> Postfix's smtp ->
    smtp-sink, and the queue is empty afterwards."""
    rig = Rig()
    try:
        rig.start_sink()
        rig.start()
        sendmail = os.path.join(os.path.dirname(sys.executable), "sendmail")
        result = subprocess.run(
            [sendmail, "-C", rig.master.etc, "-f", "alice@example.com", "bob@example.org"],
            input="Subject: end to end\n\nhello\n", capture_output=True, text=True,
            timeout=30)
        assert result.returncode == 0, result.stderr
        rig.wait_log(r"to=<bob@example.org>.*status=sent \(250 2.0.0 Ok\)")
        rig.wait_log(r"removed")
        assert wait_until(lambda: len(rig.sink.messages()) == 1)
        assert "Subject: end to end" in rig.sink.messages()[0]
        assert all(rig.queue_ids(q) == [] for q in ("maildrop", "incoming", "active",
                                                    "deferred"))
    finally:
        rig.cleanup()

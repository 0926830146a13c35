"""End to end (issue #7): a whole pyfix system beside Debian's Postfix on the same main.cf.

Each scenario runs once per side (tests/e2e_rig.py: smtpd on a free loopback port, the
queue, qmgr, trivial-rewrite, bounce, smtp; relayhost = Debian's smtp-sink) and compares
what operators and recipients see: the log lines of each message, the transaction the
sink received, mailq, the delivery status notification that went back to the sender.
Queue IDs, dates, ports, pids and delays are masked; everything else must match.

    sudo .venv/bin/python -m pytest tests/test_e2e.py
"""

import os
import re
import signal
import subprocess
import time

import pytest

from e2e_rig import System, available, submit, wait_sink
from master_run import free_port, wait_until
from qmgr_rig import Sink, normalize

pytestmark = pytest.mark.skipif(not available(), reason="needs root, Debian's Postfix "
                                "and smtp-sink")

SIDES = ("postfix", "pyfix")
QUEUE_ID = re.compile(r"^\S+ +\d+ [\d:]+ \S+ postfix/[\w/-]+\[\d+\]: ([0-9A-F]{10,12}):",
                      re.M)
# Short retry times: Postfix accepts them in seconds, so both sides schedule alike. A
# backoff of at least 2s: a deferred file whose time stamp is at most 1s ahead is
# eligible at once, and a scan that soon can find the delivery agent still holding its
# lock, which makes Postfix put it aside for 60s ("skipped, still being delivered").
FAST_RETRY = """\
queue_run_delay = 1s
minimal_backoff_time = 2s
maximal_backoff_time = 3s
"""


def both(scenario, main_cf_extra="", **options):
    """scenario(system) on a fresh system of each side; {side: its result}."""
    results = {}
    for side in SIDES:
        system = System(side, main_cf_extra=main_cf_extra, **options).start()
        try:
            results[side] = scenario(system)
        finally:
            system.cleanup()
    return results


def assert_same(results):
    """pyfix's result is Postfix's; on a difference, show it as a diff."""
    if results["pyfix"] != results["postfix"]:
        import difflib
        import pprint
        diff = difflib.unified_diff(
            pprint.pformat(results["postfix"], width=100).splitlines(),
            pprint.pformat(results["pyfix"], width=100).splitlines(),
            "postfix", "pyfix", lineterm="")
        raise AssertionError("pyfix differs from Postfix:\n" + "\n".join(diff))


# -- what a side showed, with the run-to-run differences masked -------------------------

def queue_ids(log):
    """The queue IDs in the order the log first names them."""
    seen = []
    for queue_id in QUEUE_ID.findall(log):
        if queue_id not in seen:
            seen.append(queue_id)
    return seen


def message_logs(system):
    """{QIDn: that message's log lines}, once the log has settled."""
    settle(system)
    log = system.log()
    ids = queue_ids(log)
    lines = [line for line in log.splitlines() if QUEUE_ID.match(line)]
    out = {}
    for line in normalize(lines, ids):
        name, _, text = line.partition(": ")
        out.setdefault(name, []).append(text)
    return out


def settle(system, period=0.7, timeout=20):
    """Wait until the log has not grown for `period` seconds."""
    size = -1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = len(system.log())
        if now == size:
            return
        size = now
        time.sleep(period)


DATE = re.compile(r"\w{3}, +\d+ \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}( \([A-Z]+\))?")


def mask_message(text, ids):
    """A message as the sink dumped it, with IDs, dates and per-run tokens masked."""
    for n, queue_id in enumerate(ids):
        text = text.replace(queue_id, "QID%d" % n)
    text = DATE.sub("DATE", text)
    text = re.sub(r"(with E?SMTP id) [0-9a-f]{8}", r"\1 SINK", text)
    text = re.sub(r"(QID\d)\.\d+/", r"\1.TIME/", text)             # MIME boundaries
    text = re.sub(r"<\d{14}\.\d+@", "<TIME.PID@", text)     # swaks' message-ids
    text = re.sub(r"<\d{14}\.", "<TIME.", text)            # Postfix's
    return text


# -- the scenarios -----------------------------------------------------------------------

def test_swaks_through_smtpd_queue_and_smtp_to_the_sink():
    def scenario(system):
        result = subprocess.run(
            ["swaks", "--server", "127.0.0.1:%d" % system.port, "--from", "alice@example.com",
             "--to", "bob@example.org", "--header", "Subject: end to end",
             "--body", "Across the whole system.\n"],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        message = wait_sink(system, 1)[0]
        system.wait_log(r": removed")
        logs = message_logs(system)
        return logs, mask_message(message, queue_ids(system.log()))
    results = both(scenario)
    logs, message = results["pyfix"]
    assert logs["QID0"][-2].endswith("status=sent (250 2.0.0 Ok)"), logs
    assert "Subject: end to end" in message
    assert_same(results)


def test_a_4xx_reply_is_retried_after_backoff_and_delivered():
    def scenario(system):
        submit(system.port)
        system.wait_log(r"status=deferred")
        # The destination comes back: same port, now accepting.
        system.sink.stop()
        system.sink = Sink(system.sink_port, system.master.root)
        wait_sink(system, 1)
        system.wait_log(r": removed")
        return message_logs(system)
    results = both(scenario, FAST_RETRY, sink_options=("-r", "RCPT"))
    lines = results["pyfix"]["QID0"]
    assert any("status=deferred (host 127.0.0.1[127.0.0.1] said: 450 4.3.0 Error: command "
               "failed (in reply to RCPT TO command))" in line for line in lines), lines
    assert lines[-2].endswith("status=sent (250 2.0.0 Ok)"), lines
    assert_same(results)


def test_a_5xx_reply_returns_a_dsn_to_the_sender():
    port = free_port()
    cf = "transport_maps = inline:{example.org=smtp:[127.0.0.1]:%d}\n" % port

    def scenario(system):
        root = os.path.join(system.master.root, "reject")
        os.makedirs(root)
        rejecting = Sink(port, root, ("-f", "RCPT", "-B",
                                      "550 5.1.1 <bob@example.org>: no such user"))
        try:
            submit(system.port)
            dsn = wait_sink(system, 1)[0]
            system.wait_log(r": removed", count=2)
            logs = message_logs(system)
            return logs, mask_message(dsn, queue_ids(system.log()))
        finally:
            rejecting.stop()
    results = both(scenario, cf)
    logs, dsn = results["pyfix"]
    assert any("dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 "
               "<bob@example.org>: no such user (in reply to RCPT TO command))" in line
               for line in logs["QID0"]), logs
    assert "X-Rcpt-Args: <alice@example.com>" in dsn
    assert "Action: failed\nStatus: 5.1.1\n" in dsn.replace("\r\n", "\n")
    assert_same(results)


def down_transport():
    """main.cf lines that send example.org to a port where nothing listens."""
    return "transport_maps = inline:{example.org=smtp:[127.0.0.1]:%d}\n" % free_port()


def test_a_destination_down_is_deferred_with_its_reason_in_mailq():
    def scenario(system):
        submit(system.port)
        system.wait_log(r"status=deferred")
        settle(system)
        ids = queue_ids(system.log())
        result = system.postqueue("-p")
        assert result.returncode == 0, result.stderr
        return message_logs(system), normalize_mailq(result.stdout, ids)
    results = both(scenario, down_transport())
    logs, mailq = results["pyfix"]
    assert "(connect to 127.0.0.1[127.0.0.1]:PORT: Connection refused)" in mailq, mailq
    assert_same(results)


def once_each(lines):
    return [line for n, line in enumerate(lines) if line not in lines[:n]]


def normalize_mailq(text, ids):
    for n, queue_id in enumerate(ids):
        text = text.replace(queue_id, "QID%d" % n)
    text = re.sub(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d", "DATE", text)
    return re.sub(r"\]:\d+", "]:PORT", text)


def test_expiry_logs_expired_and_returns_the_message_to_the_sender():
    cf = down_transport() + FAST_RETRY + ("maximal_queue_lifetime = 2s\n"
                                          "bounce_queue_lifetime = 2s\n")

    def scenario(system):
        submit(system.port)
        system.wait_log(r"status=expired, returned to sender")
        dsn = wait_sink(system, 1)[0]
        system.wait_log(r": removed", count=2)
        # How many attempts fit into the lifetime depends on when the scans ran.
        logs = {name: once_each(lines) for name, lines in message_logs(system).items()}
        return logs, mask_message(dsn, queue_ids(system.log()))
    results = both(scenario, cf)
    logs, dsn = results["pyfix"]
    assert "Action: failed\nStatus: 4.4.1\n" in dsn.replace("\r\n", "\n"), dsn
    assert_same(results)


# -- crash and restart (pyfix only: this is about pyfix not losing mail) ------------------

def test_kill_9_of_qmgr_and_smtp_mid_delivery_loses_nothing():
    """Deliveries in flight (the sink waits 1 s before answering DATA) when qmgr and every
    smtp process die by SIGKILL; master is then restarted. Every message arrives; a
    duplicate only for a delivery the kill interrupted after the sink had it."""
    count = 12
    system = System("pyfix", sink_options=("-w", "1")).start()
    try:
        for n in range(count):
            submit(system.port, headers="From: <alice@example.com>\nSubject: msg %d\n" % n)
        assert wait_until(lambda: system.master.children("smtp"), 30)
        victims = system.master.children("qmgr") + system.master.children("smtp")
        in_flight = len(system.master.children("smtp"))
        for proc in victims:
            os.kill(proc.pid, signal.SIGKILL)
        system.wait_log(r"warning: process \S*qmgr pid \d+ killed by signal 9")
        system.master.stop()
        system.master.start()
        assert wait_until(lambda: system.queued() == 0, 120, 0.2), system.log()[-3000:]
        subjects = [re.search(r"Subject: (msg \d+)", text).group(1)
                    for text in system.sink.messages()]
        assert sorted(set(subjects)) == sorted("msg %d" % n for n in range(count))
        assert len(subjects) - count <= in_flight
    finally:
        system.cleanup()


# -- the SES case: relaying through a relayhost that wants STARTTLS and SASL ---------------

def test_relaying_through_a_starttls_and_sasl_relayhost():
    """relayhost = Debian's smtpd that requires STARTTLS before AUTH and checks the
    password with a real Dovecot; the whole system, pyfix's beside Postfix's."""
    from smtp_tls_rig import CramDovecot, Relay, TestCA
    ca = TestCA()
    dovecot = CramDovecot().start()
    relay = None
    try:
        relay = Relay(ca, dovecot).start()
        passwords = os.path.join(ca.root, "sasl_passwd")
        with open(passwords, "w") as f:
            f.write("[127.0.0.1]:%d alice@example.com:secret\n" % relay.port)
        os.chmod(passwords, 0o600)
        cf = ("smtp_tls_security_level = encrypt\nsmtp_tls_CAfile = %s\n"
              "smtp_tls_loglevel = 1\nsmtp_sasl_auth_enable = yes\n"
              "smtp_sasl_password_maps = texthash:%s\n"
              "smtp_sasl_security_options = noanonymous\n" % (ca.cafile, passwords))

        def scenario(system):
            submit(system.port)
            system.wait_log(r": removed")
            tls = [line for line in system.log().splitlines()
                   if "/smtp[" in line and not QUEUE_ID.match(line)]
            return message_logs(system), normalize(tls, [])
        results = both(scenario, cf, relay_port=relay.port)
        accepted = re.findall(r"client=localhost\[127.0.0.1\], sasl_method=(\S+), "
                              r"sasl_username=alice@example.com", relay.log())
        assert len(accepted) == 2, relay.log()
    finally:
        if relay is not None:
            relay.cleanup()
        dovecot.stop()
        ca.cleanup()
    logs, tls = results["pyfix"]
    assert tls[-1].startswith("Trusted TLS connection established to 127.0.0.1"), tls
    lines = logs["QID0"]
    assert re.search(r"relay=127.0.0.1\[127.0.0.1\]:PORT, .*status=sent \(250 2.0.0 Ok: "
                     r"queued as ID\)", lines[-2]), lines
    assert_same(results)

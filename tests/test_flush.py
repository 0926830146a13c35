"""flush(8), its client and the commands that use it: pyfix's beside Debian's.

The protocol test runs the same requests against Debian's /usr/lib/postfix/sbin/flush
and pyfix's flush, each on a pyfix master with the same queue: the answers, the fast
flush logfiles, the queue files moved to incoming (and their modes), the triggers qmgr
receives and the flush daemon's log lines must be the same. The ETRN test compares
the replies and log lines of Debian's smtpd with Debian's flush and pyfix's smtpd with
pyfix's flush. The delivery tests follow a deferred message end to end through a queue
master: the agent that defers it adds it to its site's logfile (Debian's smtp, or
pyfix's retry agent), `postqueue -s site` / `-i id` / `-f` and `sendmail -q` make it
delivered at once despite a long back-off.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from cleanup_oracle import QueueMaster, settle_log
from master_run import wait_until
from qmgr_rig import Rig, rig_available
from pyfix.common import flush_clnt
from pyfix.common.config import Config
from pyfix.queue.mail_queue import QueueLayout

pytestmark = pytest.mark.skipif(not rig_available(),
                                reason="needs root, Debian's Postfix daemons and smtp-sink")

SBIN = "/usr/lib/postfix/sbin"
BIN = os.path.dirname(sys.executable)
FLUSH_CF = "fast_flush_domains = example.com, [192.0.2.1], sub.example.net\n"


class TriggerRecorder:
    """A Unix socket at public/<name> that records what each client sends."""

    def __init__(self, spool, name):
        self.path = os.path.join(spool, "public", name)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.listen(20)
        self.received = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while not data.endswith(b"\0") and len(data) < 100:
                        chunk = conn.recv(100)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                self.received.append(data.rstrip(b"\0"))

    def close(self):
        self.sock.close()
        os.unlink(self.path)


# -- the protocol, request by request -----------------------------------------------------

DEFERRED_IDS = ("4A1B2C3D4E", "5B2C3D4E5F", "6C3D4E5F6A", "7D4E5F6A7B")


def make_deferred(spool, layout, queue_id, mode=0o700):
    path = os.path.join(spool, layout.path("deferred", queue_id))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.chown(os.path.dirname(path), "postfix")
    with open(path, "w") as f:
        f.write("x")
    os.chmod(path, mode)
    shutil.chown(path, "postfix")


def age(path, seconds):
    when = time.time() - seconds
    os.utime(path, (when, when))


def request(attrs):
    return flush_clnt.mail_command_client("flush", attrs)


def raw_request(data):
    """Send bytes as a client would, after the announcement; the answer's bytes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect("public/flush")
        answer = b""
        while not answer.endswith(b"\0\0"):
            answer += sock.recv(100)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            chunk = sock.recv(100)
            if not chunk:
                return answer
            answer += chunk


def snapshot(spool):
    """The fast flush logfiles and where each test message is, with its mode."""
    flush_dir = os.path.join(spool, "flush")
    logs = {}
    for name in sorted(os.listdir(flush_dir)):
        with open(os.path.join(flush_dir, name)) as f:
            logs[name] = f.read()
    where = {}
    for queue in ("incoming", "deferred"):
        for dirpath, _, files in os.walk(os.path.join(spool, queue)):
            for name in files:
                mode = os.stat(os.path.join(dirpath, name)).st_mode & 0o777
                where[name] = (queue, oct(mode))
    return logs, where


def run_protocol(program):
    master = QueueMaster(FLUSH_CF, services="flush unix n - n - 0 %s\n" % program)
    cwd = os.getcwd()
    recorder = None
    try:
        master.start()
        layout = QueueLayout(Config.load(master.etc))
        for queue_id in DEFERRED_IDS:
            make_deferred(master.spool, layout, queue_id)
        os.chdir(master.spool)
        recorder = TriggerRecorder(master.spool, "qmgr")
        steps = []
        steps.append(request([("request", "add"), ("site", "example.com"),
                              ("queue_id", DEFERRED_IDS[0])]))
        steps.append(request([("request", "add"), ("site", "EXAMPLE.Com"),
                              ("queue_id", DEFERRED_IDS[1])]))
        steps.append(request([("request", "add"), ("site", "example.com"),
                              ("queue_id", DEFERRED_IDS[0])]))
        steps.append(request([("request", "add"), ("site", "other.org"),
                              ("queue_id", DEFERRED_IDS[2])]))
        steps.append(request([("request", "add"), ("site", "[192.0.2.1]"),
                              ("queue_id", DEFERRED_IDS[2])]))
        steps.append(request([("request", "add"), ("site", "mx.sub.example.net"),
                              ("queue_id", "NOSUCHFILE1")]))
        steps.append(request([("request", "add"), ("site", "example.com"),
                              ("queue_id", "bad.id")]))
        # Site names that IDNA conversion refuses, or converts (bücher: xn--bcher-kva).
        for site in ("a..example.com", "-x.example.com", "a" * 70 + ".example.com",
                     "ab--c.example.com", "b\u00fccher.example.com", "Sub.Example.COM."):
            steps.append(request([("request", "add"), ("site", site),
                                  ("queue_id", DEFERRED_IDS[3])]))
        steps.append(request([("request", "add"), ("site", "example.com")]))
        steps.append(request([("request", "send_site"), ("site", "other.org")]))
        steps.append(snapshot(master.spool))
        steps.append(request([("request", "send_file"), ("queue_id", DEFERRED_IDS[3])]))
        steps.append(request([("request", "send_file"), ("queue_id", "bad.id")]))
        steps.append(request([("request", "send_site"), ("site", "example.com")]))
        steps.append(snapshot(master.spool))
        steps.append(request([("request", "send_site"), ("site", "example.com")]))
        steps.append(request([("request", "frobnicate")]))
        # The periodic refresh (master's wakeup): a logfile unread for longer than
        # fast_flush_refresh_time is flushed, an empty one unchanged for longer than
        # fast_flush_purge_time removed. It runs after the answer: wait for its effects.
        age("flush/mx_sub_example_net", 13 * 3600)
        age("flush/example_com", 8 * 86400)
        steps.append(raw_request(b"W\0"))
        assert wait_until(lambda: not os.path.exists("flush/example_com"), 10)
        assert wait_until(lambda: os.path.getsize("flush/mx_sub_example_net") == 0, 10)
        steps.append(request([("request", "add"), ("site", "sub.example.net"),
                              ("queue_id", DEFERRED_IDS[2])]))
        age("flush/sub_example_net", 60)
        steps.append(request([("request", "purge")]))
        assert wait_until(lambda: os.path.getsize("flush/sub_example_net") == 0, 10)
        steps.append(snapshot(master.spool))
        wait_until(lambda: len(recorder.received) >= 7, 5)
        steps.append(recorder.received)
        log = settle_log(master)
        lines = [re.sub(r"^.*?postfix/flush\[\d+\]: ", "", line)
                 for line in log.splitlines() if "postfix/flush[" in line]
        return steps, lines
    finally:
        os.chdir(cwd)
        if recorder:
            recorder.close()
        master.cleanup()


def test_protocol_like_postfix():
    pyfix = run_protocol("flush")
    postfix = run_protocol(SBIN + "/flush")
    assert pyfix == postfix
    steps, lines = pyfix
    assert steps[:7] == [0, 0, 0, 4, 4, 0, 3]
    # send_file: I; send_site: F then I, F alone for an empty logfile; refresh: I each.
    assert steps[-1] == [b"I", b"F", b"I", b"F", b"I", b"I"]
    logs, where = steps[-2]
    assert logs["mx_sub_example_net"] == logs["sub_example_net"] == ""
    assert where["6C3D4E5F6A"] == ("incoming", "0o700")
    assert where["7D4E5F6A7B"] == ("incoming", "0o740")     # send_file: unthrottle


def test_master_wakeup_refreshes_old_logfiles():
    """master.cf's wakeup time (`1000?` in Postfix's stock file, 1s here) makes the
    flush service refresh: a logfile unread for fast_flush_refresh_time has its mail
    moved to incoming, an empty one unchanged for fast_flush_purge_time is removed."""
    master = QueueMaster(FLUSH_CF + "fast_flush_refresh_time = 1h\n",
                         services="flush unix n - n 1 0 flush\n")
    try:
        layout = QueueLayout(Config.load(master.etc))
        make_deferred(master.spool, layout, DEFERRED_IDS[0])
        for name, text, seconds in (("example_com", DEFERRED_IDS[0] + "\n", 2 * 3600),
                                    ("old_example_com", "", 8 * 86400)):
            path = os.path.join(master.spool, "flush", name)
            with open(path, "w") as f:
                f.write(text)
            shutil.chown(path, "postfix")
            age(path, seconds)
        recorder = TriggerRecorder(master.spool, "qmgr")
        master.start()
        incoming = os.path.join(master.spool, "incoming", DEFERRED_IDS[0])
        assert wait_until(lambda: os.path.exists(incoming), 20), master.log()
        assert wait_until(lambda: not os.path.exists(
            os.path.join(master.spool, "flush", "old_example_com")), 20)
        assert wait_until(lambda: os.path.getsize(
            os.path.join(master.spool, "flush", "example_com")) == 0, 20)
        assert wait_until(lambda: recorder.received, 10)
        assert recorder.received[0] == b"I"         # a refresh: no F before it
        assert "warning" not in settle_log(master)
        recorder.close()
    finally:
        master.cleanup()


# -- ETRN ---------------------------------------------------------------------------------

ETRN_SCRIPT = ["EHLO client.example", "ETRN example.com", "ETRN @EXAMPLE.COM",
               "ETRN other.example", "ETRN [192.0.2.1]", "ETRN #example.com",
               "ETRN mx.example.com", "QUIT"]


def etrn_both(with_flush, main_cf=FLUSH_CF, compatibility_level=None):
    """The ETRN script against Debian's smtpd (and flush) and pyfix's; the replies and
    the smtpd and flush log lines of each."""
    from smtp_oracle import SmtpPair
    pair = SmtpPair(main_cf)
    if compatibility_level is not None:
        for side in pair.sides():
            path = os.path.join(side.etc, "main.cf")
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(re.sub(r"(?m)^compatibility_level = .*$",
                               "compatibility_level = " + compatibility_level, text))
    if with_flush:
        for side, program in ((pair.postfix, "flush"), (pair.pyfix, "flush")):
            with open(os.path.join(side.etc, "master.cf"), "a") as f:
                f.write("flush unix n - n - 0 %s\n" % program)
    try:
        pair.start()
        return pair.both_logged(ETRN_SCRIPT, programs=("smtpd", "flush"))
    finally:
        pair.cleanup()


@pytest.mark.parametrize("with_flush", [True, False], ids=["flush", "no-flush"])
def test_etrn_like_postfix(with_flush):
    (postfix_replies, postfix_log), (pyfix_replies, pyfix_log) = etrn_both(with_flush)
    assert pyfix_replies == postfix_replies
    assert pyfix_log == postfix_log
    expected = "250 Queuing started" if with_flush else "458 Unable to queue messages"
    assert pyfix_replies[2] == expected
    assert pyfix_replies[4] == "459 <other.example>: service unavailable"


# -- deferred mail, end to end -------------------------------------------------------------

LONG_BACKOFF = """\
fast_flush_domains = example.org, retry.example
minimal_backoff_time = 300s
maximal_backoff_time = 600s
queue_run_delay = 300s
"""
POSTQUEUE = os.path.join(BIN, "postqueue")


def flush_rig(flush_program, agents=None, extra=""):
    """A queue master (pyfix's qmgr, Debian's smtp) with the given flush daemon."""
    from qmgr_rig import PYFIX_QMGR, services
    rig = Rig(main_cf_extra=LONG_BACKOFF + extra, agents=agents)
    rig.master.write_master_cf(services(PYFIX_QMGR, agents or "pyfix")
                               + "flush unix n - n 1000? 0 %s\n" % flush_program)
    return rig


def logfile(rig, name):
    try:
        with open(os.path.join(rig.master.spool, "flush", name)) as f:
            return f.read()
    except FileNotFoundError:
        return None


def postqueue(rig, *args):
    return subprocess.run([POSTQUEUE, "-c", rig.master.etc] + list(args),
                          capture_output=True, text=True, timeout=60)


def run_site_flush(flush_program):
    """A message to a dead site is deferred and listed in flush/example_org; once the
    site is up, `postqueue -s example.org` has it delivered at once."""
    rig = flush_rig(flush_program)
    try:
        rig.start()
        queue_id = rig.submit(rcpts=("bob@example.org",))
        rig.wait_log(r"%s: to=<bob@example.org>.*status=deferred" % queue_id)
        assert wait_until(lambda: queue_id in rig.queue_ids("deferred"), 20)
        listed = logfile(rig, "example_org")
        rig.start_sink()
        result = postqueue(rig, "-s", "example.org")
        rig.wait_log(r"%s: to=<bob@example.org>.*status=sent" % queue_id, timeout=30)
        return (listed.replace(queue_id, "QID"), result.returncode, result.stderr,
                logfile(rig, "example_org"))
    finally:
        rig.cleanup()


def test_deferred_site_flushed_like_postfix():
    pyfix = run_site_flush("flush")
    postfix = run_site_flush(SBIN + "/flush")
    assert pyfix == postfix
    assert pyfix == ("QID\n", 0, "", "")


def run_retry_agent(agents):
    """pyfix's or Debian's retry agent (error(8) as `retry`) defers a message: its
    defer_append() adds it to flush/retry_example; `postqueue -i` requeues it, it is
    deferred (and listed) again."""
    rig = flush_rig("flush", agents=agents,
                    extra="transport_maps = inline:{retry.example=retry:try later}\n")
    try:
        rig.start()
        queue_id = rig.submit(rcpts=("bob@retry.example",))
        rig.wait_log(r"%s: to=<bob@retry.example>.*status=deferred" % queue_id)
        assert wait_until(lambda: queue_id in rig.queue_ids("deferred"), 20)
        first = logfile(rig, "retry_example")
        result = postqueue(rig, "-i", queue_id)
        rig.wait_log(r"%s: to=<bob@retry.example>.*status=deferred" % queue_id, count=2,
                     timeout=30)
        assert wait_until(lambda: queue_id in rig.queue_ids("deferred"), 20)
        again = logfile(rig, "retry_example")
        return (first.replace(queue_id, "QID"), result.returncode, result.stderr,
                again.replace(queue_id, "QID"))
    finally:
        rig.cleanup()


def test_retry_agent_adds_to_logfile_like_postfix():
    pyfix = run_retry_agent("pyfix")
    postfix = run_retry_agent("postfix")
    assert pyfix == postfix
    assert pyfix == ("QID\n", 0, "", "QID\nQID\n")


FLUSH_COMMANDS = {
    "postqueue -f": lambda etc: [POSTQUEUE, "-c", etc, "-f"],
    "sendmail -q": lambda etc: [os.path.join(BIN, "sendmail"), "-C", etc, "-q"],
    "postfix flush": lambda etc: [os.path.join(BIN, "postfix"), "-c", etc, "flush"],
    "sendmail -qR": lambda etc: [os.path.join(BIN, "sendmail"), "-C", etc, "-qRexample.org"],
}


@pytest.mark.parametrize("command", sorted(FLUSH_COMMANDS))
def test_flush_commands_retry_deferred_mail_at_once(command):
    """Each way of flushing the queue has a deferred message (back-off 300s, queue run
    every 300s) delivered at once when its site is up again."""
    rig = flush_rig("flush")
    try:
        rig.start()
        queue_id = rig.submit(rcpts=("bob@example.org",))
        rig.wait_log(r"%s: to=<bob@example.org>.*status=deferred" % queue_id)
        assert wait_until(lambda: queue_id in rig.queue_ids("deferred"), 20)
        rig.start_sink()
        result = subprocess.run(FLUSH_COMMANDS[command](rig.master.etc),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        rig.wait_log(r"%s: to=<bob@example.org>.*status=sent" % queue_id, timeout=30)
        rig.wait_log(r"%s: removed" % queue_id)
    finally:
        rig.cleanup()


def test_etrn_with_backwards_compatible_default_like_postfix():
    """compatibility_level 0 and no relay_domains / fast_flush_domains: the list is
    $mydestination, and Postfix's client logs that it uses the old default."""
    (postfix_replies, postfix_log), (pyfix_replies, pyfix_log) = etrn_both(
        True, "smtpd_relay_restrictions = reject_unauth_destination\n",
        compatibility_level="0")
    assert pyfix_replies == postfix_replies
    assert pyfix_log == postfix_log
    assert any("using backwards-compatible default setting relay_domains=$mydestination"
               " to flush mail" in line for line in pyfix_log), pyfix_log

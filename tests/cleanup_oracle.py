"""Running Debian's Postfix cleanup beside pyfix's: the oracle of the cleanup and pickup
tests.

QueueMaster is a pyfix master (tests/master_run.py) with a complete queue directory;
PostfixMaster is Debian's Postfix 3.7 master started as root on a temporary config
(`postfix -c DIR start`, stopped by the pid in its pid file), with cleanup,
trivial-rewrite, pickup and postlogd. Both get the same main.cf settings, so the same
record stream sent to both cleanup services must give the same answer, the same queue
file (as Debian's postcat prints it, with queue IDs and creation times masked) and the
same log lines.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from master_run import MasterRun, wait_until
from pyfix.queue import record as R
from pyfix.queue.cleanup_client import CleanupClient

POSTCAT = "/usr/sbin/postcat"
POSTFIX = "/usr/sbin/postfix"
ROOT = os.geteuid() == 0
QUEUES = ("incoming", "active", "deferred", "hold", "corrupt", "defer", "bounce", "trace",
          "flush", "saved", "maildrop")

COMMON_MAIN_CF = """\
myhostname = mx.example.com
mydomain = example.com
myorigin = $mydomain
in_flow_delay = 0
"""

PYFIX_SERVICES = """\
cleanup unix n - n - 0 cleanup
pickup unix n - n 60 1 pickup
"""

POSTFIX_MASTER_CF = """\
cleanup   unix  n       -       n       -       0       cleanup
rewrite   unix  -       -       n       -       -       trivial-rewrite
pickup    unix  n       -       n       60      1       pickup
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_available():
    return ROOT and os.path.exists(POSTFIX) and os.path.exists(
        "/usr/lib/postfix/sbin/cleanup")


class QueueMaster(MasterRun):
    """A pyfix master with cleanup and pickup and every queue directory."""

    def __init__(self, main_cf_extra="", services=PYFIX_SERVICES):
        super().__init__(services, COMMON_MAIN_CF + main_cf_extra)
        for name in QUEUES:
            path = os.path.join(self.spool, name)
            os.makedirs(path, exist_ok=True)
            if ROOT:
                shutil.chown(path, "postfix")
        os.chmod(os.path.join(self.spool, "maildrop"), 0o1733)
        self.config_dir = self.etc
        self.name = "pyfix"

    def cleanup_socket(self):
        return os.path.join(self.spool, "public", "cleanup")

    def queue_files(self, queue="incoming"):
        return sorted(os.listdir(os.path.join(self.spool, queue)))


class PostfixMaster:
    """Debian's Postfix on a temporary configuration, as root."""

    def __init__(self, main_cf_extra=""):
        self.root = tempfile.mkdtemp(prefix="pyfix-postfix-", dir="/tmp")
        os.chmod(self.root, 0o755)
        self.etc = os.path.join(self.root, "etc")
        self.spool = os.path.join(self.root, "spool")
        self.lib = os.path.join(self.root, "lib")
        for path in (self.etc, self.spool, self.lib):
            os.makedirs(path)
        shutil.chown(self.lib, "postfix")
        self.log_path = os.path.join(self.root, "maillog")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("compatibility_level = 3.7\nqueue_directory = %s\ndata_directory = %s\n"
                    "mail_owner = postfix\nsetgid_group = postdrop\n"
                    "inet_interfaces = loopback-only\ninet_protocols = ipv4\n"
                    "maillog_file = %s\nmaillog_file_prefixes = /tmp\n"
                    "alias_maps =\nalias_database =\n"
                    % (self.spool, self.lib, self.log_path) + COMMON_MAIN_CF + main_cf_extra)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER_CF)
        self.config_dir = self.etc
        self.name = "postfix"
        self.pid = None

    def start(self):
        result = subprocess.run([POSTFIX, "-c", self.etc, "start"], capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise AssertionError("postfix start failed: %s" % result.stderr)
        pid_file = os.path.join(self.spool, "pid", "master.pid")
        assert wait_until(lambda: os.path.exists(pid_file)
                          and os.path.exists(self.cleanup_socket()), 15)
        with open(pid_file) as f:
            self.pid = int(f.read().strip())
        return self

    def stop(self):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        wait_until(lambda: not os.path.exists("/proc/%d" % self.pid), 10)
        self.pid = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def cleanup_socket(self):
        return os.path.join(self.spool, "public", "cleanup")

    def queue_files(self, queue="incoming"):
        return sorted(os.listdir(os.path.join(self.spool, queue)))


# -- talking to cleanup --------------------------------------------------------------------

class Result:
    def __init__(self, queue_id, status, reason):
        self.queue_id = queue_id
        self.status = status
        self.reason = reason

    def __repr__(self):
        return "Result(%s, %d, %r)" % (self.queue_id, self.status, self.reason)


def send(socket_path, flags, records, half_close=False, timeout=30):
    """One cleanup session: records is a list of (type, payload) or raw bytes."""
    client = CleanupClient.connect(socket_path, timeout, wait=False)
    with client:
        client.send_flags(flags)
        for item in records:
            if isinstance(item, bytes):
                client.put_raw(item)
            else:
                client.put(*item)
        client.flush()
        if half_close:
            client.sock.shutdown(socket.SHUT_WR)
        status, reason = client.finish()
        return Result(client.queue_id, status, reason)


RECEIVED = (R.NORM, b"Received: by mx.example.com (Postfix, from userid 0)")
RECEIVED2 = (R.NORM, b"\tid 1234567; Wed, 25 Nov 2026 16:53:38 +0000 (UTC)")


def message(sender="alice@example.com", rcpts=("bob@example.org",), headers=(),
            body=("body",), arrival=1795625618, envelope=(), extracted=(), fullname=None,
            context="local", received=True, end=True):
    """The records of a typical submission (what pickup sends)."""
    records = [(R.TIME, b"%d 417441" % arrival)]
    if context is not None:
        records.append((R.ATTR, b"rewrite_context=" + context.encode()))
    if fullname is not None:
        records.append((R.FULL, fullname.encode()))
    if sender is not None:
        records.append((R.FROM, sender.encode()))
    records += list(envelope)
    records += [(R.RCPT, rcpt.encode()) for rcpt in rcpts]
    records.append((R.MESG, b""))
    if received:
        records += [RECEIVED, RECEIVED2]
    for line in headers:
        records.append((R.NORM, line.encode() if isinstance(line, str) else line))
    if body is not None:
        records.append((R.NORM, b""))
        for line in body:
            records.append((R.NORM, line.encode() if isinstance(line, str) else line))
    records.append((R.XTRA, b""))
    records += list(extracted)
    if end:
        records.append((R.END, b""))
    return records


# -- looking at the results ------------------------------------------------------------

def find_queue_file(run, queue_id):
    for queue in ("incoming", "hold", "active", "deferred"):
        path = os.path.join(run.spool, queue, queue_id)
        if os.path.exists(path):
            return queue, path
    return None, None


def postcat(run, queue_id, options=("-q",)):
    """Debian's postcat of a queue file, looked up by ID in run's queue."""
    result = subprocess.run([POSTCAT, "-c", run.config_dir] + list(options) + [queue_id],
                            capture_output=True, text=True, errors="surrogateescape")
    return result


_CREATE_TIME = re.compile(r"^(create_time: ).*$", re.M)


def normalize_postcat(text, queue_id):
    text = text.replace(queue_id, "QUEUEID")
    text = re.sub(r"\b\d{14}\.QUEUEID", "STAMP.QUEUEID", text)
    return _CREATE_TIME.sub(r"\1TIME", text)


_LOG_PREFIX = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ postfix/(\w+)\[\d+\]: ", re.M)


def log_lines(text, start=0, programs=("cleanup", "pickup", "trivial-rewrite")):
    """The log lines after offset start of the given programs, as `program: text`."""
    out = []
    for line in text[start:].splitlines():
        match = _LOG_PREFIX.match(line)
        if match and match.group(1) in programs:
            out.append("%s: %s" % (match.group(1), line[match.end():]))
    return out


def settle_log(run, previous=None, quiet=0.15, limit=5.0):
    """Wait until run's log stops growing; returns its text."""
    deadline = time.monotonic() + limit
    last = run.log()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.03)
        now = run.log()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def normalize_log(lines, ids):
    out = []
    for line in lines:
        for number, queue_id in enumerate(ids):
            if queue_id:
                line = line.replace(queue_id, "QUEUEID%s" % (number or ""))
        line = re.sub(r"\b\d{14}\.QUEUEID", "STAMP.QUEUEID", line)
        line = re.sub(r"/tmp/pyfix-(master|postfix)-\w+/", "ROOT/", line)
        out.append(line)
    return out

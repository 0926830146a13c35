"""A delivery rig for the qmgr tests: a queue master (pyfix's master with pyfix's
cleanup and pickup, and either pyfix's qmgr, discard and error or Debian's) whose other
services are Debian Postfix's own daemons (trivial-rewrite, bounce, smtp, scache), and
Debian's smtp-sink as the destination on a free loopback port.

The same rig with QMGR = Debian's /usr/lib/postfix/sbin/qmgr is the oracle: both runs
get the same main.cf, the same messages and the same sink, so the log lines of the
queue manager and of the agents it drives can be compared.
"""

import os
import re
import signal
import subprocess
import time

from cleanup_oracle import ROOT, QueueMaster, message, send
from master_run import free_port, wait_until

SBIN = "/usr/lib/postfix/sbin"
SMTP_SINK = "/usr/sbin/smtp-sink"
DEBIAN_QMGR = SBIN + "/qmgr"
PYFIX_QMGR = "qmgr"


def rig_available():
    return ROOT and all(os.path.exists(path) for path in (
        SMTP_SINK, SBIN + "/qmgr", SBIN + "/scache", SBIN + "/smtp", SBIN + "/bounce", SBIN + "/error",
        SBIN + "/trivial-rewrite", SBIN + "/discard"))


def services(qmgr=PYFIX_QMGR, agents=None, smtp=None):
    """master.cf of the rig; agents="pyfix" runs pyfix's discard and error agents
    instead of Postfix's; smtp="pyfix" runs pyfix's smtp (as smtp and relay) and lmtp;
    "postfix-chroot" runs Debian's smtp chrooted into the queue directory (where
    etc/resolv.conf can name a test DNS server)."""
    text = """\
cleanup unix n - n - 0 cleanup
pickup unix n - n 60 1 pickup
qmgr unix n - n 300 1 {qmgr}
rewrite unix - - n - - {sbin}/trivial-rewrite
bounce unix - - n - 0 {sbin}/bounce
defer unix - - n - 0 {sbin}/bounce
trace unix - - n - 0 {sbin}/bounce
smtp unix - - n - - {sbin}/smtp
relay unix - - n - - {sbin}/smtp
error unix - - n - - {sbin}/error
retry unix - - n - - {sbin}/error
discard unix - - n - - {sbin}/discard
scache unix - - n - 1 {sbin}/scache
""".format(qmgr=qmgr, sbin=SBIN)
    if agents == "pyfix":
        for name in ("error", "discard"):
            text = text.replace("%s/%s\n" % (SBIN, name), name + "\n")
    if smtp == "pyfix":
        text = text.replace("%s/smtp\n" % SBIN, "smtp\n") + "lmtp unix - - n - - lmtp\n"
    elif smtp == "postfix-chroot":
        text = text.replace("smtp unix - - n - - %s/smtp\n" % SBIN,
                            "smtp unix - - y - - %s/smtp\n" % SBIN)
    elif smtp is not None:
        text += "lmtp unix - - n - - %s/lmtp\n" % SBIN
    return text


MAIN_CF = """\
relayhost = [127.0.0.1]:{port}
smtp_host_lookup = native
smtp_connect_timeout = 5s
mydestination = $myhostname, localhost
alias_maps =
alias_database =
local_recipient_maps =
transport_maps = inline:{{discard.example=discard:, {{error.example=error:gone away}}}}
"""


class Sink:
    """Debian's smtp-sink on 127.0.0.1:port; options such as -r RCPT (4xx)."""

    def __init__(self, port, root, options=()):
        self.port = port
        self.dump = os.path.join(root, "sink")
        os.makedirs(self.dump, exist_ok=True)
        if ROOT:
            os.chown(self.dump, _uid("nobody"), -1)
        self.proc = subprocess.Popen(
            [SMTP_SINK, "-u", "nobody", "-d", self.dump + "/%M%S."] + list(options)
            + ["127.0.0.1:%d" % port, "10"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(self._listening, 5)

    def _listening(self):
        import socket
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def messages(self):
        """The dumped transactions, as text."""
        out = []
        for name in sorted(os.listdir(self.dump)):
            with open(os.path.join(self.dump, name), errors="replace") as f:
                out.append(f.read())
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _uid(name):
    import pwd
    return pwd.getpwnam(name).pw_uid


class Rig:
    """A queue master with the given qmgr, and a sink (started separately)."""

    def __init__(self, qmgr=PYFIX_QMGR, main_cf_extra="", port=None, agents=None,
                 smtp=None):
        """agents: "pyfix" or "postfix" (discard and error); by default those of the
        same side as the qmgr. smtp: "pyfix" or "postfix" (smtp, relay and lmtp);
        by default Postfix's smtp and relay, and no lmtp."""
        if agents is None:
            agents = "pyfix" if qmgr == PYFIX_QMGR else "postfix"
        self.port = port or free_port()
        main_cf = MAIN_CF.format(port=self.port)
        for name in re.findall(r"(?m)^(\w+) *=", main_cf_extra):
            # one entry per parameter: no "overriding earlier entry" warnings
            main_cf = re.sub(r"(?m)^%s = .*\n" % name, "", main_cf)
        self.master = QueueMaster(main_cf + main_cf_extra, services=services(qmgr, agents, smtp))
        self.sink = None

    def start_sink(self, options=()):
        self.sink = Sink(self.port, self.master.root, options)
        return self.sink

    def stop_sink(self):
        if self.sink is not None:
            self.sink.stop()

    def start(self):
        self.master.start()
        return self

    def submit(self, sender="alice@example.com", rcpts=("bob@example.org",), **kw):
        kw.setdefault("arrival", int(time.time()))
        result = send(self.master.cleanup_socket(), 0x3, message(sender, rcpts, **kw))
        assert result.status == 0, result
        return result.queue_id

    def log(self):
        return self.master.log()

    def wait_log(self, pattern, timeout=20, count=1):
        self.master.wait_log(pattern, timeout, count)

    def quiet(self, period=0.7, timeout=20):
        """Wait until the log has not grown for `period` seconds: the lines that follow
        a scenario's last awaited one (a bounce's `removed`, ...) are in."""
        deadline = time.monotonic() + timeout
        size = -1
        while time.monotonic() < deadline:
            now = len(self.log())
            if now == size:
                return True
            size = now
            time.sleep(period)
        return False

    def trigger(self, data=b"I"):
        import socket
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(os.path.join(self.master.spool, "public", "qmgr"))
            sock.sendall(data)

    def queue_ids(self, queue):
        out = []
        for dirpath, _, files in os.walk(os.path.join(self.master.spool, queue)):
            out += files
        return sorted(out)

    def queue_path(self, queue, queue_id):
        for dirpath, _, files in os.walk(os.path.join(self.master.spool, queue)):
            if queue_id in files:
                return os.path.join(dirpath, queue_id)
        return None

    def qmgr_pids(self):
        return [proc.pid for proc in self.master.children("qmgr")]

    def cleanup(self):
        self.stop_sink()
        self.master.cleanup()


def normalize(lines, queue_ids):
    """Log lines without their prefix and with what differs from run to run masked:
    the given queue IDs (QID<n>), other queue IDs, delays, ports, message-ids, pids.
    What is left, pyfix and Postfix must say alike."""
    out = []
    for line in lines:
        text = re.sub(r"^.*?postfix[^:]*: ", "", line)
        for n, queue_id in enumerate(queue_ids):
            text = text.replace(queue_id, "QID%d" % n)
        text = re.sub(r"delay=[0-9.]+, delays=[0-9./]+", "delay=D, delays=D", text)
        text = re.sub(r"\b[0-9A-F]{10,12}\b", "ID", text)
        text = re.sub(r"\]:\d+\b", "]:PORT", text)
        text = re.sub(r"message-id=<[^>]*>", "message-id=<M>", text)
        text = re.sub(r" pid \d+ ", " pid N ", text)
        out.append(text)
    return out


def wait_gone(rig, queue_id, timeout=20):
    return wait_until(lambda: all(queue_id not in rig.queue_ids(q)
                                  for q in ("incoming", "active", "deferred")), timeout)

"""A whole mail system on loopback, pyfix's or Debian's Postfix, for the end-to-end
delivery tests and bench/bench_e2e.py.

System(side) is a master with smtpd on a free loopback port and every service the way
from SMTP in to SMTP out needs: cleanup, trivial-rewrite, qmgr, bounce/defer/trace,
smtp/relay/lmtp, error/retry/discard, flush, scache, proxymap, anvil, showq, postlog.
side="pyfix" runs pyfix's daemons (master.cf names the programs, the pyfix master maps
them to its modules); side="postfix" runs Debian's Postfix 3.7 on the same main.cf
(tests/cleanup_oracle.py's PostfixMaster, as root). Mail for anything but this host goes
to `relayhost`, by default Debian's smtp-sink on another free port (tests/qmgr_rig.py's
Sink), which keeps each transaction as a file.
"""

import os
import socket
import subprocess
import sys
import time

from cleanup_oracle import PostfixMaster, QueueMaster, postfix_available
from master_run import free_port, wait_until
from qmgr_rig import SMTP_SINK, Sink

SBIN = "/usr/lib/postfix/sbin"
POSTQUEUE = {"pyfix": os.path.join(os.path.dirname(sys.executable), "postqueue"),
             "postfix": "/usr/sbin/postqueue"}

# service, type, private, maxproc, wakeup, command (Postfix's stock master.cf values).
SERVICES = (
    ("pickup", "unix", "n", "1", "60", "pickup"),
    ("cleanup", "unix", "n", "0", "-", "cleanup"),
    ("qmgr", "unix", "n", "1", "300", "qmgr"),
    ("rewrite", "unix", "-", "-", "-", "trivial-rewrite"),
    ("bounce", "unix", "-", "0", "-", "bounce"),
    ("defer", "unix", "-", "0", "-", "bounce"),
    ("trace", "unix", "-", "0", "-", "bounce"),
    ("flush", "unix", "n", "0", "1000?", "flush"),
    ("proxymap", "unix", "-", "-", "-", "proxymap"),
    ("smtp", "unix", "-", "-", "-", "smtp"),
    ("relay", "unix", "-", "-", "-", "smtp"),
    ("lmtp", "unix", "-", "-", "-", "lmtp"),
    ("showq", "unix", "n", "-", "-", "showq"),
    ("error", "unix", "-", "-", "-", "error"),
    ("retry", "unix", "-", "-", "-", "error"),
    ("discard", "unix", "-", "-", "-", "discard"),
    ("anvil", "unix", "-", "1", "-", "anvil"),
    ("scache", "unix", "-", "1", "-", "scache"),
)

MAIN_CF = """\
relayhost = [127.0.0.1]:{sink_port}
smtp_host_lookup = native
mydestination = $myhostname, localhost
alias_maps =
alias_database =
local_recipient_maps =
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
mynetworks = 127.0.0.0/8
default_process_limit = 100
"""


def available():
    return postfix_available() and os.path.exists(SMTP_SINK) and os.path.exists(
        SBIN + "/smtp")


def master_cf(side, smtpd_port, extra=""):
    """master.cf of one side; `extra` is appended as is (more services)."""
    lines = ["127.0.0.1:%d inet n - n - - smtpd\n" % smtpd_port]
    for name, kind, private, maxproc, wakeup, command in SERVICES:
        lines.append("%s %s %s - n %s %s %s\n" % (name, kind, private, wakeup, maxproc,
                                                    command))
    if side == "postfix":
        lines.append("postlog unix-dgram n - n - 1 postlogd\n")
        # Postfix's TLS engine gets its entropy from tlsmgr; pyfix's needs no daemon.
        lines.append("tlsmgr unix - - n 1000? 1 tlsmgr\n")
    return "".join(lines) + extra


class System:
    """One side's master (started by start()) and, unless relay_port is given, a sink.
    master_cf_extra: more master.cf lines (e.g. a `local` service), the same on both sides.
    """

    def __init__(self, side, main_cf_extra="", relay_port=None, sink_options=(),
                 master_cf_extra=""):
        self.side = side
        self.port = free_port()
        self.sink_port = relay_port or free_port()
        self.sink_options = sink_options
        self.sink = None
        main_cf = MAIN_CF.format(sink_port=self.sink_port) + main_cf_extra
        if side == "pyfix":
            self.master = QueueMaster(main_cf, services=master_cf(side, self.port,
                                                                  master_cf_extra))
        else:
            self.master = PostfixMaster(main_cf)
            with open(os.path.join(self.master.etc, "master.cf"), "w") as f:
                f.write(master_cf(side, self.port, master_cf_extra))
        self.own_sink = relay_port is None

    def start(self):
        try:
            if self.own_sink:
                self.sink = Sink(self.sink_port, self.master.root, self.sink_options)
            self.master.start()
            if not wait_until(self._listening, 20):
                raise AssertionError("%s smtpd does not answer on port %d"
                                     % (self.side, self.port))
        except BaseException:
            self.cleanup()
            raise
        return self

    def _listening(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.settimeout(5)
                return sock.recv(512).startswith(b"220")
        except OSError:
            return False

    def cleanup(self):
        if self.sink is not None:
            self.sink.stop()
        self.master.cleanup()

    # -- looking at it -----------------------------------------------------------------

    def log(self):
        return self.master.log()

    def wait_log(self, pattern, timeout=30, count=1):
        import re
        regex = re.compile(pattern)
        if not wait_until(lambda: len(regex.findall(self.log())) >= count, timeout, 0.1):
            raise AssertionError("%s: no %d x %r in the log:\n%s"
                                 % (self.side, count, pattern, self.log()[-4000:]))

    def queue_ids(self, queue):
        out = []
        for _, _, files in os.walk(os.path.join(self.master.spool, queue)):
            out += files
        return sorted(out)

    def queued(self):
        return sum(len(self.queue_ids(q)) for q in ("incoming", "active", "deferred"))

    def postqueue(self, *options):
        return subprocess.run([POSTQUEUE[self.side], "-c", self.master.etc] + list(options),
                              capture_output=True, text=True, timeout=60)


def submit(port, sender="alice@example.com", rcpts=("bob@example.org",), body="Hi.\n",
           headers=None, timeout=30):
    """One message over SMTP; returns the queue ID from the 250 reply."""
    import smtplib
    head = headers if headers is not None else (
        "From: <%s>\nTo: %s\nSubject: test\n" % (sender, ", ".join("<%s>" % r for r in rcpts)))
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as client:
        client.ehlo("client.example.net")
        client.mail(sender)
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            assert code == 250, (code, text)
        code, text = client.data((head + "\n" + body).encode())
        assert code == 250, (code, text)
    return text.decode().rsplit(" ", 1)[-1]


def wait_sink(system, count, timeout=60):
    """The sink's transactions once it holds at least `count`."""
    assert wait_until(lambda: len(system.sink.messages()) >= count, timeout, 0.1), \
        "%s: %d of %d messages at the sink\n%s" % (
            system.side, len(system.sink.messages()), count, system.log()[-4000:])
    return system.sink.messages()


def now():
    return time.time()

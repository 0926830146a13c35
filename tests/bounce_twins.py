"""Twin queues for the bounce tests: two pyfix masters with the same main.cf, pyfix's
cleanup and Debian's trivial-rewrite, one running pyfix's bounce(8) as the bounce,
defer and trace services, the other Debian's /usr/lib/postfix/sbin/bounce. There is
no qmgr: a notification stays in incoming/, where Debian's postcat shows it.

A scenario runs on both: the same original message into cleanup, the same APPEND
requests (which write the logfile), the same FLUSH, WARN, TRACE, ONE or VERP request.
What users parse must then be the same on both sides, masked for what differs from run
to run (queue IDs, dates, MIME boundaries, Message-IDs).
"""

import os
import re
import socket
import subprocess
import time

from cleanup_oracle import POSTCAT, ROOT, QueueMaster, message, send
from master_run import wait_until
from pyfix.common import attr
from pyfix.queue import record as R

SBIN = "/usr/lib/postfix/sbin"
DEBIAN_BOUNCE = SBIN + "/bounce"
PROTO = "delivery_status_protocol"
CMD_APPEND, CMD_FLUSH, CMD_WARN, CMD_VERP, CMD_ONE, CMD_TRACE = range(6)
BOUNCE_FLAG_DELRCPT = 2


def twins_available():
    return ROOT and os.path.exists(DEBIAN_BOUNCE) and os.path.exists(POSTCAT) \
        and os.path.exists(SBIN + "/trivial-rewrite")


def services(bounce, trace_options=""):
    """master.cf; trace_options go to the trace service (-o name=value ...)."""
    return """\
cleanup unix n - n - 0 cleanup
rewrite unix - - n - - {sbin}/trivial-rewrite
bounce unix - - n - 0 {bounce}
defer unix - - n - 0 {bounce}
trace unix - - n - 0 {bounce} {trace_options}
""".format(sbin=SBIN, bounce=bounce, trace_options=trace_options)


class Side:
    """One master of the twins."""

    def __init__(self, name, main_cf_extra, trace_options=""):
        self.name = name
        self.master = QueueMaster(main_cf_extra,
                                  services=services("bounce" if name == "pyfix"
                                                    else DEBIAN_BOUNCE, trace_options))
        self.spool = self.master.spool

    def start(self):
        self.master.start()
        return self

    def cleanup(self):
        self.master.cleanup()

    def submit(self, sender="alice@example.com", rcpts=("bob@example.org",), **kw):
        kw.setdefault("arrival", 1795625618)
        result = send(self.master.cleanup_socket(), 0x3, message(sender, rcpts, **kw))
        assert result.status == 0, result
        return result.queue_id

    def request(self, service, attrs, timeout=60):
        """One delivery status request; the service's status."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(os.path.join(self.spool, "private", service))
            stream = attr.AttrStream(sock, service + " socket", timeout)
            count, _ = stream.scan([(attr.STREQ, "protocol", PROTO)], attr.FLAG_STRICT)
            assert count == 0
            assert stream.send(attrs)
            count, values = stream.scan([(attr.INT, "status")], attr.FLAG_STRICT)
            assert count == 1, "no status from %s (%s)" % (service, self.name)
            return values["status"]
        finally:
            sock.close()

    def append(self, service, queue_id, rcpt, dsn, flags=0):
        return self.request(service, [("nrequest", CMD_APPEND), ("flags", flags),
                                      ("queue_id", queue_id)] + rcpt_attrs(**rcpt)
                            + dsn_attrs(**dsn))

    def notify(self, service, command, queue_id, sender="alice@example.com", flags=0,
               encoding="", smtputf8=0, envid="", ret=0, extra=()):
        return self.request(service, [
            ("nrequest", command), ("flags", flags), ("queue_name", "incoming"),
            ("queue_id", queue_id), ("encoding", encoding), ("smtputf8", smtputf8),
            ("sender", sender), ("envelope_id", envid), ("ret_flags", ret)] + list(extra))

    def logfile(self, service, queue_id):
        for dirpath, _, files in os.walk(os.path.join(self.spool, service)):
            if queue_id in files:
                with open(os.path.join(dirpath, queue_id), "rb") as f:
                    return f.read()
        return None

    def log(self):
        return self.master.log()

    def queue_path(self, queue_id):
        for dirpath, _, files in os.walk(os.path.join(self.spool, "incoming")):
            if queue_id in files:
                return os.path.join(dirpath, queue_id)
        raise AssertionError("no queue file %s" % queue_id)

    def _recipients(self, queue_id):
        with open(self.queue_path(queue_id), "rb") as f:
            reader = R.RecordReader(f)
            while True:
                offset = reader.tell()
                rec_type, _ = reader.get()
                if rec_type in (R.EOF, R.ERROR, R.MESG):
                    return
                if rec_type in (R.RCPT, R.DONE):
                    yield offset, rec_type

    def recipient_offsets(self, queue_id):
        return [offset for offset, _ in self._recipients(queue_id)]

    def queue_records(self, queue_id):
        """The types of the recipient records: R, or D once done."""
        return [rec_type.decode() for _, rec_type in self._recipients(queue_id)]

    def postcat(self, queue_id, options=("-bh",)):
        result = subprocess.run([POSTCAT, "-c", self.master.etc, "-q"] + list(options)
                                + [queue_id], capture_output=True)
        return result.stdout.decode("utf-8", "surrogateescape")


def rcpt_attrs(address="bob@example.org", orig="", offset=0, orcpt="", notify=0):
    return [("original_recipient", orig), ("recipient", address),
            (attr.LONG, "offset", offset), ("dsn_orig_rcpt", orcpt),
            ("notify_flags", notify)]


def dsn_attrs(status="5.1.1", reason="host mx[1.2.3.4] said: 550 5.1.1 no such user",
              action="failed", dtype="smtp", dtext="550 5.1.1 no such user",
              mtype="dns", mname="mx.example.org"):
    return [("status", status), ("diag_type", dtype), ("diag_text", dtext),
            ("mta_type", mtype), ("mta_mname", mname), ("action", action),
            ("reason", reason)]


_NOTICE = re.compile(r"postfix/(\w+)\[\d+\]: (\w+): (.*) notification: (\w+)$", re.M)
_PREFIX = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ postfix/([\w-]+)\[\d+\]: ", re.M)
_DATE = re.compile(r"\w{3}, [ \d]\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(\w+\)")


def notices(log_text, queue_id):
    """The IDs of the notifications logged for queue_id, in order."""
    return [m.group(4) for m in _NOTICE.finditer(log_text) if m.group(2) == queue_id]


def log_lines(text, start=0, programs=("bounce", "cleanup")):
    out = []
    for line in text[start:].splitlines():
        match = _PREFIX.match(line)
        if match and match.group(1) in programs:
            out.append("%s: %s" % (match.group(1), line[match.end():]))
    return out


def mask(text, ids):
    """Queue IDs as QID0.., dates, boundary stamps and Message-IDs masked."""
    for number, queue_id in enumerate(ids):
        text = text.replace(queue_id, "QID%d" % number)
    text = re.sub(r"\b(QID\d+)\.\d+/", r"\1.STAMP/", text)
    text = _DATE.sub("DATE", text)
    text = re.sub(r"<\d{14}\.(QID\d+)@", r"<STAMP.\1@", text)
    text = re.sub(r"<\d{14}\.[0-9A-F]{10,12}@", r"<STAMP.ID@", text)
    return re.sub(r"\b[0-9A-F]{10,12}\b", "ID", text)


def settle(side, previous=None, quiet=0.3, limit=10.0):
    """The log of side once it stopped growing for `quiet` seconds."""
    deadline = time.monotonic() + limit
    last = side.log()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = side.log()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def wait_notices(side, queue_id, count, timeout=20):
    return wait_until(lambda: len(notices(side.log(), queue_id)) >= count, timeout)

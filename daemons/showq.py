"""showq(8): the mail queue listing service (Postfix's src/showq/showq.c).

A single-server daemon on `public/showq`. It speaks Postfix's attr0 protocol, which
postqueue(1) and monitoring tools such as postfix_exporter read:

    protocol\\0mail_queue_list_protocol\\0\\0          announcement, one list
    queue_name\\0...\\0queue_id\\0...\\0time\\0...\\0size\\0...\\0forced_expire\\0...\\0sender\\0...\\0
    (recipient\\0...\\0reason\\0...\\0)*  \\0           one message: no terminator until
                                                    after its last recipient
    ...
    \\0                                             end of the listing

Queues are scanned in Postfix's order: maildrop (flat), active, incoming, deferred, hold
(into hash subdirectories), each in directory order; only complete files (owner bits rwx)
with valid queue IDs are reported. For each message: the arrival time from the first `T`
record (else the file's mtime), the size from the first `C` record (else the file size,
with a warning when that record is malformed), the forced-expiration mode bit, the
sender (quoted, printable; the null sender shows as $empty_address_recipient). The
recipients listed in the message's defer logfile come first, with their reasons, then
the `R` records of the file that the logfile did not name, with an empty reason. A file
without a sender record is skipped silently; a second sender or a recipient before the
sender ends the message with a warning.

With -S the listing goes to standard output (postqueue runs `showq -u -S` itself when
the mail system is down).
"""

import os

from pyfix.common import msg
from pyfix.common.quote_822 import QUOTE_FLAG_8BITCLEAN, quote_822_local

from pyfix.daemons.skeleton.single import SingleServer
from pyfix.queue import record as rec
from pyfix.queue.bounce_log import BounceLog
from pyfix.queue.mail_queue import ACTIVE, DEFER, DEFERRED, HOLD, INCOMING, MAILDROP, \
    MODE_EXPIRED, QueueLayout
from pyfix.queue.scan import OPEN_YES, mail_open_ok, mail_queue_open, scan_queue

PROTOCOL = "mail_queue_list_protocol"
ATTR_PROTO = "protocol"
ATTR_QUEUE = "queue_name"
ATTR_QUEUEID = "queue_id"
ATTR_TIME = "time"
ATTR_SIZE = "size"
ATTR_FORCED_EXPIRE = "forced_expire"
ATTR_SENDER = "sender"
ATTR_RECIP = "recipient"
ATTR_WHY = "reason"

# (queue, descend into hash subdirectories)
QUEUES = ((MAILDROP, False), (ACTIVE, True), (INCOMING, True), (DEFERRED, True),
          (HOLD, True))

_SIZE_CHARS = frozenset(b"0123456789 ")


def _cstr(payload):
    """A record payload as the C code sees it: text up to the first NUL."""
    return payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _atol(data):
    text = data.lstrip(b" \t\n\v\f\r")
    sign = 1
    if text[:1] in (b"+", b"-"):
        sign = -1 if text[:1] == b"-" else 1
        text = text[1:]
    end = 0
    while end < len(text) and 48 <= text[end] <= 57:
        end += 1
    return sign * int(text[:end]) if end else 0


def _field(name, value):
    """One attribute, as attr_print0() sends it (no list terminator)."""
    if isinstance(value, int):
        value = "%d" % (value % 2 ** 64)
    return (name.encode() + b"\0" + value.encode("utf-8", "surrogateescape") + b"\0")


class Output:
    """The client connection: buffered writes, flushed after each message; a write error
    (the client went away) stops the listing, as vstream_ferror() does."""

    def __init__(self, write):
        self._write = write
        self.buf = bytearray()
        self.error = False

    def add(self, data):
        self.buf += data

    def flush(self):
        if self.error or not self.buf:
            self.buf.clear()
            return not self.error
        try:
            self._write(bytes(self.buf))
        except OSError:
            self.error = True
        self.buf.clear()
        return not self.error


class Showq:
    """What one listing needs: the queue layout and the two parameters showq reads."""

    def __init__(self, config):
        self.layout = QueueLayout(config)
        self.empty_addr = config.get("empty_address_recipient")
        self.dup_filter_limit = config.get_int("duplicate_filter_limit")

    def quoted(self, address):
        return msg.printable(quote_822_local(address, QUOTE_FLAG_8BITCLEAN))

    def report(self, out, queue, queue_id, stream, size, mtime, mode):
        """The attributes of one message (showq_report())."""
        reader = rec.RecordReader(stream, stream.qpath)
        arrival_time = 0
        msg_size = size
        size_ok = False
        sender_seen = 0
        dup_filter = None
        while not out.error:
            rec_type, payload = reader.get(seek_end=True)
            if rec_type is rec.EOF or payload is None:
                break
            if msg.verbose:
                msg.info("record %s %s" % (rec_type.decode("latin-1"),
                                           msg.printable(_cstr(payload))))
            if rec_type == rec.TIME:
                if arrival_time == 0:
                    arrival_time = _atol(payload)
            elif rec_type == rec.SIZE:
                if not size_ok:
                    text = payload.split(b"\0", 1)[0]
                    size_ok = all(ch in _SIZE_CHARS for ch in text)
                    if size_ok:
                        msg_size = _atol(text)
                        size_ok = msg_size >= 0
                    if not size_ok:
                        msg.warn("%s: malformed size record: %.100s -- using file size instead"
                                 % (queue_id, msg.printable(_cstr(payload))))
                        msg_size = size
            elif rec_type == rec.FROM:
                address = self.quoted(_cstr(payload) or self.empty_addr)
                sender_seen += 1
                if sender_seen > 1:
                    msg.warn("%s: duplicate sender address: %s -- skipping remainder of this file"
                             % (queue_id, address))
                    break
                out.add(_field(ATTR_QUEUE, queue) + _field(ATTR_QUEUEID, queue_id)
                        + _field(ATTR_TIME, arrival_time if arrival_time > 0 else mtime)
                        + _field(ATTR_SIZE, msg_size)
                        + _field(ATTR_FORCED_EXPIRE, 1 if mode & MODE_EXPIRED else 0)
                        + _field(ATTR_SENDER, address))
                # Recipients with reasons from the defer logfile come first.
                log = BounceLog.open(self.layout, DEFER, queue_id)
                if log is not None:
                    dup_filter = set()
                    self.reasons(out, log, dup_filter)
                    try:
                        log.close()
                    except OSError as exc:
                        msg.warn("close %s %s: %s" % (DEFER, queue_id, msg.strerror(exc)))
            elif rec_type == rec.RCPT:
                if sender_seen == 0:
                    msg.warn("%s: missing sender address: %s -- skipping remainder of this file"
                             % (queue_id, ""))
                    break
                address = self.quoted(_cstr(payload) or self.empty_addr)
                if dup_filter is None or address not in dup_filter:
                    out.add(_field(ATTR_RECIP, address) + _field(ATTR_WHY, ""))
            elif rec_type == rec.MESG:
                if size_ok:
                    try:
                        stream.seek(msg_size, os.SEEK_CUR)
                    except (OSError, ValueError) as exc:
                        msg.fatal("seek file %s: %s" % (stream.qpath, msg.strerror(exc)))
        if sender_seen > 0:
            out.add(b"\0")

    def reasons(self, out, log, dup_filter):
        for rcpt, dsn in log:
            if self.dup_filter_limit == 0 or len(dup_filter) < self.dup_filter_limit:
                dup_filter.add(rcpt.address)
            out.add(_field(ATTR_RECIP, rcpt.address) + _field(ATTR_WHY, dsn.reason))

    def listing(self, out):
        """The whole protocol exchange (showq_service()); the cwd is the queue directory."""
        out.add(_field(ATTR_PROTO, PROTOCOL) + b"\0")
        out.flush()
        for queue, recursive in QUEUES:
            for queue_id in scan_queue(queue, recursive):
                if out.error:
                    break
                status, st, _ = mail_open_ok(self.layout, queue, queue_id)
                if status == OPEN_YES:
                    try:
                        stream = mail_queue_open(self.layout, queue, queue_id)
                    except FileNotFoundError:
                        stream = None
                    except OSError as exc:
                        msg.warn("open %s %s: %s" % (queue, queue_id, msg.strerror(exc)))
                        stream = None
                    if stream is not None:
                        with stream:
                            self.report(out, queue, queue_id, stream, st.st_size,
                                        st.st_mtime_ns // 1_000_000_000, st.st_mode)
                out.flush()
        out.add(b"\0")
        out.flush()


def showq_service(conn, server):
    if server.argv:
        msg.fatal("unexpected command-line argument: %s" % server.argv[0])
    if conn is None:
        out = Output(_write_stdout)
    else:
        out = Output(conn.sendall)
    Showq(server.config).listing(out)


def _write_stdout(data):
    while data:
        data = data[os.write(1, data):]


def main(argv):
    server = SingleServer(argv, showq_service)
    if server.stream_mode:
        # -S: the client is on standard input/output; showq only writes.
        showq_service(None, server)
        server.exit(0)
    server.serve()

"""A message in the active queue (Postfix's qmgr_message.c): read its queue file, resolve
its recipients through trivial-rewrite's resolve service, and group them into queue
entries per transport and destination.

The queue file is opened read-write and locked (exclusive, non-blocking: a file still
locked by a delivery agent is "skipped, still being delivered"), its envelope records are
read (the content is skipped by the size record's offsets), and the recipients not yet
marked done (`R`, not `D`) are kept. pyfix reads every recipient at once; Postfix reads
at most qmgr_message_recipient_limit at a time and comes back for the rest.
"""

import os
import re

from pyfix.common import msg
from pyfix.common.dsn_mask import DSN_NOTIFY_MASK, DSN_RET_MASK
from pyfix.common.info_log_addr_form import info_log_addr_form
from pyfix.common.resolve_clnt import CLASS_LOCAL, FLAG_ERROR, FLAG_FAIL
from pyfix.common.rewrite_clnt import RULE_LOCAL
from pyfix.queue import bounce_clnt as bc
from pyfix.queue import delivery_status as status
from pyfix.queue import record as R
from pyfix.queue.deliver_request import DEL_REQ_FLAG_MTA_VRFY, DEL_REQ_FLAG_REC_DLY_SENT, \
    DEL_REQ_FLAG_RECORD, DEL_REQ_TRACE_FLAGS_MASK, DEL_REQ_TRACE_ONLY_MASK
from pyfix.queue.lock import EXCLUSIVE, NOWAIT, myflock
from pyfix.queue.scan import mail_queue_open

from pyfix.daemons.qmgr.queues import SERVICE_ERROR, SERVICE_RETRY, error_nexthop

READ_FLAG_NOTIFY_SUCCESS = 1 << 2     # some recipient asked for DSN NOTIFY=SUCCESS
READ_FLAG_USER = 0x1f                 # QMGR_READ_FLAG_USER: what a size record may say

QMGR_FLUSH_EACH = 1 << 4
QMGR_FLUSH_DFXP = 1 << 3
QMGR_FORCE_EXPIRE = 1 << 5
LOCKED = "locked"
_NUMBER = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")

ENV_TYPES = R.ENVELOPE_TYPES + R.EXTRACT_TYPES

_STR_ATTRS = {
    "encoding": "encoding", "sasl_method": "sasl_method",
    "sasl_username": "sasl_username", "sasl_sender": "sasl_sender",
    "log_ident": "log_ident", "rewrite_context": "rewrite_context"}
_LOG_CLIENT = {"log_client_name": "client_name", "log_client_address": "client_addr",
               "log_client_port": "client_port", "log_protocol_name": "client_proto",
               "log_helo_name": "client_helo"}
_ACT_CLIENT = {"client_name": "client_name", "client_address": "client_addr",
               "client_port": "client_port", "protocol_name": "client_proto",
               "helo_name": "client_helo"}


class QueuedRecipient(bc.Recipient):
    """A recipient as qmgr keeps it: bounce_clnt's Recipient plus its queue."""

    def __init__(self, offset, dsn_orcpt, dsn_notify, orig_addr, address):
        super().__init__(offset, dsn_orcpt, dsn_notify, orig_addr, address)
        self.queue = None


class Message:
    def __init__(self, qmgr, queue_name, queue_id, qflags):
        self.qmgr = qmgr
        self.queue_name, self.queue_id, self.qflags = queue_name, queue_id, qflags
        self.fp = None
        self.flags = 0                     # delivery status: nonzero = try again later
        self.tflags = self.tflags_offset = 0
        self.rflags = 0
        self.refcount = 0
        self.sender = None
        self.arrival = (0, 0)
        self.active_time = qmgr.now_tv()
        self.create_time = 0
        self.data_offset = self.data_size = self.cont_length = 0
        self.rcpt_unread = 0
        self.smtputf8 = 0
        self.warn_offset = self.warn_time = 0
        self.verp_delims = None
        self.filter_xport = self.inspect_xport = self.redirect_addr = None
        self.dsn_envid = ""
        self.dsn_ret = 0
        self.encoding = self.sasl_method = self.sasl_username = self.sasl_sender = None
        self.log_ident = self.rewrite_context = None
        self.client_name = self.client_addr = self.client_port = None
        self.client_proto = self.client_helo = None
        self.rcpts = []

    # -- the queue file --------------------------------------------------------------------

    def open(self):
        """Open the queue file read-write; False when it is gone."""
        try:
            self.fp = mail_queue_open(self.qmgr.layout, self.queue_name, self.queue_id,
                                      os.O_RDWR)
        except FileNotFoundError as exc:
            msg.warn("open %s %s: %s" % (self.queue_name, self.queue_id, msg.strerror(exc)))
            return False
        except OSError as exc:
            msg.fatal("open %s %s: %s" % (self.queue_name, self.queue_id, msg.strerror(exc)))
        return True

    def close(self):
        if self.fp is not None:
            self.fp.close()
            self.fp = None

    def stats(self):
        return bc.MsgStats(incoming_arrival=self.arrival, active_arrival=self.active_time)

    def mark_done(self, rcpt):
        """R -> D in place for a recipient qmgr itself finished."""
        reopened = self.fp is None
        if reopened and not self.open():
            return
        try:
            status.deliver_completed(self.fp, rcpt.offset)
        finally:
            if reopened:
                self.close()

    def kill_record(self, offset):
        """Mark one record killed in place (qmgr_message_kill_record())."""
        if not self.open():
            return
        try:
            status.rec_put_type(self.fp, R.KILL, offset)
        finally:
            self.close()

    def rewrite_record(self, offset, data):
        """Overwrite a fixed-width record in place (the W record after a warning)."""
        if not self.open():
            return
        try:
            self.fp.seek(offset)
            self.fp.write(data)
            self.fp.flush()
            os.fsync(self.fp.fileno())
        except OSError as exc:
            msg.fatal("update queue file %s: %s" % (self.fp.qpath, msg.strerror(exc)))
        finally:
            self.close()

    # -- reading (qmgr_message_read()) -----------------------------------------------------

    def read(self):
        """Read the envelope; False (with Postfix's warning) when the file is bad."""
        reader = R.RecordReader(self.fp, self.fp.qpath)
        orig_rcpt = dsn_orcpt = None
        dsn_notify = 0
        have_log_client = False
        rec_type = None
        while True:
            expected = ENV_TYPES
            offset = self.fp.tell()
            if offset == self.data_offset and offset > 0:
                self.fp.seek(self.data_size, 1)
                offset += self.data_size
                expected = R.XTRA
            rec_type, payload = reader.get_raw()
            if rec_type == R.PTR:
                if not reader.goto(payload):
                    rec_type = R.ERROR
                    break
                continue
            if rec_type is R.EOF or rec_type == R.ERROR:
                msg.warn("%s: message rejected: missing end record" % self.queue_id)
                rec_type = R.ERROR
                break
            if rec_type not in expected:
                msg.warn("Unexpected record type '%s' at offset %d"
                         % (rec_type.decode("latin-1"), offset))
                rec_type = R.ERROR
                break
            if rec_type == R.END:
                break
            text = payload.decode("utf-8", "surrogateescape")
            name = value = None
            if rec_type == R.ATTR:
                name, value, error = R.split_attribute(text)
                if error:
                    msg.warn("%s: bad attribute record: %s: %.200s"
                             % (self.queue_id, error, text))
                    rec_type = R.ERROR
                    break
                mapped = R.attr_map(name)
                if mapped is not None:
                    rec_type, text = mapped, value
            if rec_type == R.RCPT:
                self.rcpt_unread -= 1
                self.rcpts.append(QueuedRecipient(offset, dsn_orcpt or "", dsn_notify,
                                                  orig_rcpt or "", text))
                orig_rcpt = dsn_orcpt = None
                dsn_notify = 0
            elif rec_type in (R.DONE, R.DRCP):
                self.rcpt_unread -= 1
                orig_rcpt = dsn_orcpt = None
                dsn_notify = 0
            elif rec_type == R.DSN_ORCPT:
                if dsn_orcpt is not None:
                    msg.warn("%s: ignoring out-of-order DSN original recipient address"
                             " <%.200s>" % (self.queue_id, dsn_orcpt))
                dsn_orcpt = text
            elif rec_type == R.DSN_NOTIFY:
                if dsn_notify:
                    msg.warn("%s: ignoring out-of-order DSN notify flags <%d>"
                             % (self.queue_id, dsn_notify))
                    dsn_notify = 0
                number = int(text) if text.isdigit() else 0
                if not number or number & ~DSN_NOTIFY_MASK:
                    msg.warn("%s: ignoring malformed DSN notify flags <%.200s>"
                             % (self.queue_id, text))
                else:
                    dsn_notify = number
            elif rec_type == R.ORCP:
                if orig_rcpt is not None:
                    msg.warn("%s: ignoring out-of-order original recipient <%.200s>"
                             % (self.queue_id, orig_rcpt))
                orig_rcpt = text
            elif not self._envelope_record(rec_type, text, name, value, offset,
                                           have_log_client):
                rec_type = R.ERROR
                break
            elif name in _LOG_CLIENT:
                have_log_client = True
        for leftover, what in ((dsn_orcpt, "DSN original recipient"),
                               (orig_rcpt, "original recipient")):
            if leftover is not None and rec_type != R.ERROR:
                msg.warn("%s: ignoring out-of-order %s <%.200s>"
                         % (self.queue_id, what, leftover))
        self._defaults()
        if self.qmgr.dsn_delay_cleared and self.warn_time < 0:
            self.tflags |= DEL_REQ_FLAG_REC_DLY_SENT
        if self.rcpt_unread != 0:
            msg.warn("%s: rcpt count mismatch (%d)" % (self.queue_id, self.rcpt_unread))
            self.rcpt_unread = 0
        if rec_type == R.ERROR:
            return False
        for missing, what in ((self.arrival[0] == 0, "arrival time"),
                              (self.sender is None, "sender"),
                              (self.data_offset == 0, "size")):
            if missing:
                msg.warn("%s: message rejected: missing %s record" % (self.queue_id, what))
                return False
        return True

    def _envelope_record(self, rec_type, text, name, value, offset, have_log_client):
        """One non-recipient envelope record; False for a fatal defect."""
        if rec_type == R.SIZE:
            return self._size_record(text)
        if rec_type == R.TIME:
            if self.arrival[0] == 0:
                self.arrival = R.time_scan(text.encode())
        elif rec_type == R.CTIME:
            if self.create_time == 0:
                self.create_time = _atol(text)
        elif rec_type == R.FILT:
            self.filter_xport = text
        elif rec_type == R.INSP:
            self.inspect_xport = text
        elif rec_type == R.RDR:
            self.redirect_addr = text
        elif rec_type == R.FROM:
            if self.sender is None:
                self.sender = text
                msg.info("%s: from=<%s>, size=%d, nrcpt=%d (queue %s)"
                         % (self.queue_id, info_log_addr_form(text), self.cont_length,
                            self.rcpt_unread, self.queue_name))
        elif rec_type == R.DSN_ENVID:
            self.dsn_envid = text
        elif rec_type == R.DSN_RET:
            number = int(text) if text.isdigit() else 0
            if not number or number & ~DSN_RET_MASK:
                msg.warn("%s: ignoring malformed DSN RET flags in queue file record:%.100s"
                         % (self.queue_id, text))
            else:
                self.dsn_ret = number
        elif rec_type == R.ATTR:
            self._attribute(name, value, offset, have_log_client)
        elif rec_type == R.WARN:
            if self.warn_offset == 0:
                self.warn_offset = offset
                self.warn_time = _atol(text)
        elif rec_type == R.VERP:
            if self.verp_delims is None:
                if not self.sender:
                    msg.warn("%s: ignoring VERP request for null sender" % self.queue_id)
                else:
                    self.verp_delims = text
        return True

    def _size_record(self, text):
        if self.data_offset == 0:
            fields = _scan_numbers(text, 6)
            if len(fields) >= 3:
                fields += [0] * (6 - len(fields))
                (self.data_size, self.data_offset, self.rcpt_unread, self.rflags,
                 self.cont_length, self.smtputf8) = fields
                if self.data_offset <= 0 or self.data_size <= 0:
                    msg.warn("%s: invalid size record: %.100s" % (self.queue_id, text))
                    return False
                if self.rflags & ~READ_FLAG_USER:
                    msg.warn("%s: invalid flags in size record: %.100s"
                             % (self.queue_id, text))
                    return False
            elif len(fields) == 1:
                self._oldstyle_scan()
            else:
                msg.warn("%s: message rejected: weird size record" % self.queue_id)
                return False
        if self.cont_length == 0:
            self.cont_length = self.data_size
        elif self.cont_length < 0:
            msg.warn("%s: invalid size record: %.100s" % (self.queue_id, text))
            return False
        return True

    def _oldstyle_scan(self):
        """A queue file of Postfix before 2.x (qmgr_message_oldstyle_scan()): a size
        record with only the content size; the `M` record holds the offset of the
        extracted records. Postfix's qmgr gives up on a bad one with a fatal error."""
        saved = self.fp.tell()
        self.fp.seek(0)
        reader = R.RecordReader(self.fp, self.fp.qpath)
        self.rcpt_unread = 0
        rec_type = None
        while True:
            rec_type, payload = reader.get()
            if rec_type is R.EOF or rec_type == R.ERROR or rec_type == R.END:
                break
            if rec_type in (R.DONE, R.RCPT, R.DRCP):
                self.rcpt_unread += 1
            elif rec_type == R.MESG and self.data_offset == 0:
                self.data_offset = self.fp.tell()
                text = payload.decode("latin-1")
                extra_offset = _atol(text)
                if extra_offset <= self.data_offset:
                    msg.fatal("bad extra offset %s file %s" % (text, self.fp.qpath))
                self.fp.seek(extra_offset)
                self.data_size = extra_offset - self.data_offset
        self.fp.seek(saved)
        if self.data_offset == 0 or rec_type != R.END:
            msg.fatal("%s: envelope records out of order" % self.queue_id)

    def _attribute(self, name, value, offset, have_log_client):
        if name in _STR_ATTRS:
            attr_name = _STR_ATTRS[name]
            if getattr(self, attr_name) is None or name == "encoding":
                setattr(self, attr_name, value)
            else:
                msg.warn("%s: ignoring multiple %s attribute: %s"
                         % (self.queue_id, name, value))
        elif name in _ACT_CLIENT:
            if not have_log_client and getattr(self, _ACT_CLIENT[name]) is None:
                setattr(self, _ACT_CLIENT[name], value)
        elif name in _LOG_CLIENT:
            setattr(self, _LOG_CLIENT[name], value)
        elif name == "trace_flags":
            if self.tflags == 0:
                self.tflags = _atol(value) & DEL_REQ_TRACE_FLAGS_MASK
                self.tflags_offset = offset if self.tflags == DEL_REQ_FLAG_RECORD else 0

    def _defaults(self):
        for name in ("encoding", "client_name", "client_addr", "client_port",
                     "client_proto", "client_helo", "sasl_method", "sasl_username",
                     "sasl_sender", "log_ident"):
            if getattr(self, name) is None:
                setattr(self, name, "")
        if self.rewrite_context is None:
            self.rewrite_context = "local"
        if self.create_time == 0:
            self.create_time = self.arrival[0]

    # -- resolving and grouping (qmgr_message_resolve(), qmgr_message_assign()) -------------

    def resolve(self):
        """Give each recipient its transport queue, or defer it on the spot."""
        sched = self.qmgr.sched
        for index, rcpt in enumerate(self.rcpts):
            if self.redirect_addr:
                if index > 0:
                    rcpt.queue = None
                    continue
                rcpt.address = self.qmgr.rewriter.rewrite_internal(RULE_LOCAL,
                                                                   self.redirect_addr)
            if self.filter_xport and not self.tflags & DEL_REQ_TRACE_ONLY_MASK:
                transport_name, _, nexthop = self.filter_xport.partition(":")
                if not nexthop:
                    nexthop = self.qmgr.def_filter_nexthop
                    if not nexthop:
                        domain = rcpt.address.rpartition("@")
                        nexthop = domain[2] if domain[1] and domain[2] else \
                            self.qmgr.myhostname
                flags, recipient = 0, rcpt.address
            else:
                transport_name, nexthop, recipient, flags = self._resolve_one(rcpt.address)
                rcpt.address = recipient
            if not rcpt.address:
                transport_name, nexthop, flags = SERVICE_ERROR, \
                    "5.1.3 null recipient address", 0
            if self.qflags & QMGR_FORCE_EXPIRE:
                transport_name, nexthop, flags = SERVICE_RETRY, \
                    "4.7.0 message is administratively expired", 0
            if flags & CLASS_LOCAL and self._is_double_bounce(recipient):
                result = status.sent(self.tflags, self.queue_id, self.stats(), rcpt, "none",
                                     bc.Dsn("2.0.0", "undeliverable postmaster notification"
                                            " discarded"))
                if result == 0:
                    self.mark_done(rcpt)
                else:
                    self.flags |= result
                continue
            if transport_name in self.qmgr.defer_transports \
                    and not self.qflags & QMGR_FLUSH_DFXP:
                transport_name, nexthop = SERVICE_RETRY, "4.3.2 deferred transport"
            rcpt.queue = self._queue_for(sched, rcpt, transport_name, nexthop, recipient)

    def _resolve_one(self, address):
        reply = self.qmgr.resolver.resolve(
            "verify" if self.tflags & DEL_REQ_FLAG_MTA_VRFY else "resolve",
            self.sender, address)
        if reply.flags & FLAG_FAIL:
            return SERVICE_RETRY, "4.3.0 address resolver failure", reply.recipient, 0
        if reply.flags & FLAG_ERROR:
            return SERVICE_ERROR, "5.1.3 bad address syntax", reply.recipient, 0
        return reply.transport, reply.nexthop, reply.recipient, reply.flags

    def _is_double_bounce(self, recipient):
        local = recipient.rpartition("@")[0] if "@" in recipient else recipient
        return local.lower() == self.qmgr.double_bounce_sender.lower()

    def _queue_for(self, sched, rcpt, transport_name, nexthop, recipient):
        """The queue of one resolved recipient, or None after deferring it."""
        transport = sched.transport_find(transport_name) or \
            sched.transport_create(transport_name)
        if self.qflags & QMGR_FLUSH_EACH and transport.dead:
            sched.transport_unthrottle(transport)
        if transport.dead:
            saved = transport.dsn
            transport = sched.error_transport(SERVICE_RETRY)
            if transport is None:
                self.defer_recipient(rcpt, saved)
                return None
            nexthop = error_nexthop(saved)
        queue_name = nexthop
        if transport.name not in (SERVICE_ERROR, SERVICE_RETRY) \
                and transport.recipient_limit == 1:
            local = recipient.rpartition("@")[0] if "@" in recipient else recipient
            delim = self.qmgr.recipient_delimiter
            if delim:
                cut = min((local.find(ch) for ch in delim if ch in local), default=-1)
                if cut > 0:
                    local = local[:cut]
            queue_name = "%s@%s" % (local, nexthop)
        queue_name = queue_name.lower()
        queue = sched.queue_find(transport, queue_name) or \
            sched.queue_create(transport, queue_name, nexthop)
        if self.qflags & QMGR_FLUSH_EACH and queue.throttled:
            sched.queue_unthrottle(queue)
        if queue.throttled:
            saved = queue.dsn
            queue = sched.error_queue(SERVICE_RETRY, saved)
            if queue is None:
                self.defer_recipient(rcpt, saved)
                return None
        return queue

    def assign(self):
        """Group the recipients into entries: per queue, at most the transport's
        destination recipient limit per entry."""
        sched = self.qmgr.sched
        ordered = sorted((rcpt for rcpt in self.rcpts if rcpt.queue is not None),
                         key=lambda r: (r.queue.transport.name, r.queue.name)
                         + domain_order(r))
        last = {}
        for rcpt in ordered:
            queue = rcpt.queue
            limit = queue.transport.recipient_limit
            entry = last.get(id(queue))
            if entry is None or (limit > 0 and len(entry.rcpts) >= limit):
                entry = sched.entry_create(self, queue)
                last[id(queue)] = entry
            entry.rcpts.append(rcpt)
            sched.recipient_count += 1
        self.rcpts = []

    def defer_recipient(self, rcpt, dsn):
        self.flags |= status.defer_append(self.tflags, self.queue_id, self.stats(), rcpt,
                                          "none", dsn)


def domain_order(rcpt):
    """qmgr_message_sort_compare(): by domain (case-insensitive), then address."""
    at = rcpt.address.rfind("@")
    domain = rcpt.address[at + 1:].lower().encode("utf-8", "surrogateescape") \
        if at >= 0 else b""
    return (at < 0, domain, rcpt.address.encode("utf-8", "surrogateescape"))


def _scan_numbers(text, count):
    """The leading integers of text as sscanf("%ld %ld ...") converts them: stops at the
    first field that is not a number."""
    numbers = []
    pos = 0
    while len(numbers) < count:
        match = _NUMBER.match(text, pos)
        if match is None:
            break
        numbers.append(int(match.group(1)))
        pos = match.end()
    return numbers


def _atol(text):
    text = text.strip()
    sign = 1
    if text[:1] in "+-" and text:
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return sign * int(digits) if digits else 0


def message_alloc(qmgr, queue_name, queue_id, qflags, mode):
    """Open, lock, read, resolve and group one message (qmgr_message_alloc()). The
    Message; None for a corrupt file; LOCKED when a delivery agent still has it."""
    message = Message(qmgr, queue_name, queue_id, qflags)
    if not message.open():
        return None
    if not myflock(message.fp.fileno(), EXCLUSIVE | NOWAIT):
        msg.info("%s: skipped, still being delivered" % queue_id)
        message.close()
        return LOCKED
    if not message.read():
        message.close()
        return None
    if mode:
        os.fchmod(message.fp.fileno(), mode)
    defer_log = qmgr.layout.path("defer", queue_id)
    if qflags & QMGR_FORCE_EXPIRE and os.path.exists(defer_log) \
            and os.path.getsize(defer_log) > 0:
        message.flags = 1
        message.close()
        return message
    try:
        os.unlink(defer_log)
    except FileNotFoundError:
        pass
    except OSError as exc:
        msg.fatal("qmgr_message_alloc: %s: remove defer %s: %s"
                  % (queue_id, queue_id, msg.strerror(exc)))
    message.rcpts.sort(key=domain_order)             # resolve domain by domain
    message.resolve()
    message.assign()
    message.close()
    return message

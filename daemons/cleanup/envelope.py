"""The envelope segment: the records before `M` (Postfix's cleanup_envelope.c).

The first record cleanup writes is a `C` placeholder with zeros (rewritten at the end).
Then each input record is checked against the envelope record types and copied,
rewritten or consumed: `T` (first one wins, followed by cleanup's own `create_time`
attribute), `F`, `S` (exactly one; canonicalized in cleanup_addr_sender), `A` name=value
(the DSN attributes act as records of their own), `R` (with its `O`, DSN ORCPT and
NOTIFY, through cleanup_addr_recipient), `W`, `V`, `<`, `i`... The client-only records
`f` (extra flags: HOLD or DISCARD) and `m` (Milter count) are not copied. `M` passes
control to the message content.
"""

import time

from pyfix.common import msg
from pyfix.common.dsn_mask import dsn_notify_ok, dsn_ret_ok
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record

from pyfix.daemons.cleanup import addr, message
from pyfix.daemons.cleanup.out import cleanup_out, size_record
from pyfix.daemons.cleanup.state import (FLAG_INRCPT, FLAG_WARN_SEEN, SMTPUTF8_REQUESTED,
                                        type_in)

QMGR_READ_FLAG_MIXED_RCPT_OTHER = 1 << 0
DEL_REQ_TRACE_FLAGS_MASK = (1 << 8) | (1 << 9) | (1 << 10) | (1 << 13)
ATTR_RWR_CONTEXT = "rewrite_context"
ATTR_TRACE_FLAGS = "trace_flags"
ATTR_CREATE_TIME = "create_time"


def text(payload):
    return payload.decode("utf-8", "surrogateescape")


def atoi(payload):
    """C atoi(): leading white space and sign, then digits; 0 when there are none."""
    value, _ = record._atol(text(payload) if isinstance(payload, bytes) else payload, 0)
    return value


def alldig(value):
    return bool(value) and value.isascii() and value.isdigit()


def reject(state, why):
    msg.warn("%s: message rejected: %s" % (state.queue_id, why))
    state.errs |= cu.STAT_BAD


def extra_flags(state, payload):
    """`f`: HOLD or DISCARD requested by the client (smtpd's access actions)."""
    extra = atoi(payload)
    if extra & ~cu.FLAG_MASK_EXTRA:
        msg.warn("%s: ignoring bad extra flags: 0x%x" % (state.queue_id, extra))
    else:
        state.flags |= extra


def split_attribute(state, payload):
    """(name, value, mapped record type or None) of an `A` record, or None when the
    record was handled (rejected, or an empty placeholder value)."""
    name, value, error = record.split_attribute(text(payload))
    if error:
        reject(state, "malformed attribute: %s: %.100s" % (error, text(payload)))
        return None
    if value == "":
        msg.warn('%s: spurious null attribute value for "%s" -- ignored'
                 % (state.queue_id, name))
        return None
    return name, value, record.attr_map(name)


def recipient_records(state, rec_type, mapped_type, payload, mapped):
    """The recipient-related records, common to the envelope and the extracted
    segment; True when the record was consumed."""
    if rec_type == record.RCPT:
        if state.sender is None:
            reject(state, "envelope recipient precedes sender")
            return True
        if state.orig_rcpt is None:
            state.orig_rcpt = text(payload)
        addr.cleanup_addr_recipient(state, text(payload))
        state.orig_rcpt = None
        state.dsn_orcpt = None
        state.dsn_notify = 0
        return True
    if rec_type in (record.DONE, record.DRCP):
        state.orig_rcpt = None
        state.dsn_orcpt = None
        state.dsn_notify = 0
        return True
    if mapped_type == record.DSN_ORCPT:
        if state.dsn_orcpt:
            msg.warn("%s: ignoring out-of-order DSN original recipient record <%.200s>"
                     % (state.queue_id, state.dsn_orcpt))
        state.dsn_orcpt = mapped
        return True
    if mapped_type == record.DSN_NOTIFY:
        if state.dsn_notify:
            msg.warn("%s: ignoring out-of-order DSN notify record <%d>"
                     % (state.queue_id, state.dsn_notify))
            state.dsn_notify = 0
        value = atoi(mapped) if alldig(mapped) else 0
        if value == 0 or not dsn_notify_ok(value):
            msg.warn("%s: ignoring malformed %s notify record <%.200s>"
                     % (state.queue_id, "DSN" if state.action is process else "dsn",
                        text(payload)))
        else:
            state.dsn_notify = value
            state.qmgr_opts |= value << 1
        return True
    if rec_type == record.ORCP:
        if state.orig_rcpt is not None:
            msg.warn("%s: ignoring out-of-order original recipient record <%.200s>"
                     % (state.queue_id, state.orig_rcpt if state.action is process
                        else text(payload)))
        state.orig_rcpt = text(payload)
        return True
    return False


def cleanup_envelope(state, rec_type, payload):
    """The first record: write the `C` placeholder, then process records."""
    cleanup_out(state, record.SIZE, size_record(0, 0, 0, 0, 0, 0))
    state.action = process
    process(state, rec_type, payload)


def process(state, rec_type, payload):
    if msg.verbose:
        msg.info("initial envelope %s %s" % (rec_type.decode("latin-1"), text(payload)))
    if rec_type == record.FLGS:
        extra_flags(state, payload)
        return
    if rec_type == record.MILT_COUNT:
        return                  # Milters are not supported: nothing to set up
    mapped_type, mapped = rec_type, text(payload)
    name = value = None
    if rec_type == record.ATTR:
        parts = split_attribute(state, payload)
        if parts is None:
            return
        name, value, junk = parts
        if junk is not None:
            mapped_type, mapped = junk, value
    if not type_in(record.ENVELOPE_TYPES, rec_type):
        reject(state, "unexpected record type %d in envelope" % rec_type[0])
        return
    if not state.flags & FLAG_INRCPT and type_in(record.ENV_RECIPIENT_TYPES, rec_type):
        if state.sender is None:
            reject(state, "missing sender envelope record")
            return
        if state.arrival_time[0] == 0:
            reject(state, "missing time envelope record")
            return
        if not state.flags & FLAG_WARN_SEEN and state.sender \
                and state.settings.delay_warn_time > 0:
            cleanup_out(state, record.WARN, record.WARN_FORMAT
                        % (state.arrival_time[0] + state.settings.delay_warn_time))
        state.flags |= FLAG_INRCPT
    if recipient_records(state, rec_type, mapped_type, payload, mapped):
        return
    if rec_type == record.MESG:
        state.action = message.cleanup_message
        state.flags &= ~FLAG_INRCPT
        return
    if state.flags & FLAG_INRCPT:
        state.qmgr_opts |= QMGR_READ_FLAG_MIXED_RCPT_OTHER
    non_recipient(state, rec_type, mapped_type, payload, mapped, name, value)


def non_recipient(state, rec_type, mapped_type, payload, mapped, name, value):
    if rec_type == record.SIZE:
        # Postfix means to take the client's SMTPUTF8_REQUESTED bit from the sixth field
        # here, but its scan pattern never matches: only the bit set from the request
        # flags survives. Same here.
        state.smtputf8 &= SMTPUTF8_REQUESTED
        return
    if mapped_type == record.CTIME:
        return
    if rec_type == record.TIME:
        if state.arrival_time[0] == 0:
            state.arrival_time = record.time_scan(payload)
            cleanup_out(state, rec_type, payload)
        cleanup_out(state, record.ATTR, "%s=%d" % (ATTR_CREATE_TIME, int(time.time())))
        return
    if rec_type == record.FULL:
        if state.fullname is None:
            state.fullname = text(payload)
            cleanup_out(state, rec_type, payload)
        return
    if rec_type == record.FROM:
        if state.sender is not None:
            reject(state, "multiple envelope sender records")
            return
        addr.cleanup_addr_sender(state, text(payload))
        return
    if mapped_type == record.DSN_ENVID:
        if not all(32 <= ord(ch) < 127 for ch in mapped):
            reject(state, "bad DSN envelope ID record")
            return
        state.dsn_envid = mapped
        cleanup_out(state, rec_type, payload)
        return
    if mapped_type == record.DSN_RET:
        number = atoi(mapped) if alldig(mapped) else 0
        if number == 0 or not dsn_ret_ok(number):
            reject(state, "bad DSN RET record <%.200s>" % text(payload))
            return
        state.dsn_ret = number
        cleanup_out(state, rec_type, payload)
        return
    if rec_type == record.WARN:
        if not state.flags & FLAG_WARN_SEEN:
            state.flags |= FLAG_WARN_SEEN
            cleanup_out(state, rec_type, payload)
        return
    if rec_type == record.VERP:
        verp(state, payload)
        return
    if rec_type == record.ATTR:
        attribute(state, payload, name, value)
        return
    cleanup_out(state, rec_type, payload)


def verp(state, payload):
    if state.verp_delims is not None:
        return
    delims = text(payload)
    if not state.sender:
        msg.warn("%s: ignoring VERP request for null sender" % state.queue_id)
    elif len(payload) != 2 or delims[0] not in state.settings.verp_filter \
            or delims[1] not in state.settings.verp_filter:
        msg.warn('%s: ignoring bad VERP request: "%.100s"' % (state.queue_id, delims))
    else:
        state.verp_delims = delims
        cleanup_out(state, record.VERP, payload)


def attribute(state, payload, name, value):
    if len(state.attr) >= state.settings.qattr_count_limit:
        reject(state, "attribute count exceeds limit %d" % state.settings.qattr_count_limit)
        return
    if name == ATTR_RWR_CONTEXT:
        context = state.settings.rewrite_context(value)
        if context is False:
            reject(state, "bad rewriting context: %.100s" % value)
            return
        state.hdr_rewrite_context = context
    if name == ATTR_TRACE_FLAGS:
        if not alldig(value):
            reject(state, "bad TFLAG record <%.200s>" % text(payload))
            return
        if state.tflags == 0:
            state.tflags = atoi(value) & DEL_REQ_TRACE_FLAGS_MASK
    state.attr[name] = value
    cleanup_out(state, record.ATTR, payload)

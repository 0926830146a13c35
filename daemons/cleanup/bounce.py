"""Bouncing a message that cleanup rejected, for clients that asked for it (Postfix's
cleanup_bounce.c).

pickup (sendmail), local's forwarding and `postsuper -r` set CLEANUP_FLAG_BOUNCE: there
is nobody to tell "550" to, so cleanup records a bounce log entry for every recipient
in the queue file written so far (or for "unknown" when there is none) through the
bounce service, and asks it to send the non-delivery notification. When that worked the
message counts as handled: the errors are cleared and the queue file is discarded.
When the bounce service fails, the error is CLEANUP_STAT_WRITE and the client keeps its
copy to try again.
"""

from pyfix.common import msg
from pyfix.common.dsn_mask import DSN_RET_HDRS, dsn_notify_ok
from pyfix.common.dsn_util import dsn_split
from pyfix.common.strings import split_nameval
from pyfix.queue import bounce_clnt
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record


def _append(state, rcpt, dsn):
    stats = bounce_clnt.MsgStats(incoming_arrival=state.arrival_time)
    if bounce_clnt.bounce_append(bounce_clnt.BOUNCE_FLAG_CLEAN, state.queue_id, stats,
                                 rcpt, "none", dsn) != 0:
        state.errs |= cu.STAT_WRITE


def _recipients(state):
    """(offset, dsn_orcpt, notify, orig_rcpt, rcpt) of each recipient in the file.
    After a write error Postfix purges what is unwritten and clears the stream's error
    flag "to avoid false alarms" before it reads the file back."""
    try:
        state.dst.flush()
    except OSError:
        pass
    state.handle.clear_error()
    try:
        state.dst.seek(0)
    except OSError as exc:
        msg.fatal("cleanup_bounce: seek %s: %s" % (state.path, msg.strerror(exc)))
    reader = record.RecordReader(state.dst, state.path)
    dsn_orcpt = orig_rcpt = None
    dsn_notify = 0
    while not state.errs & cu.STAT_WRITE:
        offset = state.dst.tell()
        rec_type, payload = reader.get()
        if rec_type is None or rec_type == record.ERROR or rec_type == record.END:
            return
        data = payload.decode("utf-8", "surrogateescape")
        if rec_type == record.ATTR:
            name, value, error = split_nameval(data)
            if error or not value:
                continue
            mapped = record.attr_map(name)
            if mapped is not None:
                rec_type, data = mapped, value
        if rec_type == record.DSN_ORCPT:
            dsn_orcpt = data
        elif rec_type == record.DSN_NOTIFY:
            number = int(data) if data.isascii() and data.isdigit() else 0
            dsn_notify = number if number > 0 and dsn_notify_ok(number) else 0
        elif rec_type == record.ORCP:
            orig_rcpt = data
        elif rec_type in (record.RCPT, record.DRCP, record.DONE):
            if rec_type == record.RCPT:
                yield offset, dsn_orcpt or "", dsn_notify, orig_rcpt or data, data
            dsn_orcpt = orig_rcpt = None
            dsn_notify = 0


def cleanup_bounce(state):
    if state.reason:
        status, text = dsn_split("5.0.0", state.reason)
    else:
        detail = cu.stat_detail(state.errs)
        status, text = detail.dsn, detail.text
    seen = False
    for offset, dsn_orcpt, notify, orcpt, rcpt in _recipients(state):
        seen = True
        _append(state, bounce_clnt.Recipient(offset, dsn_orcpt, notify, orcpt, rcpt),
                bounce_clnt.Dsn(status, text))
    if not state.errs & cu.STAT_WRITE and not seen:
        _append(state, bounce_clnt.Recipient(0, "", 0, "", "unknown"),
                bounce_clnt.Dsn(status, text))
    if not state.errs & cu.STAT_WRITE:
        encoding = state.attr.get("encoding", "")
        dsn_ret = DSN_RET_HDRS if state.errs & (cu.STAT_CONT | cu.STAT_SIZE) \
            else state.dsn_ret
        verp = state.verp_delims if state.verp_delims \
            and not state.settings.config.get_bool("disable_verp_bounces") else None
        if bounce_clnt.bounce_flush(bounce_clnt.BOUNCE_FLAG_CLEAN, state.queue_name,
                                    state.queue_id, encoding, state.smtputf8,
                                    state.sender, state.dsn_envid or "", dsn_ret,
                                    verp) != 0:
            msg.warn("%s: bounce message failure" % state.queue_id)
            state.errs |= cu.STAT_WRITE
    state.errs &= cu.STAT_WRITE
    if state.errs == 0:
        state.flags |= cu.FLAG_DISCARD
    return state.errs

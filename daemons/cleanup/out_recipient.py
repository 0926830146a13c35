"""Writing envelope recipients: virtual alias expansion and the duplicate filter
(Postfix's cleanup_out_recipient.c).

Without address mapping (or without virtual_alias_maps) a recipient is written once:
`A notify_flags=` and `A dsn_orig_rcpt=` when present, then `O` (the original
recipient) and `R`. With virtual_alias_maps the recipient is expanded first and each
result is written the same way. The duplicate filter (duplicate_filter_limit entries,
case-insensitive) compares DSN original recipient, NOTIFY, original recipient and
recipient when enable_original_recipient is on, else the recipient only.

When an expansion changes the recipient and the sender asked for NOTIFY=SUCCESS, an
"expanded" record goes to the trace service and SUCCESS is taken out of the expanded
recipients' NOTIFY; an address probe for an alias with several recipients is answered
"deliverable" through the verify service instead of being expanded.
"""

from pyfix.common import msg
from pyfix.common.dsn_mask import DSN_NOTIFY_NEVER, DSN_NOTIFY_SUCCESS
from pyfix.queue import bounce_clnt
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record

from pyfix.daemons.cleanup import init
from pyfix.daemons.cleanup.map1n import map1n_internal
from pyfix.daemons.cleanup.out import cleanup_out
from pyfix.daemons.cleanup.state import open_paths

DEL_REQ_FLAG_MTA_VRFY = 1 << 8
DEL_RCPT_STAT_OK = 0


def _write(state, dsn_orcpt, dsn_notify, orcpt, recip):
    settings = state.settings
    if settings.enable_orcpt:
        key = "%s\n%d\n%s\n%s" % (dsn_orcpt, dsn_notify, orcpt, recip)
    else:
        key = recip
    if state.dups.been_here(key):
        return
    if dsn_notify:
        cleanup_out(state, record.ATTR, "%s=%d" % ("notify_flags", dsn_notify))
    if dsn_orcpt:
        cleanup_out(state, record.ATTR, "%s=%s" % ("dsn_orig_rcpt", dsn_orcpt))
    cleanup_out(state, record.ORCP, orcpt)
    cleanup_out(state, record.RCPT, recip)
    state.rcpt_count += 1


def _stats(state):
    return bounce_clnt.MsgStats(incoming_arrival=state.arrival_time)


def cleanup_out_recipient(state, dsn_orcpt, dsn_notify, orcpt, recip):
    dsn_orcpt = dsn_orcpt or ""
    maps = state.settings.virt_alias_maps
    if not state.flags & cu.FLAG_MAP_OK or maps is None:
        _write(state, dsn_orcpt, dsn_notify, orcpt, recip)
        return
    argv = map1n_internal(state, recip, maps,
                          state.settings.ext_prop_mask & init.EXT_PROP_VIRTUAL)
    if len(argv) > 1 and state.tflags & DEL_REQ_FLAG_MTA_VRFY:
        rcpt = bounce_clnt.Recipient(0, dsn_orcpt, dsn_notify, orcpt, recip)
        dsn = bounce_clnt.Dsn("2.0.0", "aliased to multiple recipients", "deliverable")
        if bounce_clnt.verify_append(state.queue_id, _stats(state), rcpt, "none", dsn,
                                     DEL_RCPT_STAT_OK) != 0:
            msg.warn("%s: verify service update error" % state.queue_id)
            state.errs |= cu.STAT_WRITE
        return
    if dsn_notify & DSN_NOTIFY_SUCCESS and (len(argv) > 1 or recip != argv[0]):
        rcpt = bounce_clnt.Recipient(0, dsn_orcpt, dsn_notify, orcpt, recip)
        dsn = bounce_clnt.Dsn("2.0.0", "alias expanded", "expanded")
        if state.trace_path is None:
            state.trace_path = state.settings.layout.path("trace", state.queue_id)
            open_paths["trace"] = state.trace_path
        if bounce_clnt.trace_append(bounce_clnt.BOUNCE_FLAG_CLEAN, state.queue_id,
                                    _stats(state), rcpt, "none", dsn) != 0:
            msg.warn("%s: trace logfile update error" % state.queue_id)
            state.errs |= cu.STAT_WRITE
        dsn_notify = DSN_NOTIFY_NEVER if dsn_notify == DSN_NOTIFY_SUCCESS \
            else dsn_notify & ~DSN_NOTIFY_SUCCESS
    for address in argv:
        _write(state, dsn_orcpt, dsn_notify, orcpt, address)

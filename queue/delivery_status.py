"""Delivery status requests of qmgr and the delivery agents (Postfix's global/defer.c,
sent.c, trace.c's trace_flush() and deliver_completed.c).

queue/bounce_clnt.py has the requests that cleanup needed first (bounce_append,
bounce_flush, trace_append, log_adhoc); the defer service's requests (append, flush,
warn), trace_flush, sent() and the in-place R -> D marking are here. Postfix's qmgr
makes the flush and warn requests asynchronously (abounce.c); pyfix's qmgr waits for
each answer, which the bounce/defer services give at once.
"""

from pyfix.common import flush_clnt, msg
from pyfix.common.dsn_mask import DSN_NOTIFY_SUCCESS
from pyfix.queue import bounce_clnt as bc
from pyfix.queue import record

BOUNCE_FLAG_KEEP = 0
BOUNCE_FLAG_DELRCPT = bc.BOUNCE_FLAG_DELRCPT


def _dsn_valid(status):
    from pyfix.common.dsn_util import dsn_valid
    return dsn_valid(status) > 0


def defer_append(flags, queue_id, stats, rcpt, relay, dsn):
    """Record a temporary failure of one recipient in the defer log and log
    `status=deferred` (defer_append()). Always -1: the message stays queued."""
    if not dsn.status.startswith("4") or not _dsn_valid(dsn.status):
        msg.warn('defer_append: ignoring dsn code "%s"' % dsn.status)
        dsn = dsn.copy(status="4.0.0")
    if flags & bc.DEL_REQ_FLAG_MTA_VRFY:
        return bc.verify_append(queue_id, stats, rcpt, relay,
                                dsn.copy(action="undeliverable"), 1)
    if flags & bc.DEL_REQ_FLAG_USR_VRFY:
        return bc.trace_append(flags, queue_id, stats, rcpt, relay,
                               dsn.copy(action="undeliverable"))
    my_dsn = dsn.copy(action="delayed")
    service = bc._settings["defer_service_name"]
    request = [("nrequest", bc.CMD_APPEND), ("flags", flags), ("queue_id", queue_id)] \
        + rcpt.attrs() + my_dsn.attrs()
    if bc.mail_command_client("private", service, bc.PROTO_BOUNCE, request) != 0:
        msg.warn("%s: %s service failure" % (queue_id, service))
    bc.log_adhoc(queue_id, stats, rcpt, relay, my_dsn, "deferred")
    if flags & bc.DEL_REQ_FLAG_RECORD:
        if bc.trace_append(flags, queue_id, stats, rcpt, relay, my_dsn) != 0:
            msg.warn("%s: %s service failure" % (queue_id, bc._settings["trace_service_name"]))
    _notify_flush(queue_id, rcpt.address)
    return -1


def _notify_flush(queue_id, address):
    """flush_add() for the recipient's domain, as Postfix's defer_append() does it
    ("doing it here is more robust"): the fast flush logfile of a fast_flush_domains
    site learns the deferred queue ID. bounce_clnt.configure() initializes the client."""
    domain = address.rpartition("@")[2] if "@" in address else ""
    if not domain or not flush_clnt.initialized():
        return
    if flush_clnt.flush_add(domain, queue_id) not in (flush_clnt.FLUSH_STAT_OK,
                                                      flush_clnt.FLUSH_STAT_DENY):
        msg.warn("%s: %s service failure" % (queue_id, flush_clnt.service_name()))


def bounce_append(flags, queue_id, stats, rcpt, relay, dsn):
    """bounce_clnt.bounce_append() as a delivery agent needs it: when the bounce (or
    trace) service cannot record the failure, the recipient is deferred instead with
    `4.3.0 bounce or trace service failure` (Postfix's fallback without
    BOUNCE_FLAG_CLEAN), so that it is tried again rather than forgotten."""
    status = bc.bounce_append(flags, queue_id, stats, rcpt, relay, dsn)
    if status == 0 or flags & (bc.DEL_REQ_FLAG_MTA_VRFY | bc.DEL_REQ_FLAG_USR_VRFY) \
            or flags & bc.BOUNCE_FLAG_CLEAN or bc._settings["soft_bounce"]:
        return status
    reason = "%s or %s service failure" % (bc._settings["bounce_service_name"],
                                           bc._settings["trace_service_name"])
    return defer_append(flags, queue_id, stats, rcpt, relay,
                        dsn.copy(status="4.3.0", reason=reason))


def _message_request(service, command, flags, message):
    request = [("nrequest", command), ("flags", flags), ("queue_name", message.queue_name),
               ("queue_id", message.queue_id), ("encoding", message.encoding),
               ("smtputf8", message.smtputf8), ("sender", message.sender),
               ("envelope_id", message.dsn_envid), ("ret_flags", message.dsn_ret)]
    status = bc.mail_command_client("private", bc._settings[service], bc.PROTO_BOUNCE,
                                    request)
    return 0 if status == 0 else -1


def defer_flush(flags, message):
    """Return the message to its sender with the reasons of its defer log (defer_flush())."""
    return _message_request("defer_service_name", bc.CMD_FLUSH,
                            flags | BOUNCE_FLAG_DELRCPT, message)


def defer_warn(flags, message):
    """Send the sender a delay warning from the defer log (defer_warn())."""
    return _message_request("defer_service_name", bc.CMD_WARN, flags, message)


def bounce_flush(flags, message):
    """Send the sender the non-delivery report of the bounce log (bounce_flush())."""
    return _message_request("bounce_service_name", bc.CMD_FLUSH, flags, message)


def trace_flush(flags, message):
    """Send the sender the delivery report of the trace log: `sendmail -v`, `-bv`, or
    DSN NOTIFY=SUCCESS (trace_flush())."""
    return _message_request("trace_service_name", bc.CMD_TRACE, flags, message)


def sent(flags, queue_id, stats, rcpt, relay, dsn):
    """A recipient delivered, or needing no delivery (sent()): logged `status=sent`,
    and recorded in the trace log for `sendmail -v` or DSN NOTIFY=SUCCESS. 0 when
    done, -1 when the trace service failed."""
    if not dsn.status.startswith("2") or not _dsn_valid(dsn.status):
        msg.warn('sent: ignoring dsn code "%s"' % dsn.status)
        dsn = dsn.copy(status="2.0.0")
    if flags & bc.DEL_REQ_FLAG_MTA_VRFY:
        return bc.verify_append(queue_id, stats, rcpt, relay,
                                dsn.copy(action="deliverable"), 0)
    if flags & bc.DEL_REQ_FLAG_USR_VRFY:
        return bc.trace_append(flags, queue_id, stats, rcpt, relay,
                               dsn.copy(action="deliverable"))
    my_dsn = dsn.copy(action=dsn.action or "delivered")     # smtp, pipe: "relayed"
    if (not flags & bc.DEL_REQ_FLAG_RECORD and not rcpt.dsn_notify & DSN_NOTIFY_SUCCESS) \
            or bc.trace_append(flags, queue_id, stats, rcpt, relay, my_dsn) == 0:
        bc.log_adhoc(queue_id, stats, rcpt, relay, my_dsn, "sent")
        return 0
    msg.warn("%s: %s service failure" % (queue_id, bc._settings["trace_service_name"]))
    return -1


def rec_put_type(stream, rec_type, offset):
    """Overwrite the type byte of the record at offset (rec_put_type()) and flush it, as
    Postfix does, without fsync: the kernel keeps it through any crash of ours, and only
    a crash of the whole system could bring a duplicate delivery -- never a lost one."""
    try:
        stream.seek(offset)
        stream.write(rec_type)
        stream.flush()
    except OSError as exc:
        msg.fatal("update queue file %s: %s" % (getattr(stream, "qpath", stream.name),
                                                msg.strerror(exc)))


def deliver_completed(stream, offset):
    """Mark a recipient done in place: its `R` record becomes `D` (deliver_completed())."""
    if offset == -1:
        return
    if offset <= 0:
        msg.panic("deliver_completed: bad offset %d" % offset)
    rec_put_type(stream, record.DONE, offset)

"""The notification requests of bounce(8) (Postfix's bounce_notify_service.c,
bounce_warn_service.c, bounce_trace_service.c, bounce_one_service.c and
bounce_notify_verp.c).

Who gets a notice depends on the sender of the original message:

    an ordinary sender      the notice, from the null sender; a postmaster copy
                            (headers only) per notify_classes (bounce, delay)
    the null sender         a bounce of a bounce: only the postmaster copy, from
                            double-bounce@$myhostname to 2bounce_notice_recipient
                            (delay_notice_recipient for delays) per notify_classes
    double-bounce@...       nothing: `undeliverable postmaster notification discarded`

The notice says which recipients it is about by the logfile (bounce/, defer/ or trace/
<queue ID>), filtered by their DSN NOTIFY; it is removed once the notice is posted.
"""

import errno

from pyfix.common import msg
from pyfix.common.dsn_mask import (DSN_NOTIFY_DELAY, DSN_NOTIFY_FAILURE, DSN_NOTIFY_MASK,
                                   DSN_RET_FULL, DSN_RET_HDRS)
from pyfix.common.name_mask import name_mask
from pyfix.queue.bounce_clnt import (BOUNCE_FLAG_DELRCPT, DEL_REQ_FLAG_RECORD,
                                     DEL_REQ_FLAG_USR_VRFY)

from pyfix.daemons.bounce import notify_util as nu
from pyfix.daemons.bounce.post_mail import PostMail

DSN_NOTIFY_OVERRIDE = DSN_NOTIFY_MASK
MAIL_ERROR_NAMES = (("bounce", 1 << 5), ("2bounce", 1 << 6), ("data", 1 << 4),
                    ("delay", 1 << 7), ("policy", 1 << 0), ("protocol", 1 << 1),
                    ("resource", 1 << 3), ("software", 1 << 2))
MAIL_ERROR_BOUNCE = 1 << 5
MAIL_ERROR_2BOUNCE = 1 << 6
MAIL_ERROR_DELAY = 1 << 7
POSTMASTER_COPY = True
SENDER_COPY = False


class Context:
    """What every request needs: the configuration, queue layout and templates."""

    def __init__(self, config, layout, templates, hfrom_format):
        self.config = config
        self.layout = layout
        self.templates = templates
        self.hfrom_format = hfrom_format
        self.settings = nu.Settings(config)
        self.double_bounce = "%s@%s" % (config.get("double_bounce_sender"),
                                        config.get("myhostname"))

    def notify_mask(self):
        return name_mask("notify_classes", MAIL_ERROR_NAMES, self.config.get("notify_classes"))

    def is_double_bounce(self, address):
        return address.casefold() == self.double_bounce.casefold()

    def remove_log(self, service, queue_id):
        try:
            self.layout.remove(service, queue_id)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                msg.fatal("remove %s %s: %s" % (service, queue_id, msg.strerror(exc)))


def post_notice(ctx, info, sender, rcpt, postmaster_copy, notify_filter, ret, what,
                boiler=True, one=False):
    """Write and post one notice. Returns 0 when posted (logged `QUEUEID: <what>:
    NEWID`) or when no recipient qualified for it, else non-zero."""
    bounce = PostMail.open_nowait(ctx.config, sender, rcpt, info.smtputf8)
    if bounce is None:
        return 1
    if one:
        # bounce_one_service(): the one recipient was checked before; post even when
        # a part failed, as Postfix does.
        rcpt_entry, dsn = info.one
        if nu.header(bounce, info, rcpt, postmaster_copy, ctx.hfrom_format) \
                and (not boiler or nu.boilerplate(bounce, info)) \
                and nu.recipient_log(bounce, info, rcpt_entry, dsn) \
                and nu.header_dsn(bounce, info) \
                and nu.recipient_dsn(bounce, info, rcpt_entry, dsn):
            nu.original(bounce, info, ret)
        status = bounce.close()
    else:
        count = -1
        if nu.header(bounce, info, rcpt, postmaster_copy, ctx.hfrom_format) \
                and (not boiler or nu.boilerplate(bounce, info)) \
                and _positive(count := nu.diagnostic_log(bounce, info, notify_filter)) \
                and nu.header_dsn(bounce, info) \
                and _positive(nu.diagnostic_dsn(bounce, info, notify_filter)):
            nu.original(bounce, info, ret)
            status = bounce.close()
        else:
            bounce.abandon()
            return 0 if count == 0 else 1
    if status == 0:
        msg.info("%s: %s: %s" % (info.queue_id, what, bounce.queue_id))
    return status


def _positive(count):
    return count > 0


def _postmaster_notice(ctx, info, rcpt, ret, what, one):
    return post_notice(ctx, info, ctx.double_bounce, rcpt, POSTMASTER_COPY,
                       DSN_NOTIFY_OVERRIDE, ret, what, boiler=False, one=one)


def _notify(ctx, info, flags, service, queue_id, recipient, dsn_ret, kind, one=False):
    """The common shape of bounce_notify_service(), bounce_warn_service() and
    bounce_one_service(); kind is "non-delivery" or "delay"."""
    mask = ctx.notify_mask()
    delay = kind == "delay"
    pm_class = MAIL_ERROR_DELAY if delay else MAIL_ERROR_BOUNCE
    pm_rcpt = ctx.config.get("delay_notice_recipient" if delay else "bounce_notice_recipient")
    status = 1
    if ctx.is_double_bounce(recipient):
        msg.warn("%s: undeliverable postmaster notification discarded" % queue_id)
        status = 0
    elif not recipient:
        if not mask & (MAIL_ERROR_DELAY if delay else MAIL_ERROR_2BOUNCE | MAIL_ERROR_BOUNCE):
            status = 0
        else:
            status = _postmaster_notice(
                ctx, info, pm_rcpt if delay else ctx.config.get("2bounce_notice_recipient"),
                DSN_RET_FULL, "postmaster %s notification" % kind, one)
    else:
        if one and info.one[0].dsn_notify and not info.one[0].dsn_notify & DSN_NOTIFY_FAILURE:
            status = 0
        else:
            ret = DSN_RET_HDRS if delay else (dsn_ret or DSN_RET_FULL)
            status = post_notice(ctx, info, "", recipient, SENDER_COPY,
                                 DSN_NOTIFY_DELAY if delay else DSN_NOTIFY_FAILURE, ret,
                                 "sender %s notification" % kind, one=one)
        if status == 0 and mask & pm_class:
            pm_status = _postmaster_notice(ctx, info, pm_rcpt, DSN_RET_HDRS,
                                           "postmaster %s notification" % kind, one)
            if pm_status:
                msg.warn("%s: postmaster notice failed while %s %s"
                         % (queue_id, "warning" if delay else "bouncing to", recipient))
    return status


def bounce_notify_service(ctx, flags, service, queue_name, queue_id, encoding, smtputf8,
                          recipient, dsn_envid, dsn_ret):
    """FLUSH: the non-delivery report of the bounce (or defer) log, then the log goes."""
    info = nu.BounceInfo.open(ctx.settings, ctx.layout, service, queue_name, queue_id,
                              encoding, smtputf8, dsn_envid, ctx.templates.failure)
    try:
        status = _notify(ctx, info, flags, service, queue_id, recipient, dsn_ret,
                         "non-delivery")
        if status == 0 and flags & BOUNCE_FLAG_DELRCPT:
            info.delrcpt(info.entries())
        if status == 0:
            ctx.remove_log(service, queue_id)
    finally:
        info.close()
    return status


def bounce_warn_service(ctx, flags, service, queue_name, queue_id, encoding, smtputf8,
                        recipient, dsn_envid, dsn_ret):
    """WARN: a delay warning from the defer log, which stays."""
    info = nu.BounceInfo.open(ctx.settings, ctx.layout, service, queue_name, queue_id,
                              encoding, smtputf8, dsn_envid, ctx.templates.delay)
    try:
        return _notify(ctx, info, flags, service, queue_id, recipient, dsn_ret, "delay")
    finally:
        info.close()


def bounce_trace_service(ctx, flags, service, queue_name, queue_id, encoding, smtputf8,
                         recipient, dsn_envid, dsn_ret):
    """TRACE: the delivery report of the trace log (sendmail -v, -bv, NOTIFY=SUCCESS)."""
    if ctx.is_double_bounce(recipient):
        msg.info("%s: not sending trace/success notification for double-bounce message"
                 % queue_id)
        return 0
    if not recipient:
        if not ctx.notify_mask() & MAIL_ERROR_2BOUNCE:
            msg.info("%s: not sending trace/success notification for single-bounce "
                     "message" % queue_id)
            ctx.remove_log(service, queue_id)
            return 0
        recipient = ctx.config.get("2bounce_notice_recipient")
        sender = ctx.double_bounce
    else:
        sender = ""
    template = ctx.templates.verify if flags & (DEL_REQ_FLAG_USR_VRFY | DEL_REQ_FLAG_RECORD) \
        else ctx.templates.success
    info = nu.BounceInfo.open(ctx.settings, ctx.layout, service, queue_name, queue_id,
                              encoding, smtputf8, dsn_envid, template)
    try:
        if info.log is None:
            if msg.verbose:
                msg.info("%s: no trace file -- not sending a notification" % queue_id)
            return 0
        status = post_notice(ctx, info, sender, recipient, SENDER_COPY,
                             DSN_NOTIFY_OVERRIDE, DSN_RET_HDRS,
                             "sender delivery status notification")
        if status == 0:
            ctx.remove_log(service, queue_id)
        return status
    finally:
        info.close()


def bounce_one_service(ctx, flags, queue_name, queue_id, encoding, smtputf8, sender,
                       dsn_envid, dsn_ret, rcpt, dsn):
    """ONE: a non-delivery report for one recipient, without a logfile."""
    info = nu.BounceInfo(ctx.settings, ctx.layout, "none", queue_name, queue_id, encoding,
                         smtputf8, dsn_envid, ctx.templates.failure, one=(rcpt, dsn))
    try:
        status = _notify(ctx, info, flags, "none", queue_id, sender, dsn_ret,
                         "non-delivery", one=True)
        if status == 0 and flags & BOUNCE_FLAG_DELRCPT:
            info.delrcpt([info.one])
        return status
    finally:
        info.close()


def bounce_notify_verp(ctx, flags, service, queue_name, queue_id, encoding, smtputf8,
                       recipient, dsn_envid, dsn_ret, verp_delims):
    """VERP: one non-delivery report per failed recipient, each to the VERP form of the
    sender (prefix+user=domain@origin)."""
    if not recipient:
        msg.panic("bounce_notify_verp: attempt to bounce a single bounce")
    if ctx.is_double_bounce(recipient):
        msg.panic("bounce_notify_verp: attempt to bounce a double bounce")
    info = nu.BounceInfo.open(ctx.settings, ctx.layout, service, queue_name, queue_id,
                              encoding, smtputf8, dsn_envid, ctx.templates.failure)
    try:
        if info.log is None:
            rcpt = nu.Recipient(address="(recipient address unavailable)")
            dsn = nu.Dsn(status="5.0.0", reason="(error report unavailable)")
            return bounce_one_service(ctx, flags, queue_name, queue_id, encoding, smtputf8,
                                      recipient, dsn_envid, dsn_ret, rcpt, dsn)
        status = 0
        mask = ctx.notify_mask()
        for rcpt, dsn in list(info.entries()):
            info.one = (rcpt, dsn)
            if rcpt.dsn_notify and not rcpt.dsn_notify & DSN_NOTIFY_FAILURE:
                status = 0
            else:
                status = post_notice(ctx, info, "", verp_sender(verp_delims, recipient, rcpt),
                                     SENDER_COPY, DSN_NOTIFY_FAILURE,
                                     dsn_ret or DSN_RET_FULL,
                                     "sender non-delivery notification", one=True)
                if status != 0:
                    break
                if flags & BOUNCE_FLAG_DELRCPT:
                    info.delrcpt([info.one])
            if mask & MAIL_ERROR_BOUNCE:
                if _postmaster_notice(ctx, info, ctx.config.get("bounce_notice_recipient"),
                                      DSN_RET_HDRS, "postmaster non-delivery notification",
                                      True):
                    msg.warn("%s: postmaster notice failed while bouncing to %s"
                             % (queue_id, recipient))
        if status == 0:
            ctx.remove_log(service, queue_id)
        return status
    finally:
        info.close()


def verp_sender(delims, sender, rcpt):
    """global/verp_sender.c: prefix@origin becomes prefix+user=domain@origin, from the
    recipient's original address when it has one."""
    at = sender.rfind("@")
    send_local = sender if at < 0 else sender[:at]
    recipient = rcpt.orig_addr or rcpt.address
    rat = recipient.rfind("@")
    out = send_local + delims[0] + (recipient if rat < 0 else recipient[:rat])
    if rat >= 0 and recipient[rat + 1:]:
        out += delims[1] + recipient[rat + 1:]
    if at >= 0 and sender[at + 1:]:
        out += "@" + sender[at + 1:]
    return out

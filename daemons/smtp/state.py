"""The state of one delivery request and the fate of its recipients (Postfix's
smtp/smtp_state.c, smtp_rcpt.c and smtp_trouble.c).

During a session each recipient that has not been dealt with is either delivered
(rcpt_done: `status=sent`), failed (rcpt_fail: deferred or bounced), or kept for the
next server (a soft error while this is not the last server to try: logged as
`QUEUEID: <reason>`, not `status=deferred`). rcpt_cleanup() after each session leaves
only the kept recipients for the next one. A failure of the whole session or message
(site_fail, mesg_fail, stream_except) does the same to every recipient left; a site
failure also tells qmgr the destination is in trouble (request.hop_status).
"""

import time

from pyfix.common import msg
from pyfix.common.delivered_hdr import delivered_hdr_find, delivered_hdr_init
from pyfix.common.dsn_mask import DSN_NOTIFY_SUCCESS
from pyfix.queue import delivery_status as status
from pyfix.queue.bounce_clnt import Dsn
from pyfix.queue.deliver_request import DEL_REQ_FLAG_SUCCESS

KEEP = 1        # send to the next server
DROP = 2        # dealt with: remove from the request

THROTTLE = True
NOTHROTTLE = False


def now_tv():
    now = time.time()
    return int(now), int(now * 1000000) % 1000000


class Why:
    """The reason of the latest failure (Postfix's DSN_BUF): status, reason and the
    remote MTA's reply when there is one."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.status = ""
        self.reason = ""
        self.mtype = self.mname = self.dtype = self.dtext = ""

    def simple(self, dsn_status, reason):
        self.reset()
        self.status = dsn_status
        self.reason = reason

    def has_dsn(self):
        return bool(self.status)

    def is_soft(self):
        return self.status.startswith("4")

    def is_hard(self):
        return self.status.startswith("5")

    def dsn(self, action=""):
        return Dsn(self.status, self.reason, action, self.dtype, self.dtext, self.mtype,
                   self.mname)


class SmtpState:
    """One delivery request in progress (SMTP_STATE)."""

    def __init__(self, request, params):
        self.request = request
        self.params = params
        self.lmtp = params.lmtp
        self.why = Why()
        self.session = None
        self.status = 0
        self.todo = list(request.rcpts)       # rcpt_list.info[0 .. rcpt_left)
        self.marks = {}
        self.final_server = False             # SMTP_MISC_FLAG_FINAL_SERVER
        self.final_nexthop = False
        self.first_nexthop = False
        self.loop_detect = False
        self.complete_session = False
        self.conn_load = False                # may take a session from scache
        self.conn_store = False               # may give a session to scache
        self.cache_nexthop = None             # SCACHE_REQUEST_NEXTHOP
        self.cli_flags = set()                # master.cf flags= (D, O, R, X)

    # ---- recipient bookkeeping (smtp_rcpt.c) ---------------------------------------

    def left(self):
        return len(self.todo)

    def is_marked(self, rcpt):
        return id(rcpt) in self.marks

    def keep(self, rcpt):
        self.marks[id(rcpt)] = KEEP

    def drop(self, rcpt):
        self.marks[id(rcpt)] = DROP

    def unmarked(self):
        return [rcpt for rcpt in self.todo if id(rcpt) not in self.marks]

    def rcpt_cleanup(self):
        """Forget the recipients that were dealt with; keep the others (and those not
        tried) for the next server."""
        self.todo = [rcpt for rcpt in self.todo if self.marks.get(id(rcpt)) != DROP]
        self.marks = {}

    def relay(self):
        return self.session.namaddrport if self.session is not None else "none"

    # ---- outcomes -----------------------------------------------------------------

    def rcpt_done(self, reply, rcpt):
        """A recipient accepted by the final reply: `status=sent (<reply>)`."""
        request = self.request
        session = self.session
        if "DSN" in session.features:
            rcpt.dsn_notify &= ~DSN_NOTIFY_SUCCESS
        action = "relayed"
        if "DSN" not in session.features and self.lmtp \
                and "final_delivery" in self.cli_flags:
            action = "delivered"
        dsn = Dsn(reply.dsn, reply.text, action, "smtp", reply.text, "dns", session.host)
        result = status.sent(request.trace_flags, request.queue_id, request.stats, rcpt,
                             session.namaddrport, dsn)
        if result == 0 and request.flags & DEL_REQ_FLAG_SUCCESS:
            status.deliver_completed(request.fp, rcpt.offset)
        self.drop(rcpt)
        self.status |= result

    def _fill_dsn(self, mta_name, dsn_status, reply_text, reason):
        """vsmtp_fill_dsn(): a server reply without a 4xx/5xx status is a protocol
        error (5.5.0)."""
        why = self.why
        why.reset()
        if mta_name and dsn_status and dsn_status[0] not in "45":
            reason = "Protocol error: " + reason
            dsn_status = "5.5.0"
        why.status = dsn_status
        why.reason = reason
        if mta_name:
            why.mtype, why.mname = "dns", mta_name
        if reply_text is not None:
            why.dtype, why.dtext = "smtp", reply_text

    def _soft_for_now(self):
        """A soft error (or a hard one under soft_bounce) while another server is
        left to try: keep the recipients."""
        why = self.why
        soft = why.is_soft() or (why.is_hard() and self.params.soft_bounce)
        return soft and not self.final_server

    def _append(self, rcpt):
        request = self.request
        append = status.defer_append if self.why.is_soft() else status.bounce_append
        result = append(request.trace_flags, request.queue_id, request.stats, rcpt,
                        self.relay(), self.why.dsn())
        if result == 0:
            status.deliver_completed(request.fp, rcpt.offset)
        self.drop(rcpt)
        return result

    def rcpt_fail(self, rcpt, mta_name, reply, reason):
        """One recipient failed (smtp_rcpt_fail())."""
        self._fill_dsn(mta_name, reply.dsn, reply.text, reason)
        if self._soft_for_now():
            msg.info("%s: %s" % (self.request.queue_id, self.why.reason))
            self.keep(rcpt)
        else:
            self.status |= self._append(rcpt)

    def bulk_fail(self, throttle):
        """Every recipient left failed (smtp_bulk_fail()); -1."""
        request = self.request
        if self._soft_for_now():
            msg.info("%s: %s" % (request.queue_id, self.why.reason))
            for rcpt in self.unmarked():
                self.keep(rcpt)
        else:
            stats = request.stats
            if stats.conn_setup_done[0] == 0:
                stats.conn_setup_done = now_tv()
                stats.deliver_done = stats.conn_setup_done
            else:
                stats.deliver_done = now_tv()
            aggregate = 0
            for rcpt in self.unmarked():
                aggregate |= self._append(rcpt)
            self.status |= aggregate
            if not self.complete_session and throttle and aggregate \
                    and request.hop_status is None:
                request.hop_status = self.why.dsn()
        if throttle and self.session is not None:
            self.session.reusable = False
            self.cache_nexthop = None         # DONT_CACHE_THROTTLED_SESSION
        return -1

    def misc_fail(self, throttle, mta_name, reply, reason):
        """smtp_site_fail() (throttle) and smtp_mesg_fail() (not): a failure that ends
        the whole transaction with this server. reply None: a local problem."""
        if reply is None:
            self._fill_dsn(None, None, None, reason)
        else:
            self._fill_dsn(mta_name, reply.dsn, reply.text, reason)
        return self.bulk_fail(throttle)

    def site_fail(self, mta_name, reply, reason, dsn_status=None):
        if dsn_status is not None:
            self.why.reset()
            return self._local_fail(THROTTLE, dsn_status, reason)
        return self.misc_fail(THROTTLE, mta_name, reply, reason)

    def mesg_fail(self, mta_name, reply, reason, dsn_status=None):
        if dsn_status is not None:
            return self._local_fail(NOTHROTTLE, dsn_status, reason)
        return self.misc_fail(NOTHROTTLE, mta_name, reply, reason)

    def _local_fail(self, throttle, dsn_status, reason):
        """A failure found by this MTA (SMTP_RESP_FAKE with DSN_BY_LOCAL_MTA)."""
        self.why.simple(dsn_status, reason)
        return self.bulk_fail(throttle)

    def stream_except(self, failure):
        """A lost connection or timeout (smtp_stream_except()), or another failure of
        the session raised as SessionFailure (TLS, SASL)."""
        self.why.simple(failure.dsn, failure.text)
        if self.session is not None:
            self.session.reusable = False
        return self.bulk_fail(THROTTLE)

    def sess_fail(self):
        return self.bulk_fail(THROTTLE)


def reject_request(state, service, dsn_status, reason):
    """reject_deliver_request(): every recipient deferred or bounced, relay=<service>."""
    request = state.request
    append = status.bounce_append if dsn_status.startswith("5") else status.defer_append
    result = 0
    for rcpt in request.rcpts:
        done = append(request.trace_flags, request.queue_id, request.stats, rcpt, service,
                      Dsn(dsn_status, reason))
        if done == 0:
            status.deliver_completed(request.fp, rcpt.offset)
        result |= done
    return result


def check_cli_flags(state, service):
    """The D and O flags need one recipient per delivery, and D refuses a message
    that was already delivered to the recipient (a Delivered-To: loop). A status
    when the request was rejected, else None."""
    request = state.request
    for flag, letter in (("delivered_to", "D"), ("orig_rcpt", "O")):
        if flag in state.cli_flags and len(request.rcpts) > 1:
            msg.warn("flag `%s' requires %s_destination_recipient_limit = 1"
                     % (letter, service))
            return reject_request(state, service, "4.3.5",
                                  "mail system configuration error")
        if flag == "delivered_to" and flag in state.cli_flags:
            info = delivered_hdr_init(request.fp, request.data_offset)
            if delivered_hdr_find(info, request.rcpts[0].address):
                return reject_request(state, service, "5.4.6",
                                      "mail forwarding loop for %s"
                                      % request.rcpts[0].address)
    return None

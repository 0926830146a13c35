"""The bookkeeping of every restriction (Postfix's smtpd_check.c: smtpd_check_reject,
defer_if, smtpd_acl_permit, log_whatsup, reject_dict_retry, reject_server_error).

A restriction answers DUNNO (0, no decision), OK (1) or REJECT (2); a table error is
ERR_RETRY or ERR_CONFIG (negative). reject() formats the reply, applies warn_if_reject,
the pending defer_if_reject, soft_bounce and the code/DSN consistency rules, and logs
Postfix's `NOQUEUE: reject: RCPT from name[addr]: ...; from=<> to=<> proto= helo=<>`
line. Postfix leaves a restriction list with longjmp() after a table or configuration
error; here that is the Abort exception, caught by the entry points.
"""

from pyfix.common import msg
from pyfix.common.dsn_util import dsn_valid
from pyfix.common.info_log_addr_form import (info_log_addr_form_recipient,
                                             info_log_addr_form_sender)

DUNNO = 0
OK = 1
REJECT = 2

# mail_error.h: the classes of errors, for error_mask and notify_classes.
ERROR_POLICY = 1 << 0
ERROR_PROTOCOL = 1 << 1
ERROR_BOUNCE = 1 << 2
ERROR_SOFTWARE = 1 << 3
ERROR_RESOURCE = 1 << 4
ERROR_DATA = 1 << 7

# smtpd_dsn_fix.h: what a reply says was rejected.
NAME_CLIENT = "Client host"
NAME_REV_CLIENT = "Unverified Client host"
NAME_CCERT = "Client certificate"
NAME_SASL_USER = "SASL login name"
NAME_HELO = "Helo command"
NAME_SENDER = "Sender address"
NAME_RECIPIENT = "Recipient address"
NAME_ETRN = "Etrn command"
NAME_DATA = "Data command"
NAME_EOD = "End-of-data"

# smtpd.h: the state->flags bits this package reads.
FLAG_ILL_PIPELINING = 1 << 1
FLAG_SMTPUTF8 = 1 << 3

# smtpd.h: name_status / reverse_name_status.
PEER_CODE_OK = 2
PEER_CODE_TEMP = 4
PEER_CODE_PERM = 5
PEER_CODE_FORGED = 6

_SND_DSN = "4.1.7"
_DSN_MAP = {"1": (_SND_DSN, "4.1.1"), "2": ("4.1.8", "4.1.2"), "3": ("4.1.7", "4.1.3"),
            "4": (_SND_DSN, "4.1.4"), "5": ("4.1.0", "4.1.5"), "6": (_SND_DSN, "4.1.6"),
            "7": ("4.1.7", "4.1.3"), "8": ("4.1.8", "4.1.2")}


class Abort(Exception):
    """Postfix's longjmp(smtpd_check_buf, status): leave the restriction lists."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


class Defer:
    """One SMTPD_DEFER: a deferral held back until the outcome is known."""

    __slots__ = ("active", "error_class", "code", "dsn", "reason")

    def __init__(self):
        self.active = False
        self.error_class = 0
        self.code = 0
        self.dsn = ""
        self.reason = ""


def smtpd_dsn_fix(status, reply_class):
    """A mailbox-status DSN (x.1.y) turned into the sender's or the recipient's form, or
    into 4.0.0 when neither address is being reported (smtpd_dsn_fix.c)."""
    if not (status[:1].isdigit() and status[1:4] == ".1."):
        return status
    if reply_class == NAME_SENDER:
        result = _DSN_MAP.get(status[4:], ("4.1.0", "4.1.0"))[0]
    elif reply_class == NAME_RECIPIENT:
        result = _DSN_MAP.get(status[4:], ("4.1.0", "4.1.0"))[1]
    else:
        result = "4.0.0"
    if status[2:] != result[2:]:
        msg.info("mapping DSN status %s into %s status %s%s"
                 % (status, reply_class, status[0], result[1:]))
    return result


def log_whatsup(state, whatsup, text):
    """`QUEUEID: reject: RCPT from name[addr]: text; from=<s> to=<r> proto=P helo=<h>`."""
    line = "%s: %s: %s from %s: %s;" % (state.queue_id or "NOQUEUE", whatsup, state.where,
                                        state.namaddr, text)
    if state.sender is not None:
        line += " from=<%s>" % info_log_addr_form_sender(state.sender)
    if state.recipient is not None:
        line += " to=<%s>" % info_log_addr_form_recipient(state.recipient)
    if state.protocol:
        line += " proto=%s" % state.protocol
    if state.helo_name is not None:
        line += " helo=<%s>" % state.helo_name
    msg.info(line)


class Decisions:
    """The reply and logging rules shared by all restrictions; SmtpdCheck inherits them."""

    soft_bounce = False
    perm_log = None               # string_list of smtpd_log_access_permit_actions

    def reject(self, state, error_class, code, dsn, text):
        """smtpd_check_reject(): REJECT (or 0 when only warning), the reply in
        state.check_reply."""
        warn_only = bool(state.check_warn_if_reject) and error_class not in (
            ERROR_SOFTWARE, ERROR_RESOURCE, ERROR_DATA)
        whatsup = "reject_warning" if warn_only else "reject"
        state.error_mask = getattr(state, "error_mask", 0) | error_class
        reply = "%d %s %s" % (code, dsn, text)
        if code < 400 or code > 599:
            msg.warn("SMTP reply code configuration error: %s" % reply)
            reply = "450 4.7.1 Service unavailable"
        if not dsn_valid(reply[4:]):
            msg.warn("DSN detail code configuration error: %s" % reply)
            reply = "450 4.7.1 Service unavailable"
        reply = msg.printable(reply.encode("utf-8", "surrogateescape")[:510]
                              .decode("utf-8", "surrogateescape"), " ")
        pending = state.defer_if_reject
        if not warn_only and pending.active and reply[0] == "5":
            state.check_warn_if_reject = 0
            pending.active = False
            return self.reject(state, pending.error_class, pending.code, pending.dsn,
                               pending.reason)
        if self.soft_bounce and reply[0] == "5":
            reply = "4" + reply[1:]
        reply = reply[:4] + reply[0] + reply[5:]
        state.check_reply = reply
        log_whatsup(state, whatsup, reply)
        return DUNNO if warn_only else REJECT

    @staticmethod
    def defer_if(defer, error_class, code, dsn, text):
        """Remember the first reason for a deferral of this kind; no decision now."""
        if not defer.active:
            defer.active = True
            defer.error_class = error_class
            defer.code = code
            defer.dsn = dsn
            defer.reason = text
        return DUNNO

    def defer_if_permit(self, tempfail_act, state, error_class, code, dsn, text):
        """DEFER_IF_PERMITn(): defer_if_permit unless warn_if_reject is on or the
        tempfail action is plain defer, else an immediate reject."""
        if not state.check_warn_if_reject and tempfail_act:
            return self.defer_if(state.defer_if_permit, error_class, code, dsn, text)
        return self.reject(state, error_class, code, dsn, text)

    def defer_if_reject(self, state, error_class, code, dsn, text):
        return self.defer_if(state.defer_if_reject, error_class, code, dsn, text)

    def acl_permit(self, state, action, reply_class, reply_name, extra=""):
        """smtpd_acl_permit(): OK, logged as `permit:` when the action is listed in
        smtpd_log_access_permit_actions (and no deferral overrules it)."""
        if not state.defer_if_permit.active and self.perm_log is not None \
                and self.perm_log.match(action):
            # Postfix always appends " " and its format arguments; with none (its
            # NO_PRINT_ARGS) that leaves a trailing space.
            text = "action=%s for %s=%s %s" % (action, reply_class, reply_name, extra)
            log_whatsup(state, "permit", text)
        return OK

    def dict_retry(self, state, reply_name):
        """reject_dict_retry(): 451 4.3.0 and leave the restriction lists."""
        raise Abort(self.reject(state, ERROR_DATA, 451, "4.3.0",
                                "<%s>: Temporary lookup failure" % reply_name))

    def server_error(self, state):
        """reject_server_error(): 451 4.3.5 and leave the restriction lists."""
        raise Abort(self.reject(state, ERROR_SOFTWARE, 451, "4.3.5",
                                "Server configuration error"))

    def addr_find(self, state, reply_name, maps, key, find):
        """check_mail_addr_find(): a lookup whose table error ends the checks."""
        result = find(maps, key)
        if result is not None or not maps.error:
            return result
        if maps.error == -1:
            self.dict_retry(state, reply_name)
        self.server_error(state)

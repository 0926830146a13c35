"""virtual(8): the virtual mailbox delivery agent (Postfix's src/virtual/: virtual.c,
recipient.c, mailbox.c, maildir.c, unknown.c).

Recipients in $virtual_mailbox_domains reach this agent (trivial-rewrite's virtual
class, virtual_transport). Each recipient address, case-folded, is looked up in
virtual_mailbox_maps (unknown: bounced `unknown user`), virtual_uid_maps and
virtual_gid_maps (uids below virtual_minimum_uid refused, missing or bad entries
deferred as configuration errors). The mailbox is $virtual_mailbox_base/<result>: a
Maildir when the result ends in `/` (new/ and tmp/ created as needed), else an mbox
locked with virtual_mailbox_lock; both are written with the recipient's uid and gid
(effective ids only: the process keeps real uid root and rests as mail_owner), with
Return-Path:, X-Original-To: and Delivered-To: in front. virtual_mailbox_limit is the
process's file size limit, so an mbox that would outgrow it bounces with 5.2.2.
"""

import errno
import os
import pwd
import stat

from pyfix.common import info_log_addr_form as log_form
from pyfix.common import mail_copy as mc
from pyfix.common import msg
from pyfix.common.dot_lockfile import set_eugid
from pyfix.common.dsn_buf import DsnBuf
from pyfix.common.hostinfo import get_hostname
from pyfix.common.maildir import maildir_write
from pyfix.common.mbox_open import mbox_lock_mask, mbox_open, mbox_release
from pyfix.maps import dict as dict_module
from pyfix.maps.addr_find import AddressRules, mail_addr_find
from pyfix.maps.dict_utf8 import casefold
from pyfix.maps.maps import Maps
from pyfix.queue import bounce_clnt
from pyfix.queue import delivery_status as status
from pyfix.queue.deliver_request import (DEL_REQ_FLAG_SUCCESS, DEL_REQ_TRACE_ONLY_MASK,
                                         deliver_request_done, deliver_request_read)

from pyfix.daemons.skeleton.single import single_server_main

# DICT_FLAG_PARANOID: no regexp substitution, no proxy, no unauthorized tables.
MAP_FLAGS = dict_module.FLAG_LOCK | dict_module.FLAG_NO_REGSUB | dict_module.FLAG_NO_PROXY \
    | dict_module.FLAG_NO_UNAUTH | dict_module.FLAG_UTF8_REQUEST
DEL_STAT_DEFER = -1
MAILDIR_COPY_FLAGS = mc.MAIL_COPY_TOFILE | mc.MAIL_COPY_RETURN_PATH \
    | mc.MAIL_COPY_DELIVERED | mc.MAIL_COPY_ORIG_RCPT


class Virtual:
    """The tables and settings of one virtual process (post_init())."""

    def __init__(self, config):
        self.config = config
        self.mailbox_maps = Maps("virtual_mailbox_maps", config.get("virtual_mailbox_maps"),
                                 MAP_FLAGS)
        self.uid_maps = Maps("virtual_uid_maps", config.get("virtual_uid_maps"), MAP_FLAGS)
        self.gid_maps = Maps("virtual_gid_maps", config.get("virtual_gid_maps"), MAP_FLAGS)
        self.lock_mask = mbox_lock_mask(config.get_str("virtual_mailbox_lock"))
        self.base = config.get_str("virtual_mailbox_base")
        self.minimum_uid = config.get_int("virtual_minimum_uid")
        self.strict_owner = config.get_bool("strict_mailbox_ownership")
        self.rules = AddressRules(config)
        self.hostname = get_hostname()
        owner = _getpwnam(config.get("mail_owner")) if os.getuid() == 0 else None
        self.owner_ids = (owner.pw_uid, owner.pw_gid) if owner else None


def _getpwnam(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


class Delivery:
    """One recipient of one request (LOCAL_STATE with its DELIVER_ATTR)."""

    def __init__(self, request, rcpt, service):
        self.request = request
        self.rcpt = rcpt
        self.relay = service
        self.user = casefold(rcpt.address)
        self.why = DsnBuf()

    @property
    def flags(self):
        return self.request.trace_flags

    def _args(self):
        return (self.flags, self.request.queue_id, self.request.stats, self.rcpt,
                self.relay, self.why.to_dsn())

    def sent(self, dsn_status, text):
        self.why.simple(dsn_status, text)
        return status.sent(*self._args())

    def defer(self, dsn_status, text):
        self.why.simple(dsn_status, text)
        return status.defer_append(*self._args())

    def bounce(self, dsn_status, text):
        self.why.simple(dsn_status, text)
        return status.bounce_append(*self._args())

    def failed(self):
        """The failure in why: deferred when its status is 4.x.x, else bounced."""
        append = status.defer_append if self.why.status.startswith("4") \
            else status.bounce_append
        return append(*self._args())

    def trace_only(self):
        return self.request.flags & DEL_REQ_TRACE_ONLY_MASK

    def rewind(self):
        fp = self.request.fp
        try:
            fp.seek(self.request.data_offset)
        except OSError as exc:
            msg.fatal("seek message file %s: %s" % (fp.qpath, msg.strerror(exc)))


class _EffectiveIds:
    """set_eugid() to the recipient for the delivery, back to mail_owner afterwards
    (only a process with real uid root switches)."""

    def __init__(self, uid, gid, owner_ids):
        self.target = (uid, gid)
        self.owner_ids = owner_ids

    def __enter__(self):
        if os.getuid() == 0:
            set_eugid(*self.target)

    def __exit__(self, *exc):
        if os.getuid() == 0:
            set_eugid(*(self.owner_ids or (0, 0)))


def deliver_mailbox_file(agent, delivery, mailbox, uid, gid):
    """Append to the mbox file (mailbox.c: deliver_mailbox_file())."""
    if delivery.trace_only():
        return delivery.sent("2.0.0", "delivers to mailbox")
    delivery.rewind()
    why = delivery.why
    copy_status = mc.MAIL_COPY_STAT_WRITE
    with _EffectiveIds(uid, gid, agent.owner_ids):
        mbox = mbox_open(mailbox, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o600, -1, -1,
                         agent.lock_mask, "4.2.0", why)
        if mbox is not None:
            if not stat.S_ISREG(mbox.st.st_mode):
                mbox.fp.close()
                msg.warn("recipient %s: destination %s is not a regular file"
                         % (delivery.rcpt.address, mailbox))
                why.simple("5.3.5", "mail system configuration error")
            elif agent.strict_owner and mbox.st.st_uid != uid:
                mbox.fp.close()
                why.simple("4.2.0", "destination %s is not owned by recipient" % mailbox)
                msg.warn('specify "strict_mailbox_ownership = no" to ignore mailbox '
                         'ownership mismatch')
            else:
                try:
                    mbox.fp.seek(0, os.SEEK_END)
                except OSError as exc:
                    msg.fatal("deliver_mailbox_file: seek mailbox file %s: %s"
                              % (mailbox, msg.strerror(exc)))
                copy_status = mc.mail_copy(delivery.request.sender,
                                           delivery.rcpt.orig_addr, delivery.rcpt.address,
                                           delivery.request.fp, mbox.fp, mc.MAIL_COPY_MBOX,
                                           "\n", why)
            mbox_release(mbox)
    if copy_status & mc.MAIL_COPY_STAT_CORRUPT:
        return DEL_STAT_DEFER
    if copy_status:
        why.prepend("delivery failed to mailbox %s: " % mailbox)
        return delivery.failed()
    return delivery.sent("2.0.0", "delivered to mailbox")


def deliver_maildir(agent, delivery, maildir, uid, gid):
    """Write into the Maildir (maildir.c: deliver_maildir()); failures defer unless
    their status is a hard one (a full mailbox)."""
    if delivery.trace_only():
        return delivery.sent("2.0.0", "delivers to maildir")
    delivery.rewind()
    why = delivery.why
    why.errno = 0
    copy_status = maildir_write(maildir, delivery.request.fp, delivery.request.sender,
                                delivery.rcpt.orig_addr, delivery.rcpt.address,
                                MAILDIR_COPY_FLAGS, uid, gid, "4.2.0", why, agent.hostname)
    if copy_status & mc.MAIL_COPY_STAT_CORRUPT:
        return DEL_STAT_DEFER
    if copy_status:
        if why.errno == errno.EACCES:
            msg.warn("maildir access problem for UID/GID=%d/%d: %s"
                     % (uid, gid, why.reason))
            msg.warn("perhaps you need to create the maildirs in advance")
        why.prepend("maildir delivery failed: ")
        return delivery.failed()
    return delivery.sent("2.0.0", "delivered to maildir")


def _atol(text):
    """atol(): the leading decimal number of text, 0 when there is none."""
    body = text.lstrip(" \t\n\v\f\r")
    sign = -1 if body[:1] == "-" else 1
    if body[:1] in "+-" and body:
        body = body[1:]
    digits = ""
    for ch in body:
        if not ("0" <= ch <= "9"):
            break
        digits += ch
    return sign * int(digits) if digits else 0


def deliver_mailbox(agent, delivery):
    """Look the recipient up and deliver (mailbox.c: deliver_mailbox()); None when the
    recipient is not in virtual_mailbox_maps, else the delivery status."""
    if not agent.base.startswith("/"):
        msg.fatal("do not specify relative pathname: virtual_mailbox_base = %s"
                  % agent.base)
    user = delivery.user
    found = mail_addr_find(agent.mailbox_maps, user, agent.rules)
    if found.value is None:
        if not agent.mailbox_maps.error:
            return None
        # Postfix prints %m here; a table error leaves errno 0: "Application error".
        msg.warn("table %s: lookup %s: Application error" % (agent.mailbox_maps.title,
                                                             user))
        return delivery.defer("4.3.5", "mail system configuration error")
    mailbox = "%s/%s" % (agent.base, found.value)
    ids = []
    for maps, check, what in ((agent.uid_maps, lambda n: n < agent.minimum_uid, "uid"),
                              (agent.gid_maps, lambda n: n <= 0, "gid")):
        value = mail_addr_find(maps, user, agent.rules).value
        if value is None:
            msg.warn("recipient %s: not found in %s" % (user, maps.title))
            return delivery.defer("4.3.5", "mail system configuration error")
        number = _atol(value)
        if check(number):
            msg.warn("recipient %s: bad %s %s in %s" % (user, what, value, maps.title))
            return delivery.defer("4.3.5", "mail system configuration error")
        ids.append(number)
    uid, gid = ids
    if mailbox.endswith("/"):
        return deliver_maildir(agent, delivery, mailbox, uid, gid)
    return deliver_mailbox_file(agent, delivery, mailbox, uid, gid)


def deliver_recipient(agent, delivery):
    """recipient.c + unknown.c: the mailbox, or `unknown user`."""
    result = deliver_mailbox(agent, delivery)
    if result is None:
        result = delivery.bounce("5.1.1", 'unknown user: "%s"' % delivery.user)
    return result


_agent = None


def virtual_service(conn, server):
    if server.argv:
        msg.fatal("unexpected command-line argument: %s" % server.argv[0])
    stream, request = deliver_request_read(conn, server.config, server.name)
    if request is None:
        return
    result = 0
    for rcpt in request.rcpts:
        rcpt_status = deliver_recipient(_agent, Delivery(request, rcpt, server.name))
        if rcpt_status == 0 and request.flags & DEL_REQ_FLAG_SUCCESS:
            status.deliver_completed(request.fp, rcpt.offset)
        result |= rcpt_status
    deliver_request_done(stream, request, result)


def pre_init(server):
    """virtual_mailbox_limit becomes the file size limit; it may not be smaller than
    message_size_limit, or the queue file could not be updated."""
    mc.set_mailbox_limit(server.config, "virtual_mailbox_limit")


def post_init(server):
    """Open the tables, then rest as mail_owner (set_eugid())."""
    global _agent
    config = server.config
    bounce_clnt.configure(config)
    mc.configure(config)
    log_form.init(config)
    _agent = Virtual(config)
    if _agent.owner_ids is not None:
        set_eugid(*_agent.owner_ids)


def main(argv):
    single_server_main(argv, virtual_service, pre_init=pre_init, post_init=post_init,
                       privileged=True)

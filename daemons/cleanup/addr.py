"""Envelope addresses: sender, recipients and automatic BCC recipients (Postfix's
cleanup_addr.c).

Every envelope address is rewritten to canonical form in the local context first (an
unqualified address gets @$myorigin), then, when the client allows address mapping,
through the canonical tables for its class and masquerading. The sender
MAILER-DAEMON@$myorigin becomes the null sender. sender_bcc_maps and
recipient_bcc_maps add a BCC recipient (rewritten, canonicalized and masqueraded in
turn) when the client allows automatic BCC.
"""

from pyfix.common import msg
from pyfix.common.dsn_mask import DSN_NOTIFY_NEVER
from pyfix.maps.addr_find import FORM_EXTERNAL, FORM_EXTERNAL_FIRST, mail_addr_find
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record

from pyfix.daemons.cleanup import init, out_recipient
from pyfix.daemons.cleanup.map11 import map11_internal
from pyfix.daemons.cleanup.masquerade import masquerade_internal
from pyfix.daemons.cleanup.out import cleanup_out
from pyfix.daemons.cleanup.rewrite import rewrite_internal
from pyfix.daemons.cleanup.state import SMTPUTF8_REQUESTED, SMTPUTF8_SENDER

MAIL_ADDR_MAIL_DAEMON = "MAILER-DAEMON"
RULE_LOCAL = "local"


def _valid_utf8(address):
    try:
        address.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _map_and_masquerade(state, address, sender):
    """The canonical tables and masquerading of one envelope address class."""
    settings = state.settings
    propagate = settings.ext_prop_mask & init.EXT_PROP_CANONICAL
    if sender:
        own_maps, own_flags = settings.send_canon_maps, settings.send_canon_flags
        canon_class, masq_class = init.CANON_FLAG_ENV_FROM, init.MASQ_FLAG_ENV_FROM
    else:
        own_maps, own_flags = settings.rcpt_canon_maps, settings.rcpt_canon_flags
        canon_class, masq_class = init.CANON_FLAG_ENV_RCPT, init.MASQ_FLAG_ENV_RCPT
    if own_maps is not None and own_flags & canon_class:
        address, _ = map11_internal(state, address, own_maps, propagate)
    if settings.comm_canon_maps is not None and settings.comm_canon_flags & canon_class:
        address, _ = map11_internal(state, address, settings.comm_canon_maps, propagate)
    if settings.masq_domains is not None and settings.masq_flags & masq_class:
        address, _ = masquerade_internal(state, address, settings.masq_domains)
    return address


def _detect_utf8(state, address, sender=False):
    if state.settings.smtputf8_enable and address and not address.isascii() \
            and _valid_utf8(address):
        if sender:
            state.smtputf8 |= SMTPUTF8_SENDER
        if state.flags & cu.FLAG_AUTOUTF8:
            state.smtputf8 |= SMTPUTF8_REQUESTED


def _bcc_lookup(state, maps, address):
    """A sender_bcc_maps/recipient_bcc_maps lookup (mail_addr_find_to_internal)."""
    found = mail_addr_find(maps, address, state.settings.address_rules,
                           query_form=FORM_EXTERNAL_FIRST, out_form=FORM_EXTERNAL)
    if found.value is not None:
        cleanup_addr_bcc(state, found.value)
    elif maps.error:
        msg.warn("%s: %s map lookup problem -- message not accepted, try again later"
                 % (state.queue_id, maps.title))
        state.errs |= cu.STAT_WRITE


def cleanup_addr_sender(state, buf):
    clean = rewrite_internal(state, RULE_LOCAL, buf)
    if clean.lower().startswith(MAIL_ADDR_MAIL_DAEMON.lower() + "@"):
        daemon = rewrite_internal(state, RULE_LOCAL, MAIL_ADDR_MAIL_DAEMON)
        if clean.lower() == daemon.lower():
            clean = ""
    if state.flags & cu.FLAG_MAP_OK:
        clean = _map_and_masquerade(state, clean, True)
    _detect_utf8(state, clean, sender=True)
    cleanup_out(state, record.FROM, clean)
    state.sender = clean
    settings = state.settings
    if state.flags & cu.FLAG_BCC_OK and clean and settings.send_bcc_maps is not None:
        _bcc_lookup(state, settings.send_bcc_maps, clean)


def cleanup_addr_recipient(state, buf):
    clean = rewrite_internal(state, RULE_LOCAL, buf or state.settings.empty_addr)
    if state.flags & cu.FLAG_MAP_OK:
        clean = _map_and_masquerade(state, clean, False)
    _detect_utf8(state, clean)
    if state.dsn_orcpt is None and clean:
        kind = "utf-8" if not clean.isascii() and state.smtputf8 & SMTPUTF8_REQUESTED \
            else "rfc822"
        state.dsn_orcpt = "%s;%s" % (kind, clean)
    out_recipient.cleanup_out_recipient(state, state.dsn_orcpt, state.dsn_notify,
                                        state.orig_rcpt, clean)
    state.recip = clean
    settings = state.settings
    if state.flags & cu.FLAG_BCC_OK and clean and settings.rcpt_bcc_maps is not None:
        _bcc_lookup(state, settings.rcpt_bcc_maps, clean)


def cleanup_addr_bcc_dsn(state, bcc, dsn_orcpt, dsn_notify):
    clean = rewrite_internal(state, RULE_LOCAL, bcc)
    if state.flags & cu.FLAG_MAP_OK:
        clean = _map_and_masquerade(state, clean, False)
    _detect_utf8(state, clean)
    out_recipient.cleanup_out_recipient(state, dsn_orcpt, dsn_notify, clean, clean)


def cleanup_addr_bcc(state, bcc):
    """A BCC recipient: no DSN original recipient, NOTIFY=NEVER."""
    cleanup_addr_bcc_dsn(state, bcc, None, DSN_NOTIFY_NEVER)

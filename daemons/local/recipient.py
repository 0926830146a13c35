"""Delivery of one local recipient (Postfix's local/recipient.c, unknown.c and
local_expand.c).

deliver_recipient() drops duplicates, breaks Delivered-To: loops (`mail forwarding loop
for X`), splits the address into user, extension and domain, then deliver_switch() tries
in Postfix's order: `\\user` straight to the mailbox, aliases (full local part, then the
bare user), forwarding for owner-/include recipients, the home directory check,
~/.forward, the mailbox, and at last deliver_unknown(): fallback_transport(_maps),
luser_relay, the required aliases that are tossed, `unknown user: "x"`.
"""

import pwd

from pyfix.common import msg
from pyfix.common.delivered_hdr import delivered_hdr_find, delivered_hdr_init
from pyfix.common.macro import FLAG_NONE, MODE_USE, PARSE_ERROR, PARSE_UNDEF, mac_expand
from pyfix.daemons.local import privs

LOCAL_EXP_EXTENSION_MATCHED = 1 << 8
MAIL_ADDR_POSTMASTER = "postmaster"
MAIL_ADDR_MAIL_DAEMON = "MAILER-DAEMON"


# -- $name expansion of forward_path, luser_relay, ... (local_expand.c) ------------------

def local_expand(pattern, state, usr_attr, filter_chars):
    """(text, status): pattern with $user, $home, $extension, ... expanded; status has
    macro.PARSE_ERROR/PARSE_UNDEF and LOCAL_EXP_EXTENSION_MATCHED."""
    attr = state.msg_attr
    matched = 0

    def lookup(name, mode):
        nonlocal matched
        if name == "user":
            return attr.user
        if name == "home":
            return usr_attr.home
        if name == "shell":
            return usr_attr.shell
        if name == "domain":
            return attr.domain
        if name in ("local", "mailbox"):
            return attr.local
        if name == "recipient":
            return attr.rcpt.address
        if name == "extension":
            if mode == MODE_USE:
                matched = LOCAL_EXP_EXTENSION_MATCHED
            return attr.extension
        if name == "recipient_delimiter":
            delim = attr.local[len(attr.user):len(attr.user) + 1] \
                or state.settings.rcpt_delim[:1]
            return delim or None
        return None

    text, status = mac_expand(pattern, lookup, FLAG_NONE, filter_chars)
    return text, status | matched


# -- the recipient ---------------------------------------------------------------------

def split_addr(localpart, delimiters, settings):
    """split_addr_internal(): (user, extension or None)."""
    lower = localpart.lower()
    if lower in ("postmaster", "mailer-daemon") \
            or lower == settings.double_bounce_sender.lower():
        return localpart, None
    if "-" in delimiters and settings.ownreq_special:
        if lower.startswith("owner-") or (len(lower) > 8 and lower.endswith("-request")):
            return localpart, None
    pos = next((i for i, ch in enumerate(localpart) if ch in delimiters), len(localpart))
    if pos == 0 or pos == len(localpart):
        return localpart, None
    return localpart[:pos], localpart[pos + 1:]


def deliver_recipient(state, usr_attr):
    """Deliver to one local recipient (deliver_recipient())."""
    from pyfix.daemons.local.state import bounce_workaround
    state = state.enter()
    attr = state.msg_attr
    if state.been_here("recipient %d %s" % (state.level, attr.rcpt.address)):
        return 0
    if delivered_hdr_find(state.loop_info, attr.rcpt.address):
        attr.why.simple("5.4.6", "mail forwarding loop for %s" % attr.rcpt.address)
        return bounce_workaround(state)
    if attr.delivered is None:
        attr.delivered = attr.rcpt.address
    local = attr.rcpt.address.lower()
    if "@" in local:
        local, attr.domain = local.rsplit("@", 1)
    else:
        msg.warn("no @ in recipient address: %s" % local)
        attr.domain = None
    attr.local = local
    settings = state.settings
    if settings.rcpt_delim:
        attr.user, attr.extension = split_addr(local, settings.rcpt_delim, settings)
        if attr.extension is not None and "/" in attr.extension:
            msg.warn("%s: address with illegal extension: %s" % (attr.queue_id, local))
            attr.extension = None
            attr.local = attr.user
    else:
        attr.user, attr.extension = local, None
    attr.unmatched = attr.extension
    if not attr.user:
        return state.bounce("5.1.3", 'null username in "%s"' % attr.rcpt.address)
    return deliver_switch(state, usr_attr)


def deliver_switch(state, usr_attr):
    from pyfix.daemons.local.alias import deliver_alias, deliver_dotforward
    from pyfix.daemons.local.mailbox import deliver_mailbox
    from pyfix.daemons.local.state import EXPAND_TYPE_INCL, EXT_PROP_ALIAS
    from pyfix.daemons.local.token import deliver_indirect
    state = state.enter()
    attr = state.msg_attr
    if attr.rcpt.address.startswith("\\"):
        attr.rcpt.address = attr.rcpt.address[1:]
        attr.local, attr.user = attr.local[1:], attr.user[1:]
        found, status = deliver_mailbox(state, usr_attr)
        return status if found else deliver_unknown(state, usr_attr)
    attr.unmatched = None
    found, status = deliver_alias(state, usr_attr, attr.local)
    if found:
        return status
    if attr.extension is not None:
        if state.settings.ext_prop_mask & EXT_PROP_ALIAS:
            attr.unmatched = attr.extension
        found, status = deliver_alias(state, usr_attr, attr.user)
        if found:
            return status
        attr.unmatched = attr.extension
    # Mail forwarded or aliased to another local address is resubmitted, so that each
    # recipient gets its own queue file status (and loops meet Delivered-To:).
    if attr.owner is not None and attr.owner.lower() != attr.user.lower():
        return deliver_indirect(state)
    if attr.exp_type == EXPAND_TYPE_INCL:
        return deliver_indirect(state)
    if state.settings.stat_home_dir:
        try:
            entry = pwd.getpwnam(attr.user)
        except KeyError:
            entry = None
        if entry is not None:
            try:
                privs.stat_as(entry.pw_dir, entry.pw_uid, entry.pw_gid)
            except OSError as exc:
                return state.defer("4.3.0", "cannot access home directory %s: %s"
                                   % (entry.pw_dir, msg.strerror(exc)))
    found, status = deliver_dotforward(state, usr_attr)
    if found:
        return status
    found, status = deliver_mailbox(state, usr_attr)
    if found:
        return status
    return deliver_unknown(state, usr_attr)


def deliver_unknown(state, usr_attr):
    """Delivery for recipients that are not aliases or users (deliver_unknown())."""
    from pyfix.daemons.local.forward import deliver_pass
    from pyfix.daemons.local.token import deliver_resolve_addr
    state = state.enter()
    attr = state.msg_attr
    settings = state.settings
    helpers = state.helpers
    if state.been_here("deliver_unknown %s" % attr.local):
        return 0
    maps = helpers.maps("fallback_transport_maps")
    if maps:
        transport = maps.find(attr.user)
        if transport is not None:
            attr.rcpt.offset = -1
            return deliver_pass(state, transport)
        if maps.error:
            return state.defer("4.3.0", "table lookup failure")
    if settings.fallback_transport:
        attr.rcpt.offset = -1
        return deliver_pass(state, settings.fallback_transport)
    if settings.luser_relay:
        attr.unmatched = None
        expanded, _ = local_expand(settings.luser_relay, state, usr_attr, None)
        canon = helpers.rewriter().rewrite("local", expanded)
        if canon.lower() == attr.rcpt.address.lower():
            return state.bounce("5.1.1", 'unknown user: "%s"' % attr.user)
        return deliver_resolve_addr(state, usr_attr, expanded)
    if attr.user.lower() in (MAIL_ADDR_MAIL_DAEMON.lower(), MAIL_ADDR_POSTMASTER):
        msg.warn("required alias not found: %s" % attr.user)
        return state.sent("2.0.0", "discarded")
    return state.bounce("5.1.1", 'unknown user: "%s"' % attr.user)


__all__ = ["deliver_recipient", "local_expand", "delivered_hdr_init", "PARSE_ERROR",
           "PARSE_UNDEF"]     # delivered_hdr_init: for __init__.local_deliver()

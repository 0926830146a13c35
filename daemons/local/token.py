"""The addresses of an alias, .forward or :include: expansion (Postfix's
local/token.c, resolve.c and indirect.c).

Each address is dispatched on its form: `/file` and `~/file` to deliver_file(),
`|command` to deliver_command() (when allow_mail_to_commands permits it for this kind
of expansion: else `mail to command is restricted`), `:include:/path` to
deliver_include(), and everything else is canonicalized and resolved like qmgr would:
an address of this local transport is delivered again here (deliver_recipient()), any
other is resubmitted to cleanup (deliver_indirect()).
"""

from pyfix.common import msg, tok822
from pyfix.common.resolve_clnt import FLAG_ERROR, FLAG_FAIL, RESOLVE_REGULAR

INCLUDE = ":include:"


def _deliver_token_home(state, usr_attr, addr):
    from pyfix.daemons.local.mailbox import deliver_file
    if addr[1:2] != "/":
        msg.warn("bad home directory syntax for: %s" % addr)
        return state.bounce("5.3.5", "mail system configuration error")
    if usr_attr.home is None:
        msg.warn("unknown home directory for: %s" % addr)
        return state.bounce("5.3.5", "mail system configuration error")
    if usr_attr.home == "/":
        return deliver_file(state, usr_attr, addr[1:])
    return deliver_file(state, usr_attr, usr_attr.home + addr[1:])


def deliver_token(state, usr_attr, addr):
    """Deliver to one address node of an expansion."""
    from pyfix.daemons.local.alias import deliver_include
    from pyfix.daemons.local.mailbox import deliver_command, deliver_file
    text = tok822.internalize_tree(addr.head, tok822.STR_DEFL)
    if msg.verbose:
        msg.info("deliver_token: %s" % text)
    if text.startswith("/"):
        return deliver_file(state, usr_attr, text)
    if text.startswith("~"):
        return _deliver_token_home(state, usr_attr, text)
    if text.startswith("|"):
        if not state.settings.cmd_deliver_mask & state.msg_attr.exp_type:
            return state.bounce("5.7.1", "mail to command is restricted")
        return deliver_command(state, usr_attr, text[1:])
    if text[:len(INCLUDE)].lower() == INCLUDE:
        return deliver_include(state, usr_attr, text[len(INCLUDE):])
    return deliver_resolve_tree(state, usr_attr, addr)


def deliver_token_string(state, usr_attr, string, addr_count):
    """Deliver to each address of string; addr_count (a one-item list, or None)
    counts them."""
    status = 0
    node = tok822.parse(string)
    while node is not None:
        if node.type == tok822.ADDR:
            if addr_count is not None:
                addr_count[0] += 1
            status |= deliver_token(state, usr_attr, node)
        node = node.next
    return status


def deliver_token_stream(state, usr_attr, fp, addr_count):
    """Deliver to the addresses of a file, line by line; `#` lines are comments."""
    status = 0
    limit = state.settings.line_limit
    try:
        for raw in _lines(fp, limit):
            line = raw.decode("utf-8", "surrogateescape")
            if line.startswith("#"):
                continue
            status = deliver_token_string(state, usr_attr, line, addr_count)
            if status != 0:
                break
    except OSError as exc:
        return state.defer("4.3.0", "error reading forwarding file: %s"
                           % msg.strerror(exc))
    return status


def _lines(fp, limit):
    """vstring_fgets_bound(): lines of at most `limit` bytes, newline removed (a
    longer line comes in pieces)."""
    while True:
        line = fp.readline(limit if limit > 0 else -1)
        if not line:
            return
        yield line.rstrip(b"\n") if line.endswith(b"\n") else line


def deliver_resolve_addr(state, usr_attr, addr):
    return deliver_resolve_tree(state, usr_attr, tok822.scan_addr(addr))


def deliver_resolve_tree(state, usr_attr, addr):
    """Canonicalize and resolve an address, then deliver it here or forward it."""
    from pyfix.daemons.local.recipient import deliver_recipient
    state = state.enter()
    attr = state.msg_attr
    helpers = state.helpers
    helpers.rewriter().rewrite_tree("local", addr)
    address = tok822.internalize_tree(addr.head)
    reply = helpers.resolver().resolve(RESOLVE_REGULAR, "", address)
    if reply.flags & FLAG_FAIL:
        return state.defer("4.3.0", "address resolver failure")
    if reply.flags & FLAG_ERROR:
        return state.bounce("5.1.3", "bad recipient address syntax: %s" % reply.recipient)
    recipient = reply.recipient
    if attr.unmatched:
        delim = attr.local[len(attr.user):len(attr.user) + 1]
        local, at, domain = recipient.rpartition("@")
        if not at:
            recipient = recipient + delim + attr.unmatched
        else:
            recipient = local + delim + attr.unmatched + "@" + domain
    attr.rcpt.address = recipient
    if attr.relay == reply.transport:
        return deliver_recipient(state, usr_attr)
    return deliver_indirect(state)


def deliver_indirect(state):
    """Resubmit the current recipient through cleanup (deliver_indirect())."""
    attr = state.msg_attr
    if msg.verbose:
        msg.info("deliver_indirect: %s" % attr.rcpt.address)
    if state.been_here("indirect %s" % attr.rcpt.address):
        return 0
    if state.trace_only:
        return state.sent("2.0.0", "forwards to %s" % attr.rcpt.address)
    if state.helpers.forwarder.append(attr):
        return state.defer("4.3.0", "unable to forward message")
    return 0

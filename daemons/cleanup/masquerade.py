"""Address masquerading: `user@host.sub.example.com` becomes `user@example.com` when
example.com is in masquerade_domains (Postfix's cleanup_masquerade.c).

The first masquerade_domains entry that is the domain itself or a parent of it decides:
a parent strips the address down to it, the domain itself (or a `!domain` entry) leaves
it alone. Local parts in masquerade_exceptions are never masqueraded. The functions
return (new address, changed).
"""

from pyfix.common import msg, tok822
from pyfix.common.quote_822 import quote_822_local, unquote_822_local
from pyfix.queue import cleanup_user as cu


def masquerade_external(state, address, masq_domains):
    at = address.rfind("@")
    if at < 0:
        return address, False
    domain = address[at + 1:].lower()
    exceptions = state.settings.masq_exceptions
    if exceptions is not None:
        excluded = bool(exceptions.match(address[:at]))
        if exceptions.error:
            msg.info("%s: %s map lookup problem -- message not accepted, try again later"
                     % (state.queue_id, "masquerade_exceptions"))
            state.errs |= cu.STAT_WRITE
        if excluded:
            return address, False
    for masq in masq_domains:
        truncate = True
        while masq.startswith("!"):
            truncate = not truncate
            masq = masq[1:]
        masq = masq.lower()
        if not masq:
            continue
        if len(masq) == len(domain):
            if masq == domain:
                break
        elif len(masq) < len(domain):
            parent = domain[len(domain) - len(masq):]
            if domain[len(domain) - len(masq) - 1] == "." and parent == masq:
                if truncate:
                    if msg.verbose:
                        msg.info("masquerade: %s -> %s" % (domain, masq))
                    return address[:at + 1] + masq, True
                break
    return address, False


def masquerade_internal(state, address, masq_domains):
    new, changed = masquerade_external(state, quote_822_local(address), masq_domains)
    return unquote_822_local(new), changed


def masquerade_tree(state, tree, masq_domains):
    new, changed = masquerade_external(state, tok822.externalize_tree(tree.head),
                                       masq_domains)
    head, tail = tok822.scan_linked(new)
    tok822.set_sub_list(tree, head, tail)
    return changed

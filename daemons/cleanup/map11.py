"""One-to-one address mapping: canonical_maps, sender_canonical_maps and
recipient_canonical_maps (Postfix's cleanup_map11.c).

A lookup result replaces the address and is looked up again, until an address maps to
itself (case-insensitively) or nothing matches; after 10 rounds the mapping stops with a
warning. A multi-address result uses the first address, with a warning. A table error
keeps the current address and fails the message with CLEANUP_STAT_WRITE (try again).
The functions return (new address, changed) or, for a tree, changed.
"""

from pyfix.common import msg, tok822
from pyfix.common.quote_822 import quote_822_local, unquote_822_local
from pyfix.maps.addr_find import FORM_EXTERNAL
from pyfix.maps.addr_map import mail_addr_map
from pyfix.queue import cleanup_user as cu

MAX_RECURSION = 10


def map11_external(state, address, maps, propagate):
    changed = False
    settings = state.settings
    for _ in range(MAX_RECURSION):
        result = mail_addr_map(maps, address, propagate, settings.address_rules,
                               settings.rewriter, FORM_EXTERNAL, FORM_EXTERNAL,
                               FORM_EXTERNAL)
        if result is not None:
            if len(result) > 1:
                msg.warn("%s: multi-valued %s entry for %s"
                         % (state.queue_id, maps.title, address))
            saved = address
            changed |= result[0] != address
            address = result[0]
            if saved.lower() == address.lower():
                return address, changed
        elif maps.error:
            msg.warn("%s: %s map lookup problem for %s -- message not accepted, "
                     "try again later" % (state.queue_id, maps.title, address))
            state.errs |= cu.STAT_WRITE
            return address, changed
        else:
            return address, changed
    msg.warn("%s: unreasonable %s map nesting for %s -- message not accepted, "
             "try again later" % (state.queue_id, maps.title, address))
    return address, changed


def map11_internal(state, address, maps, propagate):
    new, changed = map11_external(state, quote_822_local(address), maps, propagate)
    return unquote_822_local(new), changed


def map11_tree(state, tree, maps, propagate):
    new, changed = map11_external(state, tok822.externalize_tree(tree.head), maps,
                                  propagate)
    head, tail = tok822.scan_linked(new)
    tok822.set_sub_list(tree, head, tail)
    return changed

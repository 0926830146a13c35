"""Address-to-addresses mapping as canonical and virtual alias tables do it (Postfix's
global/mail_addr_map.c and mail_addr_crunch.c).

mail_addr_map() looks an address up with mail_addr_find()'s key sequence; a result is
one or more addresses separated by commas. A result `@otherdomain` keeps the original
local part (without an unmatched extension); each address of the result is rewritten to
canonical form (trivial-rewrite's local context) and, when the caller propagates
extensions, gets the unmatched extension (`+foo`) inserted before its `@`. A result
with no address at all is a table error. Results come back as a list of addresses in
the requested form, or None when nothing matched (maps.error says whether to retry).
"""

from pyfix.common import msg, tok822
from pyfix.common.quote_822 import quote_822_local, unquote_822_local

from pyfix.maps.addr_find import (FIND_DEFAULT, FORM_EXTERNAL, FORM_INTERNAL,
                                  mail_addr_find)
from pyfix.maps.dict import ERR_RETRY


def mail_addr_crunch(text, extension, rewriter, in_form=FORM_EXTERNAL,
                     out_form=FORM_EXTERNAL, rule="local"):
    """mail_addr_crunch_opt(): the addresses of text, canonicalized, with extension."""
    if in_form == FORM_INTERNAL:
        text = quote_822_local(text)
    if text == "" or text == "<>":
        text = '""'
    result = []
    for node in tok822.grep(tok822.parse(text), tok822.ADDR):
        external = tok822.externalize_tree(node.head)
        internal = unquote_822_local(rewriter.rewrite(rule, external))
        if extension:
            at = internal.rfind("@")
            internal = internal + extension if at < 0 else \
                internal[:at] + extension + internal[at:]
        result.append(quote_822_local(internal) if out_form == FORM_EXTERNAL else internal)
    return result


def mail_addr_map(maps, address, propagate, rules, rewriter, in_form=FORM_INTERNAL,
                  query_form=FORM_EXTERNAL, out_form=FORM_INTERNAL):
    """mail_addr_map_opt(); the default forms are mail_addr_map_internal()'s."""
    internal = unquote_822_local(address) if in_form == FORM_EXTERNAL else address
    found = mail_addr_find(maps, internal, rules, FIND_DEFAULT, FORM_INTERNAL, query_form,
                           FORM_EXTERNAL)
    value = found.value
    if value is None:
        if msg.verbose:
            msg.info("mail_addr_map: %s -> %s"
                     % (address, "(try again)" if maps.error else "(not found)"))
        return None
    if value.startswith("@"):
        at = internal.rfind("@")
        local = internal[:at] if at >= 0 else internal
        if found.extension:
            local = local[:len(local) - len(found.extension)]
        value = quote_822_local(local + value)
    result = mail_addr_crunch(value, found.extension if propagate else None, rewriter,
                              FORM_EXTERNAL, out_form)
    if msg.verbose:
        for n, item in enumerate(result):
            msg.info("mail_addr_map: %s -> %d: %s" % (address, n, item))
    if not result:
        msg.warn('%s lookup of %s returns non-address result "%s"'
                 % (maps.title, address, value))
        maps.error = ERR_RETRY
        return None
    return result

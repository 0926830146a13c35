"""Case folding of an address (Postfix's global/fold_addr.c): the local part, the
domain (after the last @), or both, as pipe(8)'s flags h and u and delivered_hdr ask."""

from pyfix.maps.dict_utf8 import casefold

FOLD_ADDR_USER = 1 << 0
FOLD_ADDR_HOST = 1 << 1
FOLD_ADDR_ALL = FOLD_ADDR_USER | FOLD_ADDR_HOST


def fold_addr(address, flags):
    """The address with the parts named by flags case-folded."""
    if flags & FOLD_ADDR_ALL == FOLD_ADDR_ALL:
        return casefold(address)
    local, at, domain = address.rpartition("@")
    if not at:
        return casefold(address) if flags & FOLD_ADDR_USER else address
    if flags & FOLD_ADDR_USER:
        local = casefold(local)
    if flags & FOLD_ADDR_HOST:
        domain = casefold(domain)
    return local + at + domain

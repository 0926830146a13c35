"""transport_maps: the per-recipient override of transport and nexthop (Postfix's
trivial-rewrite/transport.c).

A table entry `transport:nexthop` replaces what the address class chose. Its halves
merge with that choice as Postfix merges them:
  - `:nexthop` (or `:`) keeps the transport; a non-empty nexthop replaces the nexthop;
  - `transport[:nexthop]` replaces the transport, and the nexthop becomes the given one,
    or the recipient domain, or for the error and retry transports the text
    `Address is undeliverable`.
Keys are tried as transport(5) says: the full address, the address without its
extension, then the domain and its parents (`.parent` or `parent` as
parent_domain_matches_subdomains has transport_maps). The `*` entry is the wildcard of
last resort; it is looked up once and refreshed every 30 seconds, and its lookup error
stays sticky until a retry succeeds.
"""

import time

from pyfix.common import msg
from pyfix.maps.addr_find import FIND_DOMAIN, FIND_FULL, FIND_NOEXT, FIND_PDDMDS, \
    FIND_PDMS, mail_addr_find
from pyfix.maps.dict import ERR_NONE, FLAG_FOLD_FIX, FLAG_LOCK, FLAG_NO_REGSUB, \
    FLAG_UTF8_REQUEST
from pyfix.maps.maps import Maps

TABLE_FLAGS = FLAG_LOCK | FLAG_FOLD_FIX | FLAG_NO_REGSUB | FLAG_UTF8_REQUEST
SERVICE_ERROR = "error"
SERVICE_RETRY = "retry"
WILDCARD = "*"
WILDCARD_TTL = 30
UNDELIVERABLE = "Address is undeliverable"


def match_parent_style(config, name):
    """True when name is listed in parent_domain_matches_subdomains (MATCH_FLAG_PARENT)."""
    listed = [item.lower() for item in config.get_list("parent_domain_matches_subdomains")]
    return name.lower() in listed


def update_entry(new_channel, new_nexthop, rcpt_domain, channel, nexthop):
    """Merge a table result into (channel, nexthop); returns the new pair."""
    if not new_channel:
        return channel, (new_nexthop or nexthop)
    if new_nexthop:
        return new_channel, new_nexthop
    if new_channel not in (SERVICE_ERROR, SERVICE_RETRY):
        return new_channel, rcpt_domain
    return new_channel, UNDELIVERABLE


def parse_entry(value):
    """`transport:nexthop` -> (transport, nexthop); the nexthop may itself hold colons."""
    channel, _, host = value.partition(":")
    return channel, host


class TransportInfo:
    """One transport_maps setting (TRANSPORT_INFO)."""

    def __init__(self, title, map_names, address_rules):
        self.maps = Maps(title, map_names, TABLE_FLAGS)
        self.rules = address_rules
        self.strategy = FIND_FULL | FIND_NOEXT | FIND_DOMAIN
        self.wildcard = None            # (channel, nexthop) of `*`, None when absent
        self.wildcard_errno = ERR_NONE
        self.expire = 0

    @property
    def error(self):
        return self.maps.error

    def post_init(self, config):
        """transport_post_init(): the parent-domain style, then the wildcard."""
        parent = match_parent_style(config, "transport_maps")
        self.strategy |= FIND_PDMS if parent else FIND_PDDMDS
        self._wildcard_init()

    def _wildcard_init(self):
        value = self.maps.find(WILDCARD)
        if value is not None:
            self.wildcard = update_entry(*parse_entry(value), "", "", "")
            self.wildcard_errno = ERR_NONE
            if msg.verbose:
                msg.info("wildcard_{chan:hop}={%s:%s}" % self.wildcard)
        else:
            self.wildcard_errno = self.maps.error
            self.wildcard = None
        self.expire = time.time() + WILDCARD_TTL

    def lookup(self, addr, rcpt_domain, channel, nexthop):
        """transport_lookup(): (found, channel, nexthop); when not found, `error` says
        whether that was a table failure."""
        if not addr:
            msg.warn("transport_lookup: null address - skipping table lookup")
            return False, channel, nexthop
        at = addr.rfind("@")
        if at < 0 or at == len(addr) - 1:
            msg.panic('transport_lookup: bad address: "%s"' % addr)
        found = mail_addr_find(self.maps, addr, self.rules, self.strategy)
        if found.value is not None:
            new_channel, new_nexthop = parse_entry(found.value)
            return (True,) + update_entry(new_channel, new_nexthop, rcpt_domain,
                                          channel, nexthop)
        if self.maps.error != ERR_NONE:
            return False, channel, nexthop
        if self.wildcard_errno != ERR_NONE or time.time() > self.expire:
            self._wildcard_init()
        if self.wildcard_errno != ERR_NONE:
            self.maps.error = self.wildcard_errno
            return False, channel, nexthop
        if self.wildcard is not None:
            return (True,) + update_entry(*self.wildcard, rcpt_domain, channel, nexthop)
        return False, channel, nexthop

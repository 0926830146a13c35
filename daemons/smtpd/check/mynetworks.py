"""Host name/address lists such as mynetworks (Postfix's global/namadr_list.c over
util/match_ops.c: match_hostname and match_hostaddr).

Each pattern is tried against the client name and then against its address: a name
matches as in a domain list (exact, or a parent domain under MATCH_FLAG_PARENT, or a
`.domain` pattern); an address matches a literal address, `[address]`, or a
`net/mask` CIDR block of the same family; `type:table` patterns are lookups. `!pattern`
negates, `/file` reads more patterns. The first pattern that matches decides.
"""

import functools
import ipaddress

from pyfix.common import msg
from pyfix.maps.dict import ERR_RETRY
from pyfix.maps.match_list import MatchList

_V4_CHARS = frozenset("01234567890.")
_V6_CHARS = _V4_CHARS | frozenset("abcdefABCDEF:")


class NamadrList(MatchList):
    """match(name, addr): whether the host is in the list."""

    def __init__(self, title, text, flags=0):
        super().__init__(title, text, flags, "namadr")

    def match(self, name, addr):
        self.error = 0
        name = (name or "").lower()
        addr = (addr or "").lower()
        for positive, pattern in self.patterns:
            if self._match_host(name, pattern):
                return positive
            if self.error:
                return False
            if self._match_addr(addr, pattern):
                return positive
            if self.error:
                return False
        return False

    def _match_addr(self, addr, pattern):
        if not addr or any(ch not in _V6_CHARS for ch in addr):
            return False
        if not isinstance(pattern, str):
            if pattern.lookup(addr) is not None:
                return True
            return self._table_error(pattern) if pattern.error else False
        if addr == pattern or pattern == "[%s]" % addr:
            return True
        if (":" in addr) != (":" in pattern) or not any(ch in ":/" for ch in pattern) \
                or all(ch in _V4_CHARS for ch in pattern) \
                or any(ch not in _V6_CHARS | set("[]/") for ch in pattern):
            return False
        return self._match_cidr(addr, pattern)

    def _match_cidr(self, addr, pattern):
        text = pattern
        if text.startswith("["):
            close = text.find("]")
            text = text[1:close] + text[close + 1:] if close > 0 else text
        try:
            network = _ip_network(text)
        except ValueError:
            self.error = ERR_RETRY
            msg.warn("%s: bad net/mask pattern: \"%s\"" % (self.title, pattern))
            return False
        try:
            return _ip_address(addr) in network
        except ValueError:
            return False


# Parsed once per process, not once per message: the client address and the patterns
# recur; a bad pattern is not cached (it raises), so it is warned about each time, as
# Postfix's match_hostaddr() does.
@functools.lru_cache(maxsize=256)
def _ip_network(text):
    return ipaddress.ip_network(text, strict=True)


@functools.lru_cache(maxsize=256)
def _ip_address(text):
    return ipaddress.ip_address(text)

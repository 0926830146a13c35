"""The keys an address is looked up under (Postfix's global/mail_addr_find.c, strip_addr.c,
split_addr.c, resolve_local.c).

For `user+ext@example.com` with recipient_delimiter `+`, a table is asked, in turn:
  user+ext@example.com, user@example.com        (FULL, NOEXT)
  user+ext, user                                  (LOCALPART_IF_LOCAL: only when
                                                   example.com is $myorigin or in
                                                   $mydestination / our address literal)
  user+ext@, user@                                (LOCALPART_AT_IF_LOCAL / LOCALPART_AT)
  @example.com                                    (AT_DOMAIN)
  example.com, then com or .com                  (DOMAIN, with PDMS or PDDMDS)
Each key is tried in both address forms (quoted and unquoted local part), and every key
but the full address only against tables with fixed keys: a regexp table sees the whole
address once. The strategy of each caller is Postfix's: virtual and canonical use
DEFAULT, transport uses FULL|NOEXT|DOMAIN|PDMS (or PDDMDS), access tables their own.
"""

from pyfix.common.quote_822 import (QUOTE_FLAG_BARE_LOCALPART, QUOTE_FLAG_DEFAULT,
                                    quote_822_local, unquote_822_local)

from pyfix.maps.dict import ERR_NONE, FLAG_FIXED
from pyfix.maps.match_list import MATCH_FLAG_RETURN, string_list

FIND_FULL = 1 << 0
FIND_NOEXT = 1 << 1
FIND_LOCALPART_IF_LOCAL = 1 << 2
FIND_LOCALPART_AT_IF_LOCAL = 1 << 3
FIND_AT_DOMAIN = 1 << 4
FIND_DOMAIN = 1 << 5
FIND_PDMS = 1 << 6
FIND_PDDMDS = 1 << 7
FIND_LOCALPART_AT = 1 << 8
FIND_DEFAULT = FIND_FULL | FIND_NOEXT | FIND_LOCALPART_IF_LOCAL | FIND_AT_DOMAIN

FORM_INTERNAL = 1
FORM_EXTERNAL = 2
FORM_EXTERNAL_FIRST = 3
FORM_INTERNAL_FIRST = 4

FULL = 0
PARTIAL = FLAG_FIXED


class AddressRules:
    """The main.cf settings that shape address keys, read once per process."""

    def __init__(self, config):
        self.config = config
        self.delimiters = config.get("recipient_delimiter") or ""
        self.myorigin = config.get("myorigin")
        self.double_bounce = config.get("double_bounce_sender")
        self.owner_request_special = config.get_bool("owner_request_special")
        self._local_list = None
        self._own_addresses = None

    # -- extensions (split_addr.c, strip_addr.c) ------------------------------------------

    def split_localpart(self, localpart):
        """(bare localpart, extension without its delimiter) or None when not split."""
        lowered = localpart.lower()
        if lowered in ("postmaster", "mailer-daemon", self.double_bounce.lower()):
            return None
        if "-" in self.delimiters and self.owner_request_special:
            if lowered.startswith("owner-") or (len(lowered) > 8
                                               and lowered.endswith("-request")):
                return None
        cut = next((i for i, ch in enumerate(localpart) if ch in self.delimiters),
                   len(localpart))
        if cut == 0 or cut == len(localpart):
            return None
        return localpart[:cut], localpart[cut + 1:]

    def strip_extension(self, address):
        """(address without extension, extension with its delimiter) or (None, None)."""
        if not self.delimiters or not any(ch in self.delimiters for ch in address):
            return None, None
        local, at, domain = address.rpartition("@")
        if not at:
            local, domain = address, ""
        split = self.split_localpart(local)
        if split is None:
            return None, None
        bare, _ = split
        extension = local[len(bare):]
        return bare + (at + domain if at else ""), extension

    # -- is a domain ours (resolve_local.c) ---------------------------------------------------

    def resolve_local(self, domain):
        """1 when domain is a local destination, 0 when not, an error (< 0) on failure."""
        name = domain[:-1] if domain.endswith(".") else domain
        if not name or name.endswith("."):
            return 0
        if self._local_list is None:
            self._local_list = string_list("mydestination", self.config.get("mydestination"),
                                           MATCH_FLAG_RETURN)
        if self._local_list.match(name):
            return 1
        if self._local_list.error:
            return self._local_list.error
        if name.startswith("[") and name.endswith("]"):
            return 1 if name[1:-1].lower().removeprefix("ipv6:") in self.own_addresses() else 0
        return 0

    def own_addresses(self):
        """The addresses of inet_interfaces and proxy_interfaces, as text."""
        if self._own_addresses is None:
            from pyfix.common import hostinfo
            families = hostinfo.inet_families(self.config.get("inet_protocols"))
            found = {str(address) for address, _ in
                     hostinfo.own_interfaces(self.config.get("inet_interfaces"), families)}
            for host in self.config.get_list("proxy_interfaces"):
                found.add(host.strip("[]").lower())
            self._own_addresses = found
        return self._own_addresses


def _find_addr(maps, address, flags, with_domain, query_form):
    """One key, in the query form(s) the caller asked for."""
    quote_flags = QUOTE_FLAG_DEFAULT | (0 if with_domain else QUOTE_FLAG_BARE_LOCALPART)
    if query_form in (FORM_EXTERNAL, FORM_EXTERNAL_FIRST):
        external = quote_822_local(address, quote_flags)
        result = maps.find(external, flags)
        if result is None and maps.error == ERR_NONE \
                and query_form == FORM_EXTERNAL_FIRST and external != address:
            result = maps.find(address, flags)
        return result
    result = maps.find(address, flags)
    if result is None and maps.error == ERR_NONE and query_form == FORM_INTERNAL_FIRST:
        external = quote_822_local(address, quote_flags)
        if external != address:
            result = maps.find(external, flags)
    return result


class Found:
    """A lookup result: value, the unmatched extension (or None), and error."""

    __slots__ = ("value", "extension", "error")

    def __init__(self, value, extension, error):
        self.value = value
        self.extension = extension
        self.error = error


def mail_addr_find(maps, address, rules, strategy=FIND_DEFAULT, in_form=FORM_INTERNAL,
                   query_form=FORM_EXTERNAL_FIRST, out_form=FORM_EXTERNAL):
    """mail_addr_find_opt(): search maps for address; returns a Found."""
    search = _Search(maps, rules, query_form)
    internal = unquote_822_local(address) if in_form == FORM_EXTERNAL else address
    value = search.run(internal, strategy)
    if value is not None and out_form == FORM_INTERNAL:
        value = unquote_822_local(value)
    return Found(value, search.extension, maps.error)


class _Search:
    def __init__(self, maps, rules, query_form):
        self.maps = maps
        self.rules = rules
        self.query_form = query_form
        self.extension = None

    def find(self, key, flags, with_domain=True):
        return _find_addr(self.maps, key, flags, with_domain, self.query_form)

    def ok(self):
        return self.maps.error == ERR_NONE

    def run(self, full, strategy):
        bare, saved_ext = (None, None)
        if self.rules.delimiters and strategy & FIND_NOEXT:
            bare, saved_ext = self.rules.strip_extension(full)
        self.maps.error = ERR_NONE
        result = self.find(full, FULL) if strategy & FIND_FULL else None
        if result is None and self.ok() and bare is not None:
            result = self.find(bare, PARTIAL)
            if result is not None:
                self.extension = saved_ext
        at = full.rfind("@")
        if result is None and self.ok() and at >= 0 \
                and strategy & (FIND_LOCALPART_IF_LOCAL | FIND_LOCALPART_AT_IF_LOCAL):
            result = self._local_keys(full, bare, saved_ext, at, strategy)
        if result is None and self.ok() and at >= 0 and strategy & FIND_AT_DOMAIN:
            result = self.maps.find(full[at:], PARTIAL)
        if result is None and self.ok() and at >= 0 and strategy & FIND_DOMAIN:
            result = self._domain_keys(full[at + 1:], strategy)
        if result is None and self.ok() and strategy & FIND_LOCALPART_AT:
            result = self._localpart(full, bare, saved_ext, at, 1)
        return result

    def _local_keys(self, full, bare, saved_ext, at, strategy):
        domain = full[at + 1:]
        local = domain.lower() == self.rules.myorigin.lower() or None
        if local is None:
            status = self.rules.resolve_local(domain)
            if status < 0:
                self.maps.error = status
                return None
            local = status > 0
        if not local:
            return None
        result = None
        if strategy & FIND_LOCALPART_IF_LOCAL:
            result = self._localpart(full, bare, saved_ext, at, 0)
        if result is None and self.ok() and strategy & FIND_LOCALPART_AT_IF_LOCAL:
            result = self._localpart(full, bare, saved_ext, at, 1)
        return result

    def _localpart(self, full, bare, saved_ext, at, keep_at):
        """`user+ext` then `user` (keep_at: with the `@` at the end)."""
        cut = at + keep_at if at >= 0 else len(full)
        with_domain = bool(keep_at)
        result = self.find(full[:cut], PARTIAL, with_domain)
        if result is None and self.ok() and bare is not None:
            bare_at = bare.rfind("@")
            cut = bare_at + keep_at if bare_at >= 0 else len(bare)
            result = self.find(bare[:cut], PARTIAL, with_domain)
            if result is not None:
                self.extension = saved_ext
        return result

    def _domain_keys(self, domain, strategy):
        name = domain
        while name:
            result = self.maps.find(name, PARTIAL)
            if result is not None or not self.ok() \
                    or not strategy & (FIND_PDMS | FIND_PDDMDS):
                return result
            dot = name.find(".", 1)
            if dot < 0:
                return None
            name = name[dot + 1:] if strategy & FIND_PDMS else name[dot:]
        return None

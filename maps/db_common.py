"""What the SQL and LDAP tables share (Postfix's global/db_common.c).

A table has a query template (SQL `query`, LDAP `search_base` and `query_filter`) and a
`result_format`; DbCommon checks them once (parse) and expands them per lookup:

  %%        a literal %
  %s        the lookup key (in a result_format: the result value)
  %u / %d   the local part / the domain of the key (result: of the value); a key
            without `@` has no domain, so a template with %d is not queried at all
  %S %U %D  the same, always of the lookup key
  %1 .. %9  the domain's labels from the right (%1 = top-level domain); a key with
            fewer labels (or an empty one) is not queried

expand() returns the text, or None when the key (or value) lacks what the template
needs: "no query", and the lookup finds nothing. An empty key or an empty result value
is skipped with Postfix's warning. The optional `domain` parameter (a string list:
literals, /file, type:table) limits the lookups to addresses in those domains.
"""

import os

from pyfix.common import msg
from pyfix.maps.cfg_parser import CfgParser
from pyfix.maps.dict import SurrogateDict

KEY_DOMAIN = 1 << 0
KEY_USER = 1 << 1
VALUE_DOMAIN = 1 << 2
VALUE_USER = 1 << 3
KEY_PARTIAL = 1 << 4

_DIGITS = "123456789"


class DbCommon:
    """The parse context of one table (DB_COMMON_CTX)."""

    def __init__(self, table):
        self.table = table          # the Dict: its type and name appear in messages
        self.domain = None
        self.flags = 0
        self.nparts = 0

    # -- templates ----------------------------------------------------------------------------

    def parse(self, template, query):
        """Check a query (query=True) or result template; True when it uses the key."""
        dynamic = False
        pos = 0
        while pos < len(template):
            if template[pos] != "%":
                pos += 1
                continue
            pos += 1
            ch = template[pos] if pos < len(template) else ""
            pos += 1
            if ch == "%":
                continue
            if ch == "u":
                self.flags |= KEY_USER | KEY_PARTIAL if query else VALUE_USER
            elif ch == "d":
                self.flags |= KEY_DOMAIN | KEY_PARTIAL if query else VALUE_DOMAIN
            elif ch in ("s", "S"):
                pass
            elif ch == "U":
                self.flags |= KEY_PARTIAL | KEY_USER
            elif ch and (ch in _DIGITS or ch == "D"):
                if ch != "D":
                    self.nparts = max(self.nparts, int(ch))
                self.flags |= KEY_PARTIAL | KEY_DOMAIN
            else:
                msg.fatal("db_common_parse: %s: Invalid %s template: %s"
                          % (self.table.name, "query" if query else "result", template))
            dynamic = True
        return dynamic

    def parse_domain(self, parser):
        """The `domain` parameter: a string list the key's domain must match."""
        from pyfix.maps.match_list import MATCH_FLAG_RETURN, string_list
        domains = parser.get_str("domain", "")
        if domains:
            self.domain = string_list(parser.name, domains, MATCH_FLAG_RETURN)
            if self.domain is None:
                msg.fatal("db_common_parse_domain: %s: domain match list creation using "
                          "'%s' failed" % (parser.name, domains))

    @staticmethod
    def dict_partial():
        """Whether the table wants full keys only (always no: recipient_delimiter)."""
        return False

    # -- lookups ------------------------------------------------------------------------------

    def check_domain(self, addr):
        """>0 when addr may be looked up, 0 when the domain list rules it out, <0 error."""
        if self.domain is None:
            return 1
        at = addr.rfind("@")
        if at <= 0:
            return 0
        if not self.domain.match(addr[at + 1:]):
            return self.domain.error
        return 1

    def expand(self, template, value, key=None, quote=None, result=None):
        """Expand template for value (the key; with key given, a result value).

        Returns the text appended to `result` (after a comma when result is not empty),
        or None when the expansion does not apply ("no query" / "skip this value").
        """
        if value is None:
            return None
        if value == "":
            self._warn_empty(key)
            return None
        vdomain = kdomain = None
        if key is not None:
            vdomain = self._split_value(value, VALUE_DOMAIN | VALUE_USER)
            if vdomain is False:
                return None
            kdomain = _domain_of(key) if self.flags & (KEY_DOMAIN | KEY_USER) else None
            if self._lacks(key, kdomain, KEY_DOMAIN, KEY_USER):
                msg.warn("db_common_expand: %s: lookup key '%s' skipped after query"
                         % (self.table.name, value))
                return None
        else:
            vdomain = self._split_value(value, KEY_DOMAIN | KEY_USER)
            if vdomain is False:
                return None
        parts = None
        if self.nparts > 0:
            # argv_split(): empty labels vanish, so `a..example.com` has three.
            parts = [label for label in (kdomain if key is not None else vdomain).split(".")
                     if label]
            if len(parts) < self.nparts:
                return None
        out = self._substitute(template, value, key, vdomain, kdomain, parts, quote)
        if result is None:
            return out
        return ("%s,%s" % (result, out)) if result else out

    def _warn_empty(self, key):
        if key is not None:
            msg.warn('table "%s:%s": empty lookup result for: "%s" -- ignored'
                     % (self.table.type, self.table.name, key))
        else:
            msg.warn('table "%s:%s": empty query string -- ignored'
                     % (self.table.type, self.table.name))

    def _split_value(self, value, wanted):
        """The domain of value when the templates need it; False when it lacks a part."""
        domain_flag = wanted & (KEY_DOMAIN | VALUE_DOMAIN)
        user_flag = wanted & (KEY_USER | VALUE_USER)
        vdomain = _domain_of(value) if self.flags & wanted else None
        if self._lacks(value, vdomain, domain_flag, user_flag):
            return False
        return vdomain

    def _lacks(self, text, domain, domain_flag, user_flag):
        """A needed domain is missing or empty, or a needed local part is empty."""
        if not domain and self.flags & domain_flag:
            return True
        return domain is not None and len(text) == len(domain) + 1 \
            and bool(self.flags & user_flag)

    def _substitute(self, template, value, key, vdomain, kdomain, parts, quote):
        def add(text):
            out.append(quote(text) if quote else text)

        out = []
        pos = 0
        while pos < len(template):
            ch = template[pos]
            pos += 1
            if ch != "%":
                out.append(ch)
                continue
            ch = template[pos] if pos < len(template) else ""
            pos += 1
            if ch == "%":
                out.append("%")
            elif ch == "s":
                add(value)
            elif ch == "u":
                add(_local_of(value, vdomain))
            elif ch == "d":
                self._check_context(template, KEY_DOMAIN if key is None else VALUE_DOMAIN,
                                    vdomain)
                add(vdomain)
            elif ch == "S":
                add(key if key is not None else value)
            elif ch == "U":
                add(_local_of(key, kdomain) if key is not None else _local_of(value, vdomain))
            elif ch == "D":
                domain = kdomain if key is not None else vdomain
                self._check_context(template, KEY_DOMAIN, domain)
                add(domain)
            elif ch and ch in _DIGITS:
                if not self.flags & KEY_DOMAIN or self.nparts < int(ch) or parts is None:
                    msg.panic("db_common_expand: %s: %s: bad query/result template context"
                              % (self.table.name, template))
                add(parts[len(parts) - int(ch)])
            else:
                msg.fatal("db_common_expand: %s: invalid %s template '%s'"
                          % (self.table.name, "result" if key is not None else "query",
                             template))
        return "".join(out)

    def _check_context(self, template, flag, domain):
        if not self.flags & flag:
            msg.panic("db_common_expand: %s: %s: bad query/result template context"
                      % (self.table.name, template))
        if domain is None:
            msg.panic("db_common_expand: %s: %s: expanding domain-less key or value"
                      % (self.table.name, template))


def _domain_of(text):
    """What follows the last `@` (None without one)."""
    at = text.rfind("@")
    return None if at < 0 else text[at + 1:]


def _local_of(text, domain):
    return text if domain is None else text[:len(text) - len(domain) - 1]


def sql_build_query(parser):
    """The query of the legacy parameters: SELECT select_field FROM table WHERE ..."""
    table = parser.get_str("table", None, 1)
    if table is None:
        msg.fatal("db_common_sql_build_query: 'table' parameter not defined")
    select_field = parser.get_str("select_field", None, 1)
    if select_field is None:
        msg.fatal("db_common_sql_build_query: 'select_field' parameter not defined")
    where_field = parser.get_str("where_field", None, 1)
    if where_field is None:
        msg.fatal("db_common_sql_build_query: 'where_field' parameter not defined")
    conditions = parser.get_str("additional_conditions", "")
    return "SELECT %s FROM %s WHERE %s='%%s' %s" % (select_field, table, where_field,
                                                     conditions)


def valid_utf8(text):
    """Whether the key was valid UTF-8 (bytes that were not arrive as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def prepare_key(table, key, where, check_utf8=True):
    """The common start of a lookup: skip a non-UTF-8 key (unless the UTF-8 layer is
    active, or check_utf8 is off) and fold the key for FOLD_FIX tables. Returns the key
    or None."""
    from pyfix.maps.dict import FLAG_FOLD_FIX, FLAG_UTF8_ACTIVE, lowercase
    if check_utf8 and not table.flags & FLAG_UTF8_ACTIVE and not valid_utf8(key):
        if msg.verbose:
            msg.info("%s: Skipping lookup of non-UTF-8 key '%s'" % (where, key))
        return None
    if table.flags & FLAG_FOLD_FIX:
        key = lowercase(key)
    return key


def domain_allows(table, key, skipping):
    """The `domain` filter before a lookup: True to query. False answers "not found";
    on a lookup error in the domain list the table's error is set, else `skipping` is
    logged when verbose."""
    status = table.ctx.check_domain(key)
    if status > 0:
        return True
    if status < 0:
        table.error = status
    elif msg.verbose:
        msg.info(skipping)
    return False


def open_client_table(dict_type, table_class, name, open_flags, dict_flags, package=None):
    """Open an SQL or LDAP table from its client file: read-only, the client library
    present (`package` names the missing one), the file readable; else a surrogate."""
    def surrogate(reason):
        return SurrogateDict(dict_type, name, open_flags, dict_flags, reason)

    if open_flags != os.O_RDONLY:
        return surrogate("%s:%s map requires O_RDONLY access mode" % (dict_type, name))
    if package:
        return surrogate("unsupported dictionary type: %s (Python package %s missing)"
                         % (dict_type, package))
    try:
        parser = CfgParser(name)
    except OSError as exc:
        return surrogate("open %s: %s" % (name, msg.strerror(exc)))
    return table_class(name, open_flags, dict_flags, parser)

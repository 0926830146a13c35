"""ldap: tables, searches in an LDAP directory (Postfix's global/dict_ldap.c,
ldap_table(5)), through the ldap3 client library.

    server_host = ldap://ldap1.example.com ldap2.example.com:3389
    search_base = dc=example, dc=com
    query_filter = (mailLocalAddress=%s)
    result_attribute = mailRoutingAddress
    bind = no

The parameters come from a client file (ldap:/etc/postfix/ldap-aliases.cf) or, in the
older style, from main.cf with the table name as prefix (ldap:ldapsource reads
ldapsource_server_host, ...). Each value of a result attribute of each entry found is
expanded with result_format and the results are joined with commas.

Attributes named in special_result_attribute hold DNs or LDAP URLs, which are searched
in turn (up to recursion_limit deep); an entry with a terminal_result_attribute gives
only those and is not expanded further; leaf_result_attribute values come only from
entries without special attributes. A server that cannot be reached, a failed bind, a
search error, a size or expansion limit that is exceeded: a warning and ERR_RETRY (a
temporary failure). Tables with the same server and bind settings share a connection,
which is opened when first needed and reopened once when the server has gone away.
"""

import contextlib
import ssl
import sys

from pyfix.common import msg
from pyfix.common.strings import tokens

from pyfix.maps import db_common, libldap
from pyfix.maps.dict import ERR_RETRY, FLAG_FIXED, FLAG_PATTERN, Dict
from pyfix.maps.ldap_conn import LdapConnection, ldap3, shared_connection

TYPE = "ldap"
LDAP_PORT = 389
BIND_NONE, BIND_SIMPLE, BIND_SASL = 0, 1, 2
_BIND_OPTIONS = {"no": BIND_NONE, "none": BIND_NONE, "yes": BIND_SIMPLE,
                 "simple": BIND_SIMPLE, "sasl": BIND_SASL}
_SCOPES = {"one": libldap.SCOPE_ONELEVEL, "base": libldap.SCOPE_BASE,
           "sub": libldap.SCOPE_SUBTREE}


class LdapDict(Dict):
    type = TYPE

    def __init__(self, name, open_flags, dict_flags, parser):
        super().__init__(name, open_flags, dict_flags)
        self.parser = parser
        self.owner_uid = parser.owner_uid
        self._parse_server()
        self._parse_queries()
        self._parse_attributes()
        self._parse_options()
        self.conn = shared_connection(self.connection_key(), self._new_connection)
        self.recursion = 0
        self.expansion = 0

    # -- configuration --------------------------------------------------------------------

    def _parse_server(self):
        p = self.parser
        hosts = p.get_str("server_host", "localhost", 1)
        self.server_port = p.get_int("server_port", LDAP_PORT)
        self.version = p.get_int("version", 3, 2)
        if self.version not in (2, 3):
            msg.warn("dict_ldap_open: %s Unknown version %d, using 3."
                     % (self.name, self.version))
            self.version = 3
        self.ldap_ssl = False
        self.urls = []
        for host in tokens(hosts):
            self._add_server(host)
        self.server_host = " ".join(self.urls)
        self.server_port = LDAP_PORT
        if msg.verbose:
            msg.info("dict_ldap_open: %s server_host URL is %s" % (self.name, self.server_host))

    def _add_server(self, host):
        if not libldap.is_ldap_url(host):
            self.urls.append("ldap://%s" % host if ":" in host
                             else "ldap://%s:%d" % (host, self.server_port))
            return
        url, err = libldap.url_parse(host)
        if url is None:
            msg.error("dict_ldap_open: error parsing URL %s: %d: %s; skipping"
                      % (host, err, libldap.err2string(err)))
            return
        if url.scheme != "ldap" and self.version != 3:
            msg.warn("dict_ldap_open: URL scheme %s requires protocol version 3" % url.scheme)
            self.version = 3
        if url.scheme == "ldaps":
            self.ldap_ssl = True
        self.urls.append(host)

    def _parse_queries(self):
        p = self.parser
        scope = p.get_str("scope", "sub", 1)
        self.scope = _SCOPES.get(scope.lower())
        if self.scope is None:
            msg.warn("dict_ldap_open: %s: Unrecognized value %s specified for scope; using sub"
                     % (self.name, scope))
            self.scope = libldap.SCOPE_SUBTREE
        self.search_base = p.get_str("search_base", "")
        self.timeout = p.get_int("timeout", 10)
        self.query = p.get_str("query_filter", "(mailacceptinggeneralid=%s)")
        self.result_format = p.get_str("result_format", None)
        if self.result_format is None:
            self.result_format = p.get_str("result_filter", "%s", 1)
        self.ctx = db_common.DbCommon(self)
        self.dynamic_base = self.ctx.parse(self.search_base, True)
        if not self.ctx.parse(self.query, True):
            msg.warn("dict_ldap_open: %s: Fixed query_filter %s is probably useless"
                     % (self.name, self.query))
        self.ctx.parse(self.result_format, False)
        self.ctx.parse_domain(p)
        self.flags |= FLAG_PATTERN if self.ctx.dict_partial() else FLAG_FIXED

    def _parse_attributes(self):
        """result_attributes: terminal, then leaf-only, then ordinary, then special."""
        p = self.parser
        self.result_attributes = tokens(p.get_str("terminal_result_attribute", ""))
        self.num_terminal = len(self.result_attributes)
        self.result_attributes += tokens(p.get_str("leaf_result_attribute", ""))
        self.num_leaf = len(self.result_attributes) - self.num_terminal
        self.result_attributes += tokens(p.get_str("result_attribute", "maildrop"))
        self.num_attributes = len(self.result_attributes)
        self.result_attributes += tokens(p.get_str("special_result_attribute", ""))

    def _parse_options(self):
        p = self.parser
        bind = p.get_str("bind", "yes", 1)
        self.bind = _BIND_OPTIONS.get(bind.lower(), -1)
        if self.bind < 0:
            msg.fatal("%s: unsupported parameter value: %s = %s" % (p.name, "bind", bind))
        self.bind_dn = p.get_str("bind_dn", "")
        self.bind_pw = p.get_str("bind_pw", "")
        if p.get_bool("cache", False):
            msg.warn("dict_ldap_open: %s ignoring cache" % self.name)
        for name in ("cache_expiry", "cache_size"):
            if p.get_int(name, -1) >= 0:
                msg.warn("dict_ldap_open: %s ignoring %s" % (self.name, name))
        self.recursion_limit = p.get_int("recursion_limit", 1000, 1)
        self.expansion_limit = p.get_int("expansion_limit", 0)
        self.size_limit = p.get_int("size_limit", self.expansion_limit)
        self.dereference = p.get_int("dereference", 0)
        if not 0 <= self.dereference <= 3:
            msg.warn("dict_ldap_open: %s Unrecognized value %d specified for dereference; "
                     "using 0" % (self.name, self.dereference))
            self.dereference = 0
        self.chase_referrals = p.get_bool("chase_referrals", False)
        self.sasl = {}
        if self.bind == BIND_SASL:
            self.sasl = {"mechs": p.get_str("sasl_mechs", ""),
                         "realm": p.get_str("sasl_realm", ""),
                         "authz": p.get_str("sasl_authz_id", ""),
                         "minssf": p.get_int("sasl_minssf", 0, 0, 4096)}
        self.start_tls = p.get_bool("start_tls", False)
        if self.start_tls and self.version < 3:
            msg.warn("dict_ldap_open: %s start_tls requires protocol version 3" % self.name)
            self.version = 3
        self.tls = {"require_cert": p.get_bool("tls_require_cert", False)}
        for name in ("tls_ca_cert_file", "tls_ca_cert_dir", "tls_cert", "tls_key",
                     "tls_random_file", "tls_cipher_suite"):
            self.tls[name] = p.get_str(name, "")
        self.debuglevel = p.get_int("debuglevel", 0)

    def connection_key(self):
        """What makes two tables share a connection (dict_ldap_conn_find())."""
        sslon = self.start_tls or self.ldap_ssl
        return (self.server_host, self.server_port, self.bind,
                self.bind_dn if self.bind else "", self.bind_pw if self.bind else "",
                self.dereference, self.chase_referrals, self.debuglevel, self.version,
                tuple(sorted(self.sasl.items())), self.ldap_ssl, self.start_tls,
                tuple(sorted(self.tls.items())) if sslon else ())

    def _new_connection(self):
        return LdapConnection(self.urls, self.version, self.dereference,
                              self.chase_referrals, self._tls_context())

    def _tls_context(self):
        if not (self.start_tls or self.ldap_ssl):
            return None
        tls = self.tls
        return {"validate": ssl.CERT_REQUIRED if tls["require_cert"] else ssl.CERT_NONE,
                "ca_certs_file": tls["tls_ca_cert_file"] or None,
                "ca_certs_path": tls["tls_ca_cert_dir"] or None,
                "local_certificate_file": tls["tls_cert"] or None,
                "local_private_key_file": tls["tls_key"] or None,
                "ciphers": tls["tls_cipher_suite"] or None}

    # -- connecting -----------------------------------------------------------------------

    def _dn_log(self):
        return self.bind_dn or "empty or implicit"

    def _connect(self):
        """dict_ldap_connect(): a fresh, bound connection, or ERR_RETRY with a warning."""
        self.error = 0
        conn = self.conn
        if msg.verbose:
            msg.info("dict_ldap_connect: Connecting to server %s" % self.server_host)
        conn.reset(self.timeout)
        if self.start_tls:
            rc = conn.start_tls()
            if rc != libldap.SUCCESS:
                msg.error("dict_ldap_connect: Unable to set STARTTLS: %d: %s"
                          % (rc, libldap.err2string(rc)))
                conn.unbind()
                self.error = ERR_RETRY
                return False
        if self.bind != BIND_NONE:
            if msg.verbose:
                msg.info("dict_ldap_connect: Binding to server %s with dn %s"
                         % (self.server_host, self._dn_log()))
            rc = conn.bind(self.bind_dn, self.bind_pw, self.sasl if self.bind == BIND_SASL
                           else None)
            if rc != libldap.SUCCESS:
                msg.warn("dict_ldap_connect: Unable to bind to server %s with dn %s: %d (%s)"
                         % (self.server_host, self._dn_log(), rc, libldap.err2string(rc)))
                conn.unbind()
                self.error = ERR_RETRY
                return False
            if msg.verbose:
                msg.info("dict_ldap_connect: Successful bind to server %s with dn %s"
                         % (self.server_host, self._dn_log()))
        conn.connected = True
        if msg.verbose:
            msg.info("dict_ldap_connect: Cached connection handle for LDAP source %s"
                     % self.parser.name)
        return True

    # -- lookups ------------------------------------------------------------------------------

    def _lookup(self, key):
        where = "dict_ldap_lookup"
        key = db_common.prepare_key(self, key, "%s: %s" % (where, self.parser.name))
        if key is None:
            return None
        if not db_common.domain_allows(
                self, key, "%s: %s: Skipping lookup of key '%s': domain mismatch"
                % (where, self.parser.name, key)):
            return None
        if not self.conn.connected and not self._connect():
            return None
        base = self.ctx.expand(self.search_base, key, quote=libldap.rfc2253_quote)
        if base is None:
            return None
        query = self.ctx.expand(self.query, key, quote=libldap.rfc2254_quote)
        if query is None:
            return None
        if msg.verbose:
            msg.info("%s: %s: Searching with filter %s" % (where, self.parser.name, query))
        with _deep_recursion(self.recursion_limit):
            return self._search_key(key, base, query)

    def _search_key(self, key, base, query):
        where = "dict_ldap_lookup"
        rc, entries = self._search(base, self.scope, query, self.result_attributes)
        if rc == libldap.SERVER_DOWN:
            if msg.verbose:
                msg.info("%s: Lost connection for LDAP source %s, reopening"
                         % (where, self.parser.name))
            self.conn.unbind()
            if not self._connect():
                return None
            rc, entries = self._search(base, self.scope, query, self.result_attributes)
        result = self._search_done(rc, entries, key, base)
        return result if result and not self.error else None

    def _search(self, base, scope, query, attrs):
        return self.conn.search(base, scope, query, attrs, self.size_limit, self.timeout)

    def _search_done(self, rc, entries, key, base):
        where = "dict_ldap_lookup"
        if rc == libldap.SUCCESS:
            result = self._get_values(entries, key, "")
            rc = self.conn.last_rc
            if rc not in (libldap.SUCCESS, libldap.DECODING_ERROR):
                msg.warn("%s: Had some trouble with entries returned by search: %s"
                         % (where, libldap.err2string(rc)))
            return result
        if rc == libldap.NO_SUCH_OBJECT:
            if not self.dynamic_base:
                msg.warn("%s: %s: Search base '%s' not found: %d: %s"
                         % (where, self.parser.name, base, rc, libldap.err2string(rc)))
                self.error = ERR_RETRY
            return ""
        msg.warn("%s: Search error %d: %s " % (where, rc, libldap.err2string(rc)))
        self.conn.unbind()
        self.error = ERR_RETRY
        return ""

    # -- dict_ldap_get_values ---------------------------------------------------------------

    def _get_values(self, entries, key, result):
        """The values of the result attributes of entries, recursing into the values of
        special attributes; returns result with them appended."""
        self.recursion += 1
        if self.recursion == 1:
            self.expansion = 0
        try:
            state = {"leaf": True, "terminal": False, "count": 0}
            for entry in entries:
                result = self._entry_values(entry, key, result, state)
        finally:
            self.recursion -= 1
        return result

    def _has_values(self, entry, names):
        """Whether the first of names that entry has holds values (None: it has none of
        them); looking for an absent attribute leaves OpenLDAP's DECODING_ERROR behind."""
        for name in names:
            values = _values_of(entry, name)
            if values is not None:
                return bool(values)
            self.conn.last_rc = libldap.DECODING_ERROR
        return None

    def _entry_values(self, entry, key, result, state):
        where = "dict_ldap_get_values[%d]" % self.recursion
        state["count"] += 1
        if self.error == 0 and self.size_limit and state["count"] > self.size_limit:
            msg.warn("%s: %s: Query size limit (%d) exceeded"
                     % (where, self.parser.name, self.size_limit))
            self.error = ERR_RETRY
        if self.num_terminal > 0:
            found = self._has_values(entry, self.result_attributes[:self.num_terminal])
            if found is not None:
                state["terminal"] = found
        if not state["terminal"] and self.num_leaf > 0:
            found = self._has_values(entry, self.result_attributes[self.num_attributes:])
            if found is not None:
                state["leaf"] = not found
        for attr, values in entry["attributes"]:
            if self.error or not values:
                continue
            result = self._attribute_values(attr, values, key, result, state)
        return result

    def _attribute_index(self, attr):
        for i, name in enumerate(self.result_attributes):
            if libldap.attrdesc_subtype(name, attr) > 0:
                return i
        return len(self.result_attributes)

    def _attribute_values(self, attr, values, key, result, state):
        where = "dict_ldap_get_values[%d]" % self.recursion
        i = self._attribute_index(attr)
        known = i < len(self.result_attributes)
        if i < self.num_attributes or state["terminal"]:
            if (state["terminal"] and i >= self.num_terminal) \
                    or (not state["leaf"] and i < self.num_terminal + self.num_leaf):
                if msg.verbose:
                    msg.info("%s: skipping %d value(s) of %s attribute %s"
                             % (where, len(values),
                                "non-terminal" if state["terminal"] else "leaf-only", attr))
                return result
            return self._expand_values(attr, values, key, result)
        if known and self.recursion < self.recursion_limit:
            for value in values:
                result = self._follow(value, key, result)
                if self.error:
                    break
            if msg.verbose and not self.error:
                msg.info("%s: search returned %d value(s) for special result attribute %s"
                         % (where, len(values), attr))
        elif known:
            msg.warn("%s: %s: Recursion limit exceeded for special attribute %s=%s"
                     % (where, self.parser.name, attr, values[0]))
            self.error = ERR_RETRY
        return result

    def _expand_values(self, attr, values, key, result):
        where = "dict_ldap_get_values[%d]" % self.recursion
        for value in values:
            expanded = self.ctx.expand(self.result_format, value, key, result=result)
            if expanded is None:
                continue
            result = expanded
            self.expansion += 1
            if 0 < self.expansion_limit < self.expansion:
                msg.warn("%s: %s: Expansion limit exceeded for key: '%s'"
                         % (where, self.parser.name, key))
                self.error = ERR_RETRY
                break
        if not self.error and msg.verbose:
            msg.info("%s: search returned %d value(s) for requested result attribute %s"
                     % (where, len(values), attr))
        return result

    def _follow(self, value, key, result):
        """Search the DN or LDAP URL held by a special attribute, and recurse."""
        where = "dict_ldap_get_values[%d]" % self.recursion
        if libldap.is_ldap_url(value):
            url, err = libldap.url_parse(value)
            if url is None:
                msg.warn("%s: malformed URL %s: %s(%d)"
                         % (where, value, libldap.err2string(err), err))
                self.error = ERR_RETRY
                return result
            attrs = self._url_attrs(url)
            if not attrs:
                if msg.verbose:
                    msg.info("%s: skipping URL %s: no pertinent attributes" % (where, value))
                return result
            if msg.verbose:
                msg.info("%s: looking up URL %s" % (where, value))
            rc, entries = self._search(url.dn, url.scope, url.filter or "(objectclass=*)",
                                       attrs)
        else:
            if msg.verbose:
                msg.info("%s: looking up DN %s" % (where, value))
            rc, entries = self._search(value, libldap.SCOPE_BASE, "objectclass=*",
                                       self.result_attributes)
        if rc == libldap.SUCCESS:
            return self._get_values(entries, key, result)
        if rc == libldap.NO_SUCH_OBJECT:
            msg.warn("%s: DN %s not found, skipping " % (where, value))
            return result
        msg.warn("%s: search error %d: %s " % (where, rc, libldap.err2string(rc)))
        self.error = ERR_RETRY
        return result

    def _url_attrs(self, url):
        """url_attrs(): the URL's attributes that are also result attributes."""
        if not url.attrs:
            return self.result_attributes
        attrs = []
        for a1 in url.attrs:
            for a2 in self.result_attributes:
                rel = libldap.attrdesc_subtype(a1, a2)
                if rel > 0:
                    attrs.append(a2)
                elif rel < 0:
                    attrs.append(a1)
        return attrs

    def close(self):
        self.conn.release()


@contextlib.contextmanager
def _deep_recursion(levels):
    """Room on Python's stack for special attributes nested `levels` deep (each level
    takes a few frames; recursion_limit may be as high as the default 1000)."""
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(max(saved, levels * _FRAMES_PER_LEVEL + saved))
    try:
        yield
    finally:
        sys.setrecursionlimit(saved)


_FRAMES_PER_LEVEL = 8


def _values_of(entry, name):
    """The values of attribute `name` in entry (ldap_get_values_len()), None if absent."""
    for attr, values in entry["attributes"]:
        if attr.lower() == name.lower():
            return values
    return None


def open_ldap(name, open_flags, dict_flags):
    return db_common.open_client_table(TYPE, LdapDict, name, open_flags, dict_flags,
                                       package="ldap3" if ldap3 is None else None)

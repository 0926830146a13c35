"""One LDAP client connection as Postfix's dict_ldap.c uses OpenLDAP's, over ldap3.

LdapConnection gives the operations the ldap: table needs with OpenLDAP's result
codes (maps/libldap.py): a connection that opens at its first operation, trying the
server URLs in order (as ldap_initialize() with a list of URLs does), an optional
STARTTLS, a simple or SASL bind, and searches that return (code, entries). A server that
cannot be reached, or that goes away, is LDAP_SERVER_DOWN (-1); a reply that does not
come within the timeout is LDAP_TIMEOUT (-5). last_rc is the code of the last operation
(OpenLDAP's ld_errno), which dict_ldap.c looks at after it has read a search result.

Tables with the same server and bind settings share one connection
(shared_connection(), Postfix's conn_hash).
"""

import codecs
from urllib.parse import quote

from pyfix.maps import libldap

try:
    import ldap3
    from ldap3.core import exceptions as ldap_exceptions
    from ldap3.core.connection import SASL_AVAILABLE_MECHANISMS
    from ldap3.protocol.rfc4511 import AuthenticationChoice, BindRequest, Simple, Version
except ImportError:             # the table type then says that ldap3 is missing
    ldap3 = None

# socket imports the idna codec on first use: load it now, before a daemon drops its
# privileges (the standard library may then be out of reach).
codecs.lookup("idna")

# ldap3 has no "children" scope (OpenLDAP's LDAP_SCOPE_CHILDREN from a URL): subtree.
_SCOPE = ("BASE", "LEVEL", "SUBTREE", "SUBTREE")
_DEREF_NAMES = ("NEVER", "SEARCH", "BASE", "ALWAYS")
_shared = {}
_LDAPI_DEFAULT = "/var/run/slapd/ldapi"     # LDAPI_SOCK of Debian's OpenLDAP


def shared_connection(key, factory):
    """The connection for key, made by factory() the first time; counted per table."""
    conn = _shared.get(key)
    if conn is None:
        conn = _shared[key] = factory()
        conn.key = key
    conn.refcount += 1
    return conn


def _text(value):
    if isinstance(value, str):
        return value
    return bytes(value).decode("utf-8", "surrogateescape")


class LdapConnection:
    def __init__(self, urls, version, dereference, chase_referrals, tls=None):
        self.urls = urls
        self.version = version
        self.dereference = dereference
        self.chase_referrals = chase_referrals
        self.tls = tls
        self.timeout = 10
        self.ld = None                 # the open ldap3 Connection
        self.connected = False         # set up by dict_ldap_connect() (conn_ld != 0)
        self.last_rc = libldap.SUCCESS
        self.refcount = 0
        self.key = None

    # -- life cycle ---------------------------------------------------------------------------

    def reset(self, timeout):
        """A new handle (ldap_initialize()): nothing is sent until the first operation."""
        self.unbind()
        self.timeout = timeout or None

    def unbind(self):
        if self.ld is not None:
            try:
                self.ld.unbind()
            except Exception:       # noqa: BLE001 - the connection may be dead already
                pass
        self.ld = None
        self.connected = False

    def release(self):
        self.refcount -= 1
        if self.refcount <= 0:
            self.unbind()
            _shared.pop(self.key, None)

    def _server(self, url):
        """The ldap3 Server of an `ldap[si]://host:port/...` URL."""
        tls = None
        if self.tls is not None:
            tls = ldap3.Tls(**{k: v for k, v in self.tls.items() if v is not None})
        parsed, _ = libldap.url_parse(url)
        if parsed.scheme == "ldapi":
            return ldap3.Server("ldapi://" + quote(parsed.host or _LDAPI_DEFAULT, safe=""),
                                connect_timeout=self.timeout, get_info=ldap3.NONE)
        ssl_on = parsed.scheme == "ldaps"
        return ldap3.Server(parsed.host or "localhost",
                            port=parsed.port or (636 if ssl_on else 389), use_ssl=ssl_on,
                            connect_timeout=self.timeout, get_info=ldap3.NONE, tls=tls)

    def _open(self):
        """Connect to the first server that answers; an error code, or SUCCESS."""
        if self.ld is not None:
            return libldap.SUCCESS
        for url in self.urls:
            try:
                ld = ldap3.Connection(self._server(url), version=self.version,
                                      receive_timeout=self.timeout, raise_exceptions=False,
                                      auto_referrals=self.chase_referrals,
                                      return_empty_attributes=False, read_only=True)
                ld.open(read_server_info=False)
            except Exception:       # noqa: BLE001 - ldap3 raises many kinds; try the next
                continue
            self.ld = ld
            return libldap.SUCCESS
        return libldap.SERVER_DOWN

    def _failed(self, exc):
        """The OpenLDAP code for an ldap3 exception; the connection is no longer usable."""
        e = ldap_exceptions
        if isinstance(exc, RecursionError):
            raise exc
        if isinstance(exc, e.LDAPInvalidFilterError):
            return libldap.FILTER_ERROR
        if isinstance(exc, e.LDAPInvalidDnError):
            return libldap.INVALID_DN_SYNTAX
        if isinstance(exc, e.LDAPResponseTimeoutError) or "timed out" in str(exc).lower():
            self._drop()
            return libldap.TIMEOUT
        self._drop()
        return libldap.SERVER_DOWN

    def _drop(self):
        ld, self.ld = self.ld, None
        if ld is not None:
            try:
                ld.unbind()
            except Exception:       # noqa: BLE001
                pass

    # -- operations ---------------------------------------------------------------------------

    def start_tls(self):
        rc = self._open()
        if rc != libldap.SUCCESS:
            return rc
        try:
            if self.ld.start_tls(read_server_info=False):
                return libldap.SUCCESS
        except ldap_exceptions.LDAPStartTLSError:
            pass                    # the server's answer is in ld.result
        except Exception as exc:    # noqa: BLE001
            return self._failed(exc)
        return (self.ld.result or {}).get("result") or libldap.CONNECT_ERROR

    def bind(self, dn, password, sasl=None):
        """A simple bind with dn and password (both may be empty), or a SASL bind."""
        rc = self._open()
        if rc == libldap.SUCCESS:
            try:
                rc = self._sasl_bind(dn, password, sasl) if sasl is not None \
                    else self._simple_bind(dn, password)
            except Exception as exc:    # noqa: BLE001
                rc = self._failed(exc)
        self.last_rc = rc
        return rc

    def _simple_bind(self, dn, password):
        request = BindRequest()
        request["version"] = Version(self.version)
        request["name"] = dn
        request["authentication"] = AuthenticationChoice().setComponentByName(
            "simple", Simple(password))
        self.ld.post_send_single_response(self.ld.send("bindRequest", request, None))
        return self.ld.result.get("result", libldap.SERVER_DOWN)

    def _sasl_bind(self, dn, password, sasl):
        """bind = sasl: the first of sasl_mechs that ldap3 implements."""
        mechs = [m for m in sasl["mechs"].upper().split() if m in SASL_AVAILABLE_MECHANISMS]
        if not mechs:
            return libldap.AUTH_UNKNOWN
        mech = mechs[0]
        authz = sasl["authz"] or None
        credentials = {"DIGEST-MD5": (sasl["realm"] or None, dn, password, authz),
                       "PLAIN": (authz or "", dn, password),
                       "EXTERNAL": authz,
                       "GSSAPI": None}.get(mech)
        self.ld.authentication = ldap3.SASL
        self.ld.sasl_mechanism = mech
        self.ld.sasl_credentials = credentials
        self.ld.bind(read_server_info=False)
        return self.ld.result.get("result", libldap.SERVER_DOWN)

    def search(self, base, scope, query, attrs, size_limit, time_limit):
        """(code, entries): entries as {"dn": dn, "attributes": [(name, [values])]}."""
        rc = self._open()
        if rc != libldap.SUCCESS:
            self.last_rc = rc
            return rc, []
        if not query.startswith("("):
            query = "(%s)" % query
        try:
            self.ld.search(base, query, search_scope=getattr(ldap3, _SCOPE[scope]),
                           dereference_aliases=getattr(ldap3, "DEREF_" + _DEREF_NAMES[
                               self.dereference]),
                           attributes=list(attrs) or [ldap3.ALL_ATTRIBUTES],
                           size_limit=size_limit, time_limit=time_limit or 0)
        except Exception as exc:    # noqa: BLE001
            rc = self._failed(exc)
            self.last_rc = rc
            return rc, []
        rc = self.ld.result.get("result", libldap.SERVER_DOWN)
        self.last_rc = rc
        return rc, [_entry(e) for e in self.ld.response or ()
                    if e.get("type") == "searchResEntry"]



def _entry(response):
    attributes = [(name, [_text(v) for v in values])
                  for name, values in response.get("raw_attributes", {}).items()]
    return {"dn": response.get("dn", ""), "attributes": attributes}

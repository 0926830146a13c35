"""The parts of OpenLDAP's client library that Postfix's dict_ldap.c leans on, for the
ldap: table (maps/dict_ldap.py), which talks to the server through ldap3.

- ldap_err2string(): OpenLDAP's wording of result codes, which Postfix puts in its
  warnings (`Search error 32: No such object`), negative codes being the client-side
  ones (-1 `Can't contact LDAP server`, -5 `Timed out`, ...);
- ldap_is_ldap_url() and ldap_url_parse(): LDAP URLs in server_host and in special
  result attributes, `ldap://host:port/dn?attrs?scope?filter?exts` (RFC 4516, with
  OpenLDAP's historic defaults: scope base, no filter);
- the quoting of a key for a DN (RFC 2253) and for a search filter (RFC 2254).
"""

from urllib.parse import unquote_to_bytes

SUCCESS = 0
SIZELIMIT_EXCEEDED = 4
NO_SUCH_OBJECT = 32
INVALID_DN_SYNTAX = 34
SERVER_DOWN = -1
DECODING_ERROR = -4
TIMEOUT = -5
AUTH_UNKNOWN = -6
FILTER_ERROR = -7
CONNECT_ERROR = -11

SCOPE_BASE, SCOPE_ONELEVEL, SCOPE_SUBTREE, SCOPE_CHILDREN = 0, 1, 2, 3

_MESSAGES = {
    0: "Success", 1: "Operations error", 2: "Protocol error", 3: "Time limit exceeded",
    4: "Size limit exceeded", 5: "Compare False", 6: "Compare True",
    7: "Authentication method not supported", 8: "Strong(er) authentication required",
    9: "Partial results and referral received", 10: "Referral",
    11: "Administrative limit exceeded", 12: "Critical extension is unavailable",
    13: "Confidentiality required", 14: "SASL bind in progress", 16: "No such attribute",
    17: "Undefined attribute type", 18: "Inappropriate matching",
    19: "Constraint violation", 20: "Type or value exists", 21: "Invalid syntax",
    32: "No such object", 33: "Alias problem", 34: "Invalid DN syntax",
    35: "Entry is a leaf", 36: "Alias dereferencing problem",
    48: "Inappropriate authentication", 49: "Invalid credentials",
    50: "Insufficient access", 51: "Server is busy", 52: "Server is unavailable",
    53: "Server is unwilling to perform", 54: "Loop detected", 64: "Naming violation",
    65: "Object class violation", 66: "Operation not allowed on non-leaf",
    67: "Operation not allowed on RDN", 68: "Already exists",
    69: "Cannot modify object class", 70: "Results too large",
    71: "Operation affects multiple DSAs", 76: "Virtual List View error",
    80: "Other (e.g., implementation specific) error", 118: "Cancelled",
    119: "No Operation to Cancel", 120: "Too Late to Cancel", 121: "Cannot Cancel",
    122: "Assertion Failed", 123: "Proxied Authorization Denied",
    -1: "Can't contact LDAP server", -2: "Local error", -3: "Encoding error",
    -4: "Decoding error", -5: "Timed out", -6: "Unknown authentication method",
    -7: "Bad search filter", -8: "User cancelled operation",
    -9: "Bad parameter to an ldap routine", -10: "Out of memory", -11: "Connect error",
    -12: "Not Supported", -13: "Control not found", -14: "No results returned",
    -15: "More results to return", -16: "Client Loop", -17: "Referral Limit Exceeded",
    -18: "Connecting (X)",
}


def err2string(code):
    """ldap_err2string()"""
    if code in _MESSAGES:
        return _MESSAGES[code]
    if code < 0:
        return "Unknown API error"
    if 0x1000 <= code <= 0x3fff:
        return "Unknown (extension) error"
    if 0x4000 <= code <= 0xffff:
        return "Unknown (private extension) error"
    return "Unknown error"


# -- URLs -----------------------------------------------------------------------------------

URL_ERR_BADSCHEME = 3
URL_ERR_BADENCLOSURE = 4
URL_ERR_BADURL = 5
URL_ERR_BADHOST = 6
URL_ERR_BADSCOPE = 8
URL_ERR_BADEXTS = 10
_SCHEMES = ("ldap", "ldaps", "ldapi")
_SCOPES = {"base": SCOPE_BASE, "one": SCOPE_ONELEVEL, "onelevel": SCOPE_ONELEVEL,
           "sub": SCOPE_SUBTREE, "subtree": SCOPE_SUBTREE, "subord": SCOPE_CHILDREN,
           "subordinate": SCOPE_CHILDREN, "children": SCOPE_CHILDREN}


class LdapUrl:
    """What ldap_url_parse() gives: scheme, host, port, dn, attrs, scope, filter."""

    def __init__(self, scheme):
        self.scheme = scheme
        self.host = ""
        self.port = None
        self.dn = ""
        self.attrs = []
        self.scope = SCOPE_BASE
        self.filter = None


def _strip_enclosure(url):
    """The URL without `<...>` and `URL:`; None when the enclosure is unbalanced."""
    enclosed = url.startswith("<")
    if enclosed:
        url = url[1:]
    if url[:4].upper() == "URL:":
        url = url[4:]
    if enclosed:
        if not url.endswith(">"):
            return None
        url = url[:-1]
    return url


def _scheme_of(url):
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep and scheme.lower() in _SCHEMES else None


def is_ldap_url(text):
    """ldap_is_ldap_url()"""
    url = _strip_enclosure(text)
    return url is not None and _scheme_of(url) is not None


def _decode(text):
    return unquote_to_bytes(text).decode("utf-8", "surrogateescape")


def url_parse(text):
    """ldap_url_parse(): (LdapUrl, 0) or (None, LDAP_URL_ERR_* code)."""
    url = _strip_enclosure(text)
    if url is None:
        return None, URL_ERR_BADENCLOSURE
    scheme = _scheme_of(url)
    if scheme is None:
        return None, URL_ERR_BADSCHEME
    result = LdapUrl(scheme)
    rest = url[len(scheme) + 3:]
    hostport, slash, rest = rest.partition("/")
    err = _parse_hostport(result, hostport)
    if err:
        return None, err
    if not slash:
        return result, 0
    fields = rest.split("?")
    if len(fields) > 5:
        return None, URL_ERR_BADURL
    fields += [""] * (5 - len(fields))
    result.dn = _decode(fields[0])
    result.attrs = [_decode(a) for a in fields[1].split(",") if a] if fields[1] else []
    if fields[2]:
        scope = _SCOPES.get(_decode(fields[2]).lower())
        if scope is None:
            return None, URL_ERR_BADSCOPE
        result.scope = scope
    result.filter = _decode(fields[3]) or None
    if fields[4] and any(not e.lstrip("!") for e in fields[4].split(",")):
        return None, URL_ERR_BADEXTS
    return result, 0


def _parse_hostport(result, hostport):
    if result.scheme == "ldapi":
        result.host = _decode(hostport)
        return 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return URL_ERR_BADURL
        result.host, port = hostport[1:end], hostport[end + 1:]
        if port and not port.startswith(":"):
            return URL_ERR_BADURL
        port = port[1:]
    else:
        host, colon, port = hostport.rpartition(":")
        result.host = _decode(host if colon else hostport)
        port = port if colon else ""
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            return URL_ERR_BADURL
        result.port = int(port)
    return 0


# -- quoting --------------------------------------------------------------------------------

def _escape(text, special):
    out = []
    for ch in text:
        if ch in special:
            out.append("\\%02X" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def rfc2253_quote(text):
    """A key made safe for the search base: blanks, quotes, # + , ; < > \\ as \\XX."""
    return _escape(text, ' \t"#+,;<>\\')


def rfc2254_quote(text):
    """A key made safe for the search filter: * ( ) \\ as \\XX."""
    return _escape(text, "*()\\")


def attrdesc_subtype(a1, a2):
    """1 when a2 is a1 or a subtype of it (a1;option), -1 when a1 is a subtype of a2,
    0 for distinct attributes (attribute names compare case-insensitively)."""
    i = 0
    while i < len(a1) and i < len(a2) and a1[i].lower() == a2[i].lower():
        i += 1
    if i == len(a1) and (i == len(a2) or a2[i] == ";"):
        return 1
    if i == len(a2) and i < len(a1) and a1[i] == ";":
        return -1
    return 0

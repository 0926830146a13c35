"""Host name and address syntax checks (util/valid_hostname.c, util/valid_utf8_hostname.c).

These are Postfix's own syntax rules, which differ from Python's ipaddress module in the
corners: `0.0.0.0` is an address but `0.1.2.3` is not, an IPv6 field holds at most four hex
digits, a host name may contain `_` but may not be all digits. Each function returns a
boolean and logs nothing (Postfix's DONT_GRIPE), unless the address checks are asked to
gripe: then they log Postfix's warning for the first problem.
"""

HOSTNAME_MAX = 255      # RFC 1035
LABEL_MAX = 63          # RFC 1035
_DIGITS = "0123456789"
_HEX_DIGITS = "0123456789abcdefABCDEF"


def is_digit(ch):
    """ISDIGIT(): an ASCII digit (the C locale)."""
    return ch != "" and ch in _DIGITS


def all_digits(text):
    """alldig(): a non-empty string of ASCII digits."""
    return text != "" and all(ch in _DIGITS for ch in text)


def _is_alnum(ch):
    return ch.isascii() and ch.isalnum()


def valid_hostname(name):
    """A syntactically valid ASCII host name: labels of letters, digits, `-` and `_`."""
    if not name:
        return False
    label_length = 0
    non_numeric = False
    for pos, ch in enumerate(name):
        following = name[pos + 1:pos + 2]
        if _is_alnum(ch) or ch == "_":
            label_length += 1
            if label_length > LABEL_MAX:
                return False
            if not is_digit(ch):
                non_numeric = True
        elif ch == ".":
            if label_length == 0 or following == "":
                return False
            label_length = 0
        elif ch == "-":
            non_numeric = True
            label_length += 1
            if label_length == 1 or following in ("", "."):
                return False
        else:
            return False
    return non_numeric and len(name) <= HOSTNAME_MAX


def valid_utf8_hostname(enable_utf8, name):
    """valid_hostname(), but a non-ASCII name is accepted when it converts to IDNA."""
    if not name:
        return False
    if enable_utf8 and not name.isascii():
        try:
            ascii_name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return False
        return valid_hostname(ascii_name)
    return valid_hostname(name)


def valid_hostaddr(addr):
    """A numeric IPv4 or IPv6 address (an address with `:` is taken as IPv6)."""
    if not addr:
        return False
    if ":" in addr:
        return valid_ipv6_hostaddr(addr)
    return valid_ipv4_hostaddr(addr)


def _gripe(gripe, function, problem, addr):
    """With gripe (Postfix's DO_GRIPE), log why addr is not valid."""
    if gripe:
        from pyfix.common import msg
        msg.warn("%s: %s: %.100s" % (function, problem, addr))
    return False


def _byte(ch):
    """The first byte of a character, as Postfix's %d of an unsigned char shows it."""
    return ch.encode("utf-8", "surrogateescape")[0]


def valid_ipv4_hostaddr(addr, gripe=False):
    """A dotted quad with octets up to 255; a first octet of 0 only in 0.0.0.0."""
    name = "valid_ipv4_hostaddr"
    in_octet = False
    octet_count = 0
    value = 0
    for pos, ch in enumerate(addr):
        if is_digit(ch):
            if not in_octet:
                in_octet = True
                value = 0
                octet_count += 1
            value = value * 10 + int(ch)
            if value > 255:
                return _gripe(gripe, name, "invalid octet value", addr)
        elif ch == ".":
            if not in_octet or pos + 1 == len(addr):
                return _gripe(gripe, name, "misplaced dot", addr)
            if octet_count == 1 and value == 0 and addr.lstrip("0.") != "":
                return _gripe(gripe, name, "bad initial octet value", addr)
            in_octet = False
        else:
            return _gripe(gripe, name, "invalid character %d(decimal)" % _byte(ch), addr)
    if octet_count != 4:
        return _gripe(gripe, name, "invalid octet count", addr)
    return True


def _hex_run(text, pos):
    end = pos
    while end < len(text) and text[end] in _HEX_DIGITS:
        end += 1
    return end - pos


def valid_ipv6_hostaddr(addr, gripe=False):
    """Eight hex fields (or an IPv4 tail), with at most one `::` compression."""
    name = "valid_ipv6_hostaddr"
    null_field = 0
    field = 0
    length = 0
    pos = 0
    while True:
        ch = addr[pos:pos + 1]
        if ch == "":
            if field < 2:
                return _gripe(gripe, name, "too few `:' in IPv6 address", addr)
            if length == 0 and null_field != field - 1:
                return _gripe(gripe, name, "bad null last field in IPv6 address", addr)
            return True
        if ch == ".":
            if field < 2 or field > 6:
                return _gripe(gripe, name, "malformed IPv4-in-IPv6 address", addr)
            return valid_ipv4_hostaddr(addr[pos - length:], gripe)
        if ch == ":":
            following = addr[pos + 1:pos + 2]
            if field == 0 and length == 0 and _is_alnum(following):
                return _gripe(gripe, name, "bad null first field in IPv6 address", addr)
            field += 1
            if field > 7:
                return _gripe(gripe, name, "too many `:' in IPv6 address", addr)
            pos += 1
            length = 0
            if addr[pos:pos + 1] == ":":
                if null_field > 0:
                    return _gripe(gripe, name, "too many `::' in IPv6 address", addr)
                null_field = field
            continue
        length = _hex_run(addr, pos)
        if length > 4:
            return _gripe(gripe, name, "malformed IPv6 address", addr)
        if length == 0:
            return _gripe(gripe, name, "invalid character %d(decimal) in IPv6 address"
                          % _byte(ch), addr)
        pos += length

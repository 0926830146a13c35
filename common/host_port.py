"""Splitting `host:port` endpoint text as Postfix does (global/host_port.c).

Accepted forms: `[host]:port`, `[host]`, `[ipv6:addr]:port`, `host:port`, `host:`, `:port`,
`port`. A missing part takes the caller's default; an error is Postfix's text, which callers
wrap in their own context (master.cf: `... in "<name>"`).
"""

from pyfix.common.valid_hostname import (all_digits, is_digit, valid_hostaddr,
                                         valid_ipv6_hostaddr, valid_utf8_hostname)

IPV6_PREFIX = "ipv6:"       # RFC 2821 address literal tag, matched case-insensitively


def host_port(text, def_host=None, def_service=None, enable_utf8=False):
    """Return (host, port, error); on error host and port are None."""
    if text.startswith("["):
        host, port, port_is_default, err = _split_bracketed(text[1:], def_service)
        host_is_default = False
    else:
        head, colon, tail = text.rpartition(":")
        if colon:
            host, port = head or def_host, tail or def_service
            host_is_default, port_is_default = not head, not tail
        else:
            host_is_default = def_host is not None
            host = def_host if host_is_default else (text or None)
            port_is_default = def_service is not None
            port = def_service if port_is_default else (text or None)
        err = None
    if err is None:
        err = _check(host, port, host_is_default, port_is_default, enable_utf8)
    if err:
        return None, None, err
    return host, port, None


def _split_bracketed(rest, def_service):
    """The part after `[`: (host, port, port_is_default, error)."""
    ipv6 = rest[:len(IPV6_PREFIX)].lower() == IPV6_PREFIX
    if ipv6:
        rest = rest[len(IPV6_PREFIX):]
    host, bracket, after = rest.partition("]")
    if not bracket:
        return None, None, False, 'missing "]"'
    if after and after[0] != ":":
        return None, None, False, 'garbage after "]"'
    if ipv6 and not valid_ipv6_hostaddr(host):
        return None, None, False, "malformed IPv6 address"
    after = after[1:]
    if after:
        return host, after, False, None
    return host, def_service, True, None


def _check(host, port, host_is_default, port_is_default, enable_utf8):
    if host is None:
        return "missing host information"
    if port is None:
        return "missing service information"
    if not host_is_default and not valid_utf8_hostname(enable_utf8, host) \
            and not valid_hostaddr(host):
        return "valid hostname or network address required"
    if not port_is_default and is_digit(port[:1]) and not all_digits(port):
        return "garbage after numerical service"
    return None

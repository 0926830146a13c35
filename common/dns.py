"""DNS lookups in the shape of Postfix's dns/dns_lookup.c, on dnspython.

lookup(name, rrtype) answers (status, records, why): status is OK, NOTFOUND (the name
or the record type does not exist), RETRY (no definitive answer: timeout, SERVFAIL),
INVAL (a malformed reply), or NULLMX (an MX lookup that found the RFC 7505 null MX).
lookup_l(name, types) asks for each type in turn, as dns_lookup_l() does, and stops at
the first success. `why` is Postfix's error text ("Host or domain name not found. Name
service error for name=x type=A: Host not found, try again").

The resolver is the system's (/etc/resolv.conf) unless main.cf sets pyfix's own
parameter `pyfix_dns_servers` (a list of `address` or `address:port` or
`[address]:port`): tests and sites point pyfix at a particular server with it. Postfix
itself has no such parameter; it always uses the system resolver.
"""

import dns.exception
import dns.flags
import dns.name
import dns.rdatatype
import dns.resolver

OK = "ok"
NOTFOUND = "notfound"
RETRY = "retry"
INVAL = "inval"
NULLMX = "nullmx"

SERVERS_PARAMETER = "pyfix_dns_servers"
_resolver = None


class Record:
    """One resource record: its owner name, type, preference (MX) and data text."""

    __slots__ = ("qname", "type", "pref", "data")

    def __init__(self, qname, rrtype, pref, data):
        self.qname = qname
        self.type = rrtype
        self.pref = pref
        self.data = data

    def __repr__(self):
        return "Record(%s %s %s %r)" % (self.qname, self.type, self.pref, self.data)


def _parse_server(text):
    """(address, port) of `addr`, `addr:port`, `[addr]:port` or `[addr]`."""
    if text.startswith("["):
        close = text.find("]")
        host, rest = text[1:close], text[close + 1:]
        return host, int(rest[1:]) if rest.startswith(":") else 53
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def init(config=None, servers=None):
    """Choose the resolver: explicit servers, the config's pyfix_dns_servers, or the
    system's."""
    global _resolver
    if servers is None and config is not None:
        servers = config.get_list(SERVERS_PARAMETER, "")
    if servers:
        resolver = dns.resolver.Resolver(configure=False)
        parsed = [_parse_server(item) for item in servers]
        resolver.nameservers = [host for host, _ in parsed]
        resolver.port = parsed[0][1]
    else:
        resolver = dns.resolver.Resolver()
    resolver.timeout = 5
    resolver.lifetime = 10
    _resolver = resolver
    return resolver


def resolver():
    return _resolver or init()


_H_ERR_TEXT = {NOTFOUND: "Host not found", RETRY: "Host not found, try again",
               INVAL: "Malformed or unexpected name server reply"}


def _why(name, rrtype, status):
    return ("Host or domain name not found. Name service error for name=%s type=%s: %s"
            % (name, rrtype, _H_ERR_TEXT.get(status, "Host not found")))


def _data(rrtype, rdata):
    if rrtype == "MX":
        return rdata.preference, rdata.exchange.to_text(omit_final_dot=True)
    if rrtype == "TXT":
        return 0, b"".join(rdata.strings).decode("utf-8", "replace")
    if rrtype in ("NS", "CNAME", "PTR"):
        return 0, rdata.target.to_text(omit_final_dot=True)
    return 0, rdata.to_text()


def lookup(name, rrtype):
    """(status, [Record], why) for one name and type."""
    try:
        qname = dns.name.from_text(name)
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return INVAL, [], _why(name, rrtype, INVAL)
    try:
        answer = resolver().resolve(qname, rrtype, raise_on_no_answer=False,
                                    search=False)
    except dns.resolver.NXDOMAIN:
        return NOTFOUND, [], _why(name, rrtype, NOTFOUND)
    except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.NoAnswer):
        return RETRY, [], _why(name, rrtype, RETRY)
    except dns.exception.DNSException:
        return INVAL, [], _why(name, rrtype, INVAL)
    if answer.rrset is None:
        return NOTFOUND, [], _why(name, rrtype, NOTFOUND)
    records = []
    for rdata in answer.rrset:
        pref, data = _data(rrtype, rdata)
        records.append(Record(answer.rrset.name.to_text(omit_final_dot=True), rrtype,
                              pref, data))
    if rrtype == "MX" and len(records) == 1 and records[0].data in ("", ".") \
            and records[0].pref == 0:
        return NULLMX, [], "Domain %s does not accept mail (nullMX)" % name
    return OK, records, ""


def lookup_l(name, types, stop_on=(OK,)):
    """dns_lookup_l(): each type in turn until a status in stop_on; the answer is the
    first success, else RETRY if any lookup had no definitive answer, else the last."""
    worst = None
    last = (NOTFOUND, [], _why(name, types[-1] if types else "A", NOTFOUND))
    for rrtype in types:
        result = lookup(name, rrtype)
        if result[0] in stop_on:
            return result
        if result[0] == RETRY and worst is None:
            worst = result
        last = result
    return worst or last

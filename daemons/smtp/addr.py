"""The servers of a destination (Postfix's smtp/smtp_addr.c): MX hosts in order of
preference, or the host's own addresses; the "loops back to myself" check.

smtp_domain_addr() looks up the MX records of a domain (no MX: the domain's own
addresses), the addresses of each MX host, shuffles them (smtp_randomize_addresses)
and sorts them by preference, so that servers of equal preference are tried in random
order. With loop detection (SMTP on port 25) every MX host at or after the preference
of an MX host that is this machine (inet_interfaces, proxy_interfaces) is dropped; if
none is left the mail loops back to myself (5.4.6), or the primary relay is unknown
(4.4.4). Lookups go through common/dns.py (smtp_host_lookup = dns) or getaddrinfo
(native).
"""

import ipaddress
import random
import socket

from pyfix.common import dns, msg

_FAMILY_TYPES = {socket.AF_INET: "A", socket.AF_INET6: "AAAA"}
# dns_lookup_rv(): which status of several lookups is reported.
_STATUS_RANK = {dns.OK: 4, dns.RETRY: 3, dns.INVAL: 2, dns.NOTFOUND: 1, dns.NULLMX: 0}


class Addr:
    """One server address: the name it was found for (the MX host, or the nexthop),
    its address text, the MX preference and the address family."""

    __slots__ = ("host", "addr", "pref", "family")

    def __init__(self, host, addr, pref, family):
        self.host = host
        self.addr = addr
        self.pref = pref
        self.family = family

    def __repr__(self):
        return "Addr(%s[%s] pref %d)" % (self.host, self.addr, self.pref)


def _numeric(host):
    text = host[5:] if host[:5].lower() == "ipv6:" else host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _family_of(address):
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


def host_lookup_mask(params):
    mask = set()
    for word in params.get_list("host_lookup"):
        if word.lower() not in ("dns", "native"):
            msg.fatal('bad %s value: "%s"' % (params.name("host_lookup"), word))
        mask.add(word.lower())
    return mask


def _dns_addresses(params, host, why):
    """dns_lookup_v() for the A/AAAA types that inet_protocols enables."""
    found = []
    best = None
    for family in params.families:
        status, records, reason = dns.lookup(host, _FAMILY_TYPES[family])
        for record in records:
            found.append((family, record.data))
        if best is None or _STATUS_RANK[status] >= _STATUS_RANK[best[0]]:
            best = (status, reason)
    if found:
        return dns.OK, found, ""
    return best if best else (dns.NOTFOUND, "")


def addr_one(params, addr_list, host, pref, why):
    """Append the addresses of one host (smtp_addr_one())."""
    numeric = _numeric(host)
    if numeric is not None:
        if _family_of(numeric) in params.families:
            addr_list.append(Addr(host, str(numeric), pref, _family_of(numeric)))
            return addr_list
    mask = host_lookup_mask(params)
    if "dns" in mask:
        result = _dns_addresses(params, host, why)
        status = result[0]
        if status == dns.OK:
            for family, data in result[1]:
                addr_list.append(Addr(host, data, pref, family))
            return addr_list
        why.reason = result[1]
        if status == dns.RETRY:
            why.status = "4.4.3"
            return addr_list
        if status == dns.INVAL:
            why.status = "4.4.4" if why.is_soft() else "5.4.4"
            return addr_list
        why.status = "4.4.4" if why.is_soft() else "5.4.4"      # not found
    if "native" in mask:
        _native(params, addr_list, host, pref, why)
    return addr_list


def _native(params, addr_list, host, pref, why):
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        retry = exc.errno in (socket.EAI_AGAIN, socket.EAI_MEMORY, socket.EAI_SYSTEM)
        nohost = exc.errno in (socket.EAI_AGAIN, socket.EAI_NODATA, socket.EAI_NONAME)
        if why.is_soft() or retry:
            dsn_status = "4.4.4" if nohost else "4.3.0"
        else:
            dsn_status = "5.4.4" if nohost else "5.3.0"
        why.simple(dsn_status, "unable to look up host %s: %s" % (host, exc.strerror))
        return
    found = 0
    for info in infos:
        if info[0] not in params.families:
            msg.info("skipping address family %d for host %s" % (info[0], host))
            continue
        found += 1
        addr_list.append(Addr(host, info[4][0].split("%")[0], pref, info[0]))
    if not found:
        why.simple("4.4.4" if why.is_soft() else "5.4.4", "%s: host not found" % host)


def _find_self(params, addr_list):
    own = params.own_addresses()
    for addr in addr_list:
        if addr.addr in own:
            return addr
    return None


def _order(params, addr_list):
    """Shuffle, then sort by preference (and address family as preferred)."""
    if len(addr_list) < 2:
        return addr_list
    if params.get_bool("randomize_addresses"):
        random.shuffle(addr_list)
    preference = params.get("address_preference").lower()
    if preference == "ipv6":
        key = lambda a: (a.pref, 0 if a.family == socket.AF_INET6 else 1)  # noqa: E731
    elif preference == "ipv4":
        key = lambda a: (a.pref, 0 if a.family == socket.AF_INET else 1)  # noqa: E731
    else:
        key = lambda a: a.pref  # noqa: E731
    addr_list.sort(key=key)
    return addr_list


def host_addr(params, host, loop_detect, why):
    """The addresses of one host, no MX lookup (smtp_host_addr())."""
    why.reset()
    addr_list = addr_one(params, [], host, 0, why)
    if addr_list and loop_detect and _find_self(params, addr_list) is not None:
        why.simple("5.4.6", "mail for %s loops back to myself" % host)
        return []
    if len(addr_list) > 1 and len(params.families) > 1:
        addr_list = _order(params, addr_list)
    elif len(addr_list) > 1 and params.get_bool("randomize_addresses"):
        random.shuffle(addr_list)
    return addr_list


def domain_addr(params, name, loop_detect, why):
    """The MX hosts' addresses of a domain (smtp_domain_addr()); (addresses,
    found_myself)."""
    why.reset()
    status, records, reason = dns.lookup(name, "MX")
    ignore_errors = params.config.get_bool("ignore_mx_lookup_error")
    if status == dns.NOTFOUND:
        return host_addr(params, name, loop_detect, why), False
    if status != dns.OK:
        why.reason = reason
        why.status = {dns.INVAL: "5.4.4", dns.NULLMX: "5.1.0"}.get(status, "4.4.3")
        if ignore_errors and status != dns.NULLMX:
            return host_addr(params, name, loop_detect, why), False
        return [], False
    records.sort(key=lambda record: record.pref)
    best_pref = records[0].pref
    addr_list = []
    for record in records:
        addr_one(params, addr_list, record.data, record.pref, why)
    if not addr_list:
        if params.get_bool("defer_if_no_mx_address_found") and why.is_hard():
            why.status = "4" + why.status[1:]
        msg.warn("no MX host for %s has a valid address record" % name)
        return [], False
    best_found = addr_list[0].pref
    myself = _find_self(params, addr_list) if loop_detect else None
    if myself is not None:
        addr_list = [addr for addr in addr_list if addr.pref < myself.pref]
        if not addr_list:
            if best_pref != best_found:
                why.simple("4.4.4", "unable to find primary relay for %s" % name)
            else:
                why.simple("5.4.6", "mail for %s loops back to myself" % name)
    return _order(params, addr_list), myself is not None

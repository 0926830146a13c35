"""The host's identity as Postfix computes it: myhostname, mydomain, mynetworks, inet_protocols.

These defaults are not fixed text: Postfix derives them from gethostname() and the network
interfaces (global/mynetworks.c, global/own_inet_addr.c, util/inet_proto.c), and pyfix
derives them the same way so that `postconf -d mynetworks` prints the same networks.
"""

import ipaddress
import socket

import psutil

from pyfix.common import msg
from pyfix.common.strings import tokens
from pyfix.common.valid_hostname import valid_hostname

DEFAULT_DOMAIN = "localdomain"

_PROTOCOL_NAMES = {"all": ("ipv4", "ipv6"), "ipv4": ("ipv4",), "ipv6": ("ipv6",)}


def get_hostname():
    """gethostname(), refused like Postfix when it is not a valid host name."""
    name = socket.gethostname()
    if not valid_hostname(name):
        msg.fatal("unable to use my own hostname")
    return name


def default_myhostname(mydomain_setting):
    """The host name, with `.$mydomain` (or `.localdomain`) appended when it has no dot."""
    name = get_hostname()
    if "." not in name:
        name = "%s.%s" % (name, mydomain_setting or DEFAULT_DOMAIN)
    return name


def default_mydomain(myhostname):
    """myhostname minus its first label, or `localdomain`."""
    _, dot, rest = myhostname.partition(".")
    return rest if dot else DEFAULT_DOMAIN


def inet_families(protocols, context="inet_protocols"):
    """The address families that inet_protocols enables, IPv4 first as in Postfix."""
    wanted = set()
    for name in tokens(protocols):
        names = _PROTOCOL_NAMES.get(name.lower())
        if names is None:
            msg.fatal('unknown %s value "%s" in "%s"' % (context, name, protocols))
        wanted.update(names)
    families = []
    for label, family in (("ipv4", socket.AF_INET), ("ipv6", socket.AF_INET6)):
        if label not in wanted:
            continue
        try:
            socket.socket(family, socket.SOCK_STREAM).close()
        except OSError as exc:
            msg.warn("%s: disabling %s name/address support: %s"
                     % (context, "IPv6" if label == "ipv6" else "IPv4", msg.strerror(exc)))
            continue
        families.append(family)
    return families


def local_interfaces(families):
    """(address, netmask) of every address on an interface that is up, per family in turn."""
    addresses = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    result = []
    for family in families:
        for name, entries in addresses.items():
            if name in stats and not stats[name].isup:
                continue
            for entry in entries:
                if entry.family != family or not entry.netmask:
                    continue
                address = ipaddress.ip_address(entry.address.split("%")[0])
                if address.is_unspecified:
                    continue
                result.append((address, ipaddress.ip_address(entry.netmask)))
    return result


def own_interfaces(inet_interfaces, families):
    """The (address, netmask) pairs that inet_interfaces selects (own_inet_addr.c)."""
    if not families:
        return []
    local = local_interfaces(families)
    if not local:
        msg.fatal("could not find any active network interfaces")
    if inet_interfaces == "all":
        return local
    if inet_interfaces == "loopback-only":
        return [(address, mask) for address, mask in local if address.is_loopback]
    selected = []
    for host in tokens(inet_interfaces, " \t,"):
        for address in _host_addresses(host, families):
            if address not in [a for a, _ in selected]:
                mask = next((m for a, m in local if a == address), None)
                if mask is None:
                    msg.fatal("parameter inet_interfaces: no local interface found for %s"
                              % address)
                selected.append((address, mask))
    return selected


def _host_addresses(host, families):
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return [ipaddress.ip_address(literal)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(literal, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        infos = []
    found = [ipaddress.ip_address(info[4][0]) for info in infos if info[0] in families]
    if not found:
        msg.fatal("config variable inet_interfaces: host not found: %s" % host)
    return found


def mynetworks(style, inet_interfaces, protocols):
    """The default mynetworks text for a mynetworks_style (host, subnet or class)."""
    families = inet_families(protocols)
    if not families:
        return ""
    styles = [name.lower() for name in tokens(style)]
    if len(styles) != 1 or styles[0] not in ("host", "subnet", "class"):
        for name in styles:
            if name not in ("host", "subnet", "class"):
                msg.fatal('unknown mynetworks mask style value "%s" in "%s"' % (name, style))
        msg.fatal("bad mynetworks_style value: %s; specify exactly one value" % style)
    seen = []
    for address, mask in own_interfaces(inet_interfaces, families):
        network = _network_text(address, mask, styles[0])
        if network not in seen:
            seen.append(network)
    return "".join(network + " " for network in seen)


def _network_text(address, mask, style):
    bits = address.max_prefixlen
    if style == "host":
        prefix = bits
    elif address.version == 4 and style == "class":
        prefix = _classful_prefix(address)
    else:
        prefix = _mask_prefix(mask)
    network = ipaddress.ip_network("%s/%d" % (address, prefix), strict=False)
    if address.version == 4:
        return "%s/%d" % (network.network_address, prefix)
    return "[%s]/%d" % (network.network_address, prefix)


def _mask_prefix(mask):
    """Leading one bits of a netmask, counted as Postfix counts them."""
    value = int(mask)
    bits = mask.max_prefixlen
    prefix = 0
    while prefix < bits and value & (1 << (bits - 1 - prefix)):
        prefix += 1
    return prefix


def _classful_prefix(address):
    first = int(address) >> 24
    if first < 128:
        return 8
    if first < 192:
        return 16
    if first < 224:
        return 24
    if first < 240:
        return 4
    msg.fatal("mynetworks_core: unknown address class: %s" % address)

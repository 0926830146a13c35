"""inet endpoints of master.cf services: listen addresses and canonical names, as data.

The inet half of Postfix's src/master/master_ent.c, with the address lists it uses
(global/own_inet_addr.c, global/wildcard_inet_addr.c, util/inet_addr_host.c,
util/inet_addr_list.c). Column 1 of an inet service is `[host:]port`: with a host, master
listens on every address of that host; without one, on the wildcard addresses when
inet_interfaces is `all`, else on the interface addresses that inet_interfaces selects.
The internal name canonicalizes numeric hosts and symbolic ports (known_tcp_ports first)
so that a reload after changing `smtp` into `25` finds the same service.
"""

from collections import namedtuple
from dataclasses import dataclass, field
import functools
import ipaddress
import socket
import sys

from pyfix.common import hostinfo, msg
from pyfix.common.host_port import host_port
from pyfix.common.known_tcp_ports import filter_known_tcp_port
from pyfix.common.valid_hostname import all_digits

INET_INTERFACES_ALL = "all"
# A listen address: socket family and numeric address text (IPv6 may carry %scope).
ListenAddress = namedtuple("ListenAddress", "family address")


@dataclass
class InetSettings:
    """What inet endpoints depend on: protocols, interfaces, port names, UTF-8 names."""

    families: list                  # enabled address families, IPv4 first
    inet_interfaces: str            # the value the running master started with
    current_interfaces: str         # the value in main.cf now
    known_ports: dict
    enable_utf8: bool
    _interface_addresses: list = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config, saved_interfaces, known_ports):
        current = config.get("inet_interfaces")
        return cls(families=hostinfo.inet_families(config.get("inet_protocols")),
                   inet_interfaces=current if saved_interfaces is None else saved_interfaces,
                   current_interfaces=current, known_ports=known_ports,
                   enable_utf8=config.get_bool("smtputf8_enable"))

    @property
    def ai_family(self):
        return family_hint(self.families)

    def interface_addresses(self):
        """The addresses of a service without a host (computed once, as Postfix caches)."""
        if self._interface_addresses is None:
            if self.inet_interfaces.lower() == INET_INTERFACES_ALL:
                found = wildcard_addresses(self.families)
            else:
                found = [ListenAddress(_family_of(address), str(address)) for address, _
                         in hostinfo.own_interfaces(self.inet_interfaces, self.families)]
            self._interface_addresses = unique_addresses(found)
        return list(self._interface_addresses)


@dataclass
class InetEndpoint:
    host: str                       # "" when column 1 is only a port
    port: str
    addresses: list

    @property
    def local_only(self):
        """Every address is a loopback address (no remote clients, no stress option)."""
        return all(is_loopback(item) for item in self.addresses)


def resolve_endpoint(ext_name, settings, context):
    """Parse `[host:]port` and find its listen addresses; errors are fatal in context."""
    if settings.current_interfaces != settings.inet_interfaces:
        msg.warn("service %s: ignoring inet_interfaces change" % ext_name)
        msg.warn("to change inet_interfaces, stop and start Postfix")
    host, port, err = host_port(ext_name, "", None, settings.enable_utf8)
    if err:
        context.fatal('%s in "%s"' % (err, ext_name))
    if host:
        addresses = host_addresses(host, settings.families)
        if not addresses:
            context.fatal("bad hostname or network address: %s" % ext_name)
    else:
        addresses = settings.interface_addresses()
    return InetEndpoint(host, port, unique_addresses(addresses))


def canonical_name(endpoint, ext_name, settings):
    """`port` or `[host]:port` with a numeric port and, when it is one, numeric host."""
    host = endpoint.host or None
    service = filter_known_tcp_port(settings.known_ports, endpoint.port)
    numeric = _numeric_endpoint(host, service, settings.ai_family)
    if numeric is not None:
        return "[%s]:%s" % numeric if host else numeric[1]
    numeric = _numeric_endpoint(None, service, settings.ai_family)
    if numeric is not None:
        return "[%s]:%s" % (host, numeric[1]) if host else numeric[1]
    return ext_name


def _numeric_endpoint(host, service, family):
    """(address, port) text of a numeric host (or the wildcard) and a port, or None."""
    flags = socket.AI_NUMERICHOST
    if all_digits(service):
        flags |= socket.AI_NUMERICSERV
    if host is None:
        flags |= socket.AI_PASSIVE
    try:
        infos = socket.getaddrinfo(host, service, family, socket.SOCK_STREAM, 0, flags)
        return socket.getnameinfo(infos[0][4], socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
    except (OSError, UnicodeError, ValueError, IndexError):
        return None


def host_addresses(host, families, service=None, flags=0):
    """Every address of a host name or numeric address in an enabled family."""
    try:
        infos = socket.getaddrinfo(host, service, family_hint(families), socket.SOCK_STREAM, 0,
                                   flags)
    except (OSError, UnicodeError, ValueError):
        return []
    return [ListenAddress(family, socket.getnameinfo(sockaddr, socket.NI_NUMERICHOST)[0])
            for family, _, _, _, sockaddr in infos if family in families]


def wildcard_addresses(families):
    """The any-address of each enabled family (0.0.0.0, ::)."""
    found = host_addresses(None, families, "1", socket.AI_PASSIVE)
    if not found:
        msg.fatal("could not get list of wildcard addresses")
    return found


def family_hint(families):
    """getaddrinfo()'s family hint: the one enabled family, or AF_UNSPEC for both."""
    return families[0] if len(families) == 1 else socket.AF_UNSPEC


def _family_of(address):
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _packed(item):
    return socket.inet_pton(item.family, item.address.split("%")[0])


def _compare(one, other):
    """inet_addr_list's order: by family, then IPv4 by the in-memory s_addr difference
    (which, on a little-endian host, is not numeric order), IPv6 bytewise."""
    if one.family != other.family:
        return one.family - other.family
    a, b = _packed(one), _packed(other)
    if one.family == socket.AF_INET:
        diff = (int.from_bytes(a, sys.byteorder) - int.from_bytes(b, sys.byteorder)) \
            & 0xFFFFFFFF
        return diff - 2 ** 32 if diff >= 2 ** 31 else diff
    return (a > b) - (a < b)


def unique_addresses(addresses):
    """Sorted as Postfix sorts them, duplicates dropped (inet_addr_list_uniq)."""
    result = []
    for item in sorted(addresses, key=functools.cmp_to_key(_compare)):
        if not result or _compare(result[-1], item) != 0:
            result.append(item)
    return result


def is_loopback(item):
    """127.0.0.0/8 or ::1 (an IPv4-mapped loopback address does not count)."""
    address = ipaddress.ip_address(item.address.split("%")[0])
    if address.version == 4:
        return address in ipaddress.ip_network("127.0.0.0/8")
    return int(address) == 1

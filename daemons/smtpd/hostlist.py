"""Client host lists of smtpd's own parameters (the part of Postfix's
global/namadr_list.c that smtpd_forbid_bare_newline_exclusions, smtpd_authorized_xclient_hosts
and smtpd_authorized_xforward_hosts use): items are IP addresses, networks in CIDR
notation (`[::1]/128` brackets allowed), host or domain names (a name matches itself and,
as in Postfix, its subdomains through parent_domain_matches_subdomains), `!item` and
`type:table` (the client name, then the address, is looked up).
"""

import functools
import ipaddress

from pyfix.maps.match_list import MatchList


class HostList:
    def __init__(self, title, text, config):
        self.networks = []
        names = []
        for item in (text or "").replace(",", " ").split():
            negated = item.startswith("!")
            bare = item.lstrip("!")
            network = _network(bare)
            if network is not None:
                self.networks.append((not negated, network))
            else:
                names.append(item)
        parent = title in config.get_list("parent_domain_matches_subdomains")
        self.names = MatchList(title, " ".join(names),
                               1 if parent else 0, kind="domain") if names else None

    def match(self, name, addr):
        """namadr_list_match(): does the client name or address match?"""
        try:
            ip = _ip_address(addr)
        except ValueError:
            ip = None
        if ip is not None:
            for positive, network in self.networks:
                if ip.version == network.version and ip in network:
                    return positive
        if self.names is not None:
            return bool(self.names.match(name) or self.names.match(addr))
        return False


def _network(item):
    text = item
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end] + text[end + 1:]
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


@functools.lru_cache(maxsize=256)
def _ip_address(text):
    """The client address, parsed once per process for all the lists it is tried on."""
    return ipaddress.ip_address(text)

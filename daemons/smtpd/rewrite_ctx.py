"""Which clients' headers are rewritten as local mail (Postfix's smtpd_check_rewrite()
with local_header_rewrite_clients): the first item that matches the client makes the
rewrite context `local` (cleanup then completes addresses with $myorigin and adds
missing Message-Id:/Date: headers), else it is `remote`.

Items: permit_inet_interfaces (the client address is one of this host's
$inet_interfaces addresses), permit_mynetworks, permit_sasl_authenticated,
permit_tls_clientcerts / permit_tls_all_clientcerts (no client certificates without
TLS: no match), check_address_map type:table and a bare type:table (the client address
is looked up).
"""

from pyfix.common import hostinfo, msg
from pyfix.maps.maps import Maps

from pyfix.daemons.smtpd.hostlist import HostList
from pyfix.daemons.smtpd.reply import Reply

LOCAL = "local"
REMOTE = "remote"


class RewriteClients:
    def __init__(self, config):
        self.config = config
        self.items = []
        words = config.get_list("local_header_rewrite_clients")
        pos = 0
        while pos < len(words):
            word = words[pos]
            if ":" in word:
                self.items.append(("map", Maps("local_header_rewrite_clients", word)))
            elif word.lower() == "check_address_map" and pos + 1 < len(words):
                pos += 1
                self.items.append(("map", Maps("local_header_rewrite_clients", words[pos])))
            else:
                self.items.append((word.lower(), None))
            pos += 1
        self._own = None
        self._mynetworks = None

    def own_addresses(self):
        if self._own is None:
            families = hostinfo.inet_families(self.config.get("inet_protocols"))
            self._own = {str(address) for address, _ in hostinfo.own_interfaces(
                self.config.get("inet_interfaces"), families)}
        return self._own

    def mynetworks(self):
        if self._mynetworks is None:
            self._mynetworks = HostList("mynetworks", self.config.get("mynetworks"),
                                        self.config)
        return self._mynetworks

    def context(self, state):
        """(rewrite context, None) or (None, Reply) after a table lookup error."""
        for name, table in self.items:
            matched = False
            if name == "map":
                matched = table.find(state.addr) is not None
                if not matched and table.error:
                    text = "451 4.3.0 Temporary lookup error" if table.error == -1 \
                        else "451 4.3.5 Server configuration error"
                    return None, Reply.parse(text)
            elif name == "permit_inet_interfaces":
                matched = state.addr in self.own_addresses()
            elif name == "permit_mynetworks":
                matched = self.mynetworks().match(state.name, state.addr)
            elif name == "permit_sasl_authenticated":
                matched = bool(state.sasl_username)
            elif name in ("permit_tls_clientcerts", "permit_tls_all_clientcerts"):
                matched = False
            else:
                msg.warn("parameter local_header_rewrite_clients: invalid request: %s"
                         % name)
                continue
            if matched:
                return LOCAL, None
        return REMOTE, None

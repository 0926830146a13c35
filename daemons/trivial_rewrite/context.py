"""The two parameter sets of the resolver (RES_CONTEXT in Postfix's trivial-rewrite.c):
`resolve` requests use local_transport, virtual_transport, relay_transport,
default_transport, relayhost, transport_maps and the sender-dependent maps;
`verify` requests (address probes) use their address_verify_* twins, so that probes can
be routed differently from mail.

Also the sender-dependent lookups of resolve.c: sender_dependent_default_transport_maps
chooses the transport of default-class mail, sender_dependent_relayhost_maps its nexthop
(and that of relay-class mail), both keyed by the envelope sender (the null sender by
empty_address_*_lookup_key); a `DUNNO` result means "no override".
"""

from pyfix.common import msg
from pyfix.maps.addr_find import mail_addr_find
from pyfix.maps.dict import FLAG_FOLD_FIX, FLAG_LOCK, FLAG_NO_REGSUB, FLAG_UTF8_REQUEST
from pyfix.maps.maps import Maps

from pyfix.daemons.trivial_rewrite.transport import TransportInfo

TABLE_FLAGS = FLAG_LOCK | FLAG_FOLD_FIX | FLAG_NO_REGSUB | FLAG_UTF8_REQUEST
DUNNO = "dunno"

REGULAR_NAMES = {
    "local_transport": "local_transport",
    "virt_transport": "virtual_transport",
    "relay_transport": "relay_transport",
    "def_transport": "default_transport",
    "snd_def_xp_maps": "sender_dependent_default_transport_maps",
    "relayhost": "relayhost",
    "snd_relay_maps": "sender_dependent_relayhost_maps",
    "transport_maps": "transport_maps",
}
VERIFY_NAMES = {
    "local_transport": "address_verify_local_transport",
    "virt_transport": "address_verify_virtual_transport",
    "relay_transport": "address_verify_relay_transport",
    "def_transport": "address_verify_default_transport",
    "snd_def_xp_maps": "address_verify_sender_dependent_default_transport_maps",
    "relayhost": "address_verify_relayhost",
    "snd_relay_maps": "address_verify_sender_dependent_relayhost_maps",
    "transport_maps": "address_verify_transport_maps",
}


class ResolveContext:
    """One parameter set, its tables opened before the jail (pre_jail_init())."""

    def __init__(self, config, names, address_rules):
        self.names = names
        self.address_rules = address_rules
        self.local_transport = config.get_str(names["local_transport"])
        self.virt_transport = config.get_str(names["virt_transport"])
        self.relay_transport = config.get_str(names["relay_transport"])
        self.def_transport = config.get_str(names["def_transport"])
        self.relayhost = config.get(names["relayhost"]) or ""
        self.null_relay_key = config.get_str("empty_address_relayhost_maps_lookup_key")
        self.null_def_xport_key = config.get_str(
            "empty_address_default_transport_maps_lookup_key")
        self.transport_info = self._transport(config)
        self.snd_relay_info = self._maps(config, "snd_relay_maps")
        self.snd_def_xp_info = self._maps(config, "snd_def_xp_maps")

    def _transport(self, config):
        text = config.get(self.names["transport_maps"])
        if not text:
            return None
        return TransportInfo(self.names["transport_maps"], text, self.address_rules)

    def _maps(self, config, key):
        text = config.get(self.names[key])
        return Maps(self.names[key], text, TABLE_FLAGS) if text else None

    def post_init(self, config):
        if self.transport_info is not None:
            self.transport_info.post_init(config)

    def _sender_lookup(self, maps, sender, null_key):
        """(value, key) of a sender-dependent table; value None when not found."""
        key = sender or null_key
        return mail_addr_find(maps, key, self.address_rules).value, key

    def sender_default_transport(self, sender):
        """(transport, parameter to blame) for default-class mail, None on a failure."""
        maps = self.snd_def_xp_info
        if maps is not None:
            xport, key = self._sender_lookup(maps, sender, self.null_def_xport_key)
            if xport is not None:
                if not xport:
                    msg.warn("%s: ignoring null lookup result for %s"
                             % (self.names["snd_def_xp_maps"], key))
                    xport = DUNNO
                return (self.def_transport if xport.lower() == DUNNO else xport,
                        self.names["snd_def_xp_maps"])
            if maps.error:
                msg.warn("%s lookup failure" % self.names["snd_def_xp_maps"])
                return None
        return self.def_transport, self.names["def_transport"]

    def sender_relayhost(self, sender):
        """The sender's relayhost, "" for none, None on a failure."""
        maps = self.snd_relay_info
        if maps is None:
            return ""
        relay, key = self._sender_lookup(maps, sender, self.null_relay_key)
        if relay is not None:
            if not relay:
                msg.warn("%s: ignoring null lookup result for %s"
                         % (self.names["snd_relay_maps"], key))
                return ""
            return "" if relay.lower() == DUNNO else relay
        if maps.error:
            msg.warn("%s lookup failure" % self.names["snd_relay_maps"])
            return None
        return ""

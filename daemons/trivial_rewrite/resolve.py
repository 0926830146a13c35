"""Address resolution: recipient -> (transport, nexthop, recipient, flags) (Postfix's
trivial-rewrite/resolve.c and global/resolve_local.c).

The address arrives in internal (unquoted) form. The resolver first strips every local
domain (mydestination, or an `[address]` of inet_interfaces/proxy_interfaces) and
rewrites what is left (`%`, `!`, source routes, a quoted local-part that hides routing
operators) until no local domain is left; an empty local-part becomes
$empty_address_recipient, and a bare local-part gets `@$myhostname`. The domain then
decides the class: local, virtual alias (error transport, `User unknown`), virtual
mailbox, relay, or default, each with its transport; relayhost and the sender-dependent
maps pick the nexthop of relay and default mail, a `transport:nexthop` in main.cf
overrides the nexthop, transport_maps overrides both (transport.py), and
relocated_maps bounces recipients that moved. Failures of any table give
RESOLVE_FLAG_FAIL so that the client tries again later, invalid domains
RESOLVE_FLAG_ERROR. The `resolve` and `verify` requests differ only in the parameter
set (context.py).
"""

import ipaddress
import socket

from pyfix.common import msg, tok822
from pyfix.common.quote_822 import quote_822_local
from pyfix.common.resolve_clnt import CLASS_ALIAS, CLASS_DEFAULT, CLASS_LOCAL, \
    CLASS_RELAY, CLASS_VIRTUAL, FLAG_ERROR, FLAG_FAIL, FLAG_ROUTED
from pyfix.common.rewrite_clnt import RULE_LOCAL
from pyfix.common.valid_hostname import valid_hostaddr, valid_ipv4_hostaddr, \
    valid_ipv6_hostaddr, valid_utf8_hostname
from pyfix.maps.addr_find import AddressRules, mail_addr_find
from pyfix.maps.dict import FLAG_FOLD_FIX, FLAG_LOCK, FLAG_UTF8_REQUEST
from pyfix.maps.maps import Maps
from pyfix.maps.match_list import MATCH_FLAG_PARENT, MATCH_FLAG_RETURN, domain_list, \
    string_list

from pyfix.daemons.trivial_rewrite.transport import SERVICE_ERROR, match_parent_style

NOT_UPDATED = ("CHANNEL NOT UPDATED", "NEXTHOP NOT UPDATED", "NEXTRCPT NOT UPDATED")
IPV6_COL = "ipv6:"
MAIN_CF = "main.cf"


# -- address syntax (valid_mailhost_addr.c) ---------------------------------------------------

def valid_mailhost_addr(addr, gripe=False):
    """The bare address of `1.2.3.4` or `IPv6:...`, or None when it is not valid."""
    if addr[:len(IPV6_COL)].lower() == IPV6_COL:
        bare = addr[len(IPV6_COL):]
        return bare if valid_ipv6_hostaddr(bare, gripe) else None
    return addr if valid_ipv4_hostaddr(addr, gripe) else None


def valid_mailhost_literal(text):
    """`[address]` with nothing after the `]`."""
    if not text.startswith("["):
        return False
    close = text.find("]")
    if close < 0 or close + 1 != len(text) or close - 1 >= 1025:
        return False
    return valid_mailhost_addr(text[1:close]) is not None


def valid_utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- local destinations (resolve_local.c, own_inet_addr.c) -------------------------------------

class LocalRules(AddressRules):
    """AddressRules whose resolve_local() compares `[address]` literals by value with
    the addresses of inet_interfaces and proxy_interfaces, as own_inet_addr() does."""

    def __init__(self, config):
        super().__init__(config)
        self._own_values = None

    def resolve_local_init(self):
        """Open mydestination (and its tables) now: Postfix's server skeletons do this
        after pre_init, before the jail."""
        self._local_list = string_list("mydestination", self.config.get("mydestination"),
                                       MATCH_FLAG_RETURN)

    def resolve_local(self, domain):
        """1 when domain is a local destination, 0 when not, an error (< 0) on failure."""
        name = domain[:-1] if domain.endswith(".") else domain
        if not name or name.endswith("."):
            return 0
        if self._local_list is None:
            self.resolve_local_init()
        if self._local_list.match(name):
            return 1
        if self._local_list.error:
            return self._local_list.error
        if name.startswith("[") and name.endswith("]"):
            bare = valid_mailhost_addr(name[1:-1], gripe=True)
            if bare is not None:
                try:
                    value = ipaddress.ip_address(bare)
                except ValueError:
                    return 0
                return 1 if value in self.own_values() else 0
        return 0

    def own_values(self):
        """The interface and proxy addresses, as ipaddress values."""
        if self._own_values is None:
            values = set()
            for text in self.own_addresses():
                try:
                    values.add(ipaddress.ip_address(text.removeprefix("ipv6:")))
                except ValueError:
                    values.update(_host_values(text))
            self._own_values = values
        return self._own_values


def _host_values(host):
    """proxy_interfaces may name hosts: their addresses."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return set()
    return {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}


# -- the resolver -------------------------------------------------------------------------------

class Resolved:
    """One answer: what resolve_proto() sends back."""

    __slots__ = ("channel", "nexthop", "recipient", "flags")

    def __init__(self, channel, nexthop, recipient, flags):
        self.channel, self.nexthop, self.recipient, self.flags = \
            channel, nexthop, recipient, flags

    def reply(self, server_flags=0):
        return [("flags", server_flags), ("transport", self.channel),
                ("nexthop", self.nexthop), ("recipient", self.recipient),
                ("flags", self.flags)]


class Resolver:
    """The address classes of one process (resolve_init()) and resolve_addr()."""

    def __init__(self, config, rewrite_rules):
        self.config = config
        self.rewrite_rules = rewrite_rules
        self.address_rules = LocalRules(config)
        self.myhostname = config.get("myhostname")
        self.empty_addr = config.get_str("empty_address_recipient")
        self.config_dir = config.get("config_directory")
        self.swap_bangpath = config.get_bool("swap_bangpath")
        self.percent_hack = config.get_bool("allow_percent_hack")
        self.resolve_dequoted = config.get_bool("resolve_dequoted_address")
        self.resolve_nulldom = config.get_bool("resolve_null_domain")
        self.resolve_num_dom = config.get_bool("resolve_numeric_domain")
        self.show_unk_rcpt_table = config.get_bool("show_user_unknown_table_name")
        self.allow_min_user = config.get_bool("allow_min_user")
        self.helpful_warnings = config.get_bool("helpful_warnings")
        self.smtputf8 = config.get_bool("smtputf8_enable")
        self.virt_alias_doms = self._list(string_list, "virtual_alias_domains")
        self.virt_mailbox_doms = self._list(string_list, "virtual_mailbox_domains")
        self.relay_domains = self._list(domain_list, "relay_domains", MATCH_FLAG_PARENT
                                        if match_parent_style(config, "relay_domains") else 0)
        relocated = config.get("relocated_maps")
        self.relocated_maps = Maps("relocated_maps", relocated, FLAG_LOCK | FLAG_FOLD_FIX
                                   | FLAG_UTF8_REQUEST) if relocated else None

    def _list(self, make, name, extra=0):
        text = self.config.get(name)
        return make(name, text, MATCH_FLAG_RETURN | extra) if text else None

    def resolve_local(self, domain):
        return self.address_rules.resolve_local(domain)

    def resolve_class(self, domain):
        """The class of a domain, in resolve_addr()'s order; -1 on a table failure."""
        ret = self.resolve_local(domain)
        if ret != 0:
            return CLASS_LOCAL if ret > 0 else -1
        for domains, result in ((self.virt_alias_doms, CLASS_ALIAS),
                                (self.virt_mailbox_doms, CLASS_VIRTUAL),
                                (self.relay_domains, CLASS_RELAY)):
            if domains is not None:
                if domains.match(domain):
                    return result
                if domains.error:
                    return -1
        return CLASS_DEFAULT

    # -- stage 1: strip local domains ---------------------------------------------------------

    def _strip_local(self, addr):
        """The resolver loop: (tree, the `@` of a remote domain or None, the `@domain`
        list last stripped or None), or None when a table failed or the loop ran away
        (then the answer is FAIL)."""
        tree = tok822.scan_addr(quote_822_local(addr))
        saved_domain = None
        loop_max = len(addr) + 100
        loop_count = 0
        while True:
            if loop_count > loop_max:
                msg.warn("resolve_addr: <%s>: giving up after %d iterations"
                         % (addr, loop_count))
                return None
            loop_count += 1
            tail = tree.tail
            if tail is not None and tail.type == ord(".") \
                    and tok822.rfind_type(tail, ord("@")) is not None \
                    and tail.prev.type not in (ord("."), ord("@")):
                tok822.sub_keep_before(tree, tail)
            if self.resolve_nulldom and tree.tail is not None and tree.tail.type == ord("@"):
                tok822.sub_keep_before(tree, tree.tail)
            domain = tok822.rfind_type(tree.tail, ord("@"))
            if domain is not None:
                if domain.next is not None:
                    rc = self.resolve_local(tok822.internalize_tree(domain.next))
                    if rc < 0:
                        return None
                    if rc == 0:
                        return tree, domain, saved_domain
                tok822.sub_keep_before(tree, domain)
                saved_domain = domain
            if self._has_route(tree):
                self.rewrite_rules.rewrite_tree(RULE_LOCAL, tree)
                continue
            if self._crack_quoted(tree):
                continue
            head = tree.head
            if head is not None and head is tree.tail and head.type == tok822.QSTRING \
                    and head.text == "":
                tree.head = tree.tail = None
            if tree.head is None:
                tree.head, tree.tail = tok822.scan_linked(self.empty_addr)
                continue
            if saved_domain is None:
                self._append_myhostname(tree)
                continue
            return tree, None, saved_domain

    def _has_route(self, tree):
        return tok822.rfind_type(tree.tail, ord("@")) is not None \
            or (self.swap_bangpath and tok822.rfind_type(tree.tail, ord("!")) is not None) \
            or (self.percent_hack and tok822.rfind_type(tree.tail, ord("%")) is not None)

    def _crack_quoted(self, tree):
        """A quoted local-part that hides `@`, `%` or `!`: open it and retry (technically
        wrong, but it stops relaying through quoted routing operators)."""
        head = tree.head
        if not (self.resolve_dequoted and head is not None and head is tree.tail
                and head.type == tok822.QSTRING):
            return False
        local = head.text
        oper = local.rfind("@")
        if oper < 0 and self.percent_hack:
            oper = local.rfind("%")
        if oper < 0 and self.swap_bangpath:
            oper = local.rfind("!")
        if oper < 0:
            return False
        if local[oper] == "%":
            local = local[:oper] + "@" + local[oper + 1:]
        if local[oper] == "@":
            local = quote_822_local(local)
        tree.head, tree.tail = tok822.scan_linked(local)
        self.rewrite_rules.rewrite_tree(RULE_LOCAL, tree)
        return True

    def _append_myhostname(self, tree):
        tok822.sub_append(tree, tok822.Token(ord("@")))
        head, _ = tok822.scan_linked(self.myhostname)
        if head is not None:
            tok822.sub_append(tree, head)

    # -- stage 2: the recipient and its domain ------------------------------------------------

    def resolve_addr(self, rp, sender, addr):
        """resolve_addr(): the Resolved answer for addr under parameter set rp."""
        channel, nexthop, nextrcpt = NOT_UPDATED
        stripped = self._strip_local(addr)
        if stripped is None:
            return Resolved(channel, nexthop, nextrcpt, FLAG_FAIL)
        tree, domain, saved_domain = stripped
        if domain is None:
            if saved_domain is not None:
                tok822.sub_append(tree, saved_domain)
            else:
                self._append_myhostname(tree)
        nextrcpt = tok822.internalize_tree(tree)
        at = nextrcpt.rfind("@")
        if at < 0:
            msg.panic('no @ in address: "%s"' % nextrcpt)
        rcpt_domain = nextrcpt[at + 1:]
        flags = 0
        if rcpt_domain.startswith("["):
            if not valid_mailhost_literal(rcpt_domain):
                flags |= FLAG_ERROR
        elif self.smtputf8 and not valid_utf8(nextrcpt):
            flags |= FLAG_ERROR
        elif not valid_utf8_hostname(self.smtputf8, rcpt_domain):
            if self.resolve_num_dom and valid_hostaddr(rcpt_domain):
                rcpt_domain = "[" + rcpt_domain + "]"
                nextrcpt = nextrcpt[:at + 1] + rcpt_domain
                rc = self.resolve_local(rcpt_domain)
                if rc > 0:
                    domain = None
                elif rc < 0:
                    return Resolved(channel, nexthop, nextrcpt, flags | FLAG_FAIL)
            else:
                flags |= FLAG_ERROR
        if flags & FLAG_ERROR:
            return Resolved(channel, nexthop, nextrcpt, flags | CLASS_DEFAULT)
        first = min(nextrcpt.find(ch) if ch in nextrcpt else len(nextrcpt) for ch in "@!%")
        if nextrcpt[first + 1:] != rcpt_domain:
            flags |= FLAG_ROUTED
        return self._classify(rp, sender, nextrcpt, rcpt_domain, domain is not None, flags)

    # -- stage 3: the class, the transport and the nexthop ----------------------------------

    def _classify(self, rp, sender, nextrcpt, rcpt_domain, remote, flags):
        def fail():
            return Resolved(channel, nexthop, nextrcpt, flags | FLAG_FAIL)

        channel, nexthop, _ = NOT_UPDATED
        blame = None
        if not remote:
            self._warn_local_listed(rcpt_domain)
            channel, nexthop = rp.local_transport, rcpt_domain
            blame = rp.names["local_transport"]
            flags |= CLASS_LOCAL
        elif self.virt_alias_doms is not None and self.virt_alias_doms.match(rcpt_domain):
            self._warn_alias_listed(rcpt_domain)
            channel = SERVICE_ERROR
            nexthop = "5.1.1 User unknown%s" % (" in virtual alias table"
                                                if self.show_unk_rcpt_table else "")
            flags |= CLASS_ALIAS
        elif self.virt_alias_doms is not None and self.virt_alias_doms.error:
            msg.warn("virtual_alias_domains lookup failure")
            return fail()
        elif self.virt_mailbox_doms is not None and self.virt_mailbox_doms.match(rcpt_domain):
            if self.helpful_warnings and self.relay_domains is not None \
                    and self.relay_domains.match(rcpt_domain):
                msg.warn("do not list domain %s in BOTH %s and %s"
                         % (rcpt_domain, "virtual_mailbox_domains", "relay_domains"))
            channel, nexthop = rp.virt_transport, rcpt_domain
            blame = rp.names["virt_transport"]
            flags |= CLASS_VIRTUAL
        elif self.virt_mailbox_doms is not None and self.virt_mailbox_doms.error:
            msg.warn("virtual_mailbox_domains lookup failure")
            return fail()
        else:
            if self.relay_domains is not None and self.relay_domains.match(rcpt_domain):
                channel = rp.relay_transport
                blame = rp.names["relay_transport"]
                flags |= CLASS_RELAY
            elif self.relay_domains is not None and self.relay_domains.error:
                msg.warn("relay_domains lookup failure")
                return fail()
            else:
                found = rp.sender_default_transport(sender)
                if found is None:
                    return fail()
                channel, blame = found
                flags |= CLASS_DEFAULT
            relay = rp.sender_relayhost(sender)
            if relay is None:
                return fail()
            nexthop = relay or rp.relayhost or rcpt_domain
        channel, colon, destination = channel.partition(":")
        if colon and destination:
            nexthop = destination
        if not channel:
            msg.warn("file %s/%s: parameter %s: null transport is not allowed"
                     % (self.config_dir, MAIN_CF, blame))
            return fail()
        if not nexthop:
            msg.panic("resolve_addr: null nexthop")
        if rp.transport_info is not None and not flags & CLASS_ALIAS:
            found, channel, nexthop = rp.transport_info.lookup(nextrcpt, rcpt_domain,
                                                               channel, nexthop)
            if not found and rp.transport_info.error:
                msg.warn("%s lookup failure" % rp.names["transport_maps"])
                return fail()
        if self.relocated_maps is not None:
            newloc = mail_addr_find(self.relocated_maps, nextrcpt, self.address_rules).value
            if newloc is not None:
                channel = SERVICE_ERROR
                nexthop = "5.1.6 User has moved to %s" % newloc
            elif self.relocated_maps.error:
                msg.warn("relocated_maps lookup failure")
                return fail()
        if not self.allow_min_user and nextrcpt.startswith("-"):
            flags |= FLAG_ERROR
        return Resolved(channel, nexthop, nextrcpt, flags)

    def _warn_alias_listed(self, rcpt_domain):
        if not self.helpful_warnings:
            return
        if self.virt_mailbox_doms is not None and self.virt_mailbox_doms.match(rcpt_domain):
            msg.warn("do not list domain %s in BOTH %s and %s"
                     % (rcpt_domain, "virtual_alias_domains", "virtual_mailbox_domains"))
        if self.relay_domains is not None and self.relay_domains.match(rcpt_domain):
            msg.warn("do not list domain %s in BOTH %s and %s"
                     % (rcpt_domain, "virtual_alias_domains", "relay_domains"))

    def _warn_local_listed(self, rcpt_domain):
        if not self.helpful_warnings:
            return
        if self.virt_alias_doms is not None and self.virt_alias_doms.match(rcpt_domain):
            msg.warn("do not list domain %s in BOTH %s and %s"
                     % (rcpt_domain, "mydestination", "virtual_alias_domains"))
        if self.virt_mailbox_doms is not None and self.virt_mailbox_doms.match(rcpt_domain):
            msg.warn("do not list domain %s in BOTH %s and %s"
                     % (rcpt_domain, "mydestination", "virtual_mailbox_domains"))

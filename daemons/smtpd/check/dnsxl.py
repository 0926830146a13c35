"""DNS block and allow lists (Postfix's smtpd_check.c: reject_rbl_client,
reject_rhsbl_client/reverse_client/helo/sender/recipient, permit_dnswl_client,
permit_rhswl_client, and the reply templates rbl_reply_maps / default_rbl_reply).

The client address is reversed (1.2.3.4 -> 4.3.2.1.zone, IPv6 by nibbles) or the domain
prefixed (example.com.zone) and looked up as an A record; `zone=127.0.0.2` or
`zone=127.0.0.[2..4]` accepts only those answers. A listed name is rejected with the
zone's template from rbl_reply_maps, else default_rbl_reply, expanded with $rbl_code,
$rbl_domain, $rbl_reason (the TXT record), $rbl_what, $rbl_class and the client macros.
Results, including negative ones, are cached for the life of the process.
"""

import ipaddress
import re

from pyfix.common import dns, msg
from pyfix.common.dsn_util import dsn_split
from pyfix.common.macro import PARSE_ERROR, mac_expand
from pyfix.common.valid_hostname import valid_hostname

from pyfix.daemons.smtpd.check.core import DUNNO, ERROR_POLICY, OK, smtpd_dsn_fix

SOFT = "soft"                 # dnsxl_stat_soft: no definitive answer
_TXT_LIMIT = 500


class RblResult:
    __slots__ = ("txt", "addresses")

    def __init__(self, txt, addresses):
        self.txt = txt
        self.addresses = addresses


_OCTET = re.compile(r"(\[[0-9.;]*\]|[0-9]+)(\.|$)")


def _byte_pattern(text):
    """ip_match_parse(): `127.0.0.2`, or octets as `[a..b;c]` sets -> a list of sets."""
    result = []
    pos = 0
    while pos < len(text) and len(result) < 4:
        match = _OCTET.match(text, pos)
        if match is None:
            break
        octet = match.group(1)
        if octet.startswith("["):
            allowed = set()
            for item in octet[1:-1].split(";"):
                low, _, high = item.partition("..")
                if not low.isdigit() or (high and not high.isdigit()):
                    msg.fatal("RBL reply error: bad address pattern: %s" % text)
                allowed.update(range(int(low), int(high or low) + 1))
            result.append(allowed)
        else:
            result.append({int(octet)})
        pos = match.end()
    if len(result) != 4 or pos != len(text):
        msg.fatal("RBL reply error: bad address pattern: %s" % text)
    return result


def _matches(pattern, address):
    try:
        octets = [int(part) for part in address.split(".")]
    except ValueError:
        return False
    return len(octets) == 4 and all(o in allowed for o, allowed in zip(octets, pattern))


def reverse_query(addr):
    """4.3.2.1 for 1.2.3.4; the 32 reversed nibbles for an IPv6 address."""
    if ":" in addr:
        packed = ipaddress.IPv6Address(addr).packed
        return "".join("%x.%x." % (byte & 0xf, byte >> 4) for byte in reversed(packed))
    return "".join(part + "." for part in reversed(addr.split(".")))


class DnsxlChecks:
    """Mixed into SmtpdCheck; self.rbl_cache maps a query name to its result."""

    def _rbl_lookup(self, query):
        if query in self.rbl_cache:
            return self.rbl_cache[query]
        status, records, why = dns.lookup(query, "A")
        if status not in (dns.OK, dns.NOTFOUND):
            msg.warn("%s: RBL lookup error: %s" % (query, why))
            result = SOFT
        elif status != dns.OK:
            result = None
        else:
            txt_status, txts, _ = dns.lookup(query, "TXT")
            txt = None
            if txt_status == dns.OK:
                txt = ""
                for index, record in enumerate(txts):
                    space = _TXT_LIMIT - len(txt)
                    if space <= 0:
                        break
                    txt += record.data[:space]
                    if index + 1 < len(txts) and _TXT_LIMIT - len(txt) > 3:
                        txt += " / "
            result = RblResult(txt, [record.data for record in records])
        self.rbl_cache[query] = result
        return result

    def _find_dnsxl(self, query, rbl_domain):
        """The listing (RblResult), SOFT, or None."""
        zone, _, reply_addr = rbl_domain.partition("=")
        result = self._rbl_lookup(query + zone)
        if isinstance(result, RblResult) and reply_addr:
            pattern = _byte_pattern(reply_addr)
            if not any(_matches(pattern, address) for address in result.addresses):
                return None
        return result

    def find_dnsxl_addr(self, rbl_domain, addr):
        return self._find_dnsxl(reverse_query(addr), rbl_domain)

    def find_dnsxl_domain(self, rbl_domain, what):
        at = what.rfind("@")
        domain = what[at + 1:] if at >= 0 else what
        if not domain or domain.startswith("["):
            return None
        suffix = domain[domain.rfind(".") + 1:]
        if suffix.isdigit():
            return None
        if not valid_hostname(domain):
            return None
        return self._find_dnsxl(domain + ".", rbl_domain)

    def reject_rbl_addr(self, state, rbl_domain, addr, reply_class):
        result = self.find_dnsxl_addr(rbl_domain, addr)
        if not isinstance(result, RblResult):
            return DUNNO
        return self.rbl_reject_reply(state, result, rbl_domain, addr, reply_class)

    def reject_rbl_domain(self, state, rbl_domain, what, reply_class):
        result = self.find_dnsxl_domain(rbl_domain, what)
        if not isinstance(result, RblResult):
            return DUNNO
        return self.rbl_reject_reply(state, result, rbl_domain, what, reply_class)

    def _permit_dnswl(self, state, result, what, reply_class):
        if result is None:
            return DUNNO
        if result == SOFT:
            self.defer_if_reject(state, ERROR_POLICY, 450, "4.7.1",
                                 "<%s>: %s rejected: %s" % (what, reply_class,
                                                            "Service unavailable"))
            return DUNNO
        return OK

    def _unauth_recipient(self, state):
        """Safety: an allow list never lets an unauthorized recipient through."""
        return state.where == "RCPT" and state.recipient is not None \
            and self.permit_auth_destination(state, state.recipient) != OK

    def permit_dnswl_addr(self, state, dnswl_domain, addr, reply_class):
        if self._unauth_recipient(state):
            return DUNNO
        return self._permit_dnswl(state, self.find_dnsxl_addr(dnswl_domain, addr), addr,
                                  reply_class)

    def permit_dnswl_domain(self, state, dnswl_domain, what, reply_class):
        if self._unauth_recipient(state):
            return DUNNO
        return self._permit_dnswl(state, self.find_dnsxl_domain(dnswl_domain, what), what,
                                  reply_class)

    def rbl_reject_reply(self, state, result, rbl_domain, what, reply_class):
        template = None
        if self.rbl_reply_maps:
            template = self.rbl_reply_maps.find(rbl_domain)
            if self.rbl_reply_maps.error:
                self.server_error(state)
        values = {"rbl_code": str(self.maps_rbl_code),
                  "rbl_domain": rbl_domain.partition("=")[0],
                  "rbl_reason": result.txt or "", "rbl_txt": result.txt or "",
                  "rbl_what": what, "rbl_class": reply_class}

        def lookup(name, mode):
            if name in values:
                return values[name]
            return self.expand_lookup(state, name)
        while True:
            if template is None:
                template = self.default_rbl_reply
            why, status = mac_expand(template, lookup, 0, self.expansion_filter)
            if not status & PARSE_ERROR:
                break
            if template == self.default_rbl_reply:
                msg.fatal("rbl_reject_reply: bad default rbl reply template: %s" % template)
            msg.warn("rbl_reject_reply: bad rbl reply template for domain %s: %s"
                     % (rbl_domain, template))
            template = None
        if why[:1] not in ("4", "5") or not why[1:3].isdigit() or why[3:4] != " ":
            msg.warn("rbl response code configuration error: %s" % why)
            return self.reject(state, ERROR_POLICY, 450, "4.7.1", "Service unavailable")
        dsn, text = dsn_split("4.7.1", why[4:])
        return self.reject(state, ERROR_POLICY, int(why[:3]), smtpd_dsn_fix(dsn, reply_class),
                           text or "Service unavailable")

"""The restrictions on names and addresses (Postfix's smtpd_check.c): client host name
status, HELO syntax and DNS existence, sender/recipient domain syntax and DNS, relay
control (permit_auth_destination, reject_unauth_destination), recipient validation
(smtpd_check_rcptmap: local_recipient_maps, virtual and relay recipient tables), SASL
sender ownership (smtpd_sender_login_maps) and unauthorized pipelining.
"""

from pyfix.common import dns, msg
from pyfix.common.dsn_util import dsn_split
from pyfix.common.resolve_clnt import (CLASS_ALIAS, CLASS_FINAL, CLASS_LOCAL, CLASS_MASK,
                                       CLASS_RELAY, CLASS_VIRTUAL, FLAG_FAIL, FLAG_ROUTED)
from pyfix.common.strings import CHARS_COMMA_SP, tokens
from pyfix.common.valid_hostname import valid_hostaddr, valid_hostname, \
    valid_utf8_hostname
from pyfix.maps.addr_find import mail_addr_find

from pyfix.daemons.smtpd.check.core import (DUNNO, ERROR_BOUNCE, ERROR_POLICY,
                                            ERROR_PROTOCOL, FLAG_ILL_PIPELINING,
                                            FLAG_SMTPUTF8, NAME_SENDER, OK, PEER_CODE_OK,
                                            PEER_CODE_PERM, smtpd_dsn_fix)


def dup_if_truncate(name):
    """A name ending in one dot (but not two) without that dot."""
    if len(name) > 1 and name.endswith(".") and name[-2] != ".":
        return name[:-1]
    return name


def _smtputf8(state):
    """An SMTPUTF8 transaction (state.flags as in smtpd.h, or smtpd's state.smtputf8)."""
    return bool(getattr(state, "flags", 0) & FLAG_SMTPUTF8 or getattr(state, "smtputf8", False))


def valid_mailhost_addr(text):
    """valid_mailhost_addr(): an IPv4 address, or `IPv6:` and an IPv6 address."""
    if text[:5].lower() == "ipv6:":
        return valid_hostaddr(text[5:]) and ":" in text[5:]
    return valid_hostaddr(text) and ":" not in text


class NameChecks:
    """Mixed into SmtpdCheck."""

    # -- the client ------------------------------------------------------------------------

    def reject_unknown_client(self, state):
        if state.name_status != PEER_CODE_OK:
            return self.reject(state, ERROR_POLICY,
                               self.unk_client_code if state.name_status >= PEER_CODE_PERM
                               else 450, "4.7.25",
                               "Client host rejected: cannot find your hostname, [%s]"
                               % state.addr)
        return DUNNO

    def reject_unknown_reverse_name(self, state):
        if state.reverse_name_status != PEER_CODE_OK:
            return self.reject(state, ERROR_POLICY,
                               self.unk_client_code
                               if state.reverse_name_status == PEER_CODE_PERM else 450,
                               "4.7.1",
                               "Client host rejected: cannot find your reverse hostname, [%s]"
                               % state.addr)
        return DUNNO

    def reject_plaintext_session(self, state):
        if state.tls_context is None:
            return self.reject(state, ERROR_POLICY, self.plaintext_code, "4.7.1",
                               "Session encryption is required")
        return DUNNO

    def permit_mynetworks(self, state):
        if self.mynetworks.match(state.name, state.addr):
            return OK
        return self.mynetworks.error or DUNNO

    def reject_unauth_pipelining(self, state, reply_name, reply_class):
        if getattr(state, "flags", 0) & FLAG_ILL_PIPELINING:
            return self.reject(state, ERROR_PROTOCOL, 503, "5.5.0",
                               "<%s>: %s rejected: Improper use of SMTP command pipelining"
                               % (reply_name, reply_class))
        return DUNNO

    # -- host names ------------------------------------------------------------------------

    def reject_invalid_hostaddr(self, state, addr, reply_name, reply_class):
        test = addr[1:-1] if len(addr) > 2 and addr.startswith("[") and addr.endswith("]") \
            else addr
        if not valid_mailhost_addr(test):
            return self.reject(state, ERROR_POLICY, self.bad_name_code, "5.5.2",
                               "<%s>: %s rejected: invalid ip address"
                               % (reply_name, reply_class))
        return DUNNO

    def reject_invalid_hostname(self, state, name, reply_name, reply_class):
        test = dup_if_truncate(name)
        if not valid_hostname(test) and not valid_hostaddr(test):
            return self.reject(state, ERROR_POLICY, self.bad_name_code, "5.5.2",
                               "<%s>: %s rejected: Invalid name" % (reply_name, reply_class))
        return DUNNO

    def reject_non_fqdn_hostname(self, state, name, reply_name, reply_class):
        test = dup_if_truncate(name)
        if not valid_utf8_hostname(_smtputf8(state), test) or "." not in test:
            return self.reject(state, ERROR_POLICY, self.non_fqdn_code, "5.5.2",
                               "<%s>: %s rejected: need fully-qualified hostname"
                               % (reply_name, reply_class))
        return DUNNO

    def reject_unknown_hostname(self, state, name, reply_name, reply_class):
        """A HELO name needs an A, AAAA or MX record."""
        status, _, _ = dns.lookup_l(name, ("A", "AAAA", "MX"), stop_on=(dns.OK,))
        if status in (dns.OK, dns.NULLMX):
            return DUNNO
        if status != dns.RETRY:
            return self.reject(state, ERROR_POLICY, self.unk_name_code, "4.7.1",
                               "<%s>: %s rejected: %s"
                               % (reply_name, reply_class,
                                  "Malformed DNS server reply" if status == dns.INVAL
                                  else "Host not found"))
        return self.defer_if_permit(self.unk_name_tf_act, state, ERROR_POLICY, 450, "4.7.1",
                                    "<%s>: %s rejected: Host not found"
                                    % (reply_name, reply_class))

    def reject_unknown_mailhost(self, state, name, reply_name, reply_class):
        """A mail domain needs an MX, A or AAAA record, and no null MX."""
        status, _, _ = dns.lookup_l(name, ("MX", "A", "AAAA"),
                                    stop_on=(dns.OK, dns.INVAL, dns.NULLMX))
        if status == dns.OK:
            return DUNNO
        sender = reply_class == NAME_SENDER
        if status == dns.NULLMX:
            return self.reject(state, ERROR_POLICY, 550 if sender else 556,
                               "4.7.27" if sender else "4.1.10",
                               "<%s>: %s rejected: Domain %s does not accept mail (nullMX)"
                               % (reply_name, reply_class, name))
        dsn = "4.1.8" if sender else "4.1.2"
        if status != dns.RETRY:
            return self.reject(state, ERROR_POLICY, self.unk_addr_code, dsn,
                               "<%s>: %s rejected: %s"
                               % (reply_name, reply_class,
                                  "Malformed DNS server reply" if status == dns.INVAL
                                  else "Domain not found"))
        return self.defer_if_permit(self.unk_addr_tf_act, state, ERROR_POLICY, 450, dsn,
                                    "<%s>: %s rejected: Domain not found"
                                    % (reply_name, reply_class))

    # -- addresses -------------------------------------------------------------------------

    def reject_non_fqdn_address(self, state, addr, reply_name, reply_class):
        at = addr.rfind("@")
        domain = addr[at + 1:] if at >= 0 else ""
        if domain.startswith("[") and domain.endswith("]"):
            return DUNNO
        test = dup_if_truncate(domain)
        if not test or not valid_utf8_hostname(_smtputf8(state), test) or "." not in test:
            return self.reject(state, ERROR_POLICY, self.non_fqdn_code, "4.5.2",
                               "<%s>: %s rejected: need fully-qualified address"
                               % (reply_name, reply_class))
        return DUNNO

    def reject_unknown_address(self, state, addr, reply_name, reply_class):
        reply = self.resolve_addr(state.recipient if reply_class == NAME_SENDER
                                  else state.sender, addr)
        if reply.flags & FLAG_FAIL:
            self.dict_retry(state, addr)
        at = reply.recipient.rfind("@")
        if at < 0 or reply.flags & CLASS_FINAL:
            return DUNNO
        domain = reply.recipient[at + 1:]
        if domain.startswith("[") and domain.endswith("]"):
            return DUNNO
        return self.reject_unknown_mailhost(state, domain, reply_name, reply_class)

    # -- relay control ---------------------------------------------------------------------

    def permit_auth_destination(self, state, recipient):
        reply = self.resolve_addr(state.sender, recipient)
        if reply.flags & FLAG_FAIL:
            self.dict_retry(state, recipient)
        if "@" not in reply.recipient:
            return OK
        if not self.allow_untrusted_routing and reply.flags & FLAG_ROUTED:
            return DUNNO
        if reply.flags & (CLASS_FINAL | CLASS_RELAY):
            return OK
        return DUNNO

    def reject_unauth_destination(self, state, recipient, code, dsn):
        if self.permit_auth_destination(state, recipient) == OK:
            return DUNNO
        return self.reject(state, ERROR_POLICY, code, dsn,
                           "<%s>: Relay access denied" % recipient)

    def check_relay_domains(self, state, recipient, reply_name, reply_class):
        if not self.warned_relay_domains:
            self.warned_relay_domains = True
            msg.warn('support for restriction "%s" will be removed from %s; use "%s" instead'
                     % ("check_relay_domains", self.mail_name, "reject_unauth_destination"))
        if self.relay_domains.match(state.name):
            return OK
        if self.permit_auth_destination(state, recipient) == OK:
            return OK
        return self.reject(state, ERROR_POLICY, self.relay_code, "5.7.1",
                           "<%s>: %s rejected: Relay access denied" % (reply_name, reply_class))

    # -- SASL sender ownership ---------------------------------------------------------------

    def _login_owners(self, state, sender):
        reply = self.resolve_addr(state.recipient, sender)
        if reply.flags & FLAG_FAIL:
            self.dict_retry(state, sender)
        return self.addr_find(state, sender, self.sender_login_maps, reply.recipient,
                              self._find_default)

    def reject_auth_sender_login_mismatch(self, state, sender, allow_unknown):
        if not self.sender_login_maps or not state.sasl_username:
            return DUNNO
        owners = self._login_owners(state, sender)
        if owners is None and allow_unknown:
            return DUNNO
        user = state.sasl_username.lower()
        if owners is not None and any(name.lower() == user
                                      for name in tokens(owners, CHARS_COMMA_SP)):
            return DUNNO
        return self.reject(state, ERROR_POLICY, 553, "5.7.1",
                           "<%s>: Sender address rejected: not owned by user %s"
                           % (sender, state.sasl_username))

    def reject_unauth_sender_login_mismatch(self, state, sender):
        if self.sender_login_maps and not state.sasl_username \
                and self._login_owners(state, sender) is not None:
            return self.reject(state, ERROR_POLICY, 553, "5.7.1",
                               "<%s>: Sender address rejected: not logged in" % sender)
        return DUNNO

    # -- recipient validation ----------------------------------------------------------------

    def _find_default(self, maps, key):
        return mail_addr_find(maps, key, self.addr_rules).value

    def _listed(self, state, recipient, maps, key):
        return bool(maps) and self.addr_find(state, recipient, maps, key,
                                             self._find_default) is not None

    def check_rcpt_maps(self, state, sender, recipient, reply_class):
        """smtpd_check_rcptmap: is the address known in its address class?"""
        reply = self.resolve_addr(sender, recipient)
        if reply.flags & FLAG_FAIL:
            self.dict_retry(state, recipient)
        key = reply.recipient
        if self._listed(state, recipient, self.rcpt_canon_maps, key) \
                or (reply_class == NAME_SENDER
                    and self._listed(state, recipient, self.send_canon_maps, key)) \
                or self._listed(state, recipient, self.canonical_maps, key) \
                or self._listed(state, recipient, self.virt_alias_maps, key):
            return DUNNO
        sender_class = reply_class == NAME_SENDER
        if reply.transport in ("error", "retry"):
            error = reply.transport == "error"
            dsn, text = dsn_split(("5.1.0" if sender_class else "5.1.1") if error
                                  else ("4.1.0" if sender_class else "4.1.1"), reply.nexthop)
            code = (self.virt_alias_code if reply.flags & CLASS_ALIAS else 550) if error \
                else 450
            return self.reject(state, ERROR_BOUNCE, code, smtpd_dsn_fix(dsn, reply_class),
                               "<%s>: %s rejected: %s" % (recipient, reply_class, text))
        return self._unknown_in_class(state, reply, recipient, reply_class)

    def _unknown_in_class(self, state, reply, recipient, reply_class):
        key = reply.recipient
        address_class = reply.flags & CLASS_MASK
        if address_class == CLASS_LOCAL:
            maps, code, table = self.local_rcpt_maps, self.local_rcpt_code, "local recipient"
            local = key[:key.rfind("@")] if "@" in key else key
            if local.lower() in (self.double_bounce.lower(), "postmaster", "mailer-daemon"):
                return DUNNO
        elif address_class == CLASS_VIRTUAL:
            maps, code, table = self.virt_mailbox_maps, self.virt_mailbox_code, "virtual mailbox"
        elif address_class == CLASS_RELAY:
            maps, code, table = self.relay_rcpt_maps, self.relay_rcpt_code, "relay recipient"
        else:
            return DUNNO
        if maps and not self._listed(state, recipient, maps, key):
            return self.reject(state, ERROR_BOUNCE, code,
                               "5.1.0" if reply_class == NAME_SENDER else "5.1.1",
                               "<%s>: %s rejected: User unknown%s"
                               % (recipient, reply_class,
                                  " in %s table" % table if self.show_unk_rcpt_table
                                  else ""))
        return DUNNO

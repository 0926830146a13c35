"""Evaluating one restriction list (Postfix's smtpd_check.c generic_checks).

Restrictions are taken in order until one decides (OK or REJECT), a `type:table` item
is a lookup with the list's default check_*_access, and restriction class names expand
to their lists. warn_if_reject turns the next restriction's rejection into a warning;
defer_if_permit / defer_if_reject hold a deferral until the outcome is known.
"""

import time

from pyfix.common import msg, verify_clnt

from pyfix.daemons.smtpd.check.core import (DUNNO, ERROR_POLICY, NAME_CLIENT, NAME_ETRN,
                                            NAME_HELO, NAME_RECIPIENT, NAME_REV_CLIENT,
                                            NAME_SASL_USER, NAME_SENDER, OK)
from pyfix.daemons.smtpd.check.policy import PolicyClient, policy_attributes

CHECK_ACL_NAMES = ("check_client_access", "check_reverse_client_hostname_access",
                   "check_helo_access", "check_sender_access", "check_recipient_access",
                   "check_etrn_access")
_DOMAIN_ARG = ("reject_rbl_client", "reject_rbl", "permit_dnswl_client",
               "reject_rhsbl_client", "permit_rhswl_client",
               "reject_rhsbl_reverse_client", "reject_rhsbl_helo", "reject_rhsbl_sender",
               "reject_rhsbl_recipient")
_SERVER_ACCESS = {
    # restriction: (attribute of the state, DNS type, reply class, reply name attribute)
    "check_client_ns_access": ("name", "NS", NAME_CLIENT, "namaddr"),
    "check_client_mx_access": ("name", "MX", NAME_CLIENT, "namaddr"),
    "check_client_a_access": ("name", "A", NAME_CLIENT, "namaddr"),
    "check_reverse_client_hostname_ns_access": ("reverse_name", "NS", NAME_REV_CLIENT,
                                                "reverse_name"),
    "check_reverse_client_hostname_mx_access": ("reverse_name", "MX", NAME_REV_CLIENT,
                                                "reverse_name"),
    "check_reverse_client_hostname_a_access": ("reverse_name", "A", NAME_REV_CLIENT,
                                               "reverse_name"),
    "check_helo_ns_access": ("helo_name", "NS", NAME_HELO, "helo_name"),
    "check_helo_mx_access": ("helo_name", "MX", NAME_HELO, "helo_name"),
    "check_helo_a_access": ("helo_name", "A", NAME_HELO, "helo_name"),
    "check_sender_ns_access": ("sender", "NS", NAME_SENDER, "sender"),
    "check_sender_mx_access": ("sender", "MX", NAME_SENDER, "sender"),
    "check_sender_a_access": ("sender", "A", NAME_SENDER, "sender"),
    "check_recipient_ns_access": ("recipient", "NS", NAME_RECIPIENT, "recipient"),
    "check_recipient_mx_access": ("recipient", "MX", NAME_RECIPIENT, "recipient"),
    "check_recipient_a_access": ("recipient", "A", NAME_RECIPIENT, "recipient"),
}
MAP_COMMANDS = CHECK_ACL_NAMES + ("check_ccert_access", "check_sasl_access") \
    + tuple(_SERVER_ACCESS)


class GenericChecks:
    """Mixed into SmtpdCheck."""

    def _map_argument(self, state, name, items, index):
        """is_map_command(): the table after a check_*_access, or a configuration error."""
        if index + 1 >= len(items) or ":" not in items[index + 1]:
            msg.warn('restriction %s: bad argument "%s": need maptype:mapname'
                     % (name, items[index + 1] if index + 1 < len(items) else items[index]))
            self.server_error(state)
        return items[index + 1]

    def forbid_allowlist(self, state, name, status, target):
        if not state.discard and status == OK:
            msg.warn("restriction %s returns OK for %s" % (name, target))
            msg.warn("this is not allowed for security reasons")
            msg.warn("use DUNNO instead of OK if you want to make an exception")
            self.server_error(state)

    def generic_checks(self, state, restrictions, reply_name, reply_class, def_acl):
        saved_recursion = state.check_recursion
        state.check_recursion += 1
        status = DUNNO
        items = list(restrictions)
        index = 0
        while index < len(items):
            if state.discard:
                break
            name = items[index]
            if name.lower() == "warn_if_reject":
                if not state.check_warn_if_reject:
                    state.check_warn_if_reject = state.check_recursion
                index += 1
                continue
            if ":" in name:
                if def_acl is None:
                    msg.warn('specify one of (%s) before %s restriction "%s"'
                             % (", ".join(CHECK_ACL_NAMES), reply_class, name))
                    self.server_error(state)
                items[index:index] = [def_acl]
                name = def_acl
            status, index = self._one(state, items, index, name.lower(), reply_name,
                                      reply_class, def_acl)
            if status < 0:
                if status == -1:
                    self.dict_retry(state, reply_name)
                self.server_error(state)
            if state.check_warn_if_reject >= state.check_recursion:
                state.check_warn_if_reject = 0
            if status != DUNNO:
                break
            if state.defer_if_permit.active and state.defer_if_reject.active:
                break
            index += 1
        state.check_recursion = saved_recursion
        if state.check_warn_if_reject >= state.check_recursion:
            state.check_warn_if_reject = 0
        return status

    def _one(self, state, items, index, name, reply_name, reply_class, def_acl):
        """One restriction: (status, index of its last item)."""
        rest = items[index + 1:]
        simple = self._simple_restriction(state, name, items, index, reply_name,
                                          reply_class)
        if simple is not None:
            return simple, index
        if name in _DOMAIN_ARG:
            if not rest:
                msg.warn("restriction %s requires domain name argument" % name)
                return DUNNO, index
            return self._dnsxl(state, name, rest[0]), index + 1
        if name == "check_policy_service":
            if not rest or ":" not in rest[0]:
                msg.warn("restriction %s must be followed by transport:server" % name)
                self.server_error(state)
            return self.check_policy_service(state, rest[0], reply_name, reply_class,
                                             def_acl), index + 1
        if name == "sleep":
            if not rest or not rest[0].isdigit():
                msg.warn("restriction %s must be followed by number" % name)
                self.server_error(state)
            time.sleep(int(rest[0]))
            return DUNNO, index + 1
        if name in MAP_COMMANDS:
            table = self._map_argument(state, name, items, index)
            return self._map_command(state, name, table, def_acl), index + 1
        if name in ("reject_unverified_sender", "reject_unverified_recipient"):
            return self._unverified(state, name.endswith("sender"), reply_name,
                                    reply_class), index
        expansion = self.rest_classes.get(items[index])
        if expansion is not None:
            return self.generic_checks(state, expansion, reply_name, reply_class,
                                       def_acl), index
        msg.warn('unknown smtpd restriction: "%s"' % items[index])
        self.server_error(state)

    def _ignored_after(self, state, items, index, name):
        if index + 1 < len(items) and not state.check_warn_if_reject:
            msg.warn("restriction `%s' after `%s' is ignored" % (items[index + 1], name))

    def _simple_restriction(self, state, name, items, index, reply_name, reply_class):
        """The restrictions without an argument, or None."""
        sender = state.sender or ""
        helo = state.helo_name
        if name == "permit":
            status = self.acl_permit(state, name, reply_class, reply_name)
            if index + 1 < len(items):
                msg.warn("restriction `%s' after `%s' is ignored" % (items[index + 1], name))
            return status
        if name == "defer":
            status = self.reject(state, ERROR_POLICY, self.defer_code, "4.3.2",
                                 "<%s>: %s rejected: Try again later"
                                 % (reply_name, reply_class))
            self._ignored_after(state, items, index, name)
            return status
        if name == "reject":
            status = self.reject(state, ERROR_POLICY, self.reject_code, "5.7.1",
                                 "<%s>: %s rejected: Access denied" % (reply_name, reply_class))
            self._ignored_after(state, items, index, name)
            return status
        if name == "reject_unauth_pipelining":
            return self.reject_unauth_pipelining(state, reply_name, reply_class)
        if name == "defer_if_permit":
            return self.defer_if_permit(1, state, ERROR_POLICY, 450, "4.7.0",
                                        "<%s>: %s rejected: defer_if_permit requested"
                                        % (reply_name, reply_class))
        if name == "defer_if_reject":
            return self.defer_if_reject(state, ERROR_POLICY, 450, "4.7.0",
                                        "<%s>: %s rejected: defer_if_reject requested"
                                        % (reply_name, reply_class))
        if name == "reject_plaintext_session":
            return self.reject_plaintext_session(state)
        if name in ("reject_unknown_client_hostname", "reject_unknown_client"):
            return self.reject_unknown_client(state)
        if name == "reject_unknown_reverse_client_hostname":
            return self.reject_unknown_reverse_name(state)
        if name in ("permit_mynetworks", "permit_inet_interfaces"):
            status = self.permit_mynetworks(state) if name == "permit_mynetworks" \
                else self.permit_inet_interfaces(state)
            if status == OK:
                return self.acl_permit(state, name, NAME_CLIENT, state.namaddr)
            return status
        if name == "permit_sasl_authenticated":
            if self.sasl_active(state) and state.sasl_username:
                return self.acl_permit(state, name, NAME_CLIENT, state.namaddr)
            return DUNNO
        if name in ("permit_tls_clientcerts", "permit_tls_all_clientcerts"):
            status = self.permit_tls_clientcerts(state, name == "permit_tls_all_clientcerts")
            if status == OK:
                return self.acl_permit(state, name, NAME_CLIENT, state.namaddr)
            return status
        if name in ("reject_invalid_helo_hostname", "reject_invalid_hostname",
                    "reject_unknown_helo_hostname", "reject_unknown_hostname",
                    "reject_non_fqdn_helo_hostname", "reject_non_fqdn_hostname"):
            if helo is None:
                return DUNNO
            if helo.startswith("["):
                return self.reject_invalid_hostaddr(state, helo, helo, NAME_HELO)
            if "invalid" in name:
                return self.reject_invalid_hostname(state, helo, helo, NAME_HELO)
            if "unknown" in name:
                return self.reject_unknown_hostname(state, helo, helo, NAME_HELO)
            return self.reject_non_fqdn_hostname(state, helo, helo, NAME_HELO)
        if name in ("reject_unknown_sender_domain", "reject_unknown_address"):
            return self.reject_unknown_address(state, sender, sender, NAME_SENDER) \
                if sender else DUNNO
        if name == "reject_non_fqdn_sender":
            return self.reject_non_fqdn_address(state, sender, sender, NAME_SENDER) \
                if sender else DUNNO
        if name in ("reject_sender_login_mismatch", "reject_authenticated_sender_login_mismatch",
                    "reject_known_sender_login_mismatch",
                    "reject_unauthenticated_sender_login_mismatch"):
            return self._login_mismatch(state, name, sender)
        if name == "reject_unlisted_sender":
            return self.check_sender_rcpt_maps(state, sender) if sender else DUNNO
        return self._recipient_restriction(state, name, items, index, reply_name,
                                           reply_class)

    def _login_mismatch(self, state, name, sender):
        if not self.sasl_enable:
            msg.warn("restriction `%s' ignored: no SASL support" % name)
            return DUNNO
        if not sender:
            return DUNNO
        if name == "reject_sender_login_mismatch":
            status = self.reject_auth_sender_login_mismatch(state, sender, False)
            return status or self.reject_unauth_sender_login_mismatch(state, sender)
        if name == "reject_authenticated_sender_login_mismatch":
            return self.reject_auth_sender_login_mismatch(state, sender, False)
        if name == "reject_known_sender_login_mismatch":
            if state.sasl_username:
                return self.reject_auth_sender_login_mismatch(state, sender, True)
        return self.reject_unauth_sender_login_mismatch(state, sender)

    def _recipient_restriction(self, state, name, items, index, reply_name, reply_class):
        recipient = state.recipient
        if name in ("permit_auth_destination", "reject_unauth_destination",
                    "defer_unauth_destination", "check_relay_domains",
                    "reject_unknown_recipient_domain", "reject_non_fqdn_recipient"):
            if recipient is None:
                return DUNNO
        if name == "permit_mx_backup":
            if recipient is not None and self.permit_mx_backup(
                    state, recipient, recipient, NAME_RECIPIENT) == OK:
                return self.acl_permit(state, name, NAME_RECIPIENT, recipient)
            return DUNNO
        if name == "permit_auth_destination":
            if self.permit_auth_destination(state, recipient) == OK:
                return self.acl_permit(state, name, NAME_RECIPIENT, recipient)
            return DUNNO
        if name == "reject_unauth_destination":
            return self.reject_unauth_destination(state, recipient, self.relay_code, "5.7.1")
        if name == "defer_unauth_destination":
            return self.reject_unauth_destination(state, recipient, self.relay_code - 100,
                                                  "4.7.1")
        if name == "check_relay_domains":
            status = self.check_relay_domains(state, recipient, recipient, NAME_RECIPIENT)
            if status == OK:
                status = self.acl_permit(state, name, NAME_RECIPIENT, recipient)
            self._ignored_after(state, items, index, name)
            return status
        if name == "reject_unknown_recipient_domain":
            return self.reject_unknown_address(state, recipient, recipient, NAME_RECIPIENT)
        if name == "reject_non_fqdn_recipient":
            return self.reject_non_fqdn_address(state, recipient, recipient, NAME_RECIPIENT)
        if name in ("check_recipient_maps", "reject_unlisted_recipient"):
            return self.check_recipient_rcpt_maps(state, recipient) if recipient else DUNNO
        if name == "reject_multi_recipient_bounce":
            if state.sender == "" and state.rcpt_count > (state.where != "RCPT"):
                return self.reject(state, ERROR_POLICY, self.mul_rcpt_code, "5.5.3",
                                   "<%s>: %s rejected: Multi-recipient bounce"
                                   % (reply_name, reply_class))
            return DUNNO
        return None

    def _unverified(self, state, sender, reply_name, reply_class):
        """reject_unverified_sender/recipient (reject_unverified_address()): ask the
        verify(8) service, waiting address_verify_poll_count times
        address_verify_poll_delay for a probe in progress."""
        addr = state.sender if sender else state.recipient
        if not addr:
            return DUNNO
        kind = "sender" if sender else "recipient"
        config = self.config
        if not getattr(self, "_verify_configured", False):
            verify_clnt.configure(config)
            self._verify_configured = True
        tf_act = self.unv_from_tf_act if sender else self.unv_rcpt_tf_act
        dsn = "4.1.7" if sender else "4.1.1"
        count = 0
        while True:
            status, rcpt_status, why = verify_clnt.verify_clnt_query(addr)
            if status != verify_clnt.VRFY_STAT_OK \
                    or rcpt_status != verify_clnt.DEL_RCPT_STAT_TODO:
                break
            count += 1
            if count >= config.get_int("address_verify_poll_count"):
                break
            time.sleep(config.get_time("address_verify_poll_delay"))
        if status != verify_clnt.VRFY_STAT_OK:
            msg.warn("%s service failure" % config.get("address_verify_service_name"))
            return self.defer_if_permit(tf_act, state, ERROR_POLICY, 450, dsn,
                                        "<%s>: %s rejected: address verification problem"
                                        % (reply_name, reply_class))
        return self._unverified_reply(state, kind, rcpt_status, why, tf_act, dsn,
                                      reply_name, reply_class)

    def _unverified_reply(self, state, kind, rcpt_status, why, tf_act, dsn, reply_name,
                          reply_class):
        """The reply for an address status: unverified_<kind>_defer_code for a probe in
        progress or a deferred address, unverified_<kind>_reject_code for a bounced one."""
        config = self.config
        reject_code = 0
        if rcpt_status in (verify_clnt.DEL_RCPT_STAT_TODO, verify_clnt.DEL_RCPT_STAT_DEFER):
            reject_code = config.get_int("unverified_%s_defer_code" % kind)
        elif rcpt_status == verify_clnt.DEL_RCPT_STAT_BOUNCE:
            reject_code = config.get_int("unverified_%s_reject_code" % kind)
        elif rcpt_status != verify_clnt.DEL_RCPT_STAT_OK:
            msg.warn("unknown address verification status %d" % rcpt_status)
        alt_reply = config.get("unverified_%s_reject_reason" % kind)
        if reject_code >= 400 and alt_reply:
            why = alt_reply
        if reject_code // 100 == 4:
            why = why.encode("utf-8", "surrogateescape")[:250].decode("utf-8",
                                                                      "surrogateescape")
            return self.defer_if_permit(tf_act, state, ERROR_POLICY, reject_code, dsn,
                                        "<%s>: %s rejected: unverified address: %s"
                                        % (reply_name, reply_class, why))
        if reject_code // 100 == 2 or reject_code == 0:
            return DUNNO
        return self.reject(state, ERROR_POLICY, reject_code, dsn,
                           "<%s>: %s rejected: undeliverable address: %s"
                           % (reply_name, reply_class, why))

    def _dnsxl(self, state, name, domain):
        if name in ("reject_rbl_client", "reject_rbl"):
            return self.reject_rbl_addr(state, domain, state.addr, NAME_CLIENT)
        if name == "permit_dnswl_client":
            status = self.permit_dnswl_addr(state, domain, state.addr, NAME_CLIENT)
            return self.acl_permit(state, name, NAME_CLIENT, state.namaddr) \
                if status == OK else status
        if name in ("reject_rhsbl_client", "permit_rhswl_client"):
            if state.name.lower() == "unknown":
                return DUNNO
            if name == "reject_rhsbl_client":
                return self.reject_rbl_domain(state, domain, state.name, NAME_CLIENT)
            status = self.permit_dnswl_domain(state, domain, state.name, NAME_CLIENT)
            return self.acl_permit(state, name, NAME_CLIENT, state.namaddr) \
                if status == OK else status
        if name == "reject_rhsbl_reverse_client":
            if state.reverse_name.lower() == "unknown":
                return DUNNO
            return self.reject_rbl_domain(state, domain, state.reverse_name, NAME_REV_CLIENT)
        if name == "reject_rhsbl_helo":
            return self.reject_rbl_domain(state, domain, state.helo_name, NAME_HELO) \
                if state.helo_name else DUNNO
        if name == "reject_rhsbl_sender":
            return self.reject_rbl_domain(state, domain, state.sender, NAME_SENDER) \
                if state.sender else DUNNO
        return self.reject_rbl_domain(state, domain, state.recipient, NAME_RECIPIENT) \
            if state.recipient else DUNNO

    def _map_command(self, state, name, table, def_acl):
        if name == "check_client_access":
            return self.check_namadr_access(state, table, state.name, state.addr, 0,
                                            state.namaddr, NAME_CLIENT, def_acl)[0]
        if name == "check_reverse_client_hostname_access":
            status = self.check_namadr_access(state, table, state.reverse_name, state.addr,
                                              0, state.reverse_name, NAME_REV_CLIENT,
                                              def_acl)[0]
            self.forbid_allowlist(state, name, status, state.reverse_name)
            return status
        if name == "check_helo_access":
            if state.helo_name is None:
                return DUNNO
            return self.check_domain_access(state, table, state.helo_name, 0,
                                            state.helo_name, NAME_HELO, def_acl)[0]
        if name == "check_sender_access":
            if state.sender is None:
                return DUNNO
            if state.sender:
                return self.check_mail_access(state, table, state.sender, state.sender,
                                              NAME_SENDER, def_acl)
            return self.check_access(state, table, self.null_key, 0, state.sender,
                                     NAME_SENDER, def_acl)[0]
        if name == "check_recipient_access":
            if state.recipient is None:
                return DUNNO
            return self.check_mail_access(state, table, state.recipient, state.recipient,
                                          NAME_RECIPIENT, def_acl)
        if name == "check_etrn_access":
            etrn = state.check_etrn_name
            if etrn is None:
                return DUNNO
            return self.check_domain_access(state, table, etrn, 0, etrn, NAME_ETRN,
                                            def_acl)[0]
        if name == "check_sasl_access":
            if not self.sasl_enable:
                msg.warn("restriction `%s' ignored: no SASL support" % name)
                return DUNNO
            if not state.sasl_username:
                return DUNNO
            return self.check_access(state, table, state.sasl_username, 0,
                                     msg.printable(state.sasl_username, "_"),
                                     NAME_SASL_USER, def_acl)[0]
        if name == "check_ccert_access":
            return self.check_ccert_access(state, table, def_acl)
        attribute, rrtype, reply_class, reply_attr = _SERVER_ACCESS[name]
        value = getattr(state, attribute)
        if not value or (attribute in ("name", "reverse_name") and value.lower() == "unknown"):
            return DUNNO
        status = self.check_server_access(state, table, value, rrtype,
                                          getattr(state, reply_attr), reply_class, def_acl)
        self.forbid_allowlist(state, name, status, value)
        return status

    def check_policy_service(self, state, server, reply_name, reply_class, def_acl):
        client = self.policy_clients.get(server)
        if client is None:          # named in an access table's answer, not in main.cf
            client = self.policy_clients[server] = PolicyClient(self.config, server)
        action = client.request(policy_attributes(state, client.context, self.stress))
        if action is None:
            self.policy_nesting += 1
            try:
                return self.table_result(state, server,
                                         client.default_action if self.policy_nesting == 1
                                         else "451 4.3.5 Server configuration problem",
                                         "policy query", reply_name, reply_class, def_acl)
            finally:
                self.policy_nesting -= 1
        return self.table_result(state, server, action, "policy query", reply_name,
                                 reply_class, def_acl)

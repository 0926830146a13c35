"""access(5) tables: the lookups of check_*_access and what their answers mean
(Postfix's smtpd_check.c: check_table_result, check_access, check_domain_access,
check_addr_access, check_namadr_access, check_mail_access, check_server_access).

A table answer is an action: OK/RELAY/all digits (permit), REJECT [text], DEFER [text],
4xx/5xx text, DEFER_IF_PERMIT, DEFER_IF_REJECT, DUNNO, HOLD, DISCARD, FILTER, REDIRECT,
BCC, PREPEND, WARN, INFO, or a list of restrictions (restriction classes included)
evaluated in its place. Actions that change the queued message (HOLD, DISCARD, FILTER,
REDIRECT, BCC, PREPEND) are saved in the session state for smtpd to hand to cleanup.
"""

import re

from pyfix.common import dns, msg
from pyfix.common.dsn_util import dsn_split
from pyfix.common.strings import CHARS_BRACE, CHARS_COMMA_SP, tokens_quoted
from pyfix.common.valid_hostname import valid_hostaddr
from pyfix.common.resolve_clnt import FLAG_FAIL, FLAG_ROUTED
from pyfix.maps.addr_find import (FIND_DOMAIN, FIND_FULL, FIND_LOCALPART_AT, FIND_NOEXT,
                                  FIND_PDDMDS, FIND_PDMS, mail_addr_find)
from pyfix.maps.dict import FLAG_FIXED
from pyfix.maps.match_list import MATCH_FLAG_PARENT

from pyfix.daemons.smtpd.check.core import (DUNNO, ERROR_POLICY, NAME_RECIPIENT, OK,
                                            log_whatsup, smtpd_dsn_fix)

FULL = 0
PARTIAL = FLAG_FIXED
# cleanup_user.h: the queue-file flags that access actions ask cleanup for.
CLEANUP_FLAG_HOLD = 1 << 1
CLEANUP_FLAG_DISCARD = 1 << 2
SERVER_CONFIG_ERROR = "451 4.3.5 Server configuration error"
_HEADER = re.compile(r"^[\x21-\x39\x3b-\x7e]+[ \t]*:")


class AccessChecks:
    """check_table_result() and the table lookups; mixed into SmtpdCheck."""

    def can_delegate(self, state, table, action):
        """can_delegate_action(): FILTER/HOLD/... need a message to act upon."""
        if self.proxy_filter:
            msg.warn("access table %s: with %s specified, action %s is unavailable"
                     % (table, "smtpd_proxy_filter", action))
            return False
        if state.where == "ETRN":
            msg.warn("access table %s: action %s is unavailable in %s"
                     % (table, action, "smtpd_etrn_restrictions"))
            return False
        return self.not_in_client_helo(state, table, action)

    @staticmethod
    def not_in_client_helo(state, table, action):
        if state.sender is None:
            msg.warn("access table %s: with %s=%s, action %s is always skipped in %s or %s "
                     "restrictions" % (table, "smtpd_delay_reject", "no", action,
                                       "Client host", "Helo command"))
            return False
        return True

    def _reject_text(self, state, code, default_dsn, text, reply_name, reply_class,
                     default_text):
        dsn, rest = dsn_split(default_dsn, text)
        return self.reject(state, ERROR_POLICY, code, smtpd_dsn_fix(dsn, reply_class),
                           "<%s>: %s rejected: %s" % (reply_name, reply_class,
                                                      rest or default_text))

    def table_result(self, state, table, value, datum, reply_name, reply_class, def_acl):
        """check_table_result(): what one access table answer means."""
        command = re.match(r"[^ \t]*", value).group(0)
        text = value[len(command):].lstrip(" \t\n\v\f\r")
        verb = command.upper()
        if verb == "DUNNO":
            return DUNNO
        if verb == "REJECT":
            return self._reject_text(state, self.map_reject_code, "5.7.1", text,
                                     reply_name, reply_class, "Access denied")
        if verb == "DEFER":
            return self._reject_text(state, self.map_defer_code, "4.7.1", text,
                                     reply_name, reply_class, "Access denied")
        if verb in ("INFO", "WARN"):
            log_whatsup(state, verb.lower(), text)
            return DUNNO
        if verb in ("FILTER", "REDIRECT", "BCC", "HOLD", "DISCARD"):
            return self._delegated(state, table, verb, command, text, datum, reply_name,
                                   reply_class)
        if verb == "DEFER_IF_PERMIT":
            dsn, rest = dsn_split("4.7.1", text)
            return self.defer_if_permit(1, state, ERROR_POLICY, self.map_defer_code,
                                        smtpd_dsn_fix(dsn, reply_class),
                                        "<%s>: %s rejected: %s"
                                        % (reply_name, reply_class,
                                           rest or "Service unavailable"))
        if verb == "DEFER_IF_REJECT":
            dsn, rest = dsn_split("4.7.1", text)
            return self.defer_if_reject(state, ERROR_POLICY, self.map_defer_code,
                                        smtpd_dsn_fix(dsn, reply_class),
                                        "<%s>: %s rejected: %s"
                                        % (reply_name, reply_class,
                                           rest or "Service unavailable"))
        if verb == "PREPEND":
            return self._prepend(state, table, text, datum)
        if value.isdigit():
            return self.acl_permit(state, command, reply_class, reply_name, "from " + table)
        if len(command) == 3 and text and command[0] in "45" and command[1:].isdigit():
            return self._reject_text(state, int(command), command[0] + ".7.1", text,
                                     reply_name, reply_class, "Access denied")
        if verb in ("OK", "RELAY"):
            return self.acl_permit(state, command, reply_class, reply_name, "from " + table)
        return self._restriction_value(state, table, value, reply_name, reply_class, def_acl)

    def _delegated(self, state, table, verb, command, text, datum, reply_name, reply_class):
        """The actions carried out by cleanup: FILTER, REDIRECT, BCC, HOLD, DISCARD."""
        if not self.can_delegate(state, table, verb):
            return DUNNO
        if verb == "HOLD" and state.saved_flags & CLEANUP_FLAG_HOLD:
            return DUNNO
        if verb == "FILTER":
            if not text:
                msg.warn('access table %s entry "%s" has FILTER entry without value'
                         % (table, datum))
            elif ":" not in text:
                msg.warn('access table %s entry "%s" requires transport:destination'
                         % (table, datum))
            else:
                log_whatsup(state, "filter", "<%s>: %s triggers FILTER %s"
                            % (reply_name, reply_class, text))
                state.saved_filter = text
            return DUNNO
        if verb in ("REDIRECT", "BCC"):
            if "@" not in text:
                msg.warn('access table %s entry "%s" requires user@domain target'
                         % (table, datum))
            else:
                log_whatsup(state, verb.lower(), "<%s>: %s triggers %s %s"
                            % (reply_name, reply_class, verb, text))
                if verb == "REDIRECT":
                    state.saved_redirect = text
                else:
                    state.saved_bcc = (state.saved_bcc or []) + [text]
            return DUNNO
        log_whatsup(state, verb.lower(), "<%s>: %s %s" % (
            reply_name, reply_class, text or "triggers %s action" % verb))
        if verb == "HOLD":
            state.saved_flags |= CLEANUP_FLAG_HOLD
            return DUNNO
        state.saved_flags |= CLEANUP_FLAG_DISCARD
        state.discard = True
        return self.acl_permit(state, command, reply_class, reply_name, "from " + table)

    def _prepend(self, state, table, text, datum):
        if not self.not_in_client_helo(state, table, "PREPEND"):
            return DUNNO
        if state.where == "END-OF-MESSAGE":
            msg.warn("access table %s: action PREPEND must be used before %s"
                     % (table, "smtpd_end_of_data_restrictions"))
            return DUNNO
        if not text or not _HEADER.match(text):
            msg.warn('access table %s entry "%s" requires header: text' % (table, datum))
            return DUNNO
        state.prepend = (state.prepend or []) + [text]
        return DUNNO

    def _restriction_value(self, state, table, value, reply_name, reply_class, def_acl):
        """A right-hand side that names restrictions: evaluate them here."""
        if ":" in value:
            msg.warn("access table %s has entry with lookup table: %s" % (table, value))
            msg.warn("do not specify lookup tables inside SMTPD access maps")
            msg.warn("define a restriction class and specify its name instead.")
            self.server_error(state)
        if state.check_recursion > 100:
            msg.warn("access table %s entry %s causes unreasonable recursion"
                     % (table, value))
            self.server_error(state)
        restrictions = tokens_quoted(value, CHARS_COMMA_SP, CHARS_BRACE)
        if not restrictions:
            msg.warn("access table %s entry %s has empty value" % (table, value))
            return OK
        return self.generic_checks(state, restrictions, reply_name, reply_class, def_acl)

    # -- lookups --------------------------------------------------------------------------

    def _maps(self, table):
        maps = self.access_maps.get(table)
        if maps is None:
            msg.warn("check_access: unexpected dictionary: %s" % table)
        return maps

    def _table_answer(self, state, table, maps, key, flags, datum, reply_name, reply_class,
                      def_acl):
        """(status, found) of one key, with a table error as a configuration error."""
        value = maps.find(key, flags)
        if value is not None:
            return self.table_result(state, table, value, datum, reply_name, reply_class,
                                     def_acl), True
        if maps.error:
            return self.table_result(state, table, SERVER_CONFIG_ERROR, datum, reply_name,
                                     reply_class, def_acl), True
        return DUNNO, False

    def check_access(self, state, table, name, flags, reply_name, reply_class, def_acl):
        maps = self._maps(table)
        if maps is None:
            return self.table_result(state, table, SERVER_CONFIG_ERROR, name, reply_name,
                                     reply_class, def_acl), True
        return self._table_answer(state, table, maps, name, flags, name, reply_name,
                                  reply_class, def_acl)

    def check_domain_access(self, state, table, domain, flags, reply_name, reply_class,
                            def_acl):
        """The name, then its parent domains (`.parent` unless smtpd_access_maps is in
        parent_domain_matches_subdomains)."""
        maps = self._maps(table)
        if maps is None:
            return self.table_result(state, table, SERVER_CONFIG_ERROR, domain, reply_name,
                                     reply_class, def_acl), True
        name = domain
        maybe_numerical = True
        while name:
            status, found = self._table_answer(state, table, maps, name, flags, domain,
                                               reply_name, reply_class, def_acl)
            if found:
                return status, True
            if maybe_numerical:
                maybe_numerical = valid_hostaddr(domain)
                if maybe_numerical:
                    break
            dot = name.find(".", 1)
            if dot < 0:
                break
            name = name[dot + 1:] if self.access_parent_style == MATCH_FLAG_PARENT \
                else name[dot:]
            flags = PARTIAL
        return DUNNO, False

    def check_addr_access(self, state, table, address, flags, reply_name, reply_class,
                          def_acl):
        """The address, then its parent networks: 1.2.3.4, 1.2.3, 1.2, 1."""
        maps = self._maps(table)
        if maps is None:
            return self.table_result(state, table, SERVER_CONFIG_ERROR, address, reply_name,
                                     reply_class, def_acl), True
        delim = ":" if ":" in address else "."
        addr = address
        while True:
            status, found = self._table_answer(state, table, maps, addr, flags, address,
                                               reply_name, reply_class, def_acl)
            if found:
                return status, True
            flags = PARTIAL
            cut = addr.rfind(delim)
            if cut < 0:
                break
            addr = addr[:cut]
        return DUNNO, False

    def check_namadr_access(self, state, table, name, addr, flags, reply_name, reply_class,
                            def_acl):
        status, found = self.check_domain_access(state, table, name, flags, reply_name,
                                                 reply_class, def_acl)
        if status or found:
            return status, found
        return self.check_addr_access(state, table, addr, flags, reply_name, reply_class,
                                      def_acl)

    def check_mail_access(self, state, table, addr, reply_name, reply_class, def_acl):
        """An address: user+ext@domain, user@domain, domain and parents, user@."""
        reply = self.resolve_addr(state.recipient if reply_class == "Sender address"
                                  else state.sender, addr)
        if reply.flags & FLAG_FAIL:
            self.dict_retry(state, addr)
        if "@" not in reply.recipient:
            msg.warn("check_mail_access: no @domain in address: %s" % reply.recipient)
            return DUNNO
        maps = self._maps(table)
        if maps is None:
            return self.table_result(state, table, SERVER_CONFIG_ERROR, reply.recipient,
                                     reply_name, reply_class, def_acl)
        strategy = FIND_FULL | FIND_NOEXT | FIND_DOMAIN | FIND_LOCALPART_AT | (
            FIND_PDMS if self.access_parent_style == MATCH_FLAG_PARENT else FIND_PDDMDS)
        found = mail_addr_find(maps, reply.recipient, self.addr_rules, strategy)
        if found.value is not None:
            status = self.table_result(state, table, found.value, reply.recipient,
                                       reply_name, reply_class, def_acl)
            suspicious = not self.allow_untrusted_routing and reply.flags & FLAG_ROUTED \
                and reply_class == NAME_RECIPIENT
            return DUNNO if status == OK and suspicious else status
        if maps.error:
            return self.table_result(state, table, SERVER_CONFIG_ERROR, reply.recipient,
                                     reply_name, reply_class, def_acl)
        return DUNNO

    def check_server_access(self, state, table, name, rrtype, reply_name, reply_class,
                            def_acl):
        """check_{client,helo,sender,recipient}_{mx,ns,a}_access: the MX hosts, name
        servers or addresses of a domain, looked up in an access table."""
        domain = name[name.rfind("@") + 1:]
        if domain.startswith("["):
            if rrtype not in ("A", "MX") or not domain.endswith("]"):
                return DUNNO
            bare = domain[1:-1]
            bare = bare[5:] if bare.lower().startswith("ipv6:") else bare
            if not valid_hostaddr(bare):
                return DUNNO
            return self.check_addr_access(state, table, bare, FULL, reply_name,
                                          reply_class, def_acl)[0]
        if rrtype in ("A", "AAAA"):
            servers = [domain]
        else:
            status, records, _ = dns.lookup(domain, rrtype)
            if status == dns.NULLMX:
                return DUNNO
            if status == dns.NOTFOUND and rrtype == "MX":
                records, status = [dns.Record(domain, "MX", 0, domain)], dns.OK
            elif status == dns.NOTFOUND and rrtype == "NS":
                while status == dns.NOTFOUND and "." in domain[:-1]:
                    domain = domain[domain.find(".") + 1:]
                    status, records, _ = dns.lookup(domain, rrtype)
            if status != dns.OK:
                msg.warn("Unable to look up %s host for %s: %s"
                         % (rrtype, domain or name,
                            "Host not found, try again" if status == dns.RETRY
                            else "Host not found"))
                return DUNNO
            servers = [record.data for record in records]
        for server in servers:
            if valid_hostaddr(server):
                status, found = self.check_addr_access(state, table, server, FULL,
                                                       reply_name, reply_class, def_acl)
                if status or found:
                    return status
                continue
            if rrtype not in ("A", "AAAA"):
                status, found = self.check_domain_access(state, table, server, FULL,
                                                         reply_name, reply_class, def_acl)
                if status or found:
                    return status
            for address in self._host_addresses(server, rrtype, reply_name, reply_class):
                status, found = self.check_addr_access(state, table, address, FULL,
                                                       reply_name, reply_class, def_acl)
                if status or found:
                    return status
        return DUNNO

    @staticmethod
    def _host_addresses(host, rrtype, reply_name, reply_class):
        """The addresses of a server name (hostname_to_sockaddr), or a warning."""
        addresses = []
        statuses = set()
        for family in ("A", "AAAA"):
            status, records, _ = dns.lookup(host, family)
            statuses.add(status)
            addresses += [record.data for record in records]
        if not addresses and rrtype not in ("A", "AAAA"):
            msg.warn("Unable to look up %s host %s for %s %s: %s"
                     % (rrtype, host, reply_class, reply_name,
                        "Temporary failure in name resolution" if dns.RETRY in statuses
                        else "Name or service not known"))
        return addresses

"""permit_mx_backup (Postfix's smtpd_check.c permit_mx_backup, i_am_mx, has_my_addr,
permit_mx_primary, all_auth_mx_addr).

Mail is accepted for a domain that lists this host as a backup MX: one of its MX hosts
of a lower preference than the best is this machine (a name in $mydestination, or an
address of inet_interfaces / proxy_interfaces), none of the best ones is, and, when
permit_mx_backup_networks is set, every primary MX host's address is in it.
"""

from pyfix.common import dns
from pyfix.common.resolve_clnt import CLASS_FINAL, CLASS_RELAY, FLAG_FAIL, FLAG_ROUTED

from pyfix.daemons.smtpd.check.core import DUNNO, ERROR_POLICY, OK

_H_ERRORS = {dns.RETRY: "Host not found, try again"}


class MxBackupChecks:
    """Mixed into SmtpdCheck; self.perm_mx_networks is a NamadrList."""

    def _addresses(self, host):
        """(status, addresses) of a host for the address families in use."""
        statuses, addresses = [], []
        for rrtype in self.address_types:
            status, records, _ = dns.lookup(host, rrtype)
            statuses.append(status)
            addresses += [record.data for record in records]
        if addresses:
            return dns.OK, addresses
        return (dns.RETRY if dns.RETRY in statuses else dns.NOTFOUND), []

    def _has_my_addr(self, state, host, reply_name, reply_class):
        status, addresses = self._addresses(host)
        if not addresses:
            self.defer_if_reject(state, ERROR_POLICY, 450, "4.4.4",
                                 "<%s>: %s rejected: Unable to look up mail exchanger host "
                                 "%s: %s" % (reply_name, reply_class, host,
                                             "Temporary failure in name resolution"
                                             if status == dns.RETRY
                                             else "Name or service not known"))
            return False
        own = self.addr_rules.own_addresses()
        return any(address.lower() in own for address in addresses)

    def _i_am_mx(self, state, hosts, reply_name, reply_class):
        if any(self.addr_rules.resolve_local(host) > 0 for host in hosts):
            return True
        return any(self._has_my_addr(state, host, reply_name, reply_class) for host in hosts)

    def _all_auth_mx_addr(self, state, host, reply_name, reply_class):
        status, addresses = self._addresses(host)
        if status != dns.OK:
            self.defer_if_reject(state, ERROR_POLICY, 450, "4.4.4",
                                 "<%s>: %s rejected: Unable to look up host %s as mail "
                                 "exchanger: %s" % (reply_name, reply_class, host,
                                                    _H_ERRORS.get(status, "Host not found")))
            return False
        for address in addresses:
            if not self.perm_mx_networks.match(host, address):
                if self.perm_mx_networks.error:
                    self.defer_if_reject(state, ERROR_POLICY, 450, "4.4.4",
                                         "<%s>: %s rejected: Unable to verify host %s as "
                                         "mail exchanger" % (reply_name, reply_class, host))
                return False
        return True

    def permit_mx_backup(self, state, recipient, reply_name, reply_class):
        reply = self.resolve_addr(state.sender, recipient)
        if reply.flags & FLAG_FAIL:
            self.dict_retry(state, recipient)
        if "@" not in reply.recipient:
            return OK
        domain = reply.recipient[reply.recipient.rfind("@") + 1:]
        if not self.allow_untrusted_routing and reply.flags & FLAG_ROUTED:
            return DUNNO
        if reply.flags & (CLASS_FINAL | CLASS_RELAY):
            return OK
        if domain.startswith("[") and domain.endswith("]"):
            return DUNNO
        status, records, _ = dns.lookup(domain, "MX")
        if status != dns.OK:
            if status == dns.RETRY:
                self.defer_if_reject(state, ERROR_POLICY, 450, "4.4.4",
                                     "<%s>: %s rejected: Unable to look up mail exchanger "
                                     "information: %s" % (reply_name, reply_class,
                                                          "Host not found, try again"))
            return DUNNO
        best = min(record.pref for record in records)
        primary = [record.data for record in records if record.pref == best]
        backup = [record.data for record in records if record.pref != best]
        if self._i_am_mx(state, primary, reply_name, reply_class):
            return DUNNO
        if not backup or not self._i_am_mx(state, backup, reply_name, reply_class):
            return DUNNO
        if self.perm_mx_networks.patterns and not all(
                self._all_auth_mx_addr(state, host, reply_name, reply_class)
                for host in primary):
            return DUNNO
        return OK

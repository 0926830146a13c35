"""smtpd's access policy: the restriction lists of Postfix's smtpd_check.c.

SmtpdCheck(config) is built once per smtpd process: it opens every table the
restrictions name, parses smtpd_{client,helo,sender,relay,recipient,data,end_of_data,
etrn}_restrictions and smtpd_restriction_classes, and stops with Postfix's fatal error
when neither smtpd_relay_restrictions nor smtpd_recipient_restrictions protects against
relaying. smtpd calls client(), helo(), mail(), rcpt(), data(), eod(), etrn(), vrfy(),
size() and rcpt_valid() where Postfix's smtpd calls smtpd_check_*(); each answers None
(go on) or a Reply, and logs the `NOQUEUE: reject: ...` lines itself. With
smtpd_delay_reject (the default) the client, HELO and sender restrictions are applied
again at each RCPT, so that the rejection names the recipient.

The session state (daemons/smtpd/state.py, SmtpdState) carries the client and envelope;
this package keeps its own bookkeeping there in attributes named check_* and in the
defer_if_permit / defer_if_reject holders.
"""

import os
import socket

from pyfix.common import dns, hostinfo, info_log_addr_form, msg
from pyfix.common.strings import CHARS_BRACE, CHARS_COMMA_SP, tokens_quoted, unescape
from pyfix.common.resolve_clnt import FLAG_ERROR
from pyfix.maps.addr_find import AddressRules
from pyfix.maps.dict import FLAG_FOLD_FIX, FLAG_LOCK, FLAG_UTF8_REQUEST
from pyfix.maps.maps import Maps
from pyfix.maps.match_list import (MATCH_FLAG_NONE, MATCH_FLAG_PARENT, MATCH_FLAG_RETURN,
                                   domain_list, string_list)

from pyfix.daemons.smtpd.check.access import AccessChecks
from pyfix.daemons.smtpd.check.core import (DUNNO, ERROR_POLICY, ERROR_RESOURCE,
                                            NAME_CCERT, NAME_DATA, NAME_EOD, NAME_RECIPIENT,
                                            NAME_SENDER, OK, REJECT, Abort, Decisions, Defer)
from pyfix.daemons.smtpd.check.dnsxl import DnsxlChecks
from pyfix.daemons.smtpd.check.generic import GenericChecks
from pyfix.daemons.smtpd.check.mxbackup import MxBackupChecks
from pyfix.daemons.smtpd.check.mynetworks import NamadrList
from pyfix.daemons.smtpd.check.names import NameChecks
from pyfix.daemons.smtpd.check.policy import PolicyClient
from pyfix.daemons.smtpd.check.resolve import SmtpdResolver
from pyfix.daemons.smtpd.reply import Reply


MAP_FLAGS = FLAG_LOCK | FLAG_FOLD_FIX | FLAG_UTF8_REQUEST
LISTS = ("smtpd_client_restrictions", "smtpd_helo_restrictions",
         "smtpd_sender_restrictions", "smtpd_relay_restrictions",
         "smtpd_recipient_restrictions", "smtpd_etrn_restrictions",
         "smtpd_data_restrictions", "smtpd_end_of_data_restrictions")
RCPT_REQUIRED = ("reject_unauth_destination", "defer_unauth_destination", "reject", "defer",
                 "defer_if_permit", "check_relay_domains")
_TEMPFAIL_ACTIONS = {"defer": 0, "defer_if_permit": 1}
_CODES = {
    "unk_client_code": "unknown_client_reject_code",
    "unk_name_code": "unknown_hostname_reject_code",
    "unk_addr_code": "unknown_address_reject_code",
    "bad_name_code": "invalid_hostname_reject_code",
    "non_fqdn_code": "non_fqdn_reject_code",
    "relay_code": "relay_domains_reject_code",
    "map_reject_code": "access_map_reject_code",
    "map_defer_code": "access_map_defer_code",
    "reject_code": "reject_code",
    "defer_code": "defer_code",
    "maps_rbl_code": "maps_rbl_reject_code",
    "local_rcpt_code": "unknown_local_recipient_reject_code",
    "virt_alias_code": "unknown_virtual_alias_reject_code",
    "virt_mailbox_code": "unknown_virtual_mailbox_reject_code",
    "relay_rcpt_code": "unknown_relay_recipient_reject_code",
    "plaintext_code": "plaintext_reject_code",
    "mul_rcpt_code": "multi_recipient_bounce_reject_code",
}
_ADDRESS_MAPS = {
    "local_rcpt_maps": "local_recipient_maps", "send_canon_maps": "sender_canonical_maps",
    "rcpt_canon_maps": "recipient_canonical_maps", "canonical_maps": "canonical_maps",
    "virt_alias_maps": "virtual_alias_maps", "virt_mailbox_maps": "virtual_mailbox_maps",
    "relay_rcpt_maps": "relay_recipient_maps",
    "sender_login_maps": "smtpd_sender_login_maps", "rbl_reply_maps": "rbl_reply_maps",
}


def _parent_style(config, name):
    """match_parent_style(): MATCH_FLAG_PARENT when name is in
    parent_domain_matches_subdomains."""
    return MATCH_FLAG_PARENT if name in config.get_list("parent_domain_matches_subdomains") \
        else MATCH_FLAG_NONE


class SmtpdCheck(Decisions, AccessChecks, NameChecks, DnsxlChecks, MxBackupChecks,
                 GenericChecks):

    def __init__(self, config, resolver=None):
        self.config = config
        info_log_addr_form.init(config)
        dns.init(config)
        for attribute, parameter in _CODES.items():
            setattr(self, attribute, config.get_int(parameter))
        for attribute, parameter in _ADDRESS_MAPS.items():
            setattr(self, attribute, Maps(parameter, config.get(parameter), MAP_FLAGS))
        self._read_settings(config)
        self.resolver = resolver or SmtpdResolver(config)
        self.addr_rules = AddressRules(config)
        self.mynetworks = NamadrList("mynetworks", config.get("mynetworks"),
                                     MATCH_FLAG_RETURN | _parent_style(config, "mynetworks"))
        self.perm_mx_networks = NamadrList(
            "permit_mx_backup_networks", config.get("permit_mx_backup_networks"),
            MATCH_FLAG_RETURN | _parent_style(config, "permit_mx_backup_networks"))
        families = hostinfo.inet_families(config.get("inet_protocols"))
        self.address_types = [rrtype for family, rrtype in ((socket.AF_INET, "A"),
                                                            (socket.AF_INET6, "AAAA"))
                              if family in families]
        self.relay_domains = domain_list("relay_domains", config.get("relay_domains"),
                                         _parent_style(config, "relay_domains"))
        self.relay_ccerts = Maps("relay_clientcerts", config.get("relay_clientcerts"),
                                 FLAG_LOCK | FLAG_FOLD_FIX)
        self.access_parent_style = _parent_style(config, "smtpd_access_maps")
        self.perm_log = string_list("smtpd_log_access_permit_actions",
                                    config.get("smtpd_log_access_permit_actions"),
                                    MATCH_FLAG_RETURN)
        self.access_maps = {}
        self.policy_clients = {}
        self.policy_nesting = 0
        self.rbl_cache = {}
        self.warned_relay_domains = False
        self.lists = {name: self._parse(config.get(name) or "") for name in LISTS}
        self.rest_classes = {}
        for name in config.get_list("smtpd_restriction_classes"):
            value = config.get(name)
            if not value:
                msg.fatal("restriction class `%s' needs a definition" % name)
            self.rest_classes[name] = self._parse(value)
        self.rest_classes["reject_sender_login_mismatch"] = self._parse(
            "reject_authenticated_sender_login_mismatch "
            "reject_unauthenticated_sender_login_mismatch")
        if not self._has_required(self.lists["smtpd_recipient_restrictions"]) \
                and not self._has_required(self.lists["smtpd_relay_restrictions"]):
            msg.fatal("in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions,"
                      " specify at least one working instance of: %s"
                      % ", ".join(RCPT_REQUIRED[:-1]) + " or " + RCPT_REQUIRED[-1])

    def _read_settings(self, config):
        self.soft_bounce = config.get_bool("soft_bounce")
        self.delay_reject = config.get_bool("smtpd_delay_reject")
        self.allow_untrusted_routing = config.get_bool("allow_untrusted_routing")
        self.relay_before_rcpt = config.get_bool("smtpd_relay_before_recipient_restrictions")
        self.reject_unlisted_sender = config.get_bool("smtpd_reject_unlisted_sender")
        self.reject_unlisted_rcpt = config.get_bool("smtpd_reject_unlisted_recipient")
        self.show_unk_rcpt_table = config.get_bool("show_user_unknown_table_name")
        self.sasl_enable = config.get_bool("smtpd_sasl_auth_enable")
        self.tls_auth_only = config.get_bool("smtpd_tls_auth_only")
        self.null_key = config.get("smtpd_null_access_lookup_key")
        self.double_bounce = config.get("double_bounce_sender")
        self.mail_name = config.get("mail_name")
        self.default_rbl_reply = config.get("default_rbl_reply")
        self.expansion_filter = unescape(config.get("smtpd_expansion_filter"))
        self.message_size_limit = config.get_long("message_size_limit")
        self.proxy_filter = config.get("smtpd_proxy_filter")
        self.stress = config.get("stress") or ""
        self.unknown_rcpt_transparent = "no_unknown_recipient_checks" in \
            config.get_list("receive_override_options")
        for attribute, parameter in (("unk_name_tf_act", "unknown_helo_hostname_tempfail_action"),
                                     ("unk_addr_tf_act", "unknown_address_tempfail_action"),
                                     ("unv_rcpt_tf_act", "unverified_recipient_tempfail_action"),
                                     ("unv_from_tf_act", "unverified_sender_tempfail_action")):
            value = config.get(parameter)
            if value not in _TEMPFAIL_ACTIONS:
                msg.fatal("bad configuration: %s = %s" % (parameter, value))
            setattr(self, attribute, _TEMPFAIL_ACTIONS[value])

    def _parse(self, text):
        """smtpd_check_parse(): the items of a list; open its tables and policy clients."""
        items = tokens_quoted(text, CHARS_COMMA_SP, CHARS_BRACE)
        last = None
        for item in items:
            if last is not None and last.lower() == "check_policy_service":
                if item not in self.policy_clients:
                    self.policy_clients[item] = PolicyClient(self.config, item)
            elif item.startswith("{") or ":" in item:
                if item not in self.access_maps:
                    self.access_maps[item] = Maps(item, item, MAP_FLAGS)
            last = item
        return items

    def _has_required(self, restrictions, seen=()):
        index = 0
        while index < len(restrictions):
            item = restrictions[index].lower()
            if item == "warn_if_reject" and index + 1 < len(restrictions):
                index += 2
                continue
            if item == "permit":
                if index + 1 < len(restrictions):
                    msg.warn("restriction `%s' after `%s' is ignored"
                             % (restrictions[index + 1], restrictions[index]))
                return False
            if item in RCPT_REQUIRED:
                return True
            expansion = self.rest_classes.get(restrictions[index])
            if expansion is not None and restrictions[index] not in seen \
                    and self._has_required(expansion, seen + (restrictions[index],)):
                return True
            index += 1
        return False

    # -- helpers the mixins share ------------------------------------------------------------

    def resolve_addr(self, sender, addr):
        return self.resolver.resolve(sender, addr)

    def sasl_active(self, state):
        """smtpd_sasl_is_active(): SASL is on for this session (not before STARTTLS when
        smtpd_tls_auth_only = yes)."""
        return self.sasl_enable and (state.tls_context is not None or not self.tls_auth_only)

    def permit_inet_interfaces(self, state):
        return OK if (state.addr or "").lower() in self.addr_rules.own_addresses() else DUNNO

    def permit_tls_clientcerts(self, state, permit_all):
        tls = state.tls_context
        if tls is None:
            return DUNNO
        if permit_all and getattr(tls, "peer_status", 0) & 2:
            return OK
        if getattr(tls, "peer_status", 0) & 1:
            for fingerprint in (tls.peer_cert_fprint, tls.peer_pkey_fprint):
                if fingerprint and self.relay_ccerts.find(fingerprint) is not None:
                    return OK
                if self.relay_ccerts.error:
                    msg.warn("relay_clientcerts: lookup error for fingerprint '%s', "
                             "pkey fingerprint %s" % (tls.peer_cert_fprint,
                                                      tls.peer_pkey_fprint))
                    return self.relay_ccerts.error
        return DUNNO

    def check_ccert_access(self, state, table, def_acl):
        tls = state.tls_context
        if tls is None or not getattr(tls, "peer_status", 0) & 1:
            return DUNNO
        for fingerprint in (tls.peer_cert_fprint, tls.peer_pkey_fprint):
            status, _ = self.check_access(state, table, fingerprint, 0, tls.peer_CN,
                                          NAME_CCERT, def_acl)
            if status != DUNNO:
                return status
        return DUNNO

    def expand_lookup(self, state, name):
        """smtpd_expand_lookup(): the session macros of reply templates."""
        simple = {"server_name": self.config.get("myhostname"), "client": state.namaddr,
                  "client_port": state.port, "client_address": state.addr,
                  "client_name": state.name, "reverse_client_name": state.reverse_name,
                  "helo_name": state.helo_name or ""}
        if name in simple:
            return simple[name]
        for prefix in ("sender", "recipient"):
            if name.startswith(prefix):
                address = getattr(state, prefix) or ""
                local, at, domain = address.rpartition("@")
                return {"": address, "_name": local if at else address,
                        "_domain": domain if at else ""}.get(name[len(prefix):])
        return None

    def check_recipient_rcpt_maps(self, state, recipient):
        if self.unknown_rcpt_transparent or state.check_recipient_rcptmap_checked:
            return DUNNO
        if not state.check_warn_if_reject:
            state.check_recipient_rcptmap_checked = True
        return self.check_rcpt_maps(state, state.sender, recipient, NAME_RECIPIENT)

    def check_sender_rcpt_maps(self, state, sender):
        if self.unknown_rcpt_transparent or state.check_sender_rcptmap_checked:
            return DUNNO
        if not state.check_warn_if_reject:
            state.check_sender_rcptmap_checked = True
        return self.check_rcpt_maps(state, state.recipient, sender, NAME_SENDER)

    def address_ok(self, state, address, smtputf8=False):
        """smtpd_check_addr(): False for an address that trivial-rewrite finds malformed,
        or with a non-ASCII domain outside an SMTPUTF8 transaction (smtpd then answers
        `501 5.1.3 Bad ... address syntax`)."""
        if not address:
            return True
        reply = self.resolve_addr(state.recipient if state.where == "MAIL" else state.sender,
                                  address)
        if reply.flags & FLAG_ERROR:
            return False
        domain = reply.recipient.rpartition("@")[2] if "@" in reply.recipient else ""
        return smtputf8 or domain.isascii()

    # -- the entry points ------------------------------------------------------------------

    @staticmethod
    def _prepare(state):
        """The bookkeeping attributes, created on a state's first check."""
        if not hasattr(state, "check_recursion"):
            state.check_recursion = 0
            state.check_warn_if_reject = 0
            state.check_reply = None
            state.check_defer_if_permit_client = False
            state.check_defer_if_permit_helo = False
            state.check_defer_if_permit_sender = False
            state.check_sender_rcptmap_checked = False
            state.check_recipient_rcptmap_checked = False
            state.check_etrn_name = None
        if not isinstance(getattr(state, "defer_if_permit", None), Defer):
            state.defer_if_permit = Defer()
        if not isinstance(getattr(state, "defer_if_reject", None), Defer):
            state.defer_if_reject = Defer()
        for name, value in (("saved_flags", 0), ("discard", False), ("prepend", None),
                            ("saved_bcc", None), ("error_mask", 0)):
            if getattr(state, name, None) is None:
                setattr(state, name, value)

    @staticmethod
    def _reset(state):
        state.check_recursion = 0
        state.check_warn_if_reject = 0
        state.defer_if_reject.active = False

    def _run(self, state, list_name, reply_name, reply_class, def_acl):
        """generic_checks() of one list, with the Abort of a table error caught."""
        restrictions = self.lists[list_name]
        if not restrictions:
            return DUNNO
        try:
            return self.generic_checks(state, restrictions, reply_name, reply_class, def_acl)
        except Abort as abort:
            return abort.status

    @staticmethod
    def _reply(state, status):
        if status != REJECT:
            return None
        text = state.check_reply
        return Reply(int(text[:3]), text[4:text.index(" ", 4)], text[text.index(" ", 4) + 1:])

    def _defer_if_permit_now(self, state, status):
        """Turn a permission into the deferral some earlier temporary error asked for."""
        pending = state.defer_if_permit
        if status != REJECT and pending.active:
            return self.reject(state, pending.error_class, pending.code, pending.dsn,
                               pending.reason)
        return status

    def _client(self, state):
        if state.name is None or state.addr is None:
            return DUNNO
        state.defer_if_permit.active = False
        self._reset(state)
        status = self._run(state, "smtpd_client_restrictions", state.namaddr, "Client host",
                           "check_client_access")
        state.check_defer_if_permit_client = state.defer_if_permit.active
        return status

    def _helo(self, state, helo):
        if helo is None:
            return DUNNO
        saved, state.helo_name = state.helo_name, helo
        try:
            state.defer_if_permit.active = state.check_defer_if_permit_client
            self._reset(state)
            status = self._run(state, "smtpd_helo_restrictions", helo, "Helo command",
                               "check_helo_access")
            state.check_defer_if_permit_helo = state.defer_if_permit.active
            return status
        finally:
            state.helo_name = saved

    def _mail(self, state, sender):
        if sender is None:
            return DUNNO
        saved, state.sender = state.sender, sender
        try:
            state.defer_if_permit.active = state.check_defer_if_permit_client \
                or state.check_defer_if_permit_helo
            state.check_sender_rcptmap_checked = False
            self._reset(state)
            status = self._run(state, "smtpd_sender_restrictions", sender, NAME_SENDER,
                               "check_sender_access")
            state.check_defer_if_permit_sender = state.defer_if_permit.active
            if self.reject_unlisted_sender and status != REJECT \
                    and not state.check_sender_rcptmap_checked and not state.discard and sender:
                status = self._guarded(state, self.check_sender_rcpt_maps, state, sender)
            return status
        finally:
            state.sender = saved

    @staticmethod
    def _guarded(state, function, *args):
        try:
            return function(*args)
        except Abort as abort:
            return abort.status

    def client(self, state):
        """smtpd_check_client(): at connect time, unless smtpd_delay_reject."""
        self._prepare(state)
        return self._reply(state, self._client(state))

    def helo(self, state, helo):
        self._prepare(state)
        return self._reply(state, self._helo(state, helo))

    def mail(self, state, sender):
        self._prepare(state)
        return self._reply(state, self._mail(state, sender))

    def rcpt(self, state, recipient):
        """smtpd_check_rcpt(): the delayed client/helo/sender checks, then the relay and
        recipient restrictions, then recipient validation."""
        self._prepare(state)
        if recipient is None or recipient.lower() == "postmaster":
            return None
        saved, state.recipient = state.recipient, recipient
        try:
            return self._reply(state, self._rcpt(state, recipient))
        finally:
            state.recipient = saved

    def _rcpt(self, state, recipient):
        state.check_recipient_rcptmap_checked = False
        if self.delay_reject:
            for status in (self._client(state), self._helo(state, state.helo_name),
                           self._mail(state, state.sender)):
                if status == REJECT:
                    return status
        state.defer_if_permit.active = state.check_defer_if_permit_sender
        self._reset(state)
        order = ["smtpd_relay_restrictions", "smtpd_recipient_restrictions"]
        if not self.relay_before_rcpt:
            order.reverse()
        status = DUNNO
        for list_name in order:
            status = self._run(state, list_name, recipient, NAME_RECIPIENT,
                               "check_recipient_access")
            if status == REJECT:
                break
        status = self._defer_if_permit_now(state, status)
        if self.reject_unlisted_rcpt and status != REJECT \
                and not state.check_recipient_rcptmap_checked and not state.discard:
            status = self._guarded(state, self.check_recipient_rcpt_maps, state, recipient)
        return status

    def etrn(self, state, domain):
        self._prepare(state)
        if domain is None:
            return None
        state.check_etrn_name = domain
        try:
            if self.delay_reject:
                for status in (self._client(state), self._helo(state, state.helo_name)):
                    if status == REJECT:
                        return self._reply(state, status)
            state.defer_if_permit.active = state.check_defer_if_permit_client \
                or state.check_defer_if_permit_helo
            self._reset(state)
            status = self._run(state, "smtpd_etrn_restrictions", domain, "Etrn command",
                               "check_etrn_access")
            return self._reply(state, self._defer_if_permit_now(state, status))
        finally:
            state.check_etrn_name = None

    def _message_stage(self, state, list_name, reply_name, reply_class):
        """smtpd_check_data() and smtpd_check_eod(): one recipient is named only when
        there is only one."""
        self._prepare(state)
        saved = state.recipient
        if state.rcpt_count > 1:
            state.recipient = None
        try:
            state.defer_if_permit.active = False
            self._reset(state)
            status = self._run(state, list_name, reply_name, reply_class, None)
            return self._reply(state, self._defer_if_permit_now(state, status))
        finally:
            state.recipient = saved

    def data(self, state):
        return self._message_stage(state, "smtpd_data_restrictions", "DATA", NAME_DATA)

    def eod(self, state):
        return self._message_stage(state, "smtpd_end_of_data_restrictions", "END-OF-MESSAGE",
                                   NAME_EOD)

    def vrfy(self, state, address):
        """VRFY is checked as a recipient (smtpd.c vrfy_cmd calls smtpd_check_rcpt)."""
        return self.rcpt(state, address)

    def rcpt_valid(self, state, recipient):
        """smtpd_check_rcptmap(): is the recipient known in its address class?"""
        self._prepare(state)
        saved, state.recipient = state.recipient, recipient
        try:
            self._reset(state)
            state.check_recipient_rcptmap_checked = False
            return self._reply(state, self._guarded(state, self.check_recipient_rcpt_maps,
                                                    state, recipient))
        finally:
            state.recipient = saved

    def size(self, state, size=None):
        """smtpd_check_size() and smtpd_check_queue() at MAIL FROM."""
        self._prepare(state)
        self._reset(state)
        size = state.msg_size if size is None else size
        limit = self.message_size_limit
        if limit > 0 and size and size > limit:
            self.reject(state, ERROR_POLICY, 552, "5.3.4", "Message size exceeds fixed limit")
            return self._reply(state, REJECT)
        if state.stand_alone:
            return None     # smtpd_check_queue() is skipped for sendmail -bs
        return self._queue_space(state)

    def _queue_space(self, state):
        try:
            fs = os.statvfs(self.config.get("queue_directory") or ".")
        except OSError:
            return None
        minfree = self.config.get_long("queue_minfree")
        block = fs.f_frsize or 1
        if minfree // block >= fs.f_bavail or \
                self.message_size_limit // block >= fs.f_bavail / 1.5:
            self.reject(state, ERROR_RESOURCE, 452, "4.3.1", "Insufficient system storage")
            msg.warn("not enough free space in mail queue: %d bytes < %g*message size limit"
                     % (fs.f_bavail * block, 1.5))
            return self._reply(state, REJECT)
        return None


__all__ = ["SmtpdCheck", "Reply"]

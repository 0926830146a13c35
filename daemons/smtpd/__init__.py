"""smtpd(8): the SMTP server (Postfix's src/smtpd/smtpd.c).

A single-threaded server (daemons/skeleton/single.py): master hands over the listening
socket, the process accepts one client and serves one SMTP session at a time, then
waits for the next (max_use, max_idle as for every daemon). Each session runs as an
asyncio protocol on the process's one event loop (made at the first session and kept,
as setting one up costs more than a short session):

    proto.py        the command loop, replies, limits, HELO/EHLO, RSET, NOOP, QUIT, VRFY, ETRN
    chat.py         line input with Postfix's bounds and bare-LF handling, buffered output
    transaction.py  MAIL, RCPT, DATA, the cleanup stream and the Received: header
    bdat.py         BDAT (CHUNKING)
    xclient.py      XCLIENT and XFORWARD
    tls.py          STARTTLS, wrapper mode, the TLS settings
    sasl.py         AUTH through Dovecot's auth socket
    anvil_clnt.py   connection/message/recipient/AUTH/TLS rate limits through anvil(8)
    footer.py       smtpd_reject_footer
    stand_alone.py  `smtpd -S` for sendmail -bs: standard input/output, postdrop
    peer.py, state.py, smtpd_token.py, ehlo.py, hostlist.py, rewrite_ctx.py, reply.py

The access restrictions are the SmtpdCheck object of pyfix.daemons.smtpd.check, built
once per process. Logging is Postfix's: `connect from name[addr]`, `QUEUEID:
client=name[addr]`, `disconnect from name[addr] ehlo=1 mail=1 rcpt=1 data=1 quit=1
commands=5`, and the `lost connection after X`, `timeout after X`, `too many errors
after X` lines.
"""

import asyncio
import importlib
import os
import socket

from pyfix.common import flush_clnt, hostinfo, msg
from pyfix.common.sasl import SERVER_TYPES as SASL_SERVER_TYPES
from pyfix.common.info_log_addr_form import info_log_addr_form, init as init_log_addr_form
from pyfix.common.name_mask import name_code, name_mask
from pyfix.maps.maps import Maps
from pyfix.maps.match_list import string_list
from pyfix.queue import cleanup_user as cu

from pyfix.daemons.skeleton.single import single_server_main
from pyfix.daemons.smtpd.anvil_clnt import AnvilClient
from pyfix.daemons.smtpd.ehlo import ehlo_mask
from pyfix.daemons.smtpd.hostlist import HostList
from pyfix.daemons.smtpd.peer import peer_init
from pyfix.daemons.smtpd.proto import SmtpdProtocol
from pyfix.daemons.smtpd.rewrite_ctx import RewriteClients
from pyfix.daemons.smtpd.sasl import DovecotAuth
from pyfix.daemons.smtpd.stand_alone import relay_stdio_if_needed, stand_alone
from pyfix.daemons.smtpd.tls import TlsSettings
from pyfix.daemons.smtpd.check import SmtpdCheck
from pyfix.daemons.smtpd.state import SmtpdState

# The table types that smtpd's defaults open in every process (local_recipient_maps'
# proxy:unix:passwd.byname, smtpd_forbidden_commands' regexp:{...}). maps/dict.py imports
# a type's module at its first open; imported here, they come with this module, which
# master preloads, instead of costing each new smtpd process ~10 ms of imports.
for _module in ("cfg_parser", "dict_file", "dict_proxy", "dict_regexp", "dict_stream",
                "dict_utf8"):
    importlib.import_module("pyfix.maps." + _module)

BARE_LF_WANT_STD_EOD = 1 << 0
BARE_LF_REPLY_REJECT = 1 << 1
BARE_LF_TABLE = (("normalize", BARE_LF_WANT_STD_EOD), ("yes", BARE_LF_WANT_STD_EOD),
                 ("reject", BARE_LF_WANT_STD_EOD | BARE_LF_REPLY_REJECT), ("no", 0))

INPUT_TRANSP_NAMES = (("no_unknown_recipient_checks", 1 << 0),
                      ("no_address_mappings", 1 << 1),
                      ("no_header_body_checks", 1 << 2),
                      ("no_milters", 1 << 3))


class SmtpdContext:
    """The per-process settings of smtpd (its pre_jail_init/post_jail_init)."""

    BARE_LF_WANT_STD_EOD = BARE_LF_WANT_STD_EOD
    BARE_LF_REPLY_REJECT = BARE_LF_REPLY_REJECT

    def __init__(self, server):
        config = self.config = server.config
        self.service = server.name
        init_log_addr_form(config)
        self.myhostname = config.get("myhostname")
        self.mail_name = config.get("mail_name")
        self.banner = config.get("smtpd_banner")
        self.smtpd_timeout = config.get_time("smtpd_timeout")
        self.soft_error_limit = config.get_int("smtpd_soft_error_limit")
        self.hard_error_limit = config.get_int("smtpd_hard_error_limit")
        self.error_sleep_time = config.get_time("smtpd_error_sleep_time")
        self.junk_cmd_limit = config.get_int("smtpd_junk_command_limit")
        self.soft_bounce = config.get_bool("soft_bounce")
        self.delay_reject = config.get_bool("smtpd_delay_reject")
        self.delay_open = config.get_bool("smtpd_delay_open_until_valid_rcpt")
        self.line_limit = config.get_int("line_length_limit")
        self.message_limit = config.get_long("message_size_limit")
        self.rcpt_limit = config.get_int("smtpd_recipient_limit")
        self.rcpt_overshoot_limit = config.get_int("smtpd_recipient_overshoot_limit")
        self.helo_required = config.get_bool("smtpd_helo_required")
        self.disable_vrfy = config.get_bool("disable_vrfy_command")
        self.strict_rfc821 = config.get_bool("strict_rfc821_envelopes")
        self.smtputf8_enable = config.get_bool("smtputf8_enable")
        self.strict_smtputf8 = config.get_bool("strict_smtputf8")
        self.forbid_unauth_pipelining = config.get_bool("smtpd_forbid_unauth_pipelining")
        self.sasl_auth_header = config.get_bool("smtpd_sasl_authenticated_header")
        self.content_filter = config.get("content_filter")
        self.cleanup_service = config.get("cleanup_service_name")
        self.cleanup_path = os.path.join("public", self.cleanup_service)
        self.ipc_timeout = config.get_time("ipc_timeout")
        transp = name_mask("receive_override_options", INPUT_TRANSP_NAMES,
                           config.get("receive_override_options"))
        self.cleanup_flags = _input_transp_cleanup(cu.FLAG_MASK_EXTERNAL, transp) \
            | cu.FLAG_SMTP_REPLY
        self.tls = TlsSettings(config)
        self.ipv6_enabled = socket.AF_INET6 in hostinfo.inet_families(
            config.get("inet_protocols"))
        self.sasl_enable = config.get_bool("smtpd_sasl_auth_enable")
        # sendmail -bs never offers AUTH: no need for a SASL implementation there.
        if self.sasl_enable and config.get("smtpd_sasl_type") not in SASL_SERVER_TYPES \
                and not stand_alone(server):
            msg.fatal("unsupported SASL server implementation: %s"
                      % config.get("smtpd_sasl_type"))
        self.sasl_resp_limit = config.get_int("smtpd_sasl_response_limit")
        self.broken_sasl_auth_clients = config.get_bool("broken_sasl_auth_clients")
        self._sasl_impl = None
        self.conn_limit = config.get_int("smtpd_client_connection_count_limit")
        self.conn_rate_limit = config.get_int("smtpd_client_connection_rate_limit")
        self.mail_rate_limit = config.get_int("smtpd_client_message_rate_limit")
        self.rcpt_rate_limit = config.get_int("smtpd_client_recipient_rate_limit")
        self.auth_rate_limit = config.get_int("smtpd_client_auth_rate_limit")
        self.tls_rate_limit = config.get_int("smtpd_client_new_tls_session_rate_limit")
        self.anvil = None
        if self.conn_limit or self.conn_rate_limit or self.mail_rate_limit \
                or self.rcpt_rate_limit or self.auth_rate_limit or self.tls_rate_limit:
            self.anvil = AnvilClient("anvil", config.get_time("ipc_timeout"))
        self.hoggers = HostList("smtpd_client_event_limit_exceptions",
                                config.get("smtpd_client_event_limit_exceptions"), config)
        self.bare_lf_mask = name_code(BARE_LF_TABLE, config.get("smtpd_forbid_bare_newline"))
        if self.bare_lf_mask < 0:
            msg.fatal('bad parameter value: smtpd_forbid_bare_newline = %s'
                      % config.get("smtpd_forbid_bare_newline"))
        self.bare_lf_code = config.get_int("smtpd_forbid_bare_newline_reject_code")
        self.bare_lf_excl = HostList("smtpd_forbid_bare_newline_exclusions",
                                     config.get("smtpd_forbid_bare_newline_exclusions"),
                                     config)
        self.xclient_hosts = HostList("smtpd_authorized_xclient_hosts",
                                      config.get("smtpd_authorized_xclient_hosts"), config)
        self.xforward_hosts = HostList("smtpd_authorized_xforward_hosts",
                                       config.get("smtpd_authorized_xforward_hosts"), config)
        noop = config.get("smtpd_noop_commands")
        self.noop_cmds = string_list("smtpd_noop_commands", noop) if noop else None
        forbid = config.get("smtpd_forbidden_commands")
        self.forbid_cmds = string_list("smtpd_forbidden_commands", forbid) if forbid else None
        self.ehlo_discard_words = config.get("smtpd_discard_ehlo_keywords")
        discard_maps = config.get("smtpd_discard_ehlo_keyword_address_maps")
        self.ehlo_discard_maps = Maps("smtpd_discard_ehlo_keyword_address_maps",
                                      discard_maps) if discard_maps else None
        self.reject_footer = config.get("smtpd_reject_footer")
        footer_maps = config.get("smtpd_reject_footer_maps")
        self.reject_footer_maps = Maps("smtpd_reject_footer_maps", footer_maps) \
            if footer_maps else None
        flush_clnt.flush_init(config)           # ETRN's fast_flush_domains
        self.rewrite_clients = RewriteClients(config)
        self.checks = load_checks(config)

    def sasl_impl(self):
        """The process's Dovecot auth connection (xsasl_server_init)."""
        if self._sasl_impl is None:
            self._sasl_impl = DovecotAuth(self.config.get("smtpd_sasl_path"))
        return self._sasl_impl

    def stand_alone_settings(self):
        """What smtpd_service() and smtpd_state_init() turn off for `sendmail -bs`:
        STARTTLS (the user can't read the keys) and AUTH."""
        self.tls.use_tls = self.tls.enforce_tls = self.tls.auth_only = False
        self.tls.wrappermode = False
        self.sasl_enable = False

    def anvil_applies(self, state):
        """Limits apply to this client: anvil is used, not stand-alone, the client is no
        XCLIENT proxy and not in smtpd_client_event_limit_exceptions."""
        return self.anvil is not None and not state.stand_alone \
            and not state.xclient_allowed \
            and not self.hoggers.match(state.name, state.addr)

    def log_addr(self, addr):
        return info_log_addr_form(addr)

    def namaddr(self, state):
        if self.config.get_bool("smtpd_client_port_logging"):
            return "%s[%s]:%s" % (state.name, state.addr, state.port)
        return "%s[%s]" % (state.name, state.addr)

    def ehlo_discard_mask(self, state):
        """The EHLO keywords not to announce to this client; a table lookup error is
        remembered for EHLO time (state.ehlo_discard_error), as in Postfix."""
        words = None
        state.ehlo_discard_error = False
        if self.ehlo_discard_maps is not None:
            words = self.ehlo_discard_maps.find(state.addr)
            state.ehlo_discard_error = bool(self.ehlo_discard_maps.error)
        return ehlo_mask(words if words is not None else self.ehlo_discard_words)

    def session_hosts(self, state, chat, after_xclient=False):
        """What depends on the client's name and address: XCLIENT/XFORWARD rights and
        the bare-LF policy (smtpd_service; after XCLIENT all but the XFORWARD right,
        as in Postfix)."""
        if state.stand_alone:
            state.xclient_allowed = state.xforward_allowed = False
            chat.detect_bare_lf = 0
            return
        state.xclient_allowed = self.xclient_hosts.match(state.name, state.addr)
        if not after_xclient:
            state.xforward_allowed = self.xforward_hosts.match(state.name, state.addr)
        chat.detect_bare_lf = self.bare_lf_mask \
            if self.bare_lf_mask and not self.bare_lf_excl.match(state.name, state.addr) else 0


def _input_transp_cleanup(flags, transp):
    if transp & (1 << 1):
        flags &= ~(cu.FLAG_BCC_OK | cu.FLAG_MAP_OK)
    if transp & (1 << 2):
        flags &= ~cu.FLAG_FILTER
    if transp & (1 << 3):
        flags &= ~cu.FLAG_MILTER
    return flags


def load_checks(config):
    """The access restrictions: pyfix.daemons.smtpd.check.SmtpdCheck (built before the
    process leaves root and enters the jail, as Postfix's smtpd_check_init; imported
    with this module, in master, because a child that dropped privileges may no longer
    read the Python library)."""
    return SmtpdCheck(config)


class Smtpd:
    def __init__(self, relay=None):
        self.ctx = None
        self.relay = relay          # stand_alone.StdioRelay under -S with piped stdio
        self.loop = None

    def pre_init(self, server):
        self.ctx = SmtpdContext(server)

    def service(self, conn, server):
        """smtpd_service(): one SMTP session on an accepted connection."""
        if server.argv:
            msg.fatal("unexpected command-line argument: %s" % server.argv[0])
        ctx = self.ctx
        state = SmtpdState(server.name)
        state.stand_alone = stand_alone(server)
        peer_init(state, conn, ctx.config)
        msg.info("connect from %s" % state.namaddr)
        if state.stand_alone:
            ctx.stand_alone_settings()
        loop = self.event_loop()
        proto = SmtpdProtocol(ctx, state, conn, loop)
        try:
            ctx.session_hosts(state, proto.chat)
            loop.run_until_complete(proto.run(conn))
        finally:
            if self.relay is not None:
                self.relay.finish()
        msg.info("disconnect from %s%s" % (state.namaddr, proto.format_cmd_stats()))

    def event_loop(self):
        """The process's event loop; each session leaves it clean (SmtpdProtocol.run)."""
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        return self.loop


def main(argv):
    # sendmail -bs runs `smtpd -S`: the session is on standard input and output.
    relay = relay_stdio_if_needed() if "-S" in argv[1:] else None
    smtpd = Smtpd(relay)
    single_server_main(argv, smtpd.service, pre_init=smtpd.pre_init)

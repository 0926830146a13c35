"""XCLIENT and XFORWARD (Postfix's XCLIENT_README / XFORWARD_README, smtpd.c xclient_cmd
and xforward_cmd).

XCLIENT lets an authorized proxy (smtpd_authorized_xclient_hosts) replace the client
identity of the session; the session then starts over with a new greeting, as if the
client had just connected. XFORWARD lets an authorized content filter
(smtpd_authorized_xforward_hosts) pass the original client's attributes for the next
transaction: they go into the queue file and the logs instead of the proxy's own.
"""

import ipaddress

from pyfix.common import msg
from pyfix.common.valid_hostname import valid_hostname

from pyfix.daemons.smtpd.commands import neuter
from pyfix.daemons.smtpd.state import (
    AF_INET, AF_INET6, CLIENT_ATTR_UNKNOWN, MAIL_PROTO_ESMTP, MAIL_PROTO_SMTP,
    SMTPD_PEER_CODE_OK, SMTPD_PEER_CODE_PERM, SMTPD_PEER_CODE_TEMP)

UNAVAILABLE = "[UNAVAILABLE]"
TEMPORARY = "[TEMPUNAVAIL]"
XFORWARD_FLAGS = {"NAME": 1 << 1, "ADDR": 1 << 2, "PORT": 1 << 3, "PROTO": 1 << 4,
                  "HELO": 1 << 5, "IDENT": 1 << 6, "SOURCE": 1 << 7}
XFORWARD_INIT = 1 << 0
VALID_HOSTNAME_LEN = 255


class XclientRestart(Exception):
    """XCLIENT succeeded: the session starts over (vstream_longjmp(SMTP_ERR_NONE))."""


def normalize_mailhost_addr(text, ipv6_enabled=False):
    """(rfc_addr, bare addr, family) of `1.2.3.4` or `IPv6:...`, None if invalid or of an
    address family that inet_protocols disables."""
    bare = text[5:] if text[:5].lower() == "ipv6:" else text
    if bare is text and ":" in text:
        return None
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        if not ipv6_enabled:
            return None
        return "IPv6:" + str(ip), str(ip), AF_INET6
    return str(ip), str(ip), AF_INET


def _port_ok(value):
    return value.isdigit() and value.isascii() and len(value) <= 5


class XclientCommands:
    """Mixed into SmtpdProtocol."""

    async def _attr_values(self, argv, command):
        """The (NAME, value) pairs of an XCLIENT/XFORWARD command, or None (replied)."""
        from pyfix.common.xtext import xtext_unquote
        state = self.state
        if state.in_mail_transaction():
            await self.reply("503 5.5.1 Error: MAIL transaction in progress")
            return None
        if len(argv) < 2:
            await self.reply("501 5.5.4 Syntax: %s attribute=value..." % command)
            return None
        allowed = state.xclient_allowed if command == "XCLIENT" else state.xforward_allowed
        if not allowed:
            await self.reply("550 5.7.0 Error: insufficient authorization")
            return None
        pairs = []
        for arg in argv[1:]:
            name, eq, raw = arg.strval.partition("=")
            if not eq or not raw:
                await self.reply("501 5.5.4 Error: attribute=value expected")
                return None
            if len(raw) > 255:
                await self.reply("501 5.5.4 Error: attribute value too long")
                return None
            value = xtext_unquote(raw)
            pairs.append((name.upper(), msg.printable(value if value is not None else raw)))
        return pairs

    async def cmd_xclient(self, argv):
        pairs = await self._attr_values(argv, "XCLIENT")
        if pairs is None:
            return -1
        state = self.state
        got_helo = got_proto = False
        for name, value in pairs:
            bad = "501 5.5.4 Bad %s syntax: %s" % (name, value)
            if name in ("NAME", "REVERSE_NAME"):
                code = {UNAVAILABLE: SMTPD_PEER_CODE_PERM,
                        TEMPORARY: SMTPD_PEER_CODE_TEMP}.get(value.upper(), SMTPD_PEER_CODE_OK)
                if code != SMTPD_PEER_CODE_OK:
                    value = CLIENT_ATTR_UNKNOWN
                elif not valid_hostname(value):
                    await self.reply(bad)
                    return -1
                if name == "NAME":
                    state.name, state.name_status = value, code
                    if code == SMTPD_PEER_CODE_OK:
                        state.reverse_name, state.reverse_name_status = value, code
                else:
                    state.reverse_name, state.reverse_name_status = value, code
            elif name == "ADDR":
                if value.upper() == UNAVAILABLE:
                    state.addr = state.rfc_addr = CLIENT_ATTR_UNKNOWN
                else:
                    norm = normalize_mailhost_addr(neuter(value), self.ctx.ipv6_enabled)
                    if norm is None:
                        await self.reply("501 5.5.4 Bad %s syntax: %s" % (name, neuter(value)))
                        return -1
                    state.rfc_addr, state.addr, state.addr_family = norm
            elif name in ("PORT", "DESTPORT"):
                if value.upper() == UNAVAILABLE:
                    value = CLIENT_ATTR_UNKNOWN
                elif not _port_ok(value):
                    await self.reply(bad)
                    return -1
                if name == "PORT":
                    state.port = value
                else:
                    state.dest_port = value
            elif name == "DESTADDR":
                if value.upper() == UNAVAILABLE:
                    state.dest_addr = CLIENT_ATTR_UNKNOWN
                else:
                    norm = normalize_mailhost_addr(neuter(value), self.ctx.ipv6_enabled)
                    if norm is None:
                        await self.reply("501 5.5.4 Bad %s syntax: %s" % (name, neuter(value)))
                        return -1
                    state.dest_addr = norm[1]
            elif name == "HELO":
                if value.upper() == UNAVAILABLE:
                    value = None
                elif len(value) > VALID_HOSTNAME_LEN:
                    await self.reply(bad)
                    return -1
                else:
                    value = neuter(value)
                state.helo_name = value
                got_helo = True
            elif name == "PROTO":
                if value.upper() not in (MAIL_PROTO_SMTP, MAIL_PROTO_ESMTP):
                    await self.reply(bad)
                    return -1
                state.protocol = value.upper()
                got_proto = True
            elif name == "LOGIN":
                pass            # SASL login names need smtpd SASL, not enabled
            else:
                await self.reply("501 5.5.4 Bad XCLIENT attribute name: %s" % name)
                return -1
        state.namaddr = self.ctx.namaddr(state)
        self.ctx.session_hosts(state, self.chat, after_xclient=True)
        if not got_helo:
            state.helo_name = None
        if not got_proto and state.protocol.upper() != MAIL_PROTO_SMTP:
            state.protocol = MAIL_PROTO_SMTP
        self.mail_reset()
        self.rcpt_reset()
        raise XclientRestart()

    async def cmd_xforward(self, argv):
        pairs = await self._attr_values(argv, "XFORWARD")
        if pairs is None:
            return -1
        state = self.state
        xf = state.xforward
        if not xf.flags:
            xf.flags = XFORWARD_INIT
            xf.name = xf.addr = xf.port = xf.namaddr = xf.rfc_addr = CLIENT_ATTR_UNKNOWN
            xf.protocol = CLIENT_ATTR_UNKNOWN
        updated = 0
        for name, value in pairs:
            flag = XFORWARD_FLAGS.get(name)
            unavailable = value.upper() == UNAVAILABLE
            bad = "501 5.5.4 Bad %s syntax: %s" % (name, value)
            if flag is None:
                await self.reply("501 5.5.4 Bad XFORWARD attribute name: %s" % name)
                return -1
            if name == "NAME":
                if not unavailable:
                    value = neuter(value)
                    if not valid_hostname(value):
                        await self.reply("501 5.5.4 Bad %s syntax: %s" % (name, value))
                        return -1
                xf.name = CLIENT_ATTR_UNKNOWN if unavailable else value
            elif name == "ADDR":
                if unavailable:
                    xf.addr = CLIENT_ATTR_UNKNOWN
                else:
                    norm = normalize_mailhost_addr(neuter(value), self.ctx.ipv6_enabled)
                    if norm is None:
                        await self.reply("501 5.5.4 Bad %s syntax: %s" % (name, neuter(value)))
                        return -1
                    xf.rfc_addr, xf.addr = norm[0], norm[1]
            elif name == "PORT":
                if not unavailable and not _port_ok(value):
                    await self.reply(bad)
                    return -1
                xf.port = CLIENT_ATTR_UNKNOWN if unavailable else value
            elif name == "HELO":
                xf.helo_name = None if unavailable else neuter(value)
            elif name == "PROTO":
                if not unavailable and len(value) > 64:
                    await self.reply(bad)
                    return -1
                xf.protocol = CLIENT_ATTR_UNKNOWN if unavailable else neuter(value)
            elif name == "IDENT":
                xf.ident = None if unavailable else neuter(value)
            elif name == "SOURCE":
                value = "LOCAL" if unavailable else value
                context = {"LOCAL": "local", "REMOTE": "remote"}.get(value.upper())
                if context is None:
                    await self.reply(bad)
                    return -1
                xf.domain = context
            updated |= flag
        xf.flags |= updated
        if updated & (XFORWARD_FLAGS["NAME"] | XFORWARD_FLAGS["ADDR"] | XFORWARD_FLAGS["PORT"]):
            if xf.addr != CLIENT_ATTR_UNKNOWN:
                xf.namaddr = "%s[%s]" % (xf.name, xf.addr)
                if self.config.get_bool("smtpd_client_port_logging"):
                    xf.namaddr += ":%s" % xf.port
            else:
                xf.namaddr = xf.name
        await self.reply("250 2.0.0 Ok")
        return 0

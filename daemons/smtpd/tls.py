"""smtpd's TLS (Postfix's smtpd.c TLS set-up and starttls_cmd/smtpd_start_tls, with
tls_server.c's summary log line), on Python's ssl module and asyncio's start_tls.

Settings: smtpd_tls_security_level (none, may, encrypt; fingerprint, verify and secure
are downgraded to encrypt with Postfix's warning; empty means the legacy
smtpd_use_tls/smtpd_enforce_tls), smtpd_tls_wrappermode (TLS from the first byte, the
smtps/submissions service), smtpd_tls_chain_files or smtpd_tls_cert_file/_key_file,
smtpd_tls_protocols / _mandatory_protocols, smtpd_tls_ciphers / _mandatory_ciphers with
tls_*_cipherlist and the exclusions, smtpd_starttls_timeout, smtpd_tls_loglevel
(>= 1: `Anonymous TLS connection established from ...`).

Without a usable certificate smtpd warns as Postfix does and still announces STARTTLS,
answering it with `454 4.7.0 TLS not available due to local problem`.
"""

import asyncio
import ssl

from pyfix.common import msg

from pyfix.daemons.smtpd import ehlo as E
from pyfix.daemons.smtpd.chat import SmtpEOF, SmtpQuiet

LEVELS = ("none", "may", "encrypt", "fingerprint", "dane", "dane-only", "verify", "secure")
_VERSIONS = (("SSLv2", None), ("SSLv3", ssl.TLSVersion.SSLv3), ("TLSv1", ssl.TLSVersion.TLSv1),
             ("TLSv1.1", ssl.TLSVersion.TLSv1_1), ("TLSv1.2", ssl.TLSVersion.TLSv1_2),
             ("TLSv1.3", ssl.TLSVersion.TLSv1_3))
_VERSION_INDEX = {name.lower(): n for n, (name, _) in enumerate(_VERSIONS)}


class TlsSettings:
    """The per-process TLS decisions (post_jail_init)."""

    def __init__(self, config):
        self.config = config
        self.wrappermode = config.get_bool("smtpd_tls_wrappermode")
        self.use_tls = config.get_bool("smtpd_use_tls")
        self.enforce_tls = config.get_bool("smtpd_enforce_tls")
        level = config.get("smtpd_tls_security_level")
        if not self.wrappermode and level:
            if level not in LEVELS or level in ("dane", "dane-only"):
                msg.fatal('Invalid TLS level "%s"' % level)
            if level in ("fingerprint", "verify", "secure"):
                msg.warn('smtpd_tls_security_level: unsupported TLS level "%s", '
                         'using "encrypt"' % level)
                level = "encrypt"
            self.use_tls = level in ("may", "encrypt")
            self.enforce_tls = level == "encrypt"
        self.enforce_tls = self.wrappermode or self.enforce_tls
        self.auth_only = config.get_bool("smtpd_tls_auth_only") or self.enforce_tls
        self.use_tls = self.use_tls or self.enforce_tls
        self.loglevel = config.get_int("smtpd_tls_loglevel")
        self.handshake_timeout = config.get_time("smtpd_starttls_timeout")
        self.context = self._context() if self.use_tls else None

    def _context(self):
        config = self.config
        chain = config.get_list("smtpd_tls_chain_files")
        cert = config.get("smtpd_tls_cert_file")
        key = config.get("smtpd_tls_key_file") or cert
        no_cert_ok = cert.lower() == "none"
        if no_cert_ok:
            cert = ""
        if chain and cert:
            msg.warn("Both smtpd_tls_chain_files and one or more of the legacy  "
                     "smtpd_tls_cert_file, smtpd_tls_eccert_file or smtpd_tls_dcert_file are "
                     "non-empty; the legacy  parameters will be ignored")
        if not chain and not cert:
            if not no_cert_ok:
                msg.warn("No server certs available. TLS won't be enabled")
                return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.verify_mode = ssl.CERT_NONE
        context.options |= ssl.OP_NO_COMPRESSION
        try:
            if chain:
                # Each file holds keys and certificates; the key comes first or last.
                for path in chain:
                    context.load_cert_chain(path)
            elif cert:
                context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            msg.warn("cannot load certificate and key from %s: %s"
                     % (" ".join(chain) if chain else cert, exc))
            msg.warn("TLS library problem: %s" % exc)
            return None
        protocols = config.get("smtpd_tls_mandatory_protocols" if self.enforce_tls
                               else "smtpd_tls_protocols")
        low, high = protocol_range(protocols)
        if low is not None:
            context.minimum_version = low
        if high is not None:
            context.maximum_version = high
        grade = config.get("smtpd_tls_mandatory_ciphers" if self.enforce_tls
                           else "smtpd_tls_ciphers")
        ciphers = config.get("tls_%s_cipherlist" % grade) if grade in (
            "export", "low", "medium", "high", "null") else None
        if ciphers:
            exclusions = config.get_list("smtpd_tls_exclude_ciphers")
            if self.enforce_tls:
                exclusions += config.get_list("smtpd_tls_mandatory_exclude_ciphers")
            spec = ciphers + "".join(":!" + item for item in exclusions)
            try:
                context.set_ciphers(spec)
            except ssl.SSLError:
                msg.warn("invalid cipher list: %s" % spec)
        return context


def protocol_range(text):
    """(lowest, highest) TLSVersion of a Postfix protocol list: `>=TLSv1.2`,
    `<=TLSv1.2`, `!SSLv2, !SSLv3`, `TLSv1.2 TLSv1.3`."""
    allowed = set(range(len(_VERSIONS)))
    included = set()
    for word in text.replace(",", " ").replace(":", " ").split():
        word = word.strip()
        if word.startswith(">="):
            index = _VERSION_INDEX.get(word[2:].lower())
            if index is not None:
                allowed &= set(range(index, len(_VERSIONS)))
        elif word.startswith("<="):
            index = _VERSION_INDEX.get(word[2:].lower())
            if index is not None:
                allowed &= set(range(0, index + 1))
        elif word.startswith("!"):
            allowed.discard(_VERSION_INDEX.get(word[1:].lower()))
        elif word.lower() in _VERSION_INDEX:
            included.add(_VERSION_INDEX[word.lower()])
    if included:
        allowed &= included
    usable = sorted(n for n in allowed if _VERSIONS[n][1] is not None)
    if not usable:
        return None, None
    return _VERSIONS[usable[0]][1], _VERSIONS[usable[-1]][1]


class TlsContext:
    """What the session knows about its TLS layer (TLS_SESS_STATE), for the Received:
    header, the logs and the restrictions (peer_CN etc.: no client certificates are
    requested, so they stay empty)."""

    def __init__(self, ssl_object, namaddr):
        name, protocol, bits = ssl_object.cipher()
        self.namaddr = namaddr
        self.protocol = protocol
        self.cipher_name = name
        self.cipher_usebits = bits
        self.cipher_algbits = bits
        self.peer_CN = self.issuer_CN = None
        self.peer_cert_fprint = self.peer_pkey_fprint = None
        self.peer_status = 0
        self.session_reused = ssl_object.session_reused

    def summary(self):
        """tls_log_summary(): the line Postfix logs at smtpd_tls_loglevel >= 1."""
        return ("Anonymous TLS connection %s from %s: %s with cipher %s (%d/%d bits)"
                % ("reused" if self.session_reused else "established", self.namaddr,
                   self.protocol, self.cipher_name, self.cipher_usebits,
                   self.cipher_algbits))


class TlsCommands:
    """STARTTLS and the handshake; mixed into SmtpdProtocol."""

    async def cmd_starttls(self, argv):
        state = self.state
        tls = self.ctx.tls
        if len(argv) != 1:
            await self.reply("501 5.5.4 Syntax: STARTTLS")
            return -1
        if state.tls_context is not None:
            await self.reply("554 5.5.1 Error: TLS already active")
            return -1
        if not tls.use_tls or state.ehlo_discard_mask & E.MASK_STARTTLS:
            await self.reply("502 5.5.1 Error: command not implemented")
            return -1
        if tls.context is None:
            await self.reply("454 4.7.0 TLS not available due to local problem")
            return -1
        if self.ctx.tls_rate_limit > 0 and self.ctx.anvil_applies(state) \
                and (self.ctx.anvil.rate("newtls_status", state.service, state.addr)
                     or 0) > self.ctx.tls_rate_limit:
            msg.warn("Refusing STARTTLS request from %s for service %s"
                     % (state.namaddr, state.service))
            await self.reply("454 4.7.0 Error: too many new TLS sessions from %s"
                             % state.namaddr)
            return -1
        # Stop reading first: what the client sends after our 220 is its TLS handshake,
        # what it sent before (pipelined plaintext) is dropped, as Postfix does.
        self.transport.pause_reading()
        self.chat.purge_input()
        await self.reply("220 2.0.0 Ready to start TLS")
        await self.chat.flush()
        state.helo_name = None
        self.mail_reset()
        self.rcpt_reset()
        await self.start_tls()
        return 0

    async def start_tls(self):
        """smtpd_start_tls(): the TLS handshake on the client connection; a failed
        handshake ends the session as a lost connection, as in Postfix."""
        state = self.state
        tls = self.ctx.tls
        try:
            transport = await self.loop.start_tls(
                self.transport, self, tls.context, server_side=True,
                ssl_handshake_timeout=tls.handshake_timeout or None)
        except (ssl.SSLError, ConnectionError, OSError, asyncio.TimeoutError) as exc:
            msg.info("SSL_accept error from %s: -1" % state.namaddr)
            if isinstance(exc, ssl.SSLError):
                # Postfix prints OpenSSL's error queue (code, library, reason, source
                # line); Python's ssl module exposes the library and reason only.
                msg.warn("TLS library problem: error:%s:%s" % (
                    exc.library or "SSL routines",
                    (exc.reason or str(exc)).lower().replace("_", " ")))
            raise SmtpEOF() from None
        if transport is None:
            raise SmtpEOF()
        self.transport = transport
        self.tls_active = True
        state.tls_context = TlsContext(transport.get_extra_info("ssl_object"), state.namaddr)
        if tls.loglevel >= 1:
            msg.info(state.tls_context.summary())
        if not state.tls_context.session_reused:
            rate = await self.event_rate_exceeded("newtls", self.ctx.tls_rate_limit)
            if rate is not None:
                msg.warn("New TLS session rate limit exceeded: %d from %s for service %s"
                         % (rate, state.namaddr, state.service))
                await self.reply("421 4.7.0 %s Error: too many new TLS sessions from %s"
                                 % (self.ctx.myhostname, state.namaddr))
                await self.chat.flush()
                raise SmtpQuiet()
        if self.ctx.sasl_enable:
            if state.sasl_server is not None:
                state.sasl_username = state.sasl_method = None
                self.sasl_deactivate()
            self.sasl_activate("smtpd_sasl_tls_security_options")

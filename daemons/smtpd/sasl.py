"""SMTP AUTH with smtpd_sasl_type = dovecot (Postfix's xsasl/xsasl_dovecot_server.c,
smtpd/smtpd_sasl_glue.c and smtpd_sasl_proto.c).

DovecotAuth is the process's connection to Dovecot's auth socket (smtpd_sasl_path,
relative to the queue directory unless absolute; `inet:host:port` too), opened on first
use with the handshake `VERSION 1 2` / `CPID`, and answered with VERSION, MECH lines,
SPID, CUID, COOKIE and DONE. A session's SaslServer filters the mechanisms through
smtpd_sasl_security_options (smtpd_sasl_tls_security_options after STARTTLS) and runs
the AUTH exchange: `AUTH id MECH service=smtp nologin lip= rip= [secured] [resp=]`,
`CONT` for each `334` round, until OK (user=), FAIL (reason=) or a lost connection
(a temporary failure). Passwords are never logged.
"""

import os
import socket

from pyfix.common import msg

from pyfix.daemons.smtpd import ehlo as E

SEC_NOPLAINTEXT = 1 << 0
SEC_NOACTIVE = 1 << 1
SEC_NODICTIONARY = 1 << 2
SEC_NOANONYMOUS = 1 << 3
SEC_FWD_SECRECY = 1 << 4
SEC_MUTUAL_AUTH = 1 << 5
SEC_PRIVATE = 1 << 6
POS_MASK = SEC_MUTUAL_AUTH | SEC_FWD_SECRECY
NEG_MASK = SEC_NOPLAINTEXT | SEC_NOACTIVE | SEC_NODICTIONARY | SEC_NOANONYMOUS

CONF_PROPS = {"noplaintext": SEC_NOPLAINTEXT, "noactive": SEC_NOACTIVE,
              "nodictionary": SEC_NODICTIONARY, "noanonymous": SEC_NOANONYMOUS,
              "forward_secrecy": SEC_FWD_SECRECY, "mutual_auth": SEC_MUTUAL_AUTH}
SERVER_PROPS = {"plaintext": SEC_NOPLAINTEXT, "active": SEC_NOACTIVE,
                "dictionary": SEC_NODICTIONARY, "anonymous": SEC_NOANONYMOUS,
                "forward-secrecy": SEC_FWD_SECRECY, "mutual-auth": SEC_MUTUAL_AUTH,
                "private": SEC_PRIVATE}

AUTH_DONE, AUTH_MORE, AUTH_FAIL, AUTH_TEMP = range(4)
AUTH_TIMEOUT = 10
_BASE64 = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/=")


def conf_props(text):
    mask = 0
    for word in text.replace(",", " ").split():
        bit = CONF_PROPS.get(word.lower())
        if bit is None:
            msg.fatal('unknown xsasl_dovecot_server_create value "%s" in "%s"' % (word, text))
        mask |= bit
    return mask


class DovecotAuth:
    """The auth-client connection of this process (XSASL_DOVECOT_SERVER_IMPL)."""

    def __init__(self, path):
        self.path = path
        self.sock = None
        self.file = None
        self.mechanisms = []            # (name, props)
        self.request_id = 0

    def connect(self):
        path = self.path
        try:
            if path.startswith("inet:"):
                host, _, port = path[5:].rpartition(":")
                sock = socket.create_connection((host.strip("[]"), int(port)), AUTH_TIMEOUT)
            else:
                if path.startswith("unix:"):
                    path = path[5:]
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(AUTH_TIMEOUT)
                sock.connect(path)
        except (OSError, ValueError) as exc:
            msg.warn("SASL: Connect to Dovecot auth socket '%s' failed: %s"
                     % (self.path, msg.strerror(exc) if isinstance(exc, OSError) else exc))
            return False
        file = sock.makefile("rwb", buffering=0)
        try:
            file.write(b"VERSION\t1\t2\nCPID\t%d\n" % os.getpid())
        except OSError as exc:
            msg.warn("SASL: Couldn't send handshake: %s" % msg.strerror(exc))
            sock.close()
            return False
        mechanisms = []
        have_mech = success = False
        try:
            for raw in iter(file.readline, b""):
                fields = raw.rstrip(b"\n").decode("utf-8", "replace").split("\t")
                cmd = fields[0]
                if cmd == "VERSION":
                    if len(fields) < 3 or not fields[1].isdigit() or not fields[2].isdigit():
                        msg.warn("SASL: Protocol version error")
                        break
                    if int(fields[1]) != 1:
                        msg.warn("SASL: Protocol version mismatch (%d vs. 1)" % int(fields[1]))
                        break
                elif cmd == "MECH" and len(fields) > 1:
                    have_mech = True
                    props = 0
                    for word in fields[2:]:
                        props |= SERVER_PROPS.get(word.lower(), 0)
                    if props & SEC_PRIVATE:
                        continue
                    mechanisms.append((fields[1], props))
                elif cmd == "SPID":
                    if not have_mech:
                        msg.warn("SASL: Connected to wrong auth socket (auth-master instead "
                                 "of auth-client)")
                        break
                elif cmd == "DONE":
                    success = True
                    break
        except OSError:
            pass
        if not success:
            sock.close()
            return False
        self.sock, self.file, self.mechanisms = sock, file, mechanisms
        return True

    def disconnect(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = self.file = None
        self.mechanisms = []

    def send(self, line):
        try:
            self.file.write(line.encode("utf-8", "surrogateescape") + b"\n")
            return True
        except (OSError, AttributeError):
            return False

    def readline(self):
        try:
            return self.file.readline()
        except (OSError, AttributeError):
            return b""


class SaslServer:
    """One session's SASL state (XSASL_DOVECOT_SERVER)."""

    def __init__(self, impl, service, security_options, tls_flag, server_addr, client_addr):
        self.impl = impl
        self.service = service
        self.props = conf_props(security_options)
        self.tls_flag = tls_flag
        self.server_addr = server_addr
        self.client_addr = client_addr
        self.username = None
        self.last_id = 0
        self.mechanisms = None

    def mechanism_list(self):
        """The mechanisms to announce, or None when Dovecot cannot be reached."""
        if self.impl.sock is None and not self.impl.connect():
            return None
        if self.mechanisms is None:
            pos, neg = self.props & POS_MASK, self.props & NEG_MASK
            self.mechanisms = [name for name, props in self.impl.mechanisms
                               if props & pos == pos and not props & neg]
        return self.mechanisms

    def first(self, method, init_response):
        """xsasl_dovecot_server_first(): (status, reply text)."""
        if not any(method.lower() == name.lower() for name in self.mechanisms or ()):
            return AUTH_FAIL, "Invalid authentication mechanism"
        if init_response is not None and not set(init_response) <= _BASE64:
            return AUTH_FAIL, "Invalid base64 data in initial response"
        for attempt in range(2):
            if self.impl.sock is None and not self.impl.connect():
                return AUTH_TEMP, ""
            self.impl.request_id += 1
            self.last_id = self.impl.request_id
            line = "AUTH\t%d\t%s\tservice=%s\tnologin\tlip=%s\trip=%s" % (
                self.last_id, method, self.service, self.server_addr, self.client_addr)
            if self.tls_flag:
                line += "\tsecured"
            if init_response is not None:
                line += "\tresp=%s" % init_response
            if self.impl.send(line):
                break
            if attempt == 1:
                return AUTH_TEMP, "Can't connect to authentication server"
            self.impl.disconnect()
        return self._reply()

    def next(self, response):
        if not set(response) <= _BASE64:
            return AUTH_FAIL, "Invalid base64 data in continued response"
        if not self.impl.send("CONT\t%d\t%s" % (self.last_id, response)):
            return AUTH_TEMP, "Connection lost to authentication server"
        return self._reply()

    def _reply(self):
        """xsasl_dovecot_handle_reply()."""
        while True:
            raw = self.impl.readline()
            if not raw:
                self.impl.disconnect()
                return AUTH_TEMP, "Connection lost to authentication server"
            fields = raw.rstrip(b"\n").decode("utf-8", "replace").split("\t")
            cmd, args = fields[0], fields[1:]
            if cmd not in ("OK", "CONT", "FAIL"):
                continue
            if not args:
                msg.warn("SASL: Protocol error")
                continue
            if not args[0].isdigit() or int(args[0]) != self.last_id:
                continue
            if cmd == "CONT":
                if len(args) < 2:
                    msg.warn("missing Dovecot server CONT reply field")
                    return AUTH_FAIL, "Authentication backend error"
                return AUTH_MORE, args[1]
            reason = self._parse_args(args[1:], cmd == "OK")
            if cmd == "OK":
                if self.username is None:
                    msg.warn("missing Dovecot server OK username field")
                    return AUTH_FAIL, "Authentication backend error"
                return AUTH_DONE, ""
            return AUTH_FAIL, reason

    def _parse_args(self, args, success):
        self.username = None
        reason = ""
        for arg in args:
            if arg.startswith("user="):
                self.username = msg.printable(arg[5:])
            elif arg.startswith("reason=") and not success:
                reason = msg.printable(arg[7:])
        return reason


def mech_filter(mechanisms, filter_text):
    """smtpd_sasl_mechanism_filter as Postfix 3.7 uses it by default
    (`!external, static:rest`): EXTERNAL is never offered."""
    return [name for name in mechanisms if name.upper() != "EXTERNAL"]


class SaslCommands:
    """AUTH and the SASL activation points; mixed into SmtpdProtocol."""

    def sasl_activate(self, options_name):
        """smtpd_sasl_activate(): a SASL server for this session and its mechanisms."""
        state = self.state
        ctx = self.ctx
        state.sasl_server = SaslServer(
            ctx.sasl_impl(), self.config.get("smtpd_sasl_service"),
            self.config.get(options_name), state.tls_context is not None,
            "" if state.dest_addr == "unknown" else state.dest_addr,
            "" if state.addr == "unknown" else state.addr)
        mechanisms = state.sasl_server.mechanism_list()
        if not mechanisms:
            msg.fatal("no SASL authentication mechanisms")
        filtered = mech_filter(mechanisms, self.config.get("smtpd_sasl_mechanism_filter"))
        if not filtered:
            msg.fatal("smtpd_sasl_mechanism_filter discards all mechanisms in '%s'"
                      % " ".join(mechanisms))
        state.sasl_mechanism_list = " ".join(filtered)

    def sasl_deactivate(self):
        self.state.sasl_server = None
        self.state.sasl_mechanism_list = None

    async def cmd_auth(self, argv):
        state = self.state
        ctx = self.ctx
        rate = await self.event_rate_exceeded("auth", ctx.auth_rate_limit)
        if rate is not None:
            msg.warn("AUTH command rate limit exceeded: %d from %s for service %s"
                     % (rate, state.namaddr, state.service))
            await self.reply("450 4.7.1 Error: too many AUTH commands from %s" % state.addr)
            return -1
        if ctx.helo_required and state.helo_name is None:
            await self.reply("503 5.5.1 Error: send HELO/EHLO first")
            return -1
        if state.sasl_server is None or state.ehlo_discard_mask & E.MASK_AUTH:
            await self.reply("503 5.5.1 Error: authentication not enabled")
            return -1
        if state.in_mail_transaction():
            await self.reply("503 5.5.1 Error: MAIL transaction in progress")
            return -1
        if ctx.tls.auth_only and state.tls_context is None:
            await self.reply("504 5.5.4 Encryption required for requested authentication "
                             "mechanism")
            return -1
        if state.sasl_username:
            await self.reply("503 5.5.1 Error: already authenticated")
            return -1
        if not 2 <= len(argv) <= 3:
            await self.reply("501 5.5.4 Syntax: AUTH mechanism")
            return -1
        method = argv[1].strval
        server = state.sasl_server
        status, text = server.first(method, argv[2].strval if len(argv) == 3 else None)
        while status == AUTH_MORE:
            await self.reply("334 %s" % text)
            raw, complete = await self.chat.get(ctx.sasl_resp_limit, skip=True)
            if not complete:
                await self.reply("500 5.5.6 SASL response limit exceeded")
                return -1
            response = raw.decode("utf-8", "surrogateescape")
            if response == "*":
                msg.warn("%s: SASL %s authentication aborted" % (state.namaddr, method))
                await self.reply("501 5.7.0 Authentication aborted")
                return -1
            status, text = server.next(response)
        if status != AUTH_DONE:
            reason = text or "(reason unavailable)"
            msg.warn("%s: SASL %.100s authentication failed: %s, sasl_username=%.100s"
                     % (state.namaddr, method, reason, server.username or "(unavailable)"))
            if status == AUTH_TEMP:
                await self.reply("454 4.7.0 Temporary authentication failure: %s" % reason)
            else:
                await self.reply("535 5.7.8 Error: authentication failed: %s" % reason)
            return -1
        await self.reply("235 2.7.0 Authentication successful")
        state.sasl_username = msg.printable(server.username)
        state.sasl_method = msg.printable(method)
        return 0

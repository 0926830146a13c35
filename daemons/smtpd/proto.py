"""One SMTP session the way Postfix's smtpd_proto() runs it, as an asyncio protocol.

SmtpdProtocol is the asyncio.Protocol of the client connection: it hands the transport's
events to its Chat (chat.py: input buffer, replies, timeouts) and runs Postfix's
command loop and commands: the greeting or the client restriction
verdict, the command table with its per-command counters (logged at disconnect), the
hard/soft error limits and smtpd_error_sleep_time, the junk command limit, pipelining
synchronization, bare-LF handling, and the ways a session ends (QUIT, 421, timeout,
lost connection, too many errors) with Postfix's log lines.

HELO, EHLO, RSET, NOOP, QUIT, VRFY and ETRN live in commands.py, the mail transaction
commands in transaction.py (MAIL, RCPT, DATA) and bdat.py,
XCLIENT and XFORWARD in xclient.py, STARTTLS in tls.py, AUTH in sasl.py.
"""

import asyncio

from pyfix.common import msg

from pyfix.daemons.smtpd.chat import (
    Chat, SmtpDataError, SmtpEOF, SmtpQuiet, SmtpTimeout, escape)
from pyfix.daemons.smtpd.state import (
    MAIL_PROTO_ESMTP, REASON_ERROR_LIMIT, REASON_LOST_CONNECTION,
    SMTPD_FLAG_HANGUP, SMTPD_FLAG_ILL_PIPELINING,
    REASON_TIMEOUT, SMTPD_AFTER_BDAT, SMTPD_AFTER_DATA, SMTPD_AFTER_EOM, SMTPD_CMD_UNKNOWN)
from pyfix.daemons.smtpd.commands import SessionCommands
from pyfix.daemons.smtpd.footer import reply_footer
from pyfix.daemons.smtpd.sasl import SaslCommands
from pyfix.daemons.smtpd.smtpd_token import smtpd_token
from pyfix.daemons.smtpd.tls import TlsCommands
from pyfix.daemons.smtpd.transaction import TransactionCommands
from pyfix.daemons.smtpd.xclient import XclientCommands, XclientRestart

FLAG_LIMIT = 1 << 0         # counts toward smtpd_junk_command_limit
FLAG_PRE_TLS = 1 << 1       # allowed before STARTTLS when TLS is enforced
FLAG_LAST = 1 << 2          # last in a PIPELINING command group

# smtpd.c smtpd_cmd_table: the order is that of the disconnect statistics.
COMMANDS = (
    ("HELO", FLAG_LIMIT | FLAG_PRE_TLS | FLAG_LAST),
    ("EHLO", FLAG_LIMIT | FLAG_PRE_TLS | FLAG_LAST),
    ("XCLIENT", FLAG_PRE_TLS),
    ("XFORWARD", 0),
    ("STARTTLS", FLAG_PRE_TLS),
    ("AUTH", 0),
    ("MAIL", 0),
    ("RCPT", 0),
    ("DATA", FLAG_LAST),
    ("BDAT", 0),
    ("RSET", FLAG_LIMIT),
    ("NOOP", FLAG_LIMIT | FLAG_PRE_TLS | FLAG_LAST),
    ("VRFY", FLAG_LIMIT | FLAG_LAST),
    ("ETRN", FLAG_LIMIT),
    ("QUIT", FLAG_PRE_TLS),
)

_HEADER_CHARS = set(range(33, 127)) - {ord(":")}


def is_header(text):
    """is_header(): `Name:` as a message header starts (a client that sends mail
    without the SMTP dialog)."""
    for pos, ch in enumerate(text):
        if ch == ":":
            return pos > 0
        if ord(ch) not in _HEADER_CHARS:
            return False
    return False


class CommandStat:
    __slots__ = ("name", "flags", "success", "total")

    def __init__(self, name, flags):
        self.name = name
        self.flags = flags
        self.success = 0
        self.total = 0


class SmtpdProtocol(SessionCommands, TransactionCommands, XclientCommands, SaslCommands,
                    TlsCommands, asyncio.Protocol):
    def __init__(self, ctx, state, sock, loop):
        self.ctx = ctx
        self.config = ctx.config
        self.state = state
        self.loop = loop
        self.transport = None
        self.chat = Chat(self, sock, ctx.smtpd_timeout)
        self.tls_active = False
        self.stats = [CommandStat(name, flags) for name, flags in COMMANDS]
        self.unknown = CommandStat(None, 0)
        self.buffer = ""

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.chat.data_received(data)

    def eof_received(self):
        """Keep the connection after the client's EOF: commands already received
        (QUIT ...) are still answered, as Postfix does."""
        self.chat.eof_received()
        return not self.tls_active

    def connection_lost(self, error):
        self.chat.connection_lost()

    def pause_writing(self):
        self.chat.pause_writing()

    def resume_writing(self):
        self.chat.resume_writing()

    async def run(self, sock):
        """The session on the accepted socket: smtpd_proto(), then the last replies
        are written and the connection closed."""
        await self.loop.connect_accepted_socket(lambda: self, sock=sock)
        try:
            await self.smtpd_proto()
        finally:
            try:
                await self.chat.flush()
            except (SmtpEOF, SmtpTimeout):
                pass
            if self.transport is not None:
                # The loop serves the next session too: nothing of this one may stay
                # registered. Output that a timed-out client never took is dropped.
                self.transport.close()
                self.transport.abort()
                await asyncio.sleep(0)      # runs connection_lost()

    # -- replies -------------------------------------------------------------------------

    async def reply(self, text):
        """smtpd_chat_reply(): one reply (may hold CRLF for multi-line replies), delayed by
        smtpd_error_sleep_time once the soft error limit is reached."""
        state = self.state
        delay = 0
        if state.error_count >= self.ctx.soft_error_limit:
            delay = self.ctx.error_sleep_time
        if delay:
            await self.chat.flush()
            await asyncio.sleep(delay)
        text = str(text)
        if text[:1] in ("4", "5"):
            text = self._with_footer(text)
        lines = text.split("\r\n")
        for n, line in enumerate(lines):
            if self.ctx.soft_bounce and line[:1] == "5":
                line = "4" + line[1:]
                if line[4:5] == "5":
                    line = line[:4] + "4" + line[5:]
            if n + 1 < len(lines) and len(line) >= 4:
                line = line[:3] + "-" + line[4:]
            if msg.verbose:
                msg.info("> %s: %s" % (state.namaddr, line))
            self.chat.put(line)
        if delay:
            await self.chat.flush()
        if text.startswith("421") or text.startswith("521"):
            self.state.flags |= SMTPD_FLAG_HANGUP

    def _with_footer(self, text):
        """smtpd_reject_footer_maps (keyed by the reply) or smtpd_reject_footer."""
        ctx = self.ctx
        footer = None
        if ctx.reject_footer_maps is not None:
            footer = ctx.reject_footer_maps.find(text)
        if footer is None:
            footer = ctx.reject_footer
        if not footer:
            return text
        checks = ctx.checks

        def lookup(name, mode):
            return checks.expand_lookup(self.state, name)
        return reply_footer(text, footer, lookup, getattr(checks, "expansion_filter", None))

    async def check_reply(self, method, *args):
        """Call a restriction method; its Reply as text, or None to go on (in
        stand-alone mode, where Postfix skips the restrictions, only the SIZE check)."""
        if self.state.stand_alone and method != "size":
            return None
        result = getattr(self.ctx.checks, method)(self.state, *args)
        return None if result is None else str(result)

    # -- the session -------------------------------------------------------------------------

    async def smtpd_proto(self):
        state = self.state
        try:
            await self._session()
        except SmtpTimeout:
            state.reason = REASON_TIMEOUT
            try:
                await self.reply("421 4.4.2 %s Error: timeout exceeded" % self.ctx.myhostname)
                await self.chat.flush()
            except (SmtpEOF, SmtpTimeout):
                pass
        except SmtpEOF:
            state.reason = REASON_LOST_CONNECTION
        except SmtpQuiet:
            pass
        except SmtpDataError:
            msg.info("%s: reject: %s from %s: 421 4.3.0 %s Server local data error"
                     % (state.queue_id_or_noqueue(), state.where, state.namaddr,
                        self.ctx.myhostname))
            try:
                await self.reply("421 4.3.0 %s Server local data error" % self.ctx.myhostname)
                await self.chat.flush()
            except (SmtpEOF, SmtpTimeout):
                pass
        if self.ctx.anvil_applies(state):
            self.ctx.anvil.disconnect(state.service, state.addr)
        self._log_abnormal_end()
        self.mail_reset()
        self.rcpt_reset()

    async def _connection_limits(self):
        """anvil: smtpd_client_connection_count_limit and _rate_limit; True when the
        client was turned away with 421."""
        state = self.state
        ctx = self.ctx
        if not ctx.anvil_applies(state):
            return False
        reply = ctx.anvil.connect(state.service, state.addr)
        if reply is None:
            return False
        state.conn_count = reply.get("count", 0)
        state.conn_rate = reply.get("rate", 0)
        if ctx.conn_limit > 0 and state.conn_count > ctx.conn_limit:
            msg.warn("Connection concurrency limit exceeded: %d from %s for service %s"
                     % (state.conn_count, state.namaddr, state.service))
        elif ctx.conn_rate_limit > 0 and state.conn_rate > ctx.conn_rate_limit:
            msg.warn("Connection rate limit exceeded: %d from %s for service %s"
                     % (state.conn_rate, state.namaddr, state.service))
        else:
            return False
        await self.reply("421 4.7.0 %s Error: too many connections from %s"
                         % (ctx.myhostname, state.addr))
        return True

    async def event_rate_exceeded(self, request, limit):
        """The anvil rate of a MAIL (`message`) or RCPT/VRFY (`recipient`) event, when
        it exceeds its limit; else None."""
        state = self.state
        if limit <= 0 or not self.ctx.anvil_applies(state):
            return None
        rate = self.ctx.anvil.rate(request, state.service, state.addr)
        return rate if rate is not None and rate > limit else None

    def _log_abnormal_end(self):
        state = self.state
        if not (state.reason and state.where):
            return
        if state.where == SMTPD_AFTER_DATA:
            msg.info("%s after DATA (%d bytes) from %s"
                     % (state.reason, state.act_size + len(self.chat.inbuf), state.namaddr))
        elif state.where == SMTPD_AFTER_BDAT:
            msg.info("%s after BDAT (%d bytes) from %s"
                     % (state.reason, state.act_size + len(self.chat.inbuf), state.namaddr))
        elif state.where != SMTPD_AFTER_EOM or state.reason != REASON_LOST_CONNECTION:
            msg.info("%s after %s from %s" % (state.reason, state.where, state.namaddr))

    async def _greet(self):
        """The client restrictions (without smtpd_delay_reject) or the banner."""
        state = self.state
        err = None
        if not self.ctx.delay_reject:
            err = await self.check_reply("client")
        if err is not None:
            state.access_denied = err
            await self.reply(err)
            state.error_count += 1
        else:
            await self.reply("220 %s" % self.ctx.banner)

    async def _session(self):
        """smtpd_proto()'s main loop; XCLIENT starts it over."""
        while True:
            try:
                return await self._session_once()
            except XclientRestart:
                continue

    async def _session_once(self):
        state = self.state
        ctx = self.ctx
        if ctx.tls.wrappermode and state.tls_context is None:
            if ctx.tls.context is None:
                msg.warn("Wrapper-mode request dropped from %s for service %s. TLS context "
                         "initialization failed. For details see earlier warnings in your "
                         "logs." % (state.namaddr, state.service))
                return
            if self.ctx.tls_rate_limit > 0 and self.ctx.anvil_applies(state) \
                    and (self.ctx.anvil.rate("newtls_status", state.service, state.addr)
                         or 0) > self.ctx.tls_rate_limit:
                msg.warn("Refusing TLS service request from %s for service %s"
                         % (state.namaddr, state.service))
                return
            await self.start_tls()
        if await self._flag_ill_pipelining() and ctx.forbid_unauth_pipelining:
            await self.reply("554 5.5.0 Error: SMTP protocol synchronization")
            return
        if await self._connection_limits():
            return
        state.ehlo_discard_mask = ctx.ehlo_discard_mask(state)
        await self._greet()
        if ctx.sasl_enable and state.sasl_server is None and state.tls_context is None \
                and not ctx.tls.auth_only:
            self.sasl_activate("smtpd_sasl_security_options")
        while True:
            if self.state.flags & SMTPD_FLAG_HANGUP:
                break
            if state.error_count >= ctx.hard_error_limit:
                state.reason = REASON_ERROR_LIMIT
                await self.reply("421 4.7.0 %s Error: too many errors" % ctx.myhostname)
                break
            raw, complete = await self.chat.get(ctx.line_limit, skip=True)
            self.buffer = raw.decode("utf-8", "surrogateescape")
            if not complete:
                msg.warn("%s: request longer than %d: %.30s..."
                         % (state.namaddr, ctx.line_limit, msg.printable(self.buffer)))
            if msg.verbose:
                msg.info("< %s: %s" % (state.namaddr, self.buffer))
            if self.chat.got_bare_lf & ctx.BARE_LF_REPLY_REJECT:
                self.log_whatsup("reject", "bare <LF> received")
                await self.reply("%d 5.5.2 %s Error: bare <LF> received"
                                 % (ctx.bare_lf_code, ctx.myhostname))
                break
            if ctx.smtputf8_enable and not _valid_utf8(raw):
                await self.reply("500 5.5.2 Error: bad UTF-8 syntax")
                state.error_count += 1
                continue
            argv = smtpd_token(self.buffer)
            if not argv:
                await self.reply("500 5.5.2 Error: bad syntax")
                state.error_count += 1
                continue
            if ctx.noop_cmds is not None and ctx.noop_cmds.match(argv[0].strval):
                await self.reply("250 2.0.0 Ok")
                state.junk_cmds += 1
                if state.junk_cmds - 1 > ctx.junk_cmd_limit:
                    state.error_count += 1
                continue
            if await self._one_command(argv) is False:
                break

    async def _one_command(self, argv):
        """Dispatch one command; False ends the session."""
        state = self.state
        ctx = self.ctx
        name = argv[0].strval.upper()
        stat = next((s for s in self.stats if s.name == name), self.unknown)
        stat.total += 1
        if stat is self.unknown:
            state.where = SMTPD_CMD_UNKNOWN
            if is_header(argv[0].strval) or (
                    ctx.forbid_cmds is not None and ctx.forbid_cmds.match(argv[0].strval)):
                msg.warn("non-SMTP command from %s: %.100s"
                         % (state.namaddr, escape(self.buffer.encode("utf-8",
                                                                      "surrogateescape"))))
                await self.reply("221 2.7.0 Error: I can break rules, too. Goodbye.")
                return False
        if state.access_denied and name != "QUIT":
            if state.access_denied[1:3] == "21":
                await self.reply(state.access_denied)
                return True
            await self.reply("503 5.7.0 Error: access denied for %s" % state.namaddr)
            state.error_count += 1
            return True
        if stat is self.unknown:
            await self.reply("500 5.5.2 Error: command not recognized")
            state.error_count += 1
            return True
        if ctx.tls.enforce_tls and not state.tls_context and not stat.flags & FLAG_PRE_TLS:
            await self.reply("530 5.7.0 Must issue a STARTTLS command first")
            state.error_count += 1
            return True
        state.where = name
        if (state.protocol.upper() != MAIL_PROTO_ESMTP or stat.flags & FLAG_LAST) \
                and await self._flag_ill_pipelining() and ctx.forbid_unauth_pipelining:
            await self.reply("554 5.5.0 Error: SMTP protocol synchronization")
            return False
        method = getattr(self, "cmd_" + name.lower())
        if await method(argv) != 0:
            state.error_count += 1
        else:
            stat.success += 1
        if stat.flags & FLAG_LIMIT:
            state.junk_cmds += 1
            if state.junk_cmds - 1 > ctx.junk_cmd_limit:
                state.error_count += 1
        return name != "QUIT"

    async def _flag_ill_pipelining(self):
        """smtpd_flag_ill_pipelining(): input that arrived before our reply."""
        if self.state.flags & SMTPD_FLAG_ILL_PIPELINING or self.state.stand_alone:
            return False
        pending = self.chat.pending_input()
        if not pending:
            return False
        msg.info("improper command pipelining after %s from %s: %s"
                 % (self.state.where, self.state.namaddr, escape(pending[:100])))
        self.state.flags |= SMTPD_FLAG_ILL_PIPELINING
        return True

    def log_whatsup(self, action, text):
        """log_whatsup(): `<queue id>: <action>: <where> from <client>: <text>; from=..."""
        msg.info("%s: %s: %s from %s: %s;%s"
                 % (self.state.queue_id_or_noqueue(), action, self.state.where,
                    self.state.namaddr, text, self.whatsup()))

    def whatsup(self):
        """smtpd_whatsup(): ` from=<s> to=<r> proto=P helo=<h>` as far as known."""
        state = self.state
        out = ""
        if state.sender is not None:
            out += " from=<%s>" % self.ctx.log_addr(state.sender)
        if state.recipient is not None:
            out += " to=<%s>" % self.ctx.log_addr(state.recipient)
        if state.protocol:
            out += " proto=%s" % state.protocol
        if state.helo_name:
            out += " helo=<%s>" % state.helo_name
        return out

    def format_cmd_stats(self):
        """smtpd_format_cmd_stats(): ` ehlo=1 mail=1 ... commands=N[/M]`."""
        out = []
        ok = total = 0
        for stat in self.stats + [self.unknown]:
            if stat.total > 0:
                item = " %s=%d" % ((stat.name or "unknown").lower(), stat.success)
                if stat.success != stat.total:
                    item += "/%d" % stat.total
                out.append(item)
                ok += stat.success
                total += stat.total
        out.append(" commands=%d" % ok)
        if ok != total or total == 0:
            out.append("/%d" % total)
        return "".join(out)

def _valid_utf8(raw):
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False

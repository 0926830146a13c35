"""The session commands of smtpd: HELO, EHLO, RSET, NOOP, QUIT, VRFY and ETRN (Postfix's
smtpd.c helo_cmd, ehlo_cmd, rset_cmd, noop_cmd, quit_cmd, vrfy_cmd, etrn_cmd), a mixin of
SmtpdProtocol (proto.py) beside the transaction commands (transaction.py).
"""

from pyfix.common import flush_clnt, msg
from pyfix.common.valid_hostname import valid_hostaddr, valid_hostname

from pyfix.daemons.smtpd import ehlo as E
from pyfix.daemons.smtpd.chat import SmtpDataError
from pyfix.daemons.smtpd.state import MAIL_PROTO_ESMTP, MAIL_PROTO_SMTP

NEUTER_CHARACTERS = " <>()\\\";@"


class SessionCommands:
    # -- HELO, EHLO --------------------------------------------------------------------

    async def _helo_common(self, argv, verb):
        state = self.state
        if len(argv) < 2:
            await self.reply("501 Syntax: %s hostname" % verb)
            return -1
        helo = " ".join(a.strval for a in argv[1:])
        if not self.ctx.delay_reject:
            err = await self.check_reply("helo", helo)
            if err is not None:
                await self.reply(err)
                return -1
        self.mail_reset()
        self.rcpt_reset()
        state.helo_name = neuter(msg.printable(helo))
        return 0

    async def cmd_helo(self, argv):
        if await self._helo_common(argv, "HELO") < 0:
            return -1
        state = self.state
        if state.protocol.upper() not in (MAIL_PROTO_ESMTP, MAIL_PROTO_SMTP):
            state.protocol = MAIL_PROTO_SMTP
        await self.reply("250 %s" % self.ctx.myhostname)
        return 0

    async def cmd_ehlo(self, argv):
        if await self._helo_common(argv, "EHLO") < 0:
            return -1
        state = self.state
        ctx = self.ctx
        if state.protocol.upper() != MAIL_PROTO_ESMTP:
            state.protocol = MAIL_PROTO_ESMTP
        discard = state.ehlo_discard_mask
        if discard and not discard & E.MASK_ENHANCEDSTATUSCODES \
                and not discard & E.MASK_SILENT:
            msg.info("discarding EHLO keywords: %s" % E.str_ehlo_mask(discard))
        if state.ehlo_discard_error:
            msg.warn("don't know what EHLO features to announce to %s" % state.namaddr)
            raise SmtpDataError()
        words = [ctx.myhostname]
        if not discard & E.MASK_PIPELINING:
            words.append("PIPELINING")
        if not discard & E.MASK_SIZE:
            words.append("SIZE %d" % ctx.message_limit if ctx.message_limit > 0 else "SIZE")
        if not discard & E.MASK_VRFY and not ctx.disable_vrfy:
            words.append("VRFY")
        if not discard & E.MASK_ETRN:
            words.append("ETRN")
        if not discard & E.MASK_STARTTLS and ctx.tls.use_tls and not state.tls_context:
            words.append("STARTTLS")
        if not discard & E.MASK_AUTH and state.sasl_server is not None:
            words.append("AUTH %s" % state.sasl_mechanism_list)
            if ctx.broken_sasl_auth_clients:
                words.append("AUTH=%s" % state.sasl_mechanism_list)
        if not discard & E.MASK_XCLIENT and state.xclient_allowed:
            words.append("XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN "
                         "DESTADDR DESTPORT")
        if not discard & E.MASK_XFORWARD and state.xforward_allowed:
            words.append("XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT")
        if not discard & E.MASK_ENHANCEDSTATUSCODES:
            words.append("ENHANCEDSTATUSCODES")
        if not discard & E.MASK_8BITMIME:
            words.append("8BITMIME")
        if not discard & E.MASK_DSN:
            words.append("DSN")
        if ctx.smtputf8_enable and not discard & E.MASK_SMTPUTF8:
            words.append("SMTPUTF8")
        if not discard & E.MASK_CHUNKING:
            words.append("CHUNKING")
        for n, word in enumerate(words):
            await self.reply("250%s%s" % ("-" if n + 1 < len(words) else " ", word))
        return 0

    # -- RSET, NOOP, QUIT, VRFY, ETRN ------------------------------------------------------

    async def cmd_rset(self, argv):
        if len(argv) != 1:
            await self.reply("501 5.5.4 Syntax: RSET")
            return -1
        self.mail_reset()
        self.rcpt_reset()
        await self.reply("250 2.0.0 Ok")
        return 0

    async def cmd_noop(self, argv):
        await self.reply("250 2.0.0 Ok")
        return 0

    async def cmd_quit(self, argv):
        await self.reply("221 2.0.0 Bye")
        await self.chat.flush()
        return 0

    async def cmd_vrfy(self, argv):
        ctx = self.ctx
        if ctx.disable_vrfy:
            await self.reply("502 5.5.1 VRFY command is disabled")
            return -1
        smtputf8 = False
        if ctx.smtputf8_enable and not self.state.ehlo_discard_mask & E.MASK_SMTPUTF8 \
                and len(argv) > 1 and argv[-1].strval.upper() == "SMTPUTF8":
            argv = argv[:-1]
            smtputf8 = True
        if len(argv) < 2:
            await self.reply("501 5.5.4 Syntax: VRFY address%s"
                             % (" [SMTPUTF8]" if ctx.smtputf8_enable else ""))
            return -1
        rate = await self.event_rate_exceeded("recipient", ctx.rcpt_rate_limit)
        if rate is not None:
            msg.warn("Recipient address rate limit exceeded: %d from %s for service %s"
                     % (rate, self.state.namaddr, self.state.service))
            await self.reply("450 4.7.1 Error: too many recipients from %s" % self.state.addr)
            return -1
        arg = " ".join(a.strval for a in argv[1:])
        addr = self.extract_addr(arg, allow_empty=False, strict=False, smtputf8=smtputf8)
        if addr is None:
            await self.reply("501 5.1.3 Bad recipient address syntax")
            return -1
        if not smtputf8 and ctx.strict_smtputf8 and not addr.isascii():
            self.mail_reset()
            await self.reply("553 5.6.7 Must declare SMTPUTF8 to send unicode address")
            return -1
        err = await self.check_reply("vrfy", addr)
        if err is not None:
            await self.reply(err)
            return -1
        await self.reply("252 2.0.0 %s" % arg)
        return 0

    async def cmd_etrn(self, argv):
        state = self.state
        if self.ctx.helo_required and state.helo_name is None:
            await self.reply("503 Error: send HELO/EHLO first")
            return -1
        if state.in_mail_transaction():
            await self.reply("503 Error: MAIL transaction in progress")
            return -1
        if len(argv) != 2:
            await self.reply("500 Syntax: ETRN domain")
            return -1
        domain = argv[1].strval
        if domain[:1] in ("@", "#"):
            domain = domain[1:]
        if not valid_hostname(domain) and not _valid_mailhost_literal(domain):
            await self.reply("501 Error: invalid parameter syntax")
            return -1
        if state.stand_alone:
            msg.warn('do not use ETRN in "sendmail -bs" mode')
            await self.reply("458 Unable to queue messages")
            return -1
        err = await self.check_reply("etrn", domain)
        if err is not None:
            await self.reply(err)
            return -1
        status = flush_clnt.flush_send_site(domain)
        if status == flush_clnt.FLUSH_STAT_OK:
            await self.reply("250 Queuing started")
            return 0
        if status == flush_clnt.FLUSH_STAT_DENY:
            msg.warn("reject: ETRN %.100s... from %s" % (domain, state.namaddr))
            await self.reply("459 <%s>: service unavailable" % domain)
            return -1
        if status == flush_clnt.FLUSH_STAT_BAD:
            msg.warn("bad ETRN %.100s... from %s" % (domain, state.namaddr))
        else:
            msg.warn("unable to talk to fast flush service")
        await self.reply("458 Unable to queue messages")
        return -1


def neuter(text):
    """neuter(NEUTER_CHARACTERS): characters that could break a log line or header."""
    return "".join("?" if ch in NEUTER_CHARACTERS else ch for ch in text)


def _valid_mailhost_literal(text):
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return False
    inner = text[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    return valid_hostaddr(inner)

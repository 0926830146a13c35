"""The mail transaction of an SMTP session (Postfix's smtpd.c mail_cmd, rcpt_cmd,
data_cmd, bdat_cmd, mail_open_stream, common_pre/post_message_handling).

The queue file is opened at the first accepted recipient (smtpd_delay_open_until_valid_rcpt):
smtpd connects to the cleanup service, which answers with the queue ID, and sends the
envelope records; the message is then sent to cleanup line by line as it arrives, as
queue-file records (no copy of the whole message is kept), preceded by the Received:
header exactly as Postfix writes it. The final 250 is sent only after cleanup answered
that the file is safely committed.
"""

from pyfix.common import msg, tok822
from pyfix.common.dsn_mask import DSN_NOTIFY_NEVER, dsn_notify_mask, dsn_ret_code
from pyfix.common.mail_date import mail_date
from pyfix.common.quote_822 import quote_822_local
from pyfix.common.xtext import uxtext_unquote, xtext_unquote
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record
from pyfix.queue.cleanup_client import CleanupClient, CleanupError

from pyfix.daemons.smtpd import ehlo as E
from pyfix.daemons.smtpd.bdat import BdatCommands
from pyfix.daemons.smtpd.stand_alone import PostdropCleanup
from pyfix.daemons.smtpd.state import (
    MAIL_PROTO_ESMTP, SMTPD_AFTER_DATA, SMTPD_AFTER_EOM, SMTPD_FLAG_SMTPUTF8, XForward)


def _allprint(text):
    return all(32 <= ord(c) < 127 or ord(c) > 127 for c in text)


class TransactionCommands(BdatCommands):
    """MAIL, RCPT, DATA (and BDAT from bdat.py); mixed into SmtpdProtocol."""

    # -- reset points -------------------------------------------------------------------

    def mail_reset(self):
        state = self.state
        if state.cleanup is not None:
            state.cleanup.close()
        state.reset_mail()
        if state.xforward.flags:
            state.xforward = XForward()
        self.bdat_line = bytearray()

    def rcpt_reset(self):
        self.state.reset_rcpt()

    # -- addresses ---------------------------------------------------------------------

    def _address_ok(self, address, smtputf8):
        """smtpd_check_addr() (the restrictions' address_ok(), when they have it)."""
        check = getattr(self.ctx.checks, "address_ok", None)
        return check is None or self.state.stand_alone \
            or check(self.state, address, smtputf8)

    def extract_addr(self, text, allow_empty, strict, smtputf8=False):
        """extract_addr(): the address in internal form, or None (logged) when the
        argument is not one address."""
        state = self.state
        inner = text[1:-1] if len(text) >= 2 and text[0] == "<" and text[-1] == ">" \
            else text
        if inner.startswith("@") and ":" in inner:
            inner = inner[inner.index(":") + 1:]
        tree = tok822.parse(inner)
        naddr = non_addr = 0
        addr = None
        tp = tree
        while tp is not None:
            if tp.type == tok822.ADDR:
                addr = tp
                naddr += 1
            elif tp.type not in (ord("<"), ord(">")):
                non_addr += 1
            tp = tp.next
        err = naddr > 1 or (strict and (non_addr or not text.startswith("<")))
        result = tok822.internalize_tree(addr.head, tok822.STR_DEFL) if addr else ""
        if not err and ((not result and not allow_empty)
                        or (strict and result.startswith("@"))
                        or not self._address_ok(result, smtputf8)):
            err = True
        if err:
            msg.warn("Illegal address syntax from %s in %s command: %s"
                     % (state.namaddr, state.where, msg.printable(text)))
            return None
        return result

    # -- MAIL -------------------------------------------------------------------------

    async def cmd_mail(self, argv):
        state = self.state
        ctx = self.ctx
        state.smtputf8 = False
        state.flags &= ~SMTPD_FLAG_SMTPUTF8
        state.encoding = None
        state.dsn_ret = 0
        if ctx.helo_required and state.helo_name is None:
            await self.reply("503 5.5.1 Error: send HELO/EHLO first")
            return -1
        if state.in_mail_transaction():
            await self.reply("503 5.5.1 Error: nested MAIL command")
            return -1
        if state.processing_bdat():
            await self.reply("503 5.5.1 Error: MAIL after BDAT")
            return -1
        if len(argv) < 3 or argv[1].strval.lower() != "from:":
            await self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
            return -1
        rate = await self.event_rate_exceeded("message", ctx.mail_rate_limit)
        if rate is not None:
            await self.reply("450 4.7.1 Error: too much mail from %s" % state.addr)
            msg.warn("Message delivery request rate limit exceeded: %d from %s for service %s"
                     % (rate, state.namaddr, state.service))
            return -1
        if argv[2].tokval == 2:
            await self.reply("501 5.1.7 Bad sender address syntax")
            return -1
        params = [a.strval for a in argv[3:]]
        utf8_ok = ctx.smtputf8_enable and not state.ehlo_discard_mask & E.MASK_SMTPUTF8
        if utf8_ok and any(p.upper() == "SMTPUTF8" for p in params):
            state.smtputf8 = True
            state.flags |= SMTPD_FLAG_SMTPUTF8
        sender = self.extract_addr(argv[2].strval, True, ctx.strict_rfc821, state.smtputf8)
        if sender is None:
            await self.reply("501 5.1.7 Bad sender address syntax")
            return -1
        dsn_envid = None
        for arg in params:
            upper = arg.upper()
            if upper == "BODY=8BITMIME":
                state.encoding = "8bit"
            elif upper == "BODY=7BIT":
                state.encoding = "7bit"
            elif upper.startswith("SIZE="):
                if not arg[5:].isdigit() or not arg[5:].isascii():
                    await self.reply("501 5.5.4 Bad message size syntax")
                    return -1
                state.msg_size = int(arg[5:])   # as in Postfix, kept even if MAIL fails
                if state.msg_size >= 2 ** 63:
                    await self.reply("552 5.3.4 Message size exceeds file system imposed limit")
                    return -1
            elif utf8_ok and upper == "SMTPUTF8":
                pass
            elif upper.startswith("AUTH="):
                # smtpd_sasl_mail_opt()
                if state.sasl_sender is not None:
                    await self.reply("503 5.5.4 Error: multiple AUTH= options")
                    return -1
                if arg[5:] != "<>":
                    state.sasl_sender = msg.printable(arg[5:])
            elif upper.startswith("RET="):
                if state.ehlo_discard_mask & E.MASK_DSN:
                    await self.reply("501 5.7.1 DSN support is disabled")
                    return -1
                code = dsn_ret_code(upper[4:])
                if state.dsn_ret or not code:
                    await self.reply("501 5.5.4 Bad RET parameter syntax")
                    return -1
                state.dsn_ret = code
            elif upper.startswith("ENVID="):
                if state.ehlo_discard_mask & E.MASK_DSN:
                    await self.reply("501 5.7.1 DSN support is disabled")
                    return -1
                value = xtext_unquote(arg[6:])
                if dsn_envid is not None or value is None or not _allprint(value):
                    await self.reply("501 5.5.4 Bad ENVID parameter syntax")
                    return -1
                dsn_envid = value
            else:
                await self.reply("555 5.5.4 Unsupported option: %s" % arg)
                return -1
        state.sender = sender           # smtpd_check_size() sees the candidate sender
        try:
            err = await self.check_reply("size")
        finally:
            state.sender = None
        if err is not None:
            await self.reply(err)
            return -1
        if not ctx.delay_reject:
            err = await self.check_reply("mail", sender)
            if err is not None:
                self.mail_reset()
                await self.reply(err)
                return -1
        if not state.stand_alone:
            context, err = ctx.rewrite_clients.context(state)
            if err is not None:
                self.mail_reset()
                self.log_whatsup("reject", str(err))
                await self.reply(err)
                return -1
            state.rewrite_context = context
        if ctx.strict_smtputf8 and not state.smtputf8 and sender and not sender.isascii():
            await self.reply("553 5.6.7 Must declare SMTPUTF8 to send unicode address")
            return -1
        state.start_transaction(sender)
        state.dsn_envid = dsn_envid
        if not ctx.delay_open and not self.mail_open_stream():
            self.mail_reset()
            return -1
        await self.reply("250 2.1.0 Ok")
        return 0

    # -- RCPT -------------------------------------------------------------------------

    async def cmd_rcpt(self, argv):
        state = self.state
        ctx = self.ctx
        if not state.in_mail_transaction():
            await self.reply("503 5.5.1 Error: need MAIL command")
            return -1
        if state.processing_bdat():
            await self.reply("503 5.5.1 Error: RCPT after BDAT")
            return -1
        if len(argv) < 3 or argv[1].strval.lower() != "to:":
            await self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
            return -1
        rate = await self.event_rate_exceeded("recipient", ctx.rcpt_rate_limit)
        if rate is not None:
            msg.warn("Recipient address rate limit exceeded: %d from %s for service %s"
                     % (rate, state.namaddr, state.service))
            await self.reply("450 4.7.1 Error: too many recipients from %s" % state.addr)
            return -1
        if argv[2].tokval == 2:
            await self.reply("501 5.1.3 Bad recipient address syntax")
            return -1
        addr = self.extract_addr(argv[2].strval, False, ctx.strict_rfc821, state.smtputf8)
        if addr is None:
            await self.reply("501 5.1.3 Bad recipient address syntax")
            return -1
        notify = 0
        orcpt = None
        for arg in (a.strval for a in argv[3:]):
            upper = arg.upper()
            if upper.startswith("NOTIFY="):
                if state.ehlo_discard_mask & E.MASK_DSN:
                    await self.reply("501 5.7.1 DSN support is disabled")
                    return -1
                if notify or not (notify := dsn_notify_mask(arg[7:])):
                    await self.reply("501 5.5.4 Error: Bad NOTIFY parameter syntax")
                    return -1
            elif upper.startswith("ORCPT="):
                if state.ehlo_discard_mask & E.MASK_DSN:
                    await self.reply("501 5.7.1 DSN support is disabled")
                    return -1
                kind, semi, coded = arg[6:].partition(";")
                value = None
                if semi and kind:
                    value = uxtext_unquote(coded) if kind.lower() == "utf-8" \
                        else xtext_unquote(coded)
                if orcpt is not None or value is None:
                    await self.reply("501 5.5.4 Error: Bad ORCPT parameter syntax")
                    return -1
                orcpt = (kind, value)
            else:
                await self.reply("555 5.5.4 Unsupported option: %s" % arg)
                return -1
        if ctx.rcpt_limit and state.rcpt_count >= ctx.rcpt_limit:
            await self.reply("452 4.5.3 Error: too many recipients")
            state.rcpt_overshoot += 1
            if state.rcpt_overshoot - 1 < ctx.rcpt_overshoot_limit:
                return 0
            return -1
        if ctx.strict_smtputf8 and not state.smtputf8 and not addr.isascii():
            await self.reply("553 5.6.7 Must declare SMTPUTF8 to send unicode address")
            return -1
        err = await self.check_reply("rcpt", addr)
        if err is not None:
            await self.reply(err)
            return -1
        if state.cleanup is None and not self.mail_open_stream():
            return -1
        state.rcpt_count += 1
        if state.recipient is None:
            state.recipient = addr
        if orcpt is None:
            text = argv[2].strval
            if len(text) >= 2 and text[0] == "<" and text[-1] == ">":
                text = text[1:-1]
            orcpt = ("rfc822", text)
        client = state.cleanup
        if notify:
            client.put(record.ATTR, "notify_flags=%d" % notify)
        client.put(record.ATTR, "dsn_orig_rcpt=%s;%s" % orcpt)
        client.put(record.RCPT, addr)     # sent with what follows, as Postfix's VSTREAM does
        await self.reply("250 2.1.5 Ok")
        return 0

    # -- the queue file -------------------------------------------------------------------

    def mail_open_stream(self):
        """mail_open_stream(): connect to cleanup and send the envelope so far."""
        state = self.state
        ctx = self.ctx
        if state.stand_alone:
            return self._open_postdrop_stream()
        flags = ctx.cleanup_flags | (cu.FLAG_SMTPUTF8 if state.smtputf8 else 0)
        try:
            client = CleanupClient.connect(ctx.cleanup_path, ctx.ipc_timeout)
            client.send_flags(flags)
        except CleanupError:
            msg.fatal("unable to connect to the public %s service" % ctx.cleanup_service)
        state.cleanup = client
        state.queue_id = client.queue_id
        arrival = state.arrival_time
        client.put(record.TIME, "%d %d" % (int(arrival), int((arrival % 1) * 1000000)))
        if ctx.content_filter:
            client.put(record.FILT, ctx.content_filter)
        attrs = []
        if state.forward_ident():
            attrs.append(("log_ident", state.forward_ident()))
        attrs.append(("rewrite_context", state.forward_domain()))
        for name, value in (("sasl_method", state.sasl_method),
                            ("sasl_username", state.sasl_username),
                            ("sasl_sender", state.sasl_sender)):
            if value:
                attrs.append((name, value))
        if state.dsn_envid:
            attrs.append(("envelope_id", state.dsn_envid))
        if state.dsn_ret:
            attrs.append(("ret_flags", str(state.dsn_ret)))
        for name, value in attrs:
            client.put(record.ATTR, "%s=%s" % (name, value))
        client.put(record.FROM, state.sender)
        if state.encoding:
            client.put(record.ATTR, "encoding=%s" % state.encoding)
        for name, value in (
                ("log_client_name", state.forward_name()),
                ("log_client_address", state.forward_addr()),
                ("log_client_port", state.forward_port()),
                ("log_message_origin", state.forward_namaddr()),
                ("log_helo_name", state.forward_helo()),
                ("log_protocol_name", state.forward_proto()),
                ("client_name", state.name),
                ("reverse_client_name", state.reverse_name),
                ("client_address", state.addr),
                ("client_port", state.port),
                ("server_address", state.dest_addr),
                ("server_port", state.dest_port),
                ("helo_name", state.helo_name),
                ("protocol_name", state.protocol),
                ("client_address_type", str(state.addr_family))):
            if value is not None:
                client.put(record.ATTR, "%s=%s" % (name, value))
        if state.verp_delims:
            client.put(record.VERP, state.verp_delims)
        extra = ""
        for name, value in (("sasl_method", state.sasl_method),
                            ("sasl_username", state.sasl_username),
                            ("sasl_sender", state.sasl_sender)):
            if value:
                extra += ", %s=%s" % (name, value)
        if state.forwarded_ident():
            extra += ", orig_queue_id=%s" % state.forward_ident()
        if state.xforward.flags and (state.xforward.name or state.xforward.addr):
            extra += ", orig_client=%s" % state.forward_namaddr()
        msg.info("%s: client=%s%s" % (state.queue_id, state.namaddr, extra))
        return True

    def _open_postdrop_stream(self):
        """Stand-alone mode: the message goes through postdrop with the sender only
        (no arrival time, session or client attributes)."""
        state = self.state
        client = state.cleanup = PostdropCleanup(self.config)
        state.queue_id = client.queue_id
        client.put(record.FROM, state.sender)
        if state.encoding:
            client.put(record.ATTR, "encoding=%s" % state.encoding)
        if state.verp_delims:
            client.put(record.VERP, state.verp_delims)
        msg.info("%s: client=%s" % (state.queue_id, state.namaddr))
        return True

    # -- DATA ----------------------------------------------------------------------------

    async def cmd_data(self, argv):
        state = self.state
        if state.processing_bdat():
            await self.reply("503 5.5.1 Error: DATA after BDAT")
            return -1
        if state.rcpt_count == 0:
            if not state.in_mail_transaction():
                await self.reply("503 5.5.1 Error: need RCPT command")
            else:
                await self.reply("554 5.5.1 Error: no valid recipients")
            return -1
        if len(argv) != 1:
            await self.reply("501 5.5.4 Syntax: DATA")
            return -1
        err = await self.check_reply("data")
        if err is not None:
            await self.reply(err)
            return -1
        self.pre_message_handling()
        await self.reply("354 End data with <CR><LF>.<CR><LF>")
        state.where = SMTPD_AFTER_DATA
        await self.receive_data_message()
        return await self.post_message_handling()

    def out(self, rec_type, text):
        """Send one content record unless an error already stopped the message."""
        state = self.state
        if isinstance(text, str):
            text = text.encode("utf-8", "surrogateescape")
        if not state.cleanup.put(rec_type, text):
            state.err |= cu.STAT_WRITE

    def pre_message_handling(self):
        """common_pre_message_handling(): flags, prepended headers, Received:."""
        state = self.state
        ctx = self.ctx
        if state.saved_flags and not state.stand_alone:
            state.cleanup.put(record.FLGS, "%d" % state.saved_flags)
        state.cleanup.put(record.MESG, b"")
        for header in state.prepend:
            self.out(record.NORM, header)
        with_protocol = "UTF8SMTP" if state.smtputf8 else state.protocol
        sess = "S" if state.tls_context is not None and state.protocol == MAIL_PROTO_ESMTP \
            else ""
        auth = "A" if state.sasl_username and state.protocol == MAIL_PROTO_ESMTP else ""
        self.out(record.NORM, "Received: from %s (%s [%s])"
                 % (state.helo_name or state.name, state.name, state.rfc_addr))
        if ctx.sasl_auth_header and state.sasl_username:
            self.out(record.NORM, "\t(Authenticated sender: %s)" % state.sasl_username)
        date = mail_date(state.arrival_time)
        if state.rcpt_count == 1 and state.recipient is not None:
            self.out(record.NORM, "\tby %s (%s) with %s%s%s id %s"
                     % (ctx.myhostname, ctx.mail_name, with_protocol, sess, auth,
                        state.queue_id))
            self.out(record.NORM, "\tfor <%s>; %s" % (quote_822_local(state.recipient), date))
        else:
            self.out(record.NORM, "\tby %s (%s) with %s%s%s id %s;"
                     % (ctx.myhostname, ctx.mail_name, with_protocol, sess, auth,
                        state.queue_id))
            self.out(record.NORM, "\t%s" % date)

    def content_record(self, rec_type, line):
        """One message line to cleanup, within message_size_limit."""
        state = self.state
        limit = self.ctx.message_limit
        if state.err:
            return
        if limit > 0 and limit - state.act_size < len(line) + 2:
            state.err = cu.STAT_SIZE
            msg.warn("%s: queue file size limit exceeded" % state.queue_id_or_noqueue())
            return
        state.act_size += len(line) + 2
        self.out(rec_type, line)

    async def receive_data_message(self):
        """receive_data_message(): the message up to the lone dot, dot-unstuffed."""
        state = self.state
        ctx = self.ctx
        chat = self.chat
        first = True
        prev_rec_type = None
        prev_got_bare_lf = 0
        bound = ctx.line_limit
        while True:
            line = chat.get_ready(bound)
            if line is not None:
                rec_type = record.NORM
            else:
                line, complete = await chat.get(bound)
                rec_type = record.NORM if complete else record.CONT
            got_bare_lf = chat.got_bare_lf
            if got_bare_lf & ctx.BARE_LF_REPLY_REJECT:
                state.err |= cu.STAT_BARE_LF
            try:
                if first:
                    if line.lstrip(b">").startswith(b"From "):
                        if not state.err:
                            self.out(rec_type, b"X-Mailbox-Line: " + line)
                        continue
                    first = False
                    if line[:1] in (b" ", b"\t"):
                        self.out(record.NORM, b"")
                if prev_rec_type != record.CONT and line[:1] == b".":
                    if len(line) == 1 and chat.detect_bare_lf & ctx.BARE_LF_WANT_STD_EOD \
                            and (got_bare_lf or prev_got_bare_lf):
                        continue
                    line = line[1:]
                    if not line:
                        break
                self.content_record(rec_type, line)
            finally:
                prev_rec_type = rec_type
                prev_got_bare_lf = got_bare_lf
        state.where = SMTPD_AFTER_EOM

    async def post_message_handling(self):
        """common_post_message_handling(): end-of-data restrictions, the extracted
        records, cleanup's verdict, and the reply."""
        state = self.state
        client = state.cleanup
        if not state.err:
            err = await self.check_reply("eod")
            if err is not None:
                await self.reply(err)
                self.mail_reset()
                self.rcpt_reset()
                return -1
        why = ""
        if not state.err:
            client.put(record.XTRA, b"")
            if state.saved_filter:
                client.put(record.FILT, state.saved_filter)
            if state.saved_redirect:
                client.put(record.RDR, state.saved_redirect)
            for bcc in state.saved_bcc:
                client.put(record.RCPT, bcc)
                client.put(record.ATTR, "notify_flags=%d" % DSN_NOTIFY_NEVER)
            if state.saved_flags:
                client.put(record.FLGS, "%d" % state.saved_flags)
            if not client.put(record.END, b"") or not client.flush():
                state.err = cu.STAT_WRITE
        if not state.err:
            status, why = client.finish()
            state.err = status
            if _is_smtp_reject(why):
                why = "".join(c if c in "\r\n" or 32 <= ord(c) < 127 or ord(c) > 127
                              else " " for c in why)
            else:
                why = msg.printable(why, " ")
        client.close()
        state.cleanup = None
        err = state.err
        reply = self._message_reply(err, why)
        await self.reply(reply)
        if not err:
            state.error_count = 0
            state.error_mask = 0
            state.junk_cmds = 0
        self.mail_reset()
        self.rcpt_reset()
        return 0 if not err else -1

    def _message_reply(self, err, why):
        state = self.state
        ctx = self.ctx
        if not err:
            if state.processing_bdat():
                return "250 2.0.0 Ok: %d bytes queued as %s" % (state.act_size, state.queue_id)
            return "250 2.0.0 Ok: queued as %s" % state.queue_id
        if err & cu.STAT_BARE_LF:
            self.log_whatsup("reject", "bare <LF> received")
            return "%d 5.5.2 %s Error: bare <LF> received" % (ctx.bare_lf_code, ctx.myhostname)
        if why and _is_smtp_reject(why):
            return why
        for bit in (cu.STAT_DEFER, cu.STAT_BAD, cu.STAT_SIZE, cu.STAT_HOPS, cu.STAT_CONT,
                    cu.STAT_WRITE):
            if not err & bit:
                continue
            detail = cu.stat_detail(bit)
            if bit == cu.STAT_BAD:
                return "%d %s Error: internal error %d" % (detail.smtp, detail.dsn, err)
            if bit in (cu.STAT_DEFER, cu.STAT_CONT) and why:
                return "%d %s" % (detail.smtp, why)
            return "%d %s Error: %s" % (detail.smtp, detail.dsn, detail.text)
        detail = cu.stat_detail(cu.STAT_BAD)
        return "%d %s Error: internal error %d" % (detail.smtp, detail.dsn, err)

def _is_smtp_reject(text):
    return len(text) >= 3 and text[0] in "45" and text[1:3].isdigit() \
        and (len(text) == 3 or text[3] in " -")


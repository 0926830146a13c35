"""The SMTP/LMTP conversation (Postfix's smtp/smtp_proto.c): greeting, EHLO (HELO
fallback) or LHLO, STARTTLS and AUTH through smtp_tls.py and smtp_sasl.py, then
XFORWARD (smtp_send_xforward_command), MAIL FROM, RCPT TO, DATA, the content, end of
data and QUIT (or, for a session kept for reuse, no QUIT). Address probes stop after
RCPT (or DATA): smtp_address_verify_target.

With PIPELINING, MAIL, every RCPT and DATA go out in one write and the replies are
read afterwards; the end of data and QUIT go out together too. Replies decide each
recipient's fate (state.py): 2xx after the end of data (one reply per accepted
recipient with LMTP) is `sent`, 4xx defers, 5xx bounces, with Postfix's texts
(`host X[addr] said: <reply> (in reply to RCPT TO command)`). A lost connection or a
timeout fails the recipients left, in the words of smtp_stream_except().
"""

from pyfix.common import msg
from pyfix.daemons.smtpd.ehlo import TABLE as EHLO_TABLE, ehlo_mask, str_ehlo_mask
from pyfix.daemons.smtpd.ehlo import MASK_SILENT

from pyfix.daemons.smtp import content, reuse
from pyfix.daemons.smtp.commands import (SMTPUTF8_FLAG_REQUESTED, added_headers,
                                         mail_command, mime_downgrade, rcpt_command,
                                         xforward_steps)
from pyfix.queue.deliver_request import DEL_REQ_TRACE_ONLY_MASK
from pyfix.daemons.smtp.session import SessionFailure, StreamFailure
from pyfix.daemons.smtp.state import now_tv

try:
    from pyfix.daemons.smtp import smtp_tls
except ImportError:             # not written yet: TLS level none
    smtp_tls = None
try:
    from pyfix.daemons.smtp import smtp_sasl
except ImportError:             # not written yet: no SASL
    smtp_sasl = None


# Per transaction step: the timeout parameter, the stage for error texts, and the
# name of the command in `(in reply to ...)` (xfer_timeouts, xfer_states, xfer_request).
STEPS = {
    "XFWD1": ("xforward_timeout", "sending XFORWARD name/address",
              "XFORWARD name/address command"),
    "XFWD2": ("xforward_timeout", "sending XFORWARD protocol/helo_name",
              "XFORWARD helo/protocol command"),
    "MAIL": ("mail_timeout", "sending MAIL FROM", "MAIL FROM command"),
    "RCPT": ("rcpt_timeout", "sending RCPT TO", "RCPT TO command"),
    "DATA": ("data_init_timeout", "sending DATA command", "DATA command"),
    "DOT": ("data_done_timeout",
            "sending end of data -- message may be sent more than once",
            "end of DATA command"),
    "ABORT": ("rset_timeout", "sending final RSET", "final RSET command"),
    "QUIT": ("quit_timeout", "sending QUIT", "QUIT command"),
}


def _said(session, reply, step):
    return "host %s said: %s (in reply to %s)" % (session.namaddr, reply.text,
                                                  STEPS[step][2])


def _refused(session, reply):
    return "host %s refused to talk to me: %s" % (session.namaddr, reply.text)


def _setup(session, params, step):
    session.timeout = params.get_time(STEPS[step][0])
    session.where = STEPS[step][1]


# ---- the greeting and the handshake (smtp_helo()) ----------------------------------

def smtp_helo(state):
    """Greeting, EHLO/HELO/LHLO, STARTTLS, AUTH: 0 when the session may carry mail."""
    session = state.session
    try:
        return _helo(state, session)
    except StreamFailure as failure:
        session.broken = True
        return state.stream_except(failure)
    except SessionFailure as failure:
        return state.stream_except(failure)


def _helo(state, session):
    params = state.params
    policy = None
    if smtp_tls is not None:
        policy = smtp_tls.session_policy(session)
        session.sock = _tls_step(session, smtp_tls.wrap_if_wrappermode, policy)
    session.where = "receiving the initial server greeting"
    session.timeout = params.get_time("helo_timeout")
    reply = session.read_reply()
    if reply.code // 100 != 2:
        if reply.code // 100 == 5 and params.get_bool("skip_5xx_greeting"):
            reply.dsn = "4" + reply.dsn[1:]
        return state.site_fail(session.host, reply, _refused(session, reply))
    esmtp = _greeting_words(state, session, reply)
    if not state.lmtp:
        if params.get_bool("always_send_ehlo"):
            esmtp = True
        if params.get_bool("never_send_ehlo"):
            esmtp = False
    else:
        esmtp = True
    if _handshake(state, session, esmtp) != 0:
        return -1
    if session.esmtp and _features(state, session) != 0:
        return -1
    if _check_smtputf8(state, session) != 0:
        return -1
    if smtp_tls is not None and _tls_step(session, smtp_tls.starttls_if_needed, policy):
        session.where = "performing the %s handshake" % ("LHLO" if state.lmtp else "EHLO")
        reply = session.ehlo()
        if reply.code // 100 != 2:
            return state.site_fail(session.host, reply, _refused(session, reply))
        if _features(state, session) != 0 or _check_smtputf8(state, session) != 0:
            return -1
    if smtp_sasl is not None:
        smtp_sasl.authenticate_if_needed(session)
    return 0


def _tls_step(session, step, policy):
    """A TLS step; after a failed handshake the connection is in no state for QUIT
    (Postfix's DONT_USE_FORBIDDEN_SESSION)."""
    try:
        return step(session, policy)
    except SessionFailure as failure:
        if hasattr(failure, "retry_plaintext"):         # smtp_tls.HandshakeFailure
            session.broken = True
        raise


def _greeting_words(state, session, reply):
    """Whether the greeting says ESMTP; warn when it has our own hostname."""
    text = "\n".join(reply.lines).lstrip("- \t\n")
    end = 0
    while end < len(text) and text[end] not in "- \t\n":
        end += 1
    words = text[end + 1:].split()          # after the reply code (mystrtok())
    esmtp = False
    for n, word in enumerate(words):
        if n == 0 and word.lower() == state.params.myhostname.lower():
            if state.loop_detect:
                msg.warn("host %s greeted me with my own hostname %s"
                         % (session.namaddrport, state.params.myhostname))
        elif word.upper() == "ESMTP":
            esmtp = True
    return esmtp


def _handshake(state, session, esmtp):
    if state.lmtp:
        session.where = "performing the LHLO handshake"
        reply = session.ehlo()
        if reply.code // 100 != 2:
            return state.site_fail(session.host, reply, _refused(session, reply))
        return 0
    session.where = "performing the EHLO handshake"
    if esmtp:
        reply = session.ehlo()
        if reply.code // 100 != 2:
            if reply.code == 421:
                return state.site_fail(session.host, reply, _refused(session, reply))
            session.esmtp = False
            session.features = {}
    if not session.esmtp:
        session.where = "performing the HELO handshake"
        reply = session.command("HELO %s" % session.helo_name)
        if reply.code // 100 != 2:
            return state.site_fail(session.host, reply, _refused(session, reply))
    return 0


def _features(state, session):
    """The EHLO reply: drop discarded keywords, check the server's name against our
    own, read the SIZE limit."""
    params = state.params
    request = state.request
    discard = ehlo_mask(params.get("discard_ehlo_keywords"))
    if discard and not discard & MASK_SILENT:
        msg.info("discarding EHLO keywords: %s" % str_ehlo_mask(discard))
    bits = dict(EHLO_TABLE)
    for keyword in list(session.features):
        if bits.get(keyword, 0) & discard:
            del session.features[keyword]
    first = session.ehlo_lines[0] if session.ehlo_lines else ""
    words = first[4:].replace("=", " ").split()
    if words and words[0].lower() == params.myhostname.lower() and state.loop_detect:
        msg.warn("host %s replied to HELO/EHLO with my own hostname %s"
                 % (session.namaddrport, params.myhostname))
        return state.site_fail(None, None, "mail for %s loops back to myself"
                               % request.nexthop,
                               dsn_status="5.4.6" if session.best_mx else "4.4.6")
    session.size_limit = 0
    if "SIZE" in session.features:
        limit = session.features["SIZE"].split()
        if limit:
            if not limit[0].isdigit():
                msg.warn('bad EHLO SIZE limit "%s" from %s'
                         % (limit[0], session.namaddrport))
            else:
                session.size_limit = int(limit[0])
    return 0


def _check_smtputf8(state, session):
    smtputf8 = state.request.values.get("smtputf8", 0)
    if "SMTPUTF8" not in session.features and smtputf8 & SMTPUTF8_FLAG_REQUESTED \
            and smtputf8 & ~SMTPUTF8_FLAG_REQUESTED:
        return state.mesg_fail(None, None, "SMTPUTF8 is required, but was not offered "
                               "by host %s" % session.namaddr, dsn_status="5.6.7")
    if "SMTPUTF8" in session.features and "8BITMIME" not in session.features:
        msg.info("host %s offers SMTPUTF8 support, but not 8BITMIME" % session.namaddr)
        session.features["8BITMIME"] = ""
    return 0


# ---- the mail transaction (smtp_xfer(), smtp_loop()) --------------------------------

def smtp_xfer(state):
    """Send the message to this server (smtp_xfer()); the recipients' fates are
    recorded in state."""
    session = state.session
    request = state.request
    if session.size_limit and session.size_limit < request.data_size:
        state.mesg_fail(None, None, "message size %d exceeds size limit %d of server %s"
                        % (request.data_size, session.size_limit, session.namaddr),
                        dsn_status="5.3.4")
        state.complete_session = True
        return 0
    transaction = Transaction(state, session)
    try:
        transaction.run()
    except StreamFailure as failure:
        session.broken = True
        if transaction.sending_mail:
            return state.stream_except(failure)
        return -1
    except SessionFailure as failure:
        return state.stream_except(failure)
    return 0


def smtp_quit(state):
    """QUIT after a failed handshake; the reply is read only when
    smtp_skip_quit_response is off, and errors are ignored."""
    session = state.session
    params = state.params
    try:
        _setup(session, params, "QUIT")
        session.send_line("QUIT")
        if not params.get_bool("skip_quit_response"):
            session.read_reply()
    except SessionFailure:
        session.broken = True
    return 0


class Transaction:
    """MAIL, RCPT..., DATA, content, end of data, QUIT (smtp_loop())."""

    def __init__(self, state, session):
        self.state = state
        self.session = session
        self.params = state.params
        self.request = state.request
        self.pipelining = "PIPELINING" in session.features
        self.rcpts = list(state.todo)
        self.mail_rejected = False
        self.nrcpt = 0                  # accepted recipients; -1 after DATA failed
        self.survivors = []             # LMTP: who gets an end-of-data reply
        self.sending_mail = True        # SENDING_MAIL: before the end-of-data reply

    def _reply(self, step):
        _setup(self.session, self.params, step)
        return self.session.read_reply()

    def run(self):
        request = self.request
        request.stats.reuse_count = self.session.reuse_count
        request.stats.conn_setup_done = now_tv()
        steps = xforward_steps(self.state, self.session)
        steps.append(("MAIL", mail_command(self.state, self.session), None))
        steps += [("RCPT", rcpt_command(self.state, self.session, rcpt), rcpt)
                  for rcpt in self.rcpts]
        target = self._verify_target()
        if target != "rcpt":
            steps.append(("DATA", "DATA", None))
        if self.pipelining:
            _setup(self.session, self.params, "MAIL")
            self.session.send(b"".join(self._encode(line) for _, line, _ in steps))
            data_reply = None
            for step, _, rcpt in steps:
                data_reply = self._handle(step, self._reply(step), rcpt)
        else:
            data_reply = None
            for step, line, rcpt in steps:
                if step == "RCPT" and self.mail_rejected \
                        or step == "DATA" and self.nrcpt == 0:
                    return self._abort()
                _setup(self.session, self.params, step)
                self.session.send_line(line)
                data_reply = self._handle(step, self._reply(step), rcpt)
        if target == "rcpt" or self.nrcpt < 0 or self.mail_rejected and data_reply is None:
            return self._abort()
        if target == "data":
            return self._verified_at_data(data_reply)
        self._send_content_and_dot(data_reply)

    def _verify_target(self):
        """For an address probe (sendmail -bv, address verification), the step whose
        2xx reply proves the address (smtp_address_verify_target): "rcpt", "data";
        None for real mail."""
        if not self.request.flags & DEL_REQ_TRACE_ONLY_MASK:
            return None
        target = self.params.get("address_verify_target").lower()
        if target not in ("rcpt", "data"):
            msg.fatal("unknown %s value: %s" % (self.params.name("address_verify_target"),
                                                target))
        return target

    def _verified_at_data(self, data_reply):
        """A probe whose DATA was accepted: every recipient still unmarked is
        deliverable; the session ends without sending anything more."""
        self.sending_mail = False
        self.session.broken = True          # nothing more may be said on it
        if self.nrcpt <= 0:
            return
        data_reply.dsn = "2.0.0"
        for rcpt in self.rcpts:
            if not self.state.is_marked(rcpt):
                self.state.rcpt_done(data_reply, rcpt)

    def _encode(self, line):
        if msg.verbose:
            msg.info("> %s: %s" % (self.session.namaddrport, line))
        return line.encode("utf-8", "surrogateescape") + b"\r\n"

    def _handle(self, step, reply, rcpt):
        """One reply of the MAIL/RCPT/DATA batch; the DATA reply is returned when it
        invites the content."""
        state = self.state
        session = self.session
        if step in ("XFWD1", "XFWD2"):
            if reply.code // 100 != 2:
                msg.warn("host %s said: %s (in reply to %s)"
                         % (session.namaddrport, reply.text, STEPS[step][2]))
        elif step == "MAIL":
            if reply.code // 100 != 2:
                state.mesg_fail(session.host, reply, _said(session, reply, "MAIL"))
                self.mail_rejected = True
        elif step == "RCPT":
            if not self.mail_rejected:
                if reply.code // 100 == 2:
                    self.survivors.append(rcpt)
                    self.nrcpt += 1
                    if self._verify_target() == "rcpt":
                        state.rcpt_done(reply, rcpt)
                else:
                    state.rcpt_fail(rcpt, session.host, reply,
                                    _said(session, reply, "RCPT"))
        elif step == "DATA":
            if reply.code // 100 != 3:
                if self.nrcpt > 0:
                    state.mesg_fail(session.host, reply, _said(session, reply, "DATA"))
                self.nrcpt = -1
                return None
            return reply
        return None

    def _abort(self):
        """RSET and QUIT after nothing was left to send (SMTP_STATE_ABORT)."""
        session = self.session
        self.sending_mail = False
        _setup(session, self.params, "ABORT")
        skip_quit = self.params.get_bool("skip_quit_response")
        session.cached = reuse.may_cache(self.state, session)
        if session.cached:
            session.send_line("RSET")
            self._reply("ABORT")
            return
        if self.pipelining:
            session.send(self._encode("RSET") + self._encode("QUIT"))
            self._reply("ABORT")
        else:
            session.send_line("RSET")
            self._reply("ABORT")
            _setup(session, self.params, "QUIT")
            session.send_line("QUIT")
        if not skip_quit:
            self._reply("QUIT")

    def _send_content_and_dot(self, data_reply):
        session = self.session
        state = self.state
        params = self.params
        lost = False
        if self.nrcpt > 0:
            session.timeout = params.get_time("data_xfer_timeout")
            session.where = "sending message body"
            try:
                downgrade = mime_downgrade(params, session, self.request)
                for chunk in content.content_chunks(self.request,
                                                    params.get_int("line_length_limit"),
                                                    downgrade, added_headers(state)):
                    session.send(chunk)
                    if session.write_failed:
                        lost = True     # the server may still explain why
                        break
            except content.MimeError as exc:
                state.mesg_fail(None, None, exc.text, dsn_status=exc.status)
                session.broken = True
                return
            except content.ContentError as exc:
                msg.warn("%s: bad record type: %d in message content"
                         % (self.request.queue_id,
                            exc.rec_type[0] if exc.rec_type else -1))
                state.mesg_fail(None, None, "unreadable mail queue entry",
                                dsn_status="5.3.0")
                session.broken = True
                return
            except StreamFailure as failure:
                if failure.kind != "eof":
                    raise
                lost = True             # the server may still explain why
        skip_quit = params.get_bool("skip_quit_response")
        session.cached = not lost and reuse.may_cache(state, session)
        if not lost:
            _setup(session, params, "DOT")
            if self.pipelining and not session.cached:
                session.send(self._encode(".") + self._encode("QUIT"))
            else:
                session.send_line(".")
        if lost:
            session.timeout = params.get_time("data_done_timeout")
            session.where = "sending message body"
        self._end_of_data_replies(lost)
        self.sending_mail = False
        if lost:
            session.broken = True
            return
        if session.cached:
            return
        if not self.pipelining:
            _setup(session, params, "QUIT")
            session.send_line("QUIT")
        if not skip_quit:
            self._reply("QUIT")

    def _end_of_data_replies(self, lost):
        state = self.state
        session = self.session
        if lost:
            replies = [session.read_reply()]
        elif not state.lmtp or self.nrcpt <= 0:
            replies = [self._reply("DOT")]
        else:
            replies = []
        self.request.stats.deliver_done = now_tv()
        if not state.lmtp:
            if self.nrcpt > 0:
                reply = replies[0]
                if reply.code // 100 != 2:
                    state.mesg_fail(session.host, reply, _said(session, reply, "DOT"))
                else:
                    for rcpt in self.rcpts:
                        if not state.is_marked(rcpt):
                            state.rcpt_done(reply, rcpt)
            return
        for index, rcpt in enumerate(self.survivors if self.nrcpt > 0 else []):
            reply = replies[0] if lost and index == 0 else self._reply("DOT")
            self.request.stats.deliver_done = now_tv()
            if reply.code // 100 != 2:
                state.rcpt_fail(rcpt, session.host, reply, _said(session, reply, "DOT"))
            else:
                state.rcpt_done(reply, rcpt)

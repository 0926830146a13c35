"""sendmail's enqueue mode, -bm, the default (part of Postfix's src/sendmail/sendmail.c
with global/mail_stream.c's command flavour and rec_streamlf.c).

enqueue() checks authorized_submit_users, writes the envelope records, copies the
message from standard input (copy_message(): `From ` lines, line endings, the `.` line,
lines longer than line_length_limit as L records) and, with -t, takes the recipients
from the headers (HeaderExtractor); the records go to postdrop(1) through
PostdropStream, a socket pair that is postdrop's standard input and output, and
postdrop's status decides the exit code. postdrop_command() picks the postdrop to run
(see sendmail.py's notes); python_argv() and command_argv() run a pyfix command module
with this Python, here postdrop and in sendmail.py postqueue.
"""

import os
import pwd
import socket
import subprocess
import sys

from pyfix.common import maillog, msg
from pyfix.common import tok822
from pyfix.common.attr import AttrStream, FLAG_STRICT, INT, STR, STREQ
from pyfix.common.header_opts import HDR_OPT_EXTRACT, HDR_OPT_RECIP, HDR_OPT_RR
from pyfix.common.strings import CHARS_COMMA_SP, split_nameval, tokens
from pyfix.common.user_acl import check_user_acl_byuid
from pyfix.commands import postdrop as pd
from pyfix.commands.sendmail_options import (
    EX_DATAERR, EX_NOPERM, EX_OSERR, EX_SOFTWARE, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE,
    FLAG_AEOF, FLAG_XRCPT, TRACE_FLAGS_MASK, TRACE_ONLY_MASK, fatal)
from pyfix.queue import record as rec
from pyfix.queue.cleanup_user import STAT_BAD, STAT_NOPERM, STAT_OK, STAT_WRITE

POSTDROP_MODULE = "pyfix.commands.postdrop"

SM_FIX_EOL = {"always": "do", "strict": "dunno", "never": "dont"}


def fullname(uid):
    """The NAME environment variable, else the passwd comment up to `,`, `;` or `%`
    with `&` as the capitalised login name; None without a passwd entry."""
    name = maillog.safe_getenv("NAME")
    if name is not None:
        return name
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return None
    out = []
    for ch in entry.pw_gecos:
        if ch in ",;%":
            break
        if ch == "&":
            if entry.pw_name:
                out.append(entry.pw_name[0].upper() + entry.pw_name[1:])
        else:
            out.append(ch)
    return "".join(out)


def python_argv(code, args):
    """argv that runs `code` with this Python; sys.argv[1:] of the program are args."""
    return [sys.executable, "-P", "-c", code] + list(args)


def command_argv(module, progname, args):
    """Run a pyfix command module's main() under progname."""
    code = ("import sys; sys.argv = sys.argv[1:]; from %s import main; "
            "sys.exit(main())" % module)
    return python_argv(code, [progname] + list(args))


# -- the postdrop connection (mail_stream_command) ------------------------------------------

class PostdropStream:
    """postdrop's standard input and output: one end of a socket pair."""

    BUFSIZE = 65536

    def __init__(self, argv, display, env, sender, uid):
        self.display = display
        self.sender = sender
        self.uid = uid
        self.buffer = bytearray()
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(argv, stdin=theirs, stdout=theirs, env=env,
                                         close_fds=True, restore_signals=True)
        except OSError as exc:
            # What Postfix's child reports when its exec fails, then the parent.
            ours.close()
            theirs.close()
            msg.printf(msg.FATAL, "execvp %s: %s" % (argv[0], msg.strerror(exc)))
            msg.warn('command "%s" exited with status 1' % display)
            fatal("%s(%d): unable to execute %s: Application error"
                  % (sender, uid, display), EX_UNAVAILABLE)
        theirs.close()
        self.sock = ours
        self.attrs = AttrStream(ours, display)
        count, values = self.attrs.scan([(STREQ, "protocol", pd.PROTO_POSTDROP),
                                         (STR, "queue_id")], FLAG_STRICT)
        if count != 1:
            self.sock.close()
            status = self.proc.wait()
            if status != 0:
                msg.warn('command "%s" exited with status %d'
                         % (display, status if status > 0 else 128 - status))
            fatal("%s(%d): unable to execute %s: Application error"
                  % (sender, uid, display), EX_UNAVAILABLE)
        self.queue_id = values.get("queue_id")

    def put(self, rec_type, payload=b""):
        if isinstance(payload, str):
            payload = payload.encode("latin-1")
        self.buffer += rec.encode(rec_type, payload)
        if len(self.buffer) >= self.BUFSIZE:
            self.flush()

    def flush(self):
        try:
            self.sock.sendall(self.buffer)
        except OSError as exc:
            fatal("%s(%d): error writing queue file: %s"
                  % (self.sender, self.uid, msg.strerror(exc)))
        self.buffer.clear()

    def finish(self):
        """mail_stream_finish(): postdrop's status and reason."""
        status, why = STAT_WRITE, ""
        try:
            if self.buffer:
                self.sock.sendall(self.buffer)
                self.buffer.clear()
            count, values = self.attrs.scan([(INT, "status"), (STR, "reason")], FLAG_STRICT)
            if count == 2:
                status, why = values["status"], values["reason"]
        except OSError:
            pass
        self.sock.close()
        if self.proc.wait() != 0:
            msg.warn("mail_stream_cleanup: close error")
        return status, why


def postdrop_command(config, uid):
    """(argv, display text) of the postdrop to run (see the module notes)."""
    verbose = ["-v"] * msg.verbose
    if os.access("maildrop", os.W_OK | os.X_OK):
        argv = command_argv(POSTDROP_MODULE, "postdrop", ["-r"] + verbose)
        return argv, " ".join(["postdrop", "-r"] + verbose)
    path = "%s/postdrop" % config.get("command_directory")
    return [path, "-r"] + verbose, " ".join([path, "-r"] + verbose)


def export_env(config):
    """export_environment for the postdrop child (vstream_popen's EXPORT list); a
    pyfix postdrop also keeps the Python search path it may need."""
    env = {}
    for item in tokens(config.get("export_environment") or "", CHARS_COMMA_SP):
        if "=" in item:
            name, value, err = split_nameval(item)
            if not err:
                env[name] = value
        elif item in os.environ:
            env[item] = os.environ[item]
    for name in ("PYTHONPATH", "PYTHONHOME"):
        if name in os.environ and not maillog.unsafe():
            env.setdefault(name, os.environ[name])
    return env


# -- reading the message ----------------------------------------------------------------------

def streamlf_records(stream, limit):
    """rec_streamlf_get(): (N, line without newline), or (L, limit bytes of a longer
    line, or the unterminated last line)."""
    while True:
        data = stream.readline(limit)
        if not data:
            return
        if data.endswith(b"\n"):
            yield rec.NORM, data[:-1]
        else:
            yield rec.CONT, data


class HeaderExtractor:
    """The -t path: the MIME parser in header-only mode (MIME_OPT_DISABLE_MIME), the
    recipient headers collected, every record passed on to postdrop. The recipient
    headers are those with RECIP and EXTRACT (To:, Cc:, Bcc:), or, once one is seen,
    only their Resent- versions (RR)."""

    def __init__(self, dst, line_limit, header_limit):
        from pyfix.common import mime_state
        self.mime_state = mime_state
        self.dst = dst
        self.line_limit = line_limit
        self.recipients = []
        self.resent_recipients = []
        self.resent = False
        self.state = mime_state.MimeState(
            mime_state.OPT_DISABLE_MIME | mime_state.OPT_REPORT_TRUNC_HEADER,
            head_out=self.header, body_out=self.text, header_limit=header_limit)

    def header(self, header_class, header_info, text, offset):
        flags = header_info.flags if header_info is not None else 0
        resent = bool(flags & HDR_OPT_RR)
        if header_class == self.mime_state.HDR_PRIMARY \
                and flags & HDR_OPT_RECIP and flags & HDR_OPT_EXTRACT \
                and (not self.resent or resent):
            if resent:
                self.resent = True
                collect = self.resent_recipients
            else:
                collect = self.recipients
            tree = tok822.parse(text[len(header_info.name) + 1:])
            collect.extend(tok822.internalize_tree(node.head)
                           for node in tok822.grep(tree, tok822.ADDR))
        data = text.encode("latin-1")
        for line in data.split(b"\n"):
            while len(line) > self.line_limit:
                self.dst.put(rec.CONT, line[:self.line_limit])
                line = line[self.line_limit:]
            self.dst.put(rec.NORM, line)

    def text(self, rec_type, text, offset):
        self.dst.put(bytes((rec_type,)), text.encode("latin-1"))

    def update(self, rec_type, data):
        return self.state.update(rec_type[0], data.decode("latin-1"))

    def finish(self):
        return self.state.update(self.mime_state.REC_TYPE_END, "")

    def extracted(self):
        return self.resent_recipients if self.resent else self.recipients

    def error_text(self, errs):
        return self.mime_state.error_text(errs)


def enqueue(config, flags, encoding, dsn_envid, dsn_ret, dsn_notify, rewrite_context,
            sender, full_name, recipients, verp_delims):
    """Submit the message on standard input through postdrop (the records in the
    module notes of sendmail.py); a fatal error when it is not queued."""
    uid = os.getuid()
    denied = check_user_acl_byuid("authorized_submit_users",
                               config.get("authorized_submit_users"), uid)
    if denied is not None:
        fatal("User %s(%d) is not allowed to submit mail" % (denied, uid), EX_NOPERM)
    pd.limit_file_size(config)
    saved_sender = envelope_sender(sender, uid)
    who = "%s(%d)" % (saved_sender, uid)

    argv, display = postdrop_command(config, uid)
    dst = PostdropStream(argv, display, export_env(config), saved_sender, uid)

    if dsn_envid:
        dst.put(rec.ATTR, "envelope_id=%s" % dsn_envid)
    if dsn_ret:
        dst.put(rec.ATTR, "ret_flags=%d" % dsn_ret)
    dst.put(rec.ATTR, "rewrite_context=%s" % rewrite_context)
    if full_name is None:
        full_name = fullname(uid)
    if full_name is not None:
        dst.put(rec.FULL, _bytes(full_name))
    dst.put(rec.FROM, _bytes(saved_sender))
    if verp_delims and not saved_sender:
        fatal("%s: -V option requires non-null sender address" % who, EX_USAGE)
    if encoding:
        dst.put(rec.ATTR, "encoding=%s" % encoding)
    if flags & TRACE_FLAGS_MASK:
        dst.put(rec.ATTR, "trace_flags=%d" % (flags & TRACE_FLAGS_MASK))
    if verp_delims:
        dst.put(rec.VERP, _bytes(verp_delims))
    rcpt_count = 0
    for arg in recipients:
        found = tok822.grep(tok822.parse(arg), tok822.ADDR)
        for node in found:
            put_recipient(dst, _bytes(tok822.internalize_tree(node.head)), dsn_notify)
            rcpt_count += 1
        if not found:
            dst.put(rec.RCPT, b"")
            rcpt_count += 1

    dst.put(rec.MESG)
    extractor = None
    stdin = os.fdopen(0, "rb", closefd=False)
    try:
        if flags & TRACE_ONLY_MASK:
            if flags & FLAG_XRCPT:
                fatal("%s: -t option cannot be used with -bv" % who, EX_USAGE)
            put_probe_message(dst, saved_sender, recipients)
        else:
            if flags & FLAG_XRCPT:
                extractor = HeaderExtractor(dst, config.get_int("line_length_limit"),
                                            config.get_int("header_size_limit"))
            copy_message(config, flags, stdin, dst, extractor, who)
    except OSError as exc:
        fatal("%s: error reading input: %s" % (who, msg.strerror(exc)), EX_DATAERR)

    if extractor is not None:
        errs = extractor.finish()
        if errs:
            fatal("%s: unable to extract recipients: %s" % (who, extractor.error_text(errs)),
                  EX_DATAERR)
    dst.put(rec.XTRA)
    if extractor is not None:
        for address in extractor.extracted():
            put_recipient(dst, address, dsn_notify)
            rcpt_count += 1
    if rcpt_count == 0:
        if flags & FLAG_XRCPT:
            fatal("%s: No recipient addresses found in message header" % who, EX_USAGE)
        fatal("%s: Recipient addresses must be specified on the command line or via "
              "the -t option" % who, EX_USAGE)
    dst.put(rec.END)

    check_postdrop_status(dst, who)
    if flags & TRACE_FLAGS_MASK:
        sys.stdout.write("Mail Delivery Status Report will be mailed to <%s>.\n"
                         % saved_sender)
        sys.stdout.flush()


def envelope_sender(sender, uid):
    """The internal form of the -f/-r address (its first address, "" for none), or
    the login name of uid."""
    if sender is not None:
        found = tok822.grep(tok822.parse(sender), tok822.ADDR)
        if len(found) > 1:
            msg.warn("-f option specified malformed sender: %s" % sender)
        return tok822.internalize_tree(found[0].head) if found else ""
    login = pd.user_name(uid)
    if login is None:
        fatal("no login name found for user ID %d" % uid, EX_OSERR)
    return login


def put_recipient(dst, address, dsn_notify):
    if dsn_notify:
        dst.put(rec.ATTR, "notify_flags=%d" % dsn_notify)
    dst.put(rec.RCPT, address)


def put_probe_message(dst, sender, recipients):
    """-bv: a message of headers only (From:, Subject: probe, To: the arguments)."""
    if sender:
        dst.put(rec.NORM, _bytes("From: %s" % sender))
    dst.put(rec.NORM, b"Subject: probe")
    dst.put(rec.CONT, b"To:")
    for index, arg in enumerate(recipients):
        comma = "," if index + 1 < len(recipients) else ""
        dst.put(rec.NORM, _bytes("\t%s%s" % (arg, comma)))


def check_postdrop_status(dst, who):
    """postdrop's answer; anything but success is fatal, with the exit code of the
    most severe problem (the error handler turns it into 75 in the end)."""
    status, why = dst.finish()
    if status != STAT_OK:
        code = EX_SOFTWARE if status & STAT_BAD else EX_TEMPFAIL \
            if status & STAT_WRITE else EX_NOPERM if status & STAT_NOPERM \
            else EX_UNAVAILABLE
        fatal("%s: %s" % (who, why or pd.cleanup_strerror(status)), code)


def _bytes(text):
    return text.encode("utf-8", "surrogateescape")


def copy_message(config, flags, stdin, dst, extractor, who):
    fix_eol = config.get("sendmail_fix_line_endings")
    strip_cr = SM_FIX_EOL.get(fix_eol)
    if strip_cr is None:
        fatal("invalid sendmail_fix_line_endings value: %s" % fix_eol, EX_USAGE)
    line_limit = config.get_int("line_length_limit")
    skip_from = True
    prev_type = None
    for rec_type, data in streamlf_records(stdin, line_limit):
        prev, prev_type = prev_type, rec_type
        if strip_cr == "dunno" and rec_type == rec.NORM:
            strip_cr = "do" if data.endswith(b"\r") else "dont"
        if skip_from:
            if rec_type == rec.NORM and data.lstrip(b">").startswith(b"From "):
                continue
            skip_from = False
        if strip_cr == "do" and rec_type == rec.NORM:
            data = data.rstrip(b"\r")
        if flags & FLAG_AEOF and prev != rec.CONT and data == b".":
            break
        if extractor is not None:
            errs = extractor.update(rec_type, data)
            if errs:
                fatal("%s: unable to extract recipients: %s"
                      % (who, extractor.error_text(errs)), EX_DATAERR)
        else:
            dst.put(rec_type, data)

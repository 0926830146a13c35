"""The parts of a delivery status notification (Postfix's bounce/bounce_notify_util.c):
what bounce learns from the original queue file and the logfile (BounceInfo), and the
pieces of the RFC 3464 multipart/report it writes through post_mail (post_mail.py):

    header        From:/Subject:/To: of the template, References:, Auto-Submitted:,
                  the MIME headers, "This is a MIME-encapsulated message."
    boilerplate   the template's text, $names expanded
    diagnostic_log  one "<rcpt>: reason" paragraph per recipient, wrapped at 79
    header_dsn    message/delivery-status: Reporting-MTA, X-Postfix-Queue-ID, ...
    diagnostic_dsn  per recipient: Final-Recipient, Original-Recipient, Action, ...
    original      the returned message, or its headers (RET=HDRS, bounce_size_limit)
"""

import errno
import os
import time

from pyfix.common import msg
from pyfix.common.dsn_mask import DSN_RET_HDRS
from pyfix.common.header_opts import header_opts_find
from pyfix.common.mail_date import mail_date
from pyfix.common.mime_state import is_header
from pyfix.common.quote_822 import quote_822_local
from pyfix.queue import lock
from pyfix.queue import record as R
from pyfix.queue.bounce_log import BounceLog, Dsn, Recipient
from pyfix.queue.delivery_status import deliver_completed
from pyfix.queue.scan import mail_queue_open

from pyfix.daemons.bounce.templates import CLASS_DELAY, CLASS_FAILURE

SMTPUTF8_FLAG_REQUESTED = 1 << 0
MAILER_DAEMON = "MAILER-DAEMON"
WRAP_LENGTH = 79
WRAP_INDENT = 4
_RFC822_SPECIALS = " \t\r\n()<>@,;:\\\".[]"


def _text(data):
    return data.decode("utf-8", "surrogateescape")


def line_wrap(text, length, indent):
    """util/line_wrap.c: break text at blanks into lines of at most `length` columns;
    lines after the first are indented by `indent`. Returns the lines."""
    out = []
    cur_indent, cur_len = (-indent, length + indent) if indent < 0 else (0, length)
    start = 0
    word = 0
    first = True
    while word is not None:
        space = word
        while space < len(text) and text[space] not in " \t":
            space += 1
        if word > start and space - start > cur_len:
            line_len = word - start
            while line_len > 0 and text[start + line_len - 1].isspace():
                line_len -= 1
            out.append(" " * cur_indent + text[start:start + line_len])
            while word < len(text) and text[word].isspace():
                word += 1
            if first:
                cur_indent += indent
                cur_len -= indent
                first = False
            start = word
        word = space + 1 if space < len(text) else None
    out.append(" " * cur_indent + text[start:].rstrip(" \t\n\v\f\r"))
    return out


def _valid_utf8(text):
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


class Settings:
    """The main.cf values the notifications use (read once in post_init)."""

    def __init__(self, config):
        self.config = config
        self.myhostname = config.get("myhostname")
        self.mail_name = config.get("mail_name")
        self.smtputf8_enable = config.get_bool("smtputf8_enable")
        self.threaded_bounce = config.get_bool("enable_threaded_bounces")
        self.bounce_limit = config.get_int("bounce_size_limit")
        self.max_queue_time = config.get_time("maximal_queue_lifetime")


class BounceInfo:
    """bounce_mail_init()/bounce_mail_one_init(): the original message and logfile."""

    def __init__(self, settings, layout, service, queue_name, queue_id, encoding,
                 smtputf8, dsn_envid, template, log=None, one=None):
        self.settings = settings
        self.layout = layout
        self.service = service
        self.queue_name = queue_name
        self.queue_id = queue_id
        self.smtputf8 = smtputf8
        # The returned message's encoding decides the notice's, unless SMTPUTF8
        # support may put 8-bit addresses or host names in it anyway.
        if settings.smtputf8_enable or encoding == "8bit":
            self.mime_encoding = "8bit"
        elif encoding == "7bit":
            self.mime_encoding = "7bit"
        else:
            if encoding != "":
                msg.warn("%s: unknown encoding: %.200s" % (queue_id, encoding))
            self.mime_encoding = None
        self.dsn_envid = dsn_envid or None
        self.template = template
        self.sender = ""
        self.arrival_time = 0
        self.orig_offs = 0
        self.message_size = 0
        self.orig_msgid = ""
        self.log = log
        self.one = one                  # (Recipient, Dsn) of a ONE request
        self.mail_name = "".join("-" if ch in _RFC822_SPECIALS else ch
                                 for ch in settings.mail_name)
        self.mime_boundary = "%s.%d/%s" % (queue_id, int(time.time()), settings.myhostname)
        self.mailer_daemon = MAILER_DAEMON + "@" + settings.myhostname
        self.orig_fp = None
        self.reader = None
        try:
            self.orig_fp = mail_queue_open(layout, queue_name, queue_id, os.O_RDWR)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                msg.fatal("open %s %s: %s" % (service, queue_id, msg.strerror(exc)))
        if self.orig_fp is not None:
            self._read_envelope()

    @classmethod
    def open(cls, settings, layout, service, queue_name, queue_id, encoding, smtputf8,
             dsn_envid, template):
        """bounce_mail_init(): with the `service` logfile, when there is one."""
        log = None
        try:
            stream = mail_queue_open(layout, service, queue_id, os.O_RDONLY)
            log = BounceLog(stream, service)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                msg.fatal("open %s %s: %s" % (service, queue_id, msg.strerror(exc)))
        return cls(settings, layout, service, queue_name, queue_id, encoding, smtputf8,
                   dsn_envid, template, log=log)

    def _read_envelope(self):
        try:
            ok = lock.myflock(self.orig_fp.fileno(), lock.SHARED | lock.NOWAIT)
            error = "Resource temporarily unavailable"
        except OSError as exc:
            ok, error = False, msg.strerror(exc)
        if not ok:
            msg.fatal("cannot get shared lock on %s: %s" % (self.orig_fp.qpath, error))
        self.reader = R.RecordReader(self.orig_fp, self.orig_fp.qpath)
        threaded = self.settings.threaded_bounce
        all_headers_seen = False
        skip_segment = False
        in_envelope = True
        prev_type = None
        for rec_type, payload in self.reader:
            if rec_type == R.SIZE:
                if self.message_size == 0:
                    fields = _text(payload).split()
                    try:
                        self.message_size = max(0, int(fields[0]))
                        self.orig_offs = max(0, int(fields[1]))
                    except (IndexError, ValueError):
                        pass
            elif rec_type == R.TIME:
                if self.arrival_time == 0:
                    self.arrival_time = max(0, _atol(_text(payload)))
            elif rec_type == R.FROM:
                self.sender = _quote_bytewise(_text(payload) or self.mailer_daemon)
            elif rec_type == R.MESG:
                if not self.sender:
                    msg.warn("%s: no sender before message content record" % self.queue_id)
                self.orig_offs = self.reader.tell()
                if not threaded:
                    skip_segment = True
                else:
                    in_envelope = False
            elif not in_envelope and rec_type in (R.NORM, R.CONT):
                line = _text(payload)
                if not threaded or all_headers_seen or prev_type == R.CONT:
                    pass
                elif is_header(line):
                    self._message_id(line)
                elif line[:1].isspace():
                    pass
                else:
                    all_headers_seen = True
                    skip_segment = True
            elif rec_type == R.XTRA:
                if not self.orig_msgid and threaded:
                    all_headers_seen = True
                in_envelope = True
            prev_type = rec_type
            if self.orig_offs > 0 and self.arrival_time > 0 and self.sender \
                    and (not threaded or all_headers_seen or self.orig_msgid):
                break
            if skip_segment:
                try:
                    self.orig_fp.seek(self.orig_offs + self.message_size)
                except (OSError, ValueError):
                    pass
                skip_segment = False

    def _message_id(self, line):
        header = header_opts_find(line)
        if header is None or header.name.lower() != "message-id":
            return
        value = line.rstrip(" \t\r\n")[len(header.name) + 1:].lstrip(" \t\r\n\v\f")
        if value.startswith("<") and value.endswith(">"):
            self.orig_msgid = value
        else:
            msg.warn("%s: ignoring malformed Message-ID" % self.queue_id)

    # -- the logfile ---------------------------------------------------------------------

    def entries(self):
        """The logfile's (Recipient, Dsn) entries from its start; None without one."""
        if self.one is not None:
            return [self.one]
        if self.log is None:
            return None
        try:
            self.log.stream.seek(0)
        except OSError:
            return None
        return iter(self.log)

    def close(self):
        if self.log is not None:
            self.log.close()
        if self.orig_fp is not None:
            self.orig_fp.close()

    def delrcpt(self, entries):
        """bounce_delrcpt(): mark the logged recipients done in the queue file."""
        if self.orig_fp is None or entries is None:
            return
        for rcpt, _ in entries:
            if rcpt.offset > 0:
                deliver_completed(self.orig_fp, rcpt.offset)


def _quote_bytewise(address):
    """quote_822_local_flags(..., 0): without QUOTE_FLAG_8BITCLEAN Postfix escapes each
    byte of a non-ASCII character, which leaves no valid UTF-8 (X-Postfix-Sender then
    says rfc822)."""
    raw = address.encode("utf-8", "surrogateescape").decode("latin-1")
    return _text(quote_822_local(raw, 0).encode("latin-1"))


def _atol(text):
    text = text.lstrip(" \t\n\v\f\r")
    digits = ""
    for index, ch in enumerate(text):
        if ch.isdigit() or (index == 0 and ch in "+-"):
            digits += ch
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


# -- writing the notification -------------------------------------------------------------

def _not_7bit(info):
    return info.mime_encoding is not None and info.mime_encoding.lower() != "7bit"


def header(out, info, dest, postmaster_copy, hfrom_format):
    """bounce_header()."""
    template = info.template
    for line in template.headers(hfrom_format, quote_822_local(dest), postmaster_copy):
        out.line(line)
    if info.orig_msgid:
        out.line("References: %s" % info.orig_msgid)
        out.line("In-Reply-To: %s" % info.orig_msgid)
    out.line("Auto-Submitted: %s" % ("auto-generated" if postmaster_copy
                                     else "auto-replied"))
    out.line("MIME-Version: 1.0")
    out.line("Content-Type: multipart/report; report-type=delivery-status;")
    out.line('\tboundary="%s"' % info.mime_boundary)
    if info.mime_encoding:
        out.line("Content-Transfer-Encoding: %s" % (
            template.encoding if info.mime_encoding.lower() == "7bit"
            else info.mime_encoding))
    out.line("")
    out.line("This is a MIME-encapsulated message.")
    out.line("")
    out.line("--%s" % info.mime_boundary)
    out.line("Content-Description: Notification")
    if template.charset.lower() != "us-ascii":
        charset = template.charset
    else:
        charset = "utf-8" if _not_7bit(info) else "us-ascii"
    out.line("Content-Type: text/plain; charset=%s" % charset)
    if _not_7bit(info):
        out.line("Content-Transfer-Encoding: %s" % info.mime_encoding)
    out.line("")
    return out.ok()


def boilerplate(out, info):
    for line in info.template.expand(info.settings.config):
        out.line(line)
    return out.ok()


def _print_wrap(out, text):
    for line in line_wrap(text, WRAP_LENGTH, WRAP_INDENT):
        out.line(line)


def recipient_log(out, info, rcpt, dsn):
    """bounce_recipient_log(): `<rcpt> (expanded from <orig>): reason`, wrapped."""
    out.line("")
    if rcpt.orig_addr:
        _print_wrap(out, "<%s> (expanded from <%s>): %s"
                    % (rcpt.address, rcpt.orig_addr, dsn.reason))
    else:
        _print_wrap(out, "<%s>: %s" % (rcpt.address, dsn.reason))
    return out.ok()


def _selected(rcpt, notify_filter):
    return rcpt.dsn_notify == 0 or rcpt.dsn_notify & notify_filter


def diagnostic_log(out, info, notify_filter):
    """bounce_diagnostic_log(): the count of reported recipients, -1 on error."""
    entries = info.entries()
    count = 0
    if entries is None:
        if info.template.klass == CLASS_FAILURE:
            out.line("")
            out.line("\t--- Delivery report unavailable ---")
            count = 1
    else:
        for rcpt, dsn in entries:
            if _selected(rcpt, notify_filter):
                count += 1
                if not recipient_log(out, info, rcpt, dsn):
                    break
    return count if out.ok() else -1


def header_dsn(out, info):
    """bounce_header_dsn(): the per-message fields of message/delivery-status."""
    out.line("")
    out.line("--%s" % info.mime_boundary)
    out.line("Content-Description: Delivery report")
    requested = info.smtputf8 & SMTPUTF8_FLAG_REQUESTED
    out.line("Content-Type: message/%sdelivery-status" % ("global-" if requested else ""))
    if _not_7bit(info) and requested:
        out.line("Content-Transfer-Encoding: %s" % info.mime_encoding)
    out.line("")
    out.line("Reporting-MTA: dns; %s" % info.settings.myhostname)
    if info.dsn_envid:
        out.line("Original-Envelope-Id: %s" % info.dsn_envid)
    out.line("X-%s-Queue-ID: %s" % (info.mail_name, info.queue_id))
    if info.sender:
        out.line("X-%s-Sender: %s; %s" % (info.mail_name, _addr_type(info, info.sender),
                                          info.sender))
    if info.arrival_time > 0:
        out.line("Arrival-Date: %s" % mail_date(info.arrival_time))
    return out.ok()


def _addr_type(info, address):
    if info.smtputf8 and address and not address.isascii() and _valid_utf8(address):
        return "utf-8"
    return "rfc822"


def recipient_dsn(out, info, rcpt, dsn):
    """bounce_recipient_dsn(): the per-recipient fields."""
    out.line("")
    out.line("Final-Recipient: %s; %s" % (_addr_type(info, rcpt.address), rcpt.address))
    if rcpt.dsn_orcpt:
        out.line("Original-Recipient: %s" % rcpt.dsn_orcpt)
    elif rcpt.orig_addr:
        out.line("Original-Recipient: %s; %s" % (_addr_type(info, rcpt.orig_addr),
                                                 rcpt.orig_addr))
    out.line("Action: %s" % ("failed" if info.template.klass == CLASS_FAILURE
                             else dsn.action))
    out.line("Status: %s" % dsn.status)
    if dsn.mtype and dsn.mname:
        _print_wrap(out, "Remote-MTA: %s; %s" % (dsn.mtype, dsn.mname))
    if dsn.dtype and dsn.dtext:
        _print_wrap(out, "Diagnostic-Code: %s; %s" % (dsn.dtype, dsn.dtext))
    else:
        _print_wrap(out, "Diagnostic-Code: X-%s; %s" % (info.mail_name, dsn.reason))
    if info.template.klass == CLASS_DELAY:
        out.line("Will-Retry-Until: %s" % mail_date(info.arrival_time
                                                    + info.settings.max_queue_time))
    return out.ok()


def diagnostic_dsn(out, info, notify_filter):
    """bounce_diagnostic_dsn()."""
    entries = info.entries()
    count = 0
    if entries is None:
        if info.template.klass == CLASS_FAILURE:
            count = 1
    else:
        for rcpt, dsn in entries:
            if _selected(rcpt, notify_filter):
                count += 1
                if not recipient_dsn(out, info, rcpt, dsn):
                    break
    return count if out.ok() else -1


def original(out, info, headers_only):
    """bounce_original(): the returned message, or only its headers when RET=HDRS or
    when it is larger than bounce_size_limit (cutting it would break its MIME)."""
    limit = info.settings.bounce_limit
    if limit > 0 and info.orig_fp is not None \
            and (info.message_size <= 0 or info.message_size > limit):
        headers_only = DSN_RET_HDRS
    undelivered = info.template.klass in (CLASS_FAILURE, CLASS_DELAY)
    hdrs = headers_only == DSN_RET_HDRS
    out.line("")
    out.line("--%s" % info.mime_boundary)
    out.line("Content-Description: %s%s" % ("Undelivered " if undelivered else "",
                                            "Message Headers" if hdrs else "Message"))
    if info.smtputf8 & SMTPUTF8_FLAG_REQUESTED:
        out.line("Content-Type: message/%s" % ("global-headers" if hdrs else "global"))
    else:
        out.line("Content-Type: %s" % ("text/rfc822-headers" if hdrs else "message/rfc822"))
    if _not_7bit(info):
        out.line("Content-Transfer-Encoding: %s" % info.mime_encoding)
    out.line("")
    if not info.orig_offs or not _seek(info.orig_fp, info.orig_offs):
        out.line("\t--- Undelivered message unavailable ---")
        return out.ok()
    out.line("Return-Path: <%s>" % info.sender)
    reader = R.RecordReader(info.orig_fp, info.orig_fp.qpath)
    for rec_type, payload in reader:
        if rec_type not in (R.NORM, R.CONT):
            break
        if hdrs and not (payload[:1] in (b" ", b"\t") or is_header(_text(payload))):
            break
        if not out.record(rec_type, payload):
            break
    out.line("")
    out.line("--%s--" % info.mime_boundary)
    return out.ok()


def _seek(stream, offset):
    if stream is None:
        return False
    try:
        stream.seek(offset)
        return True
    except (OSError, ValueError):
        return False


__all__ = ["BounceInfo", "Settings", "Recipient", "Dsn", "line_wrap", "header",
           "boilerplate", "recipient_log", "diagnostic_log", "header_dsn", "recipient_dsn",
           "diagnostic_dsn", "original"]

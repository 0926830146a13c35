"""The per-message bounce, defer and trace logfiles (Postfix's global/bounce_log.c and the
writing half of bounce/bounce_append_service.c).

A logfile lives in the `bounce`, `defer` (hashed) or `trace` queue under the message's
queue ID, mode 0600. Each entry is a blank line, then `name=value` lines, then a blank
line:

    recipient=bob@example.net        (quoted RFC 5321 form; `<>` for the null address)
    original_recipient=...           (when it differs, ignoring case)
    offset=1234                      (of the recipient's record in the queue file)
    dsn_orig_rcpt=rfc822;...         notify_flags=<int>
    status=4.4.1                     action=delayed
    diag_type=... diag_text=...      mta_type=... mta_mname=...
    reason=connect to ...: Connection refused

With backwards_bounce_logfile_compatibility (on by default) an old-style line
`<recipient>: reason` comes first in the entry. Readers accept both styles, even mixed
in one entry, and fill in what a style lacks: a defer log's entries default to status
4.0.0 / action delayed, the others to 5.0.0 / failed.

Writers append one entry at a time under an exclusive flock, fsync, and cut the file back
to its old length when the append fails, so that a reader never sees half an entry.
"""

import errno
import os
from dataclasses import dataclass

from pyfix.common import msg
from pyfix.common.dsn_mask import dsn_notify_ok
from pyfix.common.quote_822 import quote_822_local
from pyfix.common.strings import SPACE, split_nameval

from pyfix.queue import lock
from pyfix.queue.mail_queue import DEFER
from pyfix.queue.scan import mail_queue_open

# Attribute names (mail_proto.h).
ATTR_RECIP = "recipient"
ATTR_ORCPT = "original_recipient"
ATTR_OFFSET = "offset"
ATTR_DSN_ORCPT = "dsn_orig_rcpt"
ATTR_DSN_NOTIFY = "notify_flags"
ATTR_DSN_STATUS = "status"
ATTR_DSN_ACTION = "action"
ATTR_DSN_DTYPE = "diag_type"
ATTR_DSN_DTEXT = "diag_text"
ATTR_DSN_MTYPE = "mta_type"
ATTR_DSN_MNAME = "mta_mname"
ATTR_WHY = "reason"


@dataclass
class Recipient:
    """One recipient as the delivery status machinery sees it (RECIPIENT)."""
    address: str = ""
    orig_addr: str = ""
    dsn_orcpt: str = ""
    dsn_notify: int = 0
    offset: int = 0


@dataclass
class Dsn:
    """A delivery status (DSN): status code, action, reason, diagnostic and remote MTA."""
    status: str = ""
    action: str = ""
    reason: str = ""
    dtype: str = ""
    dtext: str = ""
    mtype: str = ""
    mname: str = ""


def _text(data):
    return data.decode("utf-8", "surrogateescape")


def _atol(text):
    """atol(): leading blanks, an optional sign, digits; 0 when there are none."""
    body = text.lstrip(SPACE)
    sign = 1
    if body[:1] in ("+", "-") and body[:1]:
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    digits = ""
    for ch in body:
        if not "0" <= ch <= "9":
            break
        digits += ch
    return sign * int(digits) if digits else 0


class BounceLog:
    """A logfile opened for reading (bounce_log_open()); iterate for (Recipient, Dsn)."""

    def __init__(self, stream, queue_name):
        self.stream = stream
        self.path = getattr(stream, "qpath", None) or getattr(stream, "name", "(logfile)")
        if queue_name == DEFER:
            self.compat_status, self.compat_action = "4.0.0", "delayed"
        else:
            self.compat_status, self.compat_action = "5.0.0", "failed"

    @classmethod
    def open(cls, layout, queue_name, queue_id):
        """The logfile, or None when the message has none (or it cannot be opened)."""
        try:
            stream = mail_queue_open(layout, queue_name, queue_id, os.O_RDONLY)
        except OSError:
            return None
        return cls(stream, queue_name)

    def close(self):
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _line(self):
        raw = self.stream.readline()
        if not raw:
            return None
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        return raw

    def read(self):
        """The next entry as (Recipient, Dsn), or None at the end (bounce_log_read())."""
        rcpt = Recipient()
        dsn = Dsn()
        found = False
        while True:
            raw = self._line()
            if raw is None:
                return None
            if not raw:
                if found:
                    break
                continue
            line = msg.printable(_text(raw.split(b"\0", 1)[0]))
            found = True
            if line[:1].isascii() and line[:1].isalnum():
                self._attribute(line, rcpt, dsn)
                continue
            # An old-style record: `<recipient>: text`.
            if not line.startswith("<"):
                msg.warn("%s: malformed record: %.30s..." % (self.path, line))
                continue
            end = line.find(">: ", 1)
            if end < 0:
                msg.warn("%s: malformed record: %.30s..." % (self.path, line))
                continue
            rcpt.address = line[1:end] or "(MAILER-DAEMON)"
            dsn.reason = line[end + 2:].lstrip(SPACE)
        if not rcpt.address:
            rcpt.address = "(recipient address unavailable)"
        if not dsn.status:
            dsn.status = self.compat_status
        if not dsn.action:
            dsn.action = self.compat_action
        if not dsn.reason:
            dsn.reason = "(description unavailable)"
        return rcpt, dsn

    def _attribute(self, line, rcpt, dsn):
        name, value, err = split_nameval(line)
        if err:
            msg.warn("%s: malformed record: %s" % (self.path, err))
            return
        if name == ATTR_RECIP:
            rcpt.address = value or "(MAILER-DAEMON)"
        elif name == ATTR_ORCPT:
            rcpt.orig_addr = value or "(MAILER-DAEMON)"
        elif name == ATTR_DSN_ORCPT:
            rcpt.dsn_orcpt = value
        elif name == ATTR_DSN_NOTIFY:
            notify = _atol(value)
            if notify > 0 and dsn_notify_ok(notify):
                rcpt.dsn_notify = notify
        elif name == ATTR_OFFSET:
            offset = _atol(value)
            if offset > 0:
                rcpt.offset = offset
        elif name == ATTR_DSN_STATUS:
            dsn.status = value
        elif name == ATTR_DSN_ACTION:
            dsn.action = value
        elif name == ATTR_DSN_DTYPE:
            dsn.dtype = value
        elif name == ATTR_DSN_DTEXT:
            dsn.dtext = value
        elif name == ATTR_DSN_MTYPE:
            dsn.mtype = value
        elif name == ATTR_DSN_MNAME:
            dsn.mname = value
        elif name == ATTR_WHY:
            dsn.reason = value
        else:
            msg.warn("%s: unknown attribute name: %s, ignored" % (self.path, name))

    def __iter__(self):
        while True:
            entry = self.read()
            if entry is None:
                return
            yield entry


def format_entry(rcpt, dsn, oldlog_compat=True):
    """The text of one logfile entry, blank lines included."""
    lines = [""]
    address = quote_822_local(rcpt.address) if rcpt.address else ""
    if oldlog_compat:
        lines.append("<%s>: %s" % (address, dsn.reason))
    lines.append("%s=%s" % (ATTR_RECIP, address or "<>"))
    if rcpt.orig_addr and rcpt.address.casefold() != rcpt.orig_addr.casefold():
        lines.append("%s=%s" % (ATTR_ORCPT, quote_822_local(rcpt.orig_addr)))
    if rcpt.offset > 0:
        lines.append("%s=%d" % (ATTR_OFFSET, rcpt.offset))
    if rcpt.dsn_orcpt:
        lines.append("%s=%s" % (ATTR_DSN_ORCPT, rcpt.dsn_orcpt))
    if rcpt.dsn_notify:
        lines.append("%s=%d" % (ATTR_DSN_NOTIFY, rcpt.dsn_notify))
    if dsn.status:
        lines.append("%s=%s" % (ATTR_DSN_STATUS, dsn.status))
    if dsn.action:
        lines.append("%s=%s" % (ATTR_DSN_ACTION, dsn.action))
    if dsn.dtype and dsn.dtext:
        lines.append("%s=%s" % (ATTR_DSN_DTYPE, dsn.dtype))
        lines.append("%s=%s" % (ATTR_DSN_DTEXT, dsn.dtext))
    if dsn.mtype and dsn.mname:
        lines.append("%s=%s" % (ATTR_DSN_MTYPE, dsn.mtype))
        lines.append("%s=%s" % (ATTR_DSN_MNAME, dsn.mname))
    if dsn.reason:
        lines.append("%s=%s" % (ATTR_WHY, dsn.reason))
    lines.append("")
    return "\n".join(lines) + "\n"


def append(layout, queue_name, queue_id, rcpt, dsn, oldlog_compat=True,
           lock_tries=5, lock_delay=1):
    """Append one entry to the `queue_name` (bounce, defer or trace) logfile of queue_id
    (bounce_append_service()). Every failure is fatal, as in Postfix: once the log says a
    recipient was bounced or deferred, the system relies on it."""
    where = "%s %s" % (queue_name, queue_id)
    try:
        stream = mail_queue_open(layout, queue_name, queue_id,
                                 os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        msg.fatal("open file %s: %s" % (where, msg.strerror(exc)))
    with stream:
        fd = stream.fileno()
        if lock.deliver_flock(fd, lock_tries, lock_delay) is not None:
            msg.fatal("lock file %s: %s" % (where, os.strerror(errno.EAGAIN)))
        try:
            orig_length = os.lseek(fd, 0, os.SEEK_END)
        except OSError as exc:
            msg.fatal("seek file %s: %s" % (where, msg.strerror(exc)))
        data = format_entry(rcpt, dsn, oldlog_compat).encode("utf-8", "surrogateescape")
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, orig_length)
            except OSError as exc2:
                msg.fatal("truncate file %s: %s" % (where, msg.strerror(exc2)))
            msg.fatal("append file %s: %s" % (where, msg.strerror(exc)))
    return True

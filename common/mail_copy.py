"""Copying a queued message to a mailbox, file or command (Postfix's global/mail_copy.c).

mail_copy() writes the message content of a queue file (the `N`/`L` records from the
current position up to the `X` record) to dst, with the envelope headers the flags ask
for in front: the mbox `From sender  date` line (MAIL_COPY_FROM), `Return-Path:`,
`X-Original-To:` (when enable_original_recipient is on and there is one),
`Delivered-To:`. MAIL_COPY_QUOTE turns a `From ` line into `>From `, MAIL_COPY_DOT
doubles a leading dot (BSMTP), MAIL_COPY_BLANK adds an empty line at the end, and each
line ends with eol. With MAIL_COPY_TOFILE the file is fsync()ed, and truncated back to its
old length when anything failed, so that a failed delivery leaves no half message.

dst is closed here (its close can be the first report of a failed write). The result is
Postfix's mask of MAIL_COPY_STAT_CORRUPT / _READ / _WRITE, 0 when all went well; why
(a DsnBuf, or None) gets Postfix's reason (`error writing message: No space left on
device`) and why.errno the errno of the failure. configure(config) reads
enable_original_recipient and file_size_limit.
"""

import errno
import os
import resource
import time

from pyfix.common import msg
from pyfix.common.dot_lockfile import set_eugid
from pyfix.common.mbox_open import mbox_dsn
from pyfix.common.quote_822 import quote_822_local
from pyfix.common.sys_exits import EX_IOERR, sys_exits_detail
from pyfix.queue import record
from pyfix.queue.scan import mark_corrupt

MAIL_COPY_QUOTE = 1 << 0           # prepend > to From_
MAIL_COPY_TOFILE = 1 << 1          # fsync, ftruncate()
MAIL_COPY_FROM = 1 << 2            # prepend From_
MAIL_COPY_DELIVERED = 1 << 3       # prepend Delivered-To:
MAIL_COPY_RETURN_PATH = 1 << 4     # prepend Return-Path:
MAIL_COPY_DOT = 1 << 5             # escape dots - needed for bsmtp
MAIL_COPY_BLANK = 1 << 6           # append blank line
MAIL_COPY_ORIG_RCPT = 1 << 7       # prepend X-Original-To:
MAIL_COPY_MBOX = MAIL_COPY_FROM | MAIL_COPY_QUOTE | MAIL_COPY_TOFILE \
    | MAIL_COPY_DELIVERED | MAIL_COPY_RETURN_PATH | MAIL_COPY_BLANK | MAIL_COPY_ORIG_RCPT
MAIL_COPY_NONE = 0

MAIL_COPY_STAT_OK = 0
MAIL_COPY_STAT_CORRUPT = 1 << 0
MAIL_COPY_STAT_READ = 1 << 1
MAIL_COPY_STAT_WRITE = 1 << 2

MAIL_ADDR_MAIL_DAEMON = "MAILER-DAEMON"
_WRITE_CHUNK = 65536

_settings = {"enable_original_recipient": True, "file_size_limit": 51200000}


def configure(config):
    _settings["enable_original_recipient"] = config.get_bool("enable_original_recipient")
    _settings["file_size_limit"] = get_file_limit()


def set_mailbox_limit(config, name):
    """The delivery agent's mailbox limit parameter (mailbox_size_limit,
    virtual_mailbox_limit) as this process's file size limit (set_file_limit()). It may
    not be smaller than message_size_limit, or the queue file could not be updated;
    0 leaves the limit alone."""
    limit = config.get_long(name)
    if limit <= 0:
        return
    message_limit = config.get_long("message_size_limit")
    if message_limit <= 0:
        msg.fatal("configuration error: %s is limited but message_size_limit is "
                  "unlimited" % name)
    if limit < message_limit:
        msg.fatal("configuration error: %s is smaller than message_size_limit" % name)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    _settings["file_size_limit"] = limit


def get_file_limit():
    """get_file_limit(): the process's file size limit (RLIMIT_FSIZE; Postfix has no
    file_size_limit parameter), unlimited as a very large number."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return 2 ** 63 - 1 if limit == resource.RLIM_INFINITY else limit


def _text(value):
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def envelope_headers(sender, orig_rcpt, delivered, flags, eol):
    """The lines that mail_copy() puts in front of the message, as bytes."""
    out = []
    if flags & (MAIL_COPY_FROM | MAIL_COPY_RETURN_PATH):
        if sender is None:
            msg.panic("mail_copy: null sender")
        quoted = quote_822_local(sender)
        if flags & MAIL_COPY_FROM:
            stamp = time.asctime(time.localtime())[:24]
            out.append("From %s  %s%s" % (quoted if sender else MAIL_ADDR_MAIL_DAEMON,
                                          stamp, eol))
        if flags & MAIL_COPY_RETURN_PATH:
            out.append("Return-Path: <%s>%s" % (quoted if sender else "", eol))
    if flags & MAIL_COPY_ORIG_RCPT:
        if orig_rcpt is None:
            msg.panic("mail_copy: null orig_rcpt")
        # An empty original recipient almost certainly means that original recipient
        # processing was disabled.
        if _settings["enable_original_recipient"] and orig_rcpt:
            out.append("X-Original-To: %s%s" % (quote_822_local(orig_rcpt), eol))
    if flags & MAIL_COPY_DELIVERED:
        if delivered is None:
            msg.panic("mail_copy: null delivered")
        out.append("Delivered-To: %s%s" % (quote_822_local(delivered), eol))
    return _text("".join(out))


class _Writer:
    """Buffered writes to a raw descriptor that remember the first failure's errno."""

    def __init__(self, fd):
        self.fd = fd
        self.parts = []
        self.size = 0
        self.errno = 0

    def write(self, data):
        if self.errno:
            return False
        self.parts.append(data)
        self.size += len(data)
        return self.size < _WRITE_CHUNK or self.flush()

    def flush(self):
        if self.errno:
            return False
        data = memoryview(b"".join(self.parts))
        self.parts, self.size = [], 0
        try:
            while data:
                done = os.write(self.fd, data)
                data = data[done:]
        except OSError as exc:
            self.errno = exc.errno
            return False
        return True


def _stream_fd(dst):
    """dst's descriptor, after anything it buffered has been written."""
    if hasattr(dst, "flush"):
        dst.flush()
    return dst.fileno() if hasattr(dst, "fileno") else dst


def mail_copy(sender, orig_rcpt, delivered, src, dst, flags, eol, why):
    """Copy the message at src's position to dst (a binary stream or a descriptor,
    closed here); Postfix's MAIL_COPY_STAT_* mask, 0 on success."""
    headers = envelope_headers(sender, orig_rcpt, delivered, flags,
                               eol.decode() if isinstance(eol, bytes) else eol)
    eol = _text(eol)
    try:
        size = os.fstat(src.fileno()).st_size
    except OSError as exc:
        msg.fatal("fstat: %s" % msg.strerror(exc))
    if _settings["file_size_limit"] < size:
        msg.panic('file size limit %d < message size %d. This causes large messages to '
                  'be delivered repeatedly after they were submitted with "sendmail -t" '
                  'or after recipients were added with the Milter SMFIR_ADDRCPT request'
                  % (_settings["file_size_limit"], size))
    read_errno = 0
    corrupt = False
    try:
        fd = _stream_fd(dst)
        orig_length = os.lseek(fd, 0, os.SEEK_END) if flags & MAIL_COPY_TOFILE else 0
    except OSError as exc:
        if flags & MAIL_COPY_TOFILE:
            msg.fatal("seek file %s: %s" % (getattr(dst, "qpath", "(dst)"),
                                            msg.strerror(exc)))
        fd, orig_length = dst.fileno(), 0
        out = _Writer(fd)
        out.errno = exc.errno
    else:
        out = _Writer(fd)
    out.write(headers)

    reader = record.RecordReader(src, getattr(src, "qpath", None))
    prev_type = record.NORM
    rec_type = record.EOF
    while not out.errno:
        try:
            rec_type, payload = reader.get(seek_end=True)
        except OSError as exc:
            read_errno = exc.errno
            rec_type = record.ERROR
            break
        if rec_type not in (record.NORM, record.CONT):
            break
        if prev_type == record.NORM:
            if flags & MAIL_COPY_QUOTE and payload.startswith(b"From "):
                out.write(b">")
            if flags & MAIL_COPY_DOT and payload.startswith(b"."):
                out.write(b".")
        if payload:
            out.write(payload)
        if rec_type == record.NORM:
            out.write(eol)
        prev_type = rec_type
    if not out.errno:
        if rec_type != record.XTRA:
            number = -1 if rec_type is record.EOF else (-2 if rec_type == record.ERROR
                                                        else rec_type[0])
            msg.warn("bad record type: %d in message content" % number)
            _mark_corrupt(src)
            corrupt = True
        if prev_type != record.NORM:
            out.write(eol)
        if flags & MAIL_COPY_BLANK:
            out.write(eol)
    write_errno = out.errno if out.errno else (0 if out.flush() else out.errno)
    if flags & MAIL_COPY_TOFILE and not write_errno:
        try:
            os.fsync(fd)
        except OSError as exc:
            write_errno = exc.errno
    if flags & MAIL_COPY_TOFILE and (corrupt or read_errno or write_errno):
        try:
            os.ftruncate(fd, orig_length)
        except OSError:
            pass            # "Complain about ignored undo errors? So sue me."
    write_errno = _close(dst, fd) or write_errno
    return _result(corrupt, read_errno, write_errno, why)


def _mark_corrupt(src):
    """mark_corrupt() as the owner of the queue file: a delivery agent may be writing
    with the recipient's effective ids right now (Postfix switches to mail_owner)."""
    path = getattr(src, "qpath", getattr(src, "name", ""))
    saved = os.geteuid(), os.getegid()
    st = os.fstat(src.fileno())
    switch = os.getuid() == 0 and saved != (st.st_uid, st.st_gid)
    if switch:
        set_eugid(st.st_uid, st.st_gid)
    try:
        mark_corrupt(src.fileno(), path)
    finally:
        if switch:
            set_eugid(*saved)


def _close(dst, fd):
    """Close dst; the errno of a failing close (a delayed write error), else 0."""
    try:
        if hasattr(dst, "close"):
            dst.close()
        else:
            os.close(fd)
    except OSError as exc:
        return exc.errno
    return 0


def _result(corrupt, read_errno, write_errno, why):
    ioerr = sys_exits_detail(EX_IOERR).text
    if why is not None and read_errno:
        status = "4.3.0" if read_errno in (errno.EAGAIN, errno.ESTALE) else "5.3.0"
        why.unix(status, ioerr, "error reading message: %s" % os.strerror(read_errno))
        why.errno = read_errno
    if why is not None and write_errno:
        why.unix(mbox_dsn(write_errno, "5.3.0"), ioerr,
                 "error writing message: %s" % os.strerror(write_errno))
        why.errno = write_errno
    return ((MAIL_COPY_STAT_CORRUPT if corrupt else 0)
            | (MAIL_COPY_STAT_READ if read_errno else 0)
            | (MAIL_COPY_STAT_WRITE if write_errno else 0))

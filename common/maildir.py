"""Writing one message into a Maildir, as the recipient (the file part shared by
Postfix's local/maildir.c and virtual/maildir.c).

maildir_write() creates tmp/<time>.P<pid>.<host> (tmp/ made on the fly), copies the
message into it with mail_copy(), links it to new/<time>.V<dev>I<ino>M<usec>.<host>
(cur/ and new/ made on the fly) and removes the tmp/ name, all with the effective
uid/gid of the recipient when the caller is root, so that quotas apply. The result is
mail_copy()'s MAIL_COPY_STAT_* mask, why (a DsnBuf) having the reason and why.errno the
errno; the caller decides whether that bounces or defers (local: def_dsn 5.2.0,
virtual: 4.2.0) and logs `delivered to maildir`.
"""

import os
import time

from pyfix.common import msg
from pyfix.common.dot_lockfile import set_eugid
from pyfix.common.mail_copy import MAIL_COPY_STAT_WRITE, mail_copy
from pyfix.common.mbox_open import mbox_dsn


def maildir_write(path, src, sender, orig_rcpt, delivered, copy_flags, uid, gid,
                  def_dsn, why, hostname):
    """Deliver src (positioned at the message content) into the Maildir path (ending
    in `/`)."""
    start = time.time()
    start_sec, start_usec = int(start), int(start * 1000000) % 1000000
    newdir, tmpdir, curdir = path + "new/", path + "tmp/", path + "cur/"
    tmpfile = "%s%d.P%d.%s" % (tmpdir, start_sec, os.getpid(), hostname)
    saved = os.geteuid(), os.getegid()
    switch = os.getuid() == 0 and saved != (uid, gid)
    if switch:
        set_eugid(uid, gid)
    try:
        return _write(tmpfile, newdir, tmpdir, curdir, start_sec, start_usec, src,
                      sender, orig_rcpt, delivered, copy_flags, def_dsn, why, hostname)
    finally:
        if switch:
            set_eugid(*saved)


def _create(tmpfile, tmpdir):
    try:
        return os.open(tmpfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileNotFoundError:
        os.makedirs(tmpdir, 0o700, exist_ok=True)
        return os.open(tmpfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def _link(tmpfile, newfile, curdir, newdir):
    try:
        os.link(tmpfile, newfile)
    except FileNotFoundError:
        os.makedirs(curdir, 0o700, exist_ok=True)
        os.makedirs(newdir, 0o700, exist_ok=True)
        os.link(tmpfile, newfile)


def _write(tmpfile, newdir, tmpdir, curdir, start_sec, start_usec, src, sender,
           orig_rcpt, delivered, copy_flags, def_dsn, why, hostname):
    try:
        fd = _create(tmpfile, tmpdir)
    except OSError as exc:
        why.simple(mbox_dsn(exc.errno, def_dsn),
                   "create maildir file %s: %s" % (tmpfile, os.strerror(exc.errno)))
        why.errno = exc.errno
        return MAIL_COPY_STAT_WRITE
    try:
        st = os.fstat(fd)
    except OSError as exc:
        msg.fatal("fstat %s: %s" % (tmpfile, msg.strerror(exc)))
    newfile = "%s%d.V%xI%xM%d.%s" % (newdir, start_sec, st.st_dev, st.st_ino,
                                     start_usec, hostname)
    dst = os.fdopen(fd, "wb")
    status = mail_copy(sender, orig_rcpt, delivered, src, dst, copy_flags, "\n", why)
    if status == 0:
        try:
            _link(tmpfile, newfile, curdir, newdir)
        except OSError as exc:
            why.simple(mbox_dsn(exc.errno, def_dsn),
                       "create maildir file %s: %s" % (newfile, os.strerror(exc.errno)))
            why.errno = exc.errno
            status = MAIL_COPY_STAT_WRITE
    try:
        os.unlink(tmpfile)
    except OSError as exc:
        msg.warn("remove %s: %s" % (tmpfile, msg.strerror(exc)))
    return status

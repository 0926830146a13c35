"""Opening a mailbox file for exclusive access (Postfix's global/mbox_open.c and
mbox_conf.c).

mbox_open() takes the dotlock (`<path>.lock`) before it opens the file, opens or creates
it with safe_open() (no symlinks, no hard links, optionally chowned on creation), then
takes the kernel locks of the lock style: flock() and/or fcntl(). The style is a mask
from a *_delivery_lock parameter (mailbox_delivery_lock, virtual_mailbox_lock,
...; mbox_lock_mask()). On failure it returns None and fills the DsnBuf: the reason
text of the failing step and a status from mbox_dsn() (4.2.0 for a lock held by someone
else, 4.3.0 for a full file system, 5.2.2 for a full mailbox, else def_dsn).

mbox_release() removes the dotlock; the stream itself is closed by mail_copy(), which
must see the close() to know that the data was written (Postfix's comment about AFS).
"""

import errno
import os
import stat

from pyfix.common import msg
from pyfix.common.dot_lockfile import (MYFLOCK_STYLE_FCNTL, MYFLOCK_STYLE_FLOCK,
                                       deliver_flock, dot_lockfile, dot_unlockfile)
from pyfix.common.name_mask import name_mask
from pyfix.common.safe_open import safe_open

MBOX_FLOCK_LOCK = 1 << 0
MBOX_FCNTL_LOCK = 1 << 1
MBOX_DOT_LOCK = 1 << 2
MBOX_DOT_LOCK_MAY_FAIL = 1 << 3     # a dotlock that cannot be made is only a warning

_MBOX_MASK = (("flock", MBOX_FLOCK_LOCK), ("fcntl", MBOX_FCNTL_LOCK),
              ("dotlock", MBOX_DOT_LOCK))
EDQUOT = getattr(errno, "EDQUOT", errno.EFBIG)


def mbox_lock_mask(text):
    """The MBOX_*_LOCK bits of a lock list (`fcntl, dotlock`); unknown names are fatal
    with Postfix's `unknown mailbox_delivery_lock value` (whichever parameter it was)."""
    return name_mask("mailbox_delivery_lock", _MBOX_MASK, text)


def mbox_lock_names():
    return [name for name, _ in _MBOX_MASK]


def mbox_dsn(err, def_dsn):
    """The DSN status of a mailbox-related errno (mbox_dsn())."""
    if err in (errno.EAGAIN, errno.ESTALE):
        return "4.2.0"
    if err == errno.ENOSPC:
        return "4.3.0"
    if err in (EDQUOT, errno.EFBIG):
        return "5.2.2"
    return def_dsn


class Mbox:
    """An open, locked mailbox: path, fp (a binary stream, closed by mail_copy()), the
    locks held, and the file status at open time."""

    __slots__ = ("path", "fp", "locked", "st")

    def __init__(self, path, fp, locked, st):
        self.path, self.fp, self.locked, self.st = path, fp, locked, st


def _fail(why, err, def_dsn, reason=None):
    if reason is not None:
        why.reason = reason
    why.errno = err
    why.set_status(mbox_dsn(err, def_dsn))
    return None


def mbox_open(path, flags, mode, chown_uid, chown_gid, lock_style, def_dsn, why):
    """Open path for exclusive access; an Mbox, or None with why (a DsnBuf) filled."""
    st = None
    if lock_style & MBOX_DOT_LOCK:
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or stat.S_ISREG(st.st_mode):
            err, reason = dot_lockfile(path)
            if err == 0:
                locked = MBOX_DOT_LOCK
            elif err == errno.EEXIST:
                return _fail(why, errno.EAGAIN, def_dsn, reason)
            elif lock_style & MBOX_DOT_LOCK_MAY_FAIL:
                msg.warn(reason)
                locked = 0
            else:
                return _fail(why, err, def_dsn, reason)
        else:
            locked = 0
    else:
        locked = 0

    def undo_dotlock():
        if locked & MBOX_DOT_LOCK:
            dot_unlockfile(path)

    opened = safe_open(path, flags | os.O_NONBLOCK, mode, chown_uid, chown_gid)
    if opened.fd is None:
        undo_dotlock()
        return _fail(why, opened.errno, def_dsn, opened.why or os.strerror(opened.errno))
    fd = opened.fd
    os.set_inheritable(fd, False)
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        for mask, style in ((MBOX_FLOCK_LOCK, MYFLOCK_STYLE_FLOCK),
                            (MBOX_FCNTL_LOCK, MYFLOCK_STYLE_FCNTL)):
            if lock_style & mask:
                err, reason = deliver_flock(fd, style)
                if err:
                    undo_dotlock()
                    os.close(fd)
                    return _fail(why, err, def_dsn, reason)
        locked |= lock_style & (MBOX_FLOCK_LOCK | MBOX_FCNTL_LOCK)
        # safe_open() guarantees one hard link; another count means that someone
        # (GNU POP3D) replaced the file after we opened it.
        st = os.fstat(fd)
        if st.st_nlink != 1:
            msg.warn("%s: file status changed unexpectedly" % path)
            undo_dotlock()
            os.close(fd)
            return _fail(why, errno.EAGAIN, def_dsn,
                         "target file status changed unexpectedly")
    accmode = flags & os.O_ACCMODE
    fmode = "ab" if flags & os.O_APPEND else ("r+b" if accmode == os.O_RDWR else "wb")
    fp = os.fdopen(fd, fmode)
    fp.qpath = path
    return Mbox(path, fp, locked, st)


def mbox_release(mbox):
    """Give up exclusive access: remove the dotlock (the kernel locks go with close)."""
    if mbox.locked & MBOX_DOT_LOCK:
        dot_unlockfile(mbox.path)

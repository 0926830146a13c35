"""Opening a file that an attacker may have replaced: Postfix's util/safe_open.c.

safe_open() opens an existing file, or creates a new one, and refuses what Postfix refuses:
a file with more than one hard link, a directory, a symbolic link (except one owned by
root in a directory that only root can write, such as /dev/stdout), and a file that
changed between open() and lstat(). The result carries the open descriptor, or None with
Postfix's reason text (`cannot open file: Permission denied`, `file is a symbolic link`,
...) and the errno of the failure.
"""

import errno
import os
import stat


class SafeOpenResult:
    """fd (or None), why (reason text or None) and the errno of the failure."""

    __slots__ = ("fd", "why", "errno")

    def __init__(self, fd=None, why=None, err=0):
        self.fd = fd
        self.why = why
        self.errno = err


def sane_dirname(path):
    """The parent directory as Postfix's sane_dirname(): `.` for a bare name, `/` at top."""
    path = path.rstrip("/")
    if not path:
        return "/"
    if "/" not in path:
        return "."
    parent = path.rsplit("/", 1)[0].rstrip("/")
    return parent or "/"


def _root_owned_link_ok(path, link_st):
    """A symlink is accepted when root owns it and its directory is writable by root only."""
    if link_st.st_uid != 0:
        return False
    try:
        parent = os.stat(sane_dirname(path))
    except OSError:
        return False
    return parent.st_uid == 0 and not parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _open_exist(path, flags):
    try:
        fd = os.open(path, flags & ~(os.O_CREAT | os.O_EXCL))
    except OSError as exc:
        return SafeOpenResult(None, "cannot open file: %s" % os.strerror(exc.errno), exc.errno)
    why, err = _check_open_file(path, fd)
    if why is None:
        return SafeOpenResult(fd)
    os.close(fd)
    return SafeOpenResult(None, why, err)


def _check_open_file(path, fd):
    """(None, 0) when the open file is acceptable, else (why, errno)."""
    fst = os.fstat(fd)
    if fst.st_nlink != 1:
        return "file has %d hard links" % fst.st_nlink, errno.EPERM
    if stat.S_ISDIR(fst.st_mode):
        return "file is a directory", errno.EISDIR
    try:
        lst = os.lstat(path)
    except OSError as exc:
        return ("file status changed unexpectedly: %s" % os.strerror(exc.errno),
                errno.EPERM)
    if stat.S_ISLNK(lst.st_mode):
        if _root_owned_link_ok(path, lst):
            return None, 0
        return "file is a symbolic link", errno.EPERM
    if (fst.st_dev, fst.st_ino, fst.st_nlink, fst.st_mode) != \
            (lst.st_dev, lst.st_ino, lst.st_nlink, lst.st_mode):
        return "file status changed unexpectedly", errno.EPERM
    return None, 0


def _open_create(path, flags, mode, user, group):
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        return SafeOpenResult(None, "cannot create file exclusively: %s"
                              % os.strerror(exc.errno), exc.errno)
    if user != -1 or group != -1:
        try:
            os.fchown(fd, user, group)
        except OSError as exc:
            from pyfix.common import msg
            msg.warn("%s: cannot change file ownership: %s" % (path, msg.strerror(exc)))
            os.close(fd)
            return SafeOpenResult(None, None, exc.errno)
    return SafeOpenResult(fd)


def safe_open(path, flags, mode=0o600, user=-1, group=-1):
    """Open (O_CREAT: or create) path carefully; returns a SafeOpenResult."""
    if flags & (os.O_CREAT | os.O_EXCL) == 0:
        return _open_exist(path, flags)
    if flags & (os.O_CREAT | os.O_EXCL) == os.O_CREAT | os.O_EXCL:
        return _open_create(path, flags, mode, user, group)
    if not flags & os.O_CREAT:
        raise ValueError("safe_open: O_EXCL flag without O_CREAT flag")
    result = _open_exist(path, flags)
    if result.fd is None and result.errno == errno.ENOENT:
        result = _open_create(path, flags, mode, user, group)
        if result.fd is None and result.errno == errno.EEXIST:
            result = _open_exist(path, flags)
    return result

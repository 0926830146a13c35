"""Walking the queue and opening its files the way Postfix's readers do (Postfix's
util/scan_dir.c, global/mail_scan_dir.c, global/mail_open_ok.c, the opening part of
global/mail_queue.c, and the corrupt-file handling of qmgr_active.c and mark_corrupt.c).

A scan returns directory entries in the order the file system hands them out (readdir
order, as Postfix sees them: two programs scanning the same directory list the same
files in the same order). mail_scan_dir_next() descends into the one-character
subdirectories of a hashed queue and returns only file names. mail_open_ok() decides
whether a name is a message a reader may open: a valid queue ID, a regular file, owner
permission bits exactly rwx (complete), and it warns about a file with several links
that has not been renamed for a minute.
"""

import os
import stat
import time

from pyfix.common import msg

from pyfix.queue.mail_queue import ACTIVE, CORRUPT, make_dirs, queue_id_ok, queue_name_ok

OPEN_YES = 1
OPEN_NO = 2

MODE_CORRUPT = 0o400            # owner read only: a delivery agent found the file damaged
_LINK_GRACE = 60


class ScanDir:
    """A depth-first walk over a directory tree, one level at a time (scan_dir).

    next() gives the next name (not `.` or `..`) of the current directory, or None at
    its end; push(name) enters a subdirectory, pop() returns to its parent (False when
    the top directory was closed); path() is the current directory's path.
    """

    def __init__(self, path):
        self._stack = []
        self.push(path)

    def path(self):
        return self._stack[-1][0]

    def push(self, name):
        path = name if not self._stack else "%s/%s" % (self.path(), name)
        try:
            entries = os.scandir(path)
        except OSError as exc:
            msg.fatal("scan_dir_push: open directory %s: %s" % (path, msg.strerror(exc)))
        if msg.verbose > 1:
            msg.info("scan_dir_push: open %s" % path)
        self._stack.append((path, entries))

    def pop(self):
        if not self._stack:
            return False
        path, entries = self._stack.pop()
        entries.close()
        if msg.verbose > 1:
            msg.info("scan_dir_pop: close %s" % path)
        return bool(self._stack)

    def next(self):
        if not self._stack:
            return None
        path, entries = self._stack[-1]
        try:
            for entry in entries:
                if msg.verbose > 1:
                    msg.info("scan_dir_next: found %s" % entry.name)
                return entry.name
        except OSError as exc:
            msg.fatal("scan_dir_next: read directory %s: %s" % (path, msg.strerror(exc)))
        return None

    def close(self):
        while self._stack:
            self.pop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def mail_scan_dir_next(scan):
    """The next file name of a (possibly hashed) queue: one-character names are taken
    for hash subdirectories and entered, without a stat() of every entry."""
    while True:
        name = scan.next()
        if name is None:
            if not scan.pop():
                return None
        elif len(name) == 1:
            scan.push(name)
        else:
            return name


def scan_queue(queue_name, recursive=True):
    """Every name in a queue directory (relative to the queue directory, the cwd),
    descending into hash subdirectories unless recursive is False. A name returned
    twice in a row (a readdir loop) ends the scan with Postfix's warning."""
    scan = ScanDir(queue_name)
    step = mail_scan_dir_next if recursive else ScanDir.next
    saved = None
    try:
        while True:
            name = step(scan)
            if name is None:
                return
            if name == saved:
                msg.warn("readdir loop on queue %s id %s" % (queue_name, name))
                return
            saved = name
            yield name
    finally:
        scan.close()


def mail_open_ok(layout, queue_name, queue_id):
    """(OPEN_YES or OPEN_NO, lstat result or None, path) as mail_open_ok() decides."""
    if not queue_name_ok(queue_name):
        msg.warn("bad mail queue name: %s" % queue_name)
        return OPEN_NO, None, None
    if not queue_id_ok(queue_id):
        return OPEN_NO, None, None
    path = layout.path(queue_name, queue_id)
    try:
        st = os.lstat(path)
    except OSError as exc:
        if not isinstance(exc, FileNotFoundError):
            msg.warn("%s: %s" % (path, msg.strerror(exc)))
        return OPEN_NO, None, path
    if not stat.S_ISREG(st.st_mode):
        msg.warn("%s: uid %d: not a regular file" % (path, st.st_uid))
        return OPEN_NO, st, path
    if st.st_mode & stat.S_IRWXU != stat.S_IRWXU:
        return OPEN_NO, st, path
    if st.st_nlink > 1:
        if msg.verbose:
            msg.info("%s: uid %d: file has %d links" % (path, st.st_uid, st.st_nlink))
        elif st.st_ctime < time.time() - _LINK_GRACE:
            msg.warn("%s: uid %d: file has %d links" % (path, st.st_uid, st.st_nlink))
    return OPEN_YES, st, path


def mail_queue_open(layout, queue_name, queue_id, flags=os.O_RDONLY, mode=0o600):
    """Open a queue file as a binary stream (mail_queue_open()); with O_CREAT a missing
    hash subdirectory is created first. OSError when it cannot be opened."""
    path = layout.path(queue_name, queue_id)
    try:
        fd = os.open(path, flags, mode)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
        make_dirs(os.path.dirname(path))
        fd = os.open(path, flags, mode)
    return _fdopen(fd, flags, path)


def _fdopen(fd, flags, path):
    accmode = flags & os.O_ACCMODE
    if accmode == os.O_RDONLY:
        mode = "rb"
    elif accmode == os.O_WRONLY:
        mode = "ab" if flags & os.O_APPEND else "wb"
    else:
        mode = "r+b"
    stream = os.fdopen(fd, mode)
    stream.qpath = path         # VSTREAM_PATH: the name used in warnings
    return stream


def save_corrupt(layout, queue_id, from_queue=ACTIVE):
    """Move a damaged message out of the way into the corrupt queue, with qmgr's warning
    (qmgr_active_corrupt()). A file that is already gone is no error."""
    try:
        layout.rename(queue_id, from_queue, CORRUPT)
    except FileNotFoundError:
        return False
    except OSError as exc:
        msg.fatal("qmgr_active_corrupt: save corrupt file queue %s id %s: %s"
                  % (from_queue, queue_id, msg.strerror(exc)))
    msg.warn('saving corrupt file "%s" from queue "%s" to queue "%s"'
             % (queue_id, from_queue, CORRUPT))
    return True


def mark_corrupt(fd, path):
    """What a delivery agent does with a queue file it cannot parse (mark_corrupt()):
    warn and take away its complete bit, so that qmgr then saves it to corrupt/.
    Returns False, Postfix's "deferred" status for the delivery."""
    msg.warn("corrupted queue file: %s" % path)
    try:
        os.fchmod(fd, MODE_CORRUPT)
    except OSError as exc:
        msg.fatal("mark_corrupt: fchmod %s: %s" % (path, msg.strerror(exc)))
    return False

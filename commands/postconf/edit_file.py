"""Rewriting a configuration file safely (Postfix's util/edit_file.c).

The new content goes to `FILE.tmp` in the same directory, created mode 0600 and locked
exclusively, so that concurrent editors queue up behind each other; a `.tmp` left behind
by a crash (not empty, wrong mode, extra links) is removed and the open retried. commit()
sets the final mode, fsyncs and renames over the original while still holding the lock.

Two deliberate differences from Postfix: the final mode is the mode the original file had
(Postfix always makes it 0644), and a failed edit removes its `.tmp` file.
"""

import errno
import fcntl
import os
import stat

from pyfix.common import msg

SUFFIX = ".tmp"
TEMP_MODE = 0o600
DEFAULT_MODE = 0o644


class EditFile:
    """The `.tmp` output for path; use as a context manager and call commit() at the end."""

    def __init__(self, path):
        self.path = path
        self.tmp_path = path + SUFFIX
        self.fd = None
        self.parts = []
        self.final_mode = _current_mode(path)

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.fd is not None:
            # Not committed (a fatal error, typically): drop our half-written output.
            self.discard()
        return False

    def open(self):
        while True:
            try:
                fd = os.open(self.tmp_path, os.O_CREAT | os.O_WRONLY, TEMP_MODE)
            except OSError as exc:
                msg.fatal("open %s: %s" % (self.tmp_path, msg.strerror(exc)))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                msg.fatal("lock %s: %s" % (self.tmp_path, msg.strerror(exc)))
            if self._usable(fd):
                self.fd = fd
                return
            os.close(fd)

    def _usable(self, fd):
        """Whether fd is still our temporary file, in a state fit for reuse."""
        before = os.fstat(fd)
        try:
            after = os.stat(self.tmp_path)
        except FileNotFoundError:
            return False            # renamed or removed while we waited for the lock
        if (before.st_dev, before.st_ino) != (after.st_dev, after.st_ino):
            return False
        if not stat.S_ISREG(after.st_mode) or after.st_size > 0 or after.st_nlink > 1 \
                or stat.S_IMODE(after.st_mode) != TEMP_MODE:
            self._unlink()
            return False
        return True

    def _unlink(self):
        try:
            os.unlink(self.tmp_path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                msg.fatal("unlink %s: %s" % (self.tmp_path, msg.strerror(exc)))

    def write(self, text):
        # Buffered like a VSTREAM: a write error shows up when the file is closed.
        self.parts.append(text)

    def _flush(self):
        data = "".join(self.parts).encode("utf-8", "surrogateescape")
        self.parts = []
        while data:
            written = os.write(self.fd, data)
            data = data[written:]

    def commit(self):
        try:
            self._flush()
            os.fchmod(self.fd, self.final_mode)
            os.fsync(self.fd)
            os.rename(self.tmp_path, self.path)
        except OSError as exc:
            self.discard()
            msg.fatal("close %s%s: %s" % (self.path, SUFFIX, msg.strerror(exc)))
        os.close(self.fd)
        self.fd = None

    def discard(self):
        self._unlink()
        os.close(self.fd)
        self.fd = None


def _current_mode(path):
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return DEFAULT_MODE

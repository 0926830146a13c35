"""Opening a table to (re)build it, as postmap and postalias do (Postfix's
global/mkmap_open.c, mkmap_db.c, mkmap_cdb.c, mkmap_lmdb.c, mkmap_fail.c).

Each indexed type is rebuilt the way Postfix rebuilds it:

  hash, btree  in place: an existing name.db is opened and flock()ed exclusively before
               libdb truncates it (a zero-length file is removed first, with a warning),
               so readers, which take a shared lock per lookup, never see a half-built
               table; a new file is locked as soon as it exists. libdb's memory pool is
               berkeley_db_create_buffer_size meanwhile.
  cdb          into name.cdb.tmp, renamed over name.cdb when complete (maps/dict_cdb.py).
  lmdb         in place, in one write transaction that readers do not see until it
               commits; when the map runs out of room the transaction starts over in a
               bigger map and the whole source is read again (MkMap.build).
  fail         a table that fails every update (for tests).

Signals are held off while a table is rebuilt (sigdelay), except for lmdb, whose writes
are safe anyway.
"""

import errno
import fcntl
import os
import signal

from pyfix.common import msg
from pyfix.common.libc import libc
from pyfix.maps import dict_db, dict_lmdb
from pyfix.maps.dict import FLAG_DUP_WARN, FLAG_MULTI_WRITER, utf8_activate_if_needed
from pyfix.maps.dict_db import flock
from pyfix.maps.dict_lmdb import BulkRestart
from pyfix.maps.types import opener

create_buffer_size = 16 * 1024 * 1024      # berkeley_db_create_buffer_size
M_PERTURB = -6                             # glibc mallopt()


def zero_fresh_memory(enable):
    """libdb writes pages with their unused tail as malloc() returned it. In Postfix's
    small C process that memory is fresh from the kernel, all zeros; in a Python
    process it holds old heap data, which would end up in the file. glibc's M_PERTURB
    with 0xff makes malloc() return zeroed memory, so that a table is the same file
    Postfix writes (except libdb's unique file id). Elsewhere this does nothing."""
    c_library = libc()
    if c_library is not None and hasattr(c_library, "mallopt"):
        c_library.mallopt(M_PERTURB, 0xFF if enable else 0)


def configure(config):
    """The main.cf settings of the file-based tables (Postfix's mail_params_init())."""
    global create_buffer_size
    dict_db.configure(config)
    dict_lmdb.configure(config)
    create_buffer_size = config.get_int("berkeley_db_create_buffer_size")


class MkMap:
    """A table open for rebuilding: append() entries, then close()."""

    def __init__(self, dict_type, path):
        self.dict_type = dict_type
        self.path = path
        self.dict = None
        self.multi_writer = False

    # hooks of the types that need them
    def before_open(self):
        pass

    def after_open(self):
        pass

    def after_close(self):
        pass

    def append(self, key, value):
        """Store an entry; the caller checks dict.error (postmap's "write error")."""
        self.dict.update(key, value)

    def close(self):
        self.dict.close()
        self.after_close()
        if not self.multi_writer:
            sigresume()

    def build(self, feed):
        """feed(self) appends every entry; close the table when done. A bulk lmdb
        transaction that had to start over makes feed() run again from the beginning."""
        while True:
            try:
                feed(self)
                self.close()
                return
            except BulkRestart:
                continue


class MkMapDb(MkMap):
    """hash: and btree: the lock around an in-place rebuild."""

    def before_open(self):
        dict_db.cache_size = create_buffer_size
        zero_fresh_memory(True)
        self.lock_file = self.path + ".db"
        self.lock_fd = -1
        try:
            self.lock_fd = os.open(self.lock_file, os.O_RDWR, 0o644)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                msg.fatal("open %s: %s" % (self.lock_file, msg.strerror(exc)))
            return
        flock(self.lock_fd, fcntl.LOCK_EX, "lock %s" % self.lock_file)
        st = os.fstat(self.lock_fd)
        if st.st_size == 0:
            if st.st_nlink > 0:
                try:
                    os.unlink(self.lock_file)
                except OSError as exc:
                    msg.fatal("cannot remove zero-length database file %s: %s"
                              % (self.lock_file, msg.strerror(exc)))
                msg.warn("removing zero-length database file: %s" % self.lock_file)
            os.close(self.lock_fd)
            self.lock_fd = -1

    def after_open(self):
        if self.lock_fd < 0:
            try:
                self.lock_fd = os.open(self.lock_file, os.O_RDWR, 0o644)
            except OSError as exc:
                msg.fatal("open lockfile %s: %s" % (self.lock_file, msg.strerror(exc)))
            flock(self.lock_fd, fcntl.LOCK_EX, "lock %s" % self.lock_file)

    def after_close(self):
        zero_fresh_memory(False)
        if self.lock_fd >= 0:
            try:
                os.close(self.lock_fd)
            except OSError as exc:
                msg.warn("close %s: %s" % (self.lock_file, msg.strerror(exc)))
            self.lock_fd = -1


MKMAP_TYPES = {
    "hash": MkMapDb,
    "btree": MkMapDb,
    "cdb": MkMap,
    "lmdb": MkMap,
    "fail": MkMap,
}

# -- signals ---------------------------------------------------------------------------

_saved_mask = None


def sigdelay():
    """Hold off all signals until sigresume()."""
    global _saved_mask
    if _saved_mask is None:
        _saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


def sigresume():
    global _saved_mask
    if _saved_mask is not None:
        mask, _saved_mask = _saved_mask, None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def mkmap_open(dict_type, path, open_flags, dict_flags):
    """Open type:path for rebuilding; a type that cannot be built is fatal."""
    mkmap_class = MKMAP_TYPES.get(dict_type)
    if mkmap_class is None or opener(dict_type) is None:
        if opener(dict_type) is not None:
            msg.fatal("unsupported dictionary type: %s does not support bulk-mode creation."
                      % dict_type)
        msg.fatal("unsupported dictionary type: %s. Is the postfix-%s package installed?"
                  % (dict_type, dict_type))
    if msg.verbose:
        msg.info("open %s %s" % (dict_type, path))
    mkmap = mkmap_class(dict_type, path)
    mkmap.before_open()
    sigdelay()
    table = opener(dict_type)(path, open_flags, dict_flags)
    _no_spectators(table)
    table.flags |= FLAG_DUP_WARN
    mkmap.multi_writer = bool(table.flags & FLAG_MULTI_WRITER)
    mkmap.dict = table
    mkmap.after_open()
    mkmap.dict = utf8_activate_if_needed(table, dict_flags)
    if mkmap.multi_writer:
        sigresume()
    return mkmap


def _no_spectators(table):
    """The builder neither locks per update nor watches the file for changes."""
    if hasattr(table, "lock_fd"):
        table.lock_fd = -1
    table.stat_path = None

"""hash: and btree: tables, Berkeley DB files (Postfix's util/dict_db.c).

The files are the ones Debian's postmap writes, through the same libdb (the berkeleydb
package builds against Debian's libdb-dev): a private environment in the file's directory
with a memory pool of berkeley_db_read_buffer_size (berkeley_db_create_buffer_size while
postmap builds), DB_HASH with 4096 expected elements or DB_BTREE, mode 0644 before umask.
A file differs from Postfix's only in the 20-byte unique file id that libdb stamps into
every new file.

Keys and values: postmap stores them with a trailing NUL (TRY1NULL); a table opened for
reading tries the key with the NUL, then without, and keeps whichever worked (Postfix's
TRY1NULL/TRY0NULL flags). Values read back stop at the first NUL. With FOLD_FIX the key is
ASCII-lowercased. With FLAG_LOCK each access takes a flock() on the database (shared to
read, exclusive to write), as Postfix's readers and writers do.
"""

import ctypes
import ctypes.util
import errno
import fcntl
import os
import time

from berkeleydb import db as bdb

from pyfix.common import msg
from pyfix.maps.dict import (ERR_NONE, FLAG_DUP_IGNORE, FLAG_DUP_REPLACE, FLAG_DUP_WARN,
                             FLAG_FIXED, FLAG_FOLD_FIX, FLAG_LOCK, FLAG_SYNC_UPDATE,
                             FLAG_TRY0NULL, FLAG_TRY1NULL, STAT_FAIL, STAT_SUCCESS, Dict,
                             SurrogateDict, lowercase)

HASH_NELEM = 4096                   # DICT_DB_NELM
ENCODING, ERRORS = "utf-8", "surrogateescape"

# dict_db_cache_size: berkeley_db_read_buffer_size, or the create size while postmap
# builds a table (maps/mkmap.py sets it, as Postfix's mkmap_db.c does).
cache_size = 128 * 1024


def configure(config):
    """The main.cf setting that readers use (Postfix's mail_params_init())."""
    global cache_size
    cache_size = config.get_int("berkeley_db_read_buffer_size")


def db_strerror(exc):
    """%m after a libdb call: strerror() of its result, as Postfix puts that in errno
    (libdb's own negative codes are "Unknown error -30975" there too)."""
    code = exc.args[0] if exc.args else 0
    if isinstance(code, int):
        return os.strerror(code)
    return str(exc)


class _LibdbOutput:
    """libdb reports some problems itself (a page checksum error, a file size that is
    not a multiple of the page size). Postfix leaves libdb's output alone, so those lines
    go to stderr; the berkeleydb package catches them for its exception texts instead.
    This points libdb's error output back at stderr, through libdb's own
    __env_set_errfile(), on the DB_ENV that the package's DBEnv object holds."""

    def __init__(self):
        self.get_errcall = self.set_errcall = self.set_errfile = self.stderr = None
        try:
            lib = load_library("libdb-5.3.so", "db-5.3")
            self.get_errcall = getattr(lib, "__env_get_errcall")
            self.set_errcall = getattr(lib, "__env_set_errcall")
            self.set_errfile = getattr(lib, "__env_set_errfile")
            self.stderr = ctypes.c_void_p.in_dll(ctypes.CDLL(None), "stderr")
        except (OSError, AttributeError, ValueError):
            self.get_errcall = None

    def _pointer(self, env):
        """The DB_ENV pointer after PyObject_HEAD, if it looks like one."""
        if self.get_errcall is None:
            return None
        offset = 2 * ctypes.sizeof(ctypes.c_ssize_t)
        pointer = ctypes.c_void_p.from_address(id(env) + offset)
        current = ctypes.c_void_p()
        self.get_errcall(pointer, ctypes.byref(current))
        return pointer if current.value else None

    def restore(self, env):
        """Output to stderr; returns the handle for silence()."""
        pointer = self._pointer(env)
        if pointer is not None:
            self.set_errcall(pointer, None)
            self.set_errfile(pointer, self.stderr)
        return pointer

    def silence(self, pointer):
        """No more output from this environment (it is about to be thrown away, and
        Postfix would have exited before libdb could complain about its closing)."""
        if pointer is not None:
            self.set_errfile(pointer, None)


_libdb_output = None


def load_library(soname, name):
    """A shared library by its usual file name, else as ctypes finds it (slower)."""
    try:
        return ctypes.CDLL(soname)
    except OSError:
        return ctypes.CDLL(ctypes.util.find_library(name) or soname)


def libdb_output():
    global _libdb_output
    if _libdb_output is None:
        _libdb_output = _LibdbOutput()
    return _libdb_output


def encode(text):
    return text.encode(ENCODING, ERRORS)


def decode(data):
    """A stored key or value as Postfix's SCOPY() sees it: up to the first NUL."""
    return data.decode(ENCODING, ERRORS).partition("\0")[0]


def flock(fd, operation, what):
    """myflock() with INTERNAL_LOCK (flock on Linux); failure is fatal with `what`."""
    while True:
        try:
            fcntl.flock(fd, operation)
            return
        except InterruptedError:
            continue
        except OSError as exc:
            msg.fatal("%s: %s" % (what, msg.strerror(exc)))


class DbDict(Dict):
    """An open Berkeley DB table."""

    def __init__(self, dict_type, db_path, open_flags, dict_flags, env, handle):
        super().__init__(db_path, open_flags, dict_flags | FLAG_FIXED)
        self.type = dict_type
        self.env = env
        self.db = handle
        self.fd = handle.fd()
        self.lock_fd = self.fd          # mkmap clears this: no locks while building
        self.cursor = None
        if not dict_flags & (FLAG_TRY1NULL | FLAG_TRY0NULL):
            self.flags |= FLAG_TRY1NULL | FLAG_TRY0NULL

    # -- locking -------------------------------------------------------------------

    def _lock(self, operation):
        if self.lock_fd >= 0:
            try:
                fcntl.flock(self.lock_fd, operation)
            except OSError as exc:
                msg.fatal("%s: %s dictionary: %s" % (
                    self.name, "unlock" if operation == fcntl.LOCK_UN else "lock",
                    msg.strerror(exc)))

    def _unlock(self):
        self._lock(fcntl.LOCK_UN)

    def _folded(self, key):
        return lowercase(key) if self.flags & FLAG_FOLD_FIX else key

    # -- the dictionary operations -------------------------------------------------

    def _read_error(self, exc):
        msg.fatal("error reading %s: %s" % (self.name, db_strerror(exc)))

    def lookup(self, key):
        self.error = ERR_NONE
        flags = self.flags
        data = key.encode(ENCODING, ERRORS)
        if flags & FLAG_FOLD_FIX:
            data = data.lower()
        if flags & FLAG_LOCK:
            self._lock(fcntl.LOCK_SH)
        get = self.db.get
        value = None
        try:
            if flags & FLAG_TRY1NULL:
                value = get(data + b"\0")
                if value is not None:
                    self.flags &= ~FLAG_TRY0NULL
            if value is None and self.flags & FLAG_TRY0NULL:
                value = get(data)
                if value is not None:
                    self.flags &= ~FLAG_TRY1NULL
        except bdb.DBNotFoundError:
            value = None
        except bdb.DBError as exc:
            self._read_error(exc)
        if flags & FLAG_LOCK:
            self._lock(fcntl.LOCK_UN)
        return None if value is None else value.decode(ENCODING, ERRORS).partition("\0")[0]

    def update(self, key, value):
        self.error = ERR_NONE
        key = self._folded(key)
        kdata, vdata = encode(key), encode(value)
        if self.flags & FLAG_TRY1NULL and self.flags & FLAG_TRY0NULL:
            self.flags &= ~FLAG_TRY0NULL
        if self.flags & FLAG_TRY1NULL:
            kdata += b"\0"
            vdata += b"\0"
        if self.flags & FLAG_LOCK:
            self._lock(fcntl.LOCK_EX)
        status = STAT_SUCCESS
        try:
            self.db.put(kdata, vdata,
                        flags=0 if self.flags & FLAG_DUP_REPLACE else bdb.DB_NOOVERWRITE)
        except bdb.DBKeyExistError:
            status = STAT_FAIL
        except bdb.DBError as exc:
            msg.fatal("error writing %s: %s" % (self.name, db_strerror(exc)))
        if status != STAT_SUCCESS:
            if self.flags & FLAG_DUP_IGNORE:
                pass
            elif self.flags & FLAG_DUP_WARN:
                msg.warn('%s: duplicate entry: "%s"' % (self.name, key))
            else:
                msg.fatal('%s: duplicate entry: "%s"' % (self.name, key))
        self._sync_update()
        if self.flags & FLAG_LOCK:
            self._unlock()
        return status

    def _del(self, data):
        try:
            self.db.delete(data)
            return STAT_SUCCESS
        except bdb.DBNotFoundError:
            return STAT_FAIL
        except bdb.DBError as exc:
            msg.fatal("error deleting from %s: %s" % (self.name, db_strerror(exc)))

    def delete(self, key):
        self.error = ERR_NONE
        data = encode(self._folded(key))
        if self.flags & FLAG_LOCK:
            self._lock(fcntl.LOCK_EX)
        status = STAT_FAIL
        if self.flags & FLAG_TRY1NULL:
            status = self._del(data + b"\0")
            if status == STAT_SUCCESS:
                self.flags &= ~FLAG_TRY0NULL
        if status != STAT_SUCCESS and self.flags & FLAG_TRY0NULL:
            status = self._del(data)
            if status == STAT_SUCCESS:
                self.flags &= ~FLAG_TRY1NULL
        self._sync_update()
        if self.flags & FLAG_LOCK:
            self._unlock()
        return status

    def _sync_update(self):
        if self.flags & FLAG_SYNC_UPDATE:
            try:
                self.db.sync()
            except bdb.DBError as exc:
                msg.fatal("%s: flush dictionary: %s" % (self.name, db_strerror(exc)))

    def _seek(self, first):
        if self.flags & FLAG_LOCK:
            self._lock(fcntl.LOCK_SH)
        try:
            record = self.cursor.first() if first else self.cursor.next()
        except bdb.DBNotFoundError:
            record = None
        except bdb.DBError as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            msg.fatal("error [%d] seeking %s: %s" % (code, self.name, db_strerror(exc)))
        if self.flags & FLAG_LOCK:
            self._unlock()
        return record

    def items(self):
        """(key, value) in database order (dict_db_sequence)."""
        self.error = ERR_NONE
        if self.cursor is None:
            self.cursor = self.db.cursor()
        record = self._seek(True)
        while record is not None:
            yield decode(record[0]), decode(record[1])
            record = self._seek(False)

    def close(self):
        if self.db is None:
            return
        if self.cursor is not None:
            self.cursor.close()
            self.cursor = None
        try:
            self.db.sync()
        except bdb.DBError as exc:
            msg.fatal("flush database %s: %s" % (self.name, db_strerror(exc)))
        try:
            self.db.close()
        except bdb.DBError as exc:
            msg.info("close database %s: %s (possible Berkeley DB bug)"
                     % (self.name, db_strerror(exc)))
        self.env.close()
        self.db = self.env = None
        self.fd = self.lock_fd = -1


def new_env(db_path):
    """A private environment (memory pool only) in the database's directory."""
    env = bdb.DBEnv()
    try:
        gbytes, nbytes, ncache = env.get_cachesize()
        if gbytes == 0 and nbytes < cache_size:
            env.set_cache_max(gbytes, cache_size)
            env.set_cachesize(gbytes, cache_size, ncache)
    except bdb.DBError as exc:
        msg.fatal("set DB cache size %d: %s" % (cache_size, db_strerror(exc)))
    home = os.path.dirname(db_path) or "."
    try:
        env.open(home, bdb.DB_INIT_MPOOL | bdb.DB_CREATE | bdb.DB_PRIVATE, 0)
    except bdb.DBError as exc:
        msg.fatal("open DB environment: %s" % db_strerror(exc))
    return env


def _close_quietly(handle, env):
    for thing in (handle, env):
        try:
            thing.close()
        except bdb.DBError:
            pass


def _db_flags(open_flags):
    flags = bdb.DB_FCNTL_LOCKING
    if open_flags == os.O_RDONLY:
        flags |= bdb.DB_RDONLY
    if open_flags & os.O_CREAT:
        flags |= bdb.DB_CREATE
    if open_flags & os.O_TRUNC:
        flags |= bdb.DB_TRUNCATE
    return flags


def _open_lock(dict_type, path, db_path, open_flags, dict_flags):
    """FLAG_LOCK: hold a shared lock on an existing file while it is opened."""
    try:
        lock_fd = os.open(db_path, open_flags & ~(os.O_CREAT | os.O_TRUNC), 0o644)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return -1
        return SurrogateDict(dict_type, path, open_flags, dict_flags,
                             "open database %s: %s" % (db_path, msg.strerror(exc)))
    flock(lock_fd, fcntl.LOCK_SH, "shared-lock database %s for open" % db_path)
    return lock_fd


def db_open(dict_type, path, open_flags, dict_flags, db_type):
    """dict_db_open(): path is the name without .db."""
    db_path = path + ".db"
    lock_fd = -1
    if dict_flags & FLAG_LOCK:
        lock_fd = _open_lock(dict_type, path, db_path, open_flags, dict_flags)
        if isinstance(lock_fd, Dict):
            return lock_fd
    try:
        env = new_env(db_path)
        handle = bdb.DB(env)
        output = libdb_output().restore(env)
        if db_type == bdb.DB_HASH:
            handle.set_h_nelem(HASH_NELEM)
        try:
            handle.open(os.path.basename(db_path), None, db_type, _db_flags(open_flags), 0o644)
        except bdb.DBError as exc:
            libdb_output().silence(output)
            failed = SurrogateDict(dict_type, path, open_flags, dict_flags,
                                   "open database %s: %s" % (db_path, db_strerror(exc)))
            _close_quietly(handle, env)
            return failed
    finally:
        if lock_fd >= 0:
            flock(lock_fd, fcntl.LOCK_UN, "unlock database %s for open" % db_path)
            os.close(lock_fd)
    table = DbDict(dict_type, db_path, open_flags, dict_flags, env, handle)
    table.watch_file(db_path, table.fd)
    os.set_inheritable(table.fd, False)
    _warn_if_stale(table, path, dict_flags)
    return table


def _warn_if_stale(table, path, dict_flags):
    if not dict_flags & FLAG_LOCK:
        return
    try:
        source_mtime = int(os.stat(path).st_mtime)
    except OSError:
        return
    if int(table.mtime) < source_mtime < time.time() - 100:
        msg.warn("database %s is older than source file %s" % (table.name, path))


def open_hash(name, open_flags, dict_flags):
    return db_open("hash", name, open_flags, dict_flags, bdb.DB_HASH)


def open_btree(name, open_flags, dict_flags):
    return db_open("btree", name, open_flags, dict_flags, bdb.DB_BTREE)

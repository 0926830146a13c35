"""lmdb: tables, OpenLDAP LMDB files (Postfix's util/dict_lmdb.c and util/slmdb.c).

The file is `name.lmdb`, one unnamed database, opened without a lock file (MDB_NOSUBDIR |
MDB_NOLOCK) and written in LMDB's 0.9 format, which Debian's liblmdb reads (the lmdb
package also carries a 1.0 engine; it is never used here). Keys and values carry a
trailing NUL as in hash: tables, with the same TRY1NULL/TRY0NULL reading.

Size handling is slmdb's: the map starts at lmdb_map_size (or the file's size plus a
little when the file is larger) and doubles when LMDB reports MDB_MAP_FULL; a map that
another process enlarged (MDB_MAP_RESIZED) is adopted. Each call retries a failed LMDB
operation at most once. A bulk build (postmap) runs in one transaction: when that
transaction runs out of room it is started again with a bigger map and the caller must
feed every update again, which BulkRestart signals (Postfix longjmp()s back to postmap's
read loop). Readers and writers lock the file with fcntl() locks under FLAG_LOCK.
"""

import fcntl
import os
import sys
import time

import lmdb

from pyfix.common import msg
from pyfix.maps.dict import (ERR_NONE, FLAG_BULK_UPDATE, FLAG_DUP_IGNORE, FLAG_DUP_REPLACE,
                             FLAG_DUP_WARN, FLAG_FIXED, FLAG_FOLD_FIX, FLAG_LOCK,
                             FLAG_MULTI_WRITER, FLAG_TRY0NULL, FLAG_TRY1NULL, STAT_FAIL,
                             STAT_SUCCESS, Dict, SurrogateDict, lowercase)
from pyfix.maps.dict_db import decode, encode

SUFFIX = ".lmdb"
SIZE_INCR = 2                       # the map doubles on MDB_MAP_FULL
SIZE_MAX = sys.maxsize              # SSIZE_T_MAX
API_RETRY_LIMIT = 2                 # one retry per call
BULK_RETRY_LIMIT = 2 * 8 * 8        # retries per bulk transaction
FUDGE = 10240
LMDB_ENGINE = 0                     # LMDB 0.9.x data format

map_size = 16777216                 # dict_lmdb_map_size (lmdb_map_size)


def configure(config):
    global map_size
    map_size = config.get_long("lmdb_map_size")


class BulkRestart(Exception):
    """The bulk transaction started over in a larger map: feed all updates again."""


class SlmdbError(Exception):
    """An LMDB error that retries did not cure; str() is mdb_strerror()."""


def mdb_strerror(exc):
    return getattr(exc, "reason", None) or str(exc)


class SharedEnv:
    """One LMDB environment per file and process. The lmdb package refuses to open a
    file twice in a process (LMDB's locks would clash; with MDB_NOLOCK there are none),
    while Postfix opens a table once per distinct set of flags, so tables on the same
    file share the environment; a read-only one is reopened for writing when a table
    that writes joins."""

    _open = {}

    def __init__(self, key, path, readonly, size):
        self.key = key
        self.path = path
        self.readonly = readonly
        self.users = 0
        self.env = self._env(readonly, size)

    def _env(self, readonly, size):
        return lmdb.open(self.path, map_size=size, subdir=False, lock=False,
                         readonly=readonly, mode=0o644, max_dbs=0, max_spare_txns=0,
                         lib_version=LMDB_ENGINE)

    @classmethod
    def acquire(cls, path, readonly, size):
        try:
            st = os.stat(path)
            key = (st.st_dev, st.st_ino)
        except OSError:
            key = None
        shared = cls._open.get(key) if key is not None else None
        if shared is None:
            shared = cls(key, path, readonly, size)
            if shared.key is None:
                st = os.stat(path)
                shared.key = (st.st_dev, st.st_ino)
            cls._open[shared.key] = shared
        elif shared.readonly and not readonly:
            current = shared.env.info()["map_size"]
            shared.env.close()
            shared.env = shared._env(False, max(size, current))
            shared.readonly = False
        shared.users += 1
        return shared

    def release(self):
        self.users -= 1
        if self.users == 0:
            self._open.pop(self.key, None)
            self.env.close()


class Slmdb:
    """Postfix's 'sane' LMDB layer: size limits, retries, bulk transactions."""

    def __init__(self, path, open_flags, readonly, bulk):
        self.open_flags = open_flags
        self.readonly = readonly
        self.bulk = bulk
        self.curr_limit = max(map_size, FUDGE)
        self.hard_limit = SIZE_MAX
        self._fit_to_file(path)
        self.shared = SharedEnv.acquire(path, readonly, self.curr_limit)
        self.api_retry_count = 0
        self.bulk_retry_count = 0
        self.notify = None
        self.saved_key = None
        try:
            self.txn = self.env.begin(write=not readonly)
            self._prepare()
        except lmdb.Error:
            self.shared.release()
            raise

    @property
    def env(self):
        return self.shared.env

    def _fit_to_file(self, path):
        try:
            size = os.stat(path).st_size
        except OSError:
            return
        if size > self.curr_limit - FUDGE:
            self.hard_limit = max(self.hard_limit, size)
            if size < self.hard_limit - FUDGE:
                self.curr_limit = size + FUDGE
            else:
                self.curr_limit = self.hard_limit

    def _prepare(self):
        """Empty the database for O_TRUNC; keep the transaction open only in bulk mode."""
        if self.open_flags & os.O_TRUNC:
            self.txn.drop(self.env.open_db(txn=self.txn), delete=False)
            if not self.bulk:
                txn, self.txn = self.txn, None
                txn.commit()
        elif not self.bulk:
            txn, self.txn = self.txn, None
            txn.abort()
        self.api_retry_count = 0

    def _abort(self, txn):
        if txn is not None:
            txn.abort()
        if txn is self.txn:
            self.txn = None

    def _recover(self, exc):
        """slmdb_recover(): True to retry the call; BulkRestart for a bulk build."""
        self.api_retry_count += 1
        if self.api_retry_count >= API_RETRY_LIMIT:
            return False
        if self.bulk:
            self.bulk_retry_count += 1
            if self.bulk_retry_count > BULK_RETRY_LIMIT:
                return False
        try:
            if not self._cure(exc):
                return False
            if self.bulk:
                self.txn = self.env.begin(write=not self.readonly)
                self._prepare()
        except lmdb.Error:
            return False
        if self.bulk:
            raise BulkRestart()
        return True

    def _cure(self, exc):
        if isinstance(exc, lmdb.MapFullError):
            if self.curr_limit < self.hard_limit // SIZE_INCR:
                self.curr_limit *= SIZE_INCR
            elif self.curr_limit < self.hard_limit:
                self.curr_limit = self.hard_limit
            else:
                return False
            self._notify("using size limit %d after MDB_MAP_FULL" % self.curr_limit)
            self.env.set_mapsize(self.curr_limit)
        elif isinstance(exc, lmdb.MapResizedError):
            self.env.set_mapsize(0)
            self.curr_limit = self.env.info()["map_size"]
            self._notify("using size limit %d after MDB_MAP_RESIZED" % self.curr_limit)
        elif isinstance(exc, lmdb.ReadersFullError):
            self._notify("pausing after MDB_READERS_FULL")
            time.sleep(1)
        else:
            return False
        return True

    def _notify(self, text):
        if self.notify is not None:
            self.notify(text)

    def _run(self, write, operation):
        """Run operation(txn) in the bulk transaction or a new one, with retries."""
        while True:
            txn = self.txn
            try:
                if txn is None:
                    txn = self.env.begin(write=write)
                result = operation(txn)
                if self.txn is None:
                    if write:
                        txn.commit()
                    else:
                        txn.abort()
                self.api_retry_count = 0
                return result
            except lmdb.Error as exc:
                self._abort(txn)
                if not self._recover(exc):
                    self.api_retry_count = 0
                    raise SlmdbError(mdb_strerror(exc)) from None

    def get(self, key):
        if self.txn is None:
            try:                        # the common case, without retry machinery
                txn = self.env.begin()
                try:
                    return txn.get(key)
                finally:
                    txn.abort()
            except lmdb.Error:
                pass
        return self._run(False, lambda txn: txn.get(key))

    def put(self, key, value, overwrite):
        """True when stored, False when the key existed (and overwrite was off)."""
        return self._run(True, lambda txn: txn.put(key, value, overwrite=overwrite))

    def delete(self, key):
        return self._run(True, lambda txn: txn.delete(key))

    def cursor_get(self, first):
        """The next (key, value), each step in its own transaction (MDB_NOLOCK)."""
        def step(txn):
            cursor = txn.cursor()
            if first:
                found = cursor.first()
            else:
                found = cursor.set_key(self.saved_key) and cursor.next()
            return cursor.item() if found else None
        record = self._run(False, step)
        self.saved_key = None if record is None else record[0]
        return record

    def close(self):
        try:
            if self.bulk and self.txn is not None:
                txn = self.txn
                try:
                    txn.commit()
                    self.txn = None
                except lmdb.Error as exc:
                    self._abort(txn)
                    if not self._recover(exc):
                        raise SlmdbError(mdb_strerror(exc)) from None
        finally:
            if not self.bulk or self.txn is None:
                self.shared.release()


class LmdbDict(Dict):
    """An open LMDB table."""

    type = "lmdb"

    def __init__(self, path, open_flags, dict_flags, slmdb, lock_fd):
        super().__init__(path, open_flags, dict_flags | FLAG_FIXED | FLAG_MULTI_WRITER)
        self.slmdb = slmdb
        self.fd = lock_fd
        self.lock_fd = lock_fd          # mkmap clears this: no locks while building
        if not dict_flags & (FLAG_TRY0NULL | FLAG_TRY1NULL):
            self.flags |= FLAG_TRY0NULL | FLAG_TRY1NULL
        if msg.verbose:
            slmdb.notify = lambda text: msg.info("database %s: %s" % (self.spec, text))
            msg.info("database %s: using size limit %d during open"
                     % (self.spec, slmdb.curr_limit))

    def _lock(self, operation, what="lock"):
        if self.lock_fd < 0:
            return
        try:
            fcntl.lockf(self.lock_fd, operation)
        except OSError as exc:
            msg.fatal("%s: %s dictionary: %s" % (self.name, what, msg.strerror(exc)))

    def _call(self, what, method, *args):
        try:
            return method(*args)
        except SlmdbError as exc:
            msg.fatal("error %s %s: %s" % (what, self.spec, exc))

    def lookup(self, key):
        self.error = ERR_NONE
        flags = self.flags
        data = encode(key)
        if flags & FLAG_FOLD_FIX:
            data = data.lower()
        if flags & FLAG_LOCK:
            self._lock(fcntl.LOCK_SH)
        get = self.slmdb.get
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
        except SlmdbError as exc:
            msg.fatal("error reading %s: %s" % (self.spec, exc))
        if flags & FLAG_LOCK:
            self._lock(fcntl.LOCK_UN, "unlock")
        return None if value is None else decode(value)

    def update(self, key, value):
        self.error = ERR_NONE
        if self.flags & FLAG_FOLD_FIX:
            key = lowercase(key)
        kdata, vdata = encode(key), encode(value)
        if self.flags & FLAG_TRY1NULL and self.flags & FLAG_TRY0NULL:
            self.flags &= ~FLAG_TRY0NULL
        if self.flags & FLAG_TRY1NULL:
            kdata += b"\0"
            vdata += b"\0"
        if self.flags & FLAG_LOCK:
            self._lock(fcntl.LOCK_EX)
        stored = self._call("updating", self.slmdb.put, kdata, vdata,
                            bool(self.flags & FLAG_DUP_REPLACE))
        status = STAT_SUCCESS if stored else STAT_FAIL
        if not stored:
            if self.flags & FLAG_DUP_IGNORE:
                pass
            elif self.flags & FLAG_DUP_WARN:
                msg.warn('%s: duplicate entry: "%s"' % (self.spec, key))
            else:
                msg.fatal('%s: duplicate entry: "%s"' % (self.spec, key))
        if self.flags & FLAG_LOCK:
            self._lock(fcntl.LOCK_UN, "unlock")
        return status

    def delete(self, key):
        self.error = ERR_NONE
        data = encode(key)
        if self.flags & FLAG_FOLD_FIX:
            data = data.lower()
        if self.flags & FLAG_LOCK:
            self._lock(fcntl.LOCK_EX)
        status = STAT_FAIL
        if self.flags & FLAG_TRY1NULL:
            if self._call("deleting from", self.slmdb.delete, data + b"\0"):
                status = STAT_SUCCESS
                self.flags &= ~FLAG_TRY0NULL
        if status != STAT_SUCCESS and self.flags & FLAG_TRY0NULL:
            if self._call("deleting from", self.slmdb.delete, data):
                status = STAT_SUCCESS
                self.flags &= ~FLAG_TRY1NULL
        if self.flags & FLAG_LOCK:
            self._lock(fcntl.LOCK_UN, "unlock")
        return status

    def items(self):
        self.error = ERR_NONE
        if self.slmdb.bulk:
            msg.fatal("%s: internal error: slmdb_cursor_get: bulk transaction is not supported"
                      % self.spec)
        first = True
        while True:
            if self.flags & FLAG_LOCK:
                self._lock(fcntl.LOCK_SH)
            record = self._call("seeking", self.slmdb.cursor_get, first)
            if self.flags & FLAG_LOCK:
                self._lock(fcntl.LOCK_UN, "unlock")
            if record is None:
                return
            first = False
            yield decode(record[0]), decode(record[1]) if record[1] else ""

    def close(self):
        if self.slmdb is None:
            return
        try:
            self.slmdb.close()
        except SlmdbError as exc:
            msg.fatal("error closing %s: %s" % (self.spec, exc))
        os.close(self.fd)
        self.slmdb = None
        self.fd = self.lock_fd = -1


def _lock_fd(mdb_path, readonly):
    return os.open(mdb_path, os.O_RDONLY if readonly else os.O_RDWR)


def open_lmdb(name, open_flags, dict_flags):
    """dict_lmdb_open(): name is the path without .lmdb."""
    mdb_path = name + SUFFIX
    readonly = open_flags == os.O_RDONLY
    bulk = bool(dict_flags & FLAG_BULK_UPDATE)
    try:
        slmdb = Slmdb(mdb_path, open_flags, readonly, bulk)
    except lmdb.Error as exc:
        return SurrogateDict("lmdb", name, open_flags, dict_flags,
                             "open database %s: %s" % (mdb_path, mdb_strerror(exc)))
    lock_fd = _lock_fd(mdb_path, readonly)
    os.set_inheritable(lock_fd, False)
    if bulk:
        for operation, what in ((fcntl.LOCK_EX, "lock"), (fcntl.LOCK_SH, "unlock")):
            try:
                fcntl.lockf(lock_fd, operation)
            except OSError as exc:
                msg.fatal("%s: %s dictionary: %s" % (mdb_path, what, msg.strerror(exc)))
    table = LmdbDict(name, open_flags, dict_flags, slmdb, lock_fd)
    table.watch_file(mdb_path, lock_fd)
    if dict_flags & FLAG_LOCK:
        try:
            source_mtime = int(os.stat(name).st_mtime)
        except OSError:
            source_mtime = None
        if source_mtime is not None and int(table.mtime) < source_mtime < time.time() - 100:
            msg.warn("database %s is older than source file %s" % (mdb_path, name))
    return table

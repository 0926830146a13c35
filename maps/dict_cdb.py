"""cdb: tables, constant databases (Postfix's util/dict_cdb.c with tinycdb).

The file format is written and read here rather than through a package: the format is
small and fixed (D. J. Bernstein's cdb, which tinycdb implements), and no well-kept Python
cdb package writes exactly what tinycdb writes. The file `name.cdb` is

    a table of contents: 256 (position, slot count) pairs, little-endian 32-bit words;
    the records: key length, value length, key, value, in the order they were added;
    256 hash tables, table i holding 2 * (records whose hash & 255 == i) slots of
    (hash, record position), each record placed at slot (hash >> 8) % slots or the next
    free one, in the order the records were added (empty tables have no slots).

The hash is h = 5381, then h = ((h << 5) + h) ^ byte for each byte, modulo 2**32. A
record whose key exists already is refused (the default, with a duplicate warning),
added anyway (-w: tinycdb's CDB_PUT_ADD; a lookup finds the first) or replaces the older
record, whose data is cut out of the file (-r: CDB_PUT_REPLACE). Unlike hash: tables,
cdb: tables store keys and values without a trailing NUL unless -N asks for one.

A table is built into `name.cdb.tmp` (locked while it is written) and renamed to
`name.cdb` when it is complete; readers map the file and never see a partial table.
Only O_RDONLY (query) and O_CREAT|O_TRUNC (build) opens exist.
"""

import errno
import fcntl
import mmap
import os
import struct
import time

from pyfix.common import msg
from pyfix.maps.dict import (ERR_NONE, FLAG_DUP_IGNORE, FLAG_DUP_REPLACE, FLAG_DUP_WARN,
                             FLAG_FIXED, FLAG_FOLD_FIX, FLAG_TRY0NULL, FLAG_TRY1NULL,
                             STAT_SUCCESS, Dict, SurrogateDict, lowercase)
from pyfix.maps.dict_db import encode, flock

SUFFIX = ".cdb"
TMP_SUFFIX = ".cdb.tmp"
TOC_SIZE = 2048
EPROTO = os.strerror(errno.EPROTO)
_PAIR = struct.Struct("<II")
_MASK = 0xFFFFFFFF


def cdb_hash(data):
    """The cdb hash; the low 32 bits of h * 33 ^ byte depend only on the low 32 bits of
    h, so one mask at the end does."""
    h = 5381
    for byte in data:
        h = (h * 33) ^ byte
    return h & _MASK


class CdbProtocolError(Exception):
    """The file is not a well-formed cdb (tinycdb's EPROTO)."""


class CdbReader:
    """Lookups in a mapped cdb file (tinycdb's cdb_init / cdb_find)."""

    def __init__(self, fd):
        size = os.fstat(fd).st_size
        if size < TOC_SIZE:
            raise CdbProtocolError()
        self.mem = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        self.size = size
        dend = _PAIR.unpack_from(self.mem, 0)[0]
        self.dend = TOC_SIZE if dend < TOC_SIZE else min(dend, size)

    def find(self, key):
        """The value of the first record with this key, or None."""
        klen = len(key)
        if klen >= self.dend:
            return None
        hval = cdb_hash(key)
        mem = self.mem
        pos, slots = _PAIR.unpack_from(mem, (hval << 3) & 2047)
        if not slots:
            return None
        todo = slots << 3
        if (slots > self.size >> 3 or pos < self.dend or pos > self.size
                or todo > self.size - pos):
            raise CdbProtocolError()
        start = pos
        end = start + todo
        slot = start + ((hval >> 8) % slots << 3)
        while todo:
            shash, rpos = _PAIR.unpack_from(mem, slot)
            if not rpos:
                return None
            if shash == hval:
                value = self._match(rpos, key, klen)
                if value is not None:
                    return value
            todo -= 8
            slot += 8
            if slot >= end:
                slot = start
        return None

    def _match(self, rpos, key, klen):
        if rpos > self.dend - 8:
            raise CdbProtocolError()
        rklen, vlen = _PAIR.unpack_from(self.mem, rpos)
        if rklen != klen:
            return None
        if self.dend - klen < rpos + 8:
            raise CdbProtocolError()
        if self.mem[rpos + 8:rpos + 8 + klen] != key:
            return None
        vpos = rpos + 8 + klen
        if self.dend < vlen or self.dend - vlen < vpos:
            raise CdbProtocolError()
        return self.mem[vpos:vpos + vlen]

    def close(self):
        self.mem.close()


class CdbWriter:
    """A cdb file being made: records kept in order, written out by finish()."""

    def __init__(self):
        self.records = []             # [hash, key, value]
        self.by_key = {}              # key -> number of live records with that key

    def add(self, key, value):
        self.records.append((cdb_hash(key), key, value))
        self.by_key[key] = self.by_key.get(key, 0) + 1

    def exists(self, key):
        return key in self.by_key

    def remove(self, key):
        """Drop every record with this key, as if it had never been written."""
        self.records = [rec for rec in self.records if rec[1] != key]
        self.by_key.pop(key, None)

    def finish(self, fd):
        """Write the whole file to fd (which is empty)."""
        body = []
        positions = []
        dpos = TOC_SIZE
        for hval, key, value in self.records:
            positions.append(dpos)
            body.append(_PAIR.pack(len(key), len(value)))
            body.append(key)
            body.append(value)
            dpos += 8 + len(key) + len(value)
        toc, tables = self._tables(positions, dpos)
        _write_all(fd, b"".join([toc] + body + tables))

    def _tables(self, positions, dpos):
        buckets = [[] for _ in range(256)]
        for (hval, _, _), rpos in zip(self.records, positions):
            buckets[hval & 255].append((hval, rpos))
        toc = []
        tables = []
        for bucket in buckets:
            slots = 2 * len(bucket)
            toc.append(_PAIR.pack(dpos, slots))
            if not slots:
                continue
            table = [(0, 0)] * slots
            for hval, rpos in bucket:
                i = (hval >> 8) % slots
                while table[i][1]:
                    i = 0 if i + 1 == slots else i + 1
                table[i] = (hval, rpos)
            tables.append(b"".join(_PAIR.pack(h, p) for h, p in table))
            dpos += slots * 8
        return b"".join(toc), tables


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class CdbQueryDict(Dict):
    """A cdb: table opened for lookups."""

    type = "cdb"

    def __init__(self, cdb_path, dict_flags, fd, reader):
        if not dict_flags & (FLAG_TRY1NULL | FLAG_TRY0NULL):
            dict_flags |= FLAG_TRY0NULL | FLAG_TRY1NULL
        super().__init__(cdb_path, os.O_RDONLY, dict_flags | FLAG_FIXED)
        self.fd = fd
        self.reader = reader

    def _find(self, data):
        try:
            return self.reader.find(data)
        except CdbProtocolError:
            msg.fatal("error reading %s: %s" % (self.name, EPROTO))

    def lookup(self, key):
        self.error = ERR_NONE
        data = encode(key)
        if self.flags & FLAG_FOLD_FIX:
            data = data.lower()
        value = None
        if self.flags & FLAG_TRY1NULL:
            value = self._find(data + b"\0")
            if value is not None:
                self.flags &= ~FLAG_TRY0NULL
        if value is None and self.flags & FLAG_TRY0NULL:
            value = self._find(data)
            if value is not None:
                self.flags &= ~FLAG_TRY1NULL
        if value is None:
            return None
        end = value.find(b"\0")
        return (value if end < 0 else value[:end]).decode("utf-8", "surrogateescape")

    def close(self):
        if self.reader is not None:
            self.reader.close()
            os.close(self.fd)
            self.reader = None


class CdbMakeDict(Dict):
    """A cdb: table being built into name.cdb.tmp."""

    type = "cdb"

    def __init__(self, path, dict_flags, fd):
        if not dict_flags & (FLAG_TRY1NULL | FLAG_TRY0NULL):
            dict_flags |= FLAG_TRY0NULL
        elif dict_flags & FLAG_TRY1NULL and dict_flags & FLAG_TRY0NULL:
            dict_flags &= ~FLAG_TRY0NULL
        super().__init__(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, dict_flags | FLAG_FIXED)
        self.cdb_path = path + SUFFIX
        self.tmp_path = path + TMP_SUFFIX
        self.fd = fd
        self.writer = CdbWriter()

    def lookup(self, key):
        msg.fatal("table %s: lookup operation is not supported" % self.spec)

    def update(self, key, value):
        self.error = ERR_NONE
        if self.flags & FLAG_FOLD_FIX:
            key = lowercase(key)
        kdata, vdata = encode(key), encode(value)
        if self.flags & FLAG_TRY1NULL:
            kdata += b"\0"
            vdata += b"\0"
        writer = self.writer
        status = STAT_SUCCESS
        if self.flags & FLAG_DUP_IGNORE:
            writer.add(kdata, vdata)
        elif self.flags & FLAG_DUP_REPLACE:
            if writer.exists(kdata):
                writer.remove(kdata)
                status = 1
            writer.add(kdata, vdata)
        elif writer.exists(kdata):
            status = 1
            if self.flags & FLAG_DUP_WARN:
                msg.warn('%s: duplicate entry: "%s"' % (self.name, key))
            else:
                msg.fatal('%s: duplicate entry: "%s"' % (self.name, key))
        else:
            writer.add(kdata, vdata)
        return status

    def close(self):
        if self.writer is None:
            return
        try:
            self.writer.finish(self.fd)
        except OSError as exc:
            msg.fatal("finish database %s: %s" % (self.tmp_path, msg.strerror(exc)))
        try:
            os.rename(self.tmp_path, self.cdb_path)
        except OSError as exc:
            msg.fatal("rename database from %s to %s: %s"
                      % (self.tmp_path, self.cdb_path, msg.strerror(exc)))
        try:
            os.close(self.fd)
        except OSError as exc:
            msg.fatal("close database %s: %s" % (self.cdb_path, msg.strerror(exc)))
        self.writer = None


def open_query(path, dict_flags):
    cdb_path = path + SUFFIX
    try:
        fd = os.open(cdb_path, os.O_RDONLY)
    except OSError as exc:
        return SurrogateDict("cdb", path, os.O_RDONLY, dict_flags,
                             "open database %s: %s" % (cdb_path, msg.strerror(exc)))
    os.set_inheritable(fd, False)
    try:
        reader = CdbReader(fd)
    except (CdbProtocolError, OSError) as exc:
        why = EPROTO if isinstance(exc, CdbProtocolError) else msg.strerror(exc)
        msg.fatal("dict_cdbq_open: unable to init %s: %s" % (cdb_path, why))
    table = CdbQueryDict(cdb_path, dict_flags, fd, reader)
    table.watch_file(cdb_path, fd)
    try:
        source_mtime = int(os.stat(path).st_mtime)
    except OSError:
        source_mtime = None
    if source_mtime is not None and int(table.mtime) < source_mtime < time.time() - 100:
        msg.warn("database %s is older than source file %s" % (cdb_path, path))
    return table


def _open_tmp_locked(tmp_path):
    """Open and lock name.cdb.tmp; start over when another builder renamed it away."""
    while True:
        fd = os.open(tmp_path, os.O_RDWR | os.O_CREAT, 0o644)
        before = os.fstat(fd)
        flock(fd, fcntl.LOCK_EX, "lock %s" % tmp_path)
        try:
            after = os.stat(tmp_path)
        except OSError as exc:
            msg.fatal("stat(%s): %s" % (tmp_path, msg.strerror(exc)))
        if (before.st_ino, before.st_dev, before.st_rdev, before.st_nlink) == \
                (after.st_ino, after.st_dev, after.st_rdev, after.st_nlink) \
                and before.st_nlink > 0:
            return fd, before
        os.close(fd)


def open_make(path, dict_flags):
    tmp_path = path + TMP_SUFFIX
    try:
        fd, st = _open_tmp_locked(tmp_path)
    except OSError as exc:
        return SurrogateDict("cdb", path, os.O_RDWR, dict_flags,
                             "open database %s: %s" % (tmp_path, msg.strerror(exc)))
    if st.st_size:
        os.ftruncate(fd, 0)
    os.set_inheritable(fd, False)
    table = CdbMakeDict(path, dict_flags, fd)
    table.owner_uid = st.st_uid
    return table


def open_cdb(name, open_flags, dict_flags):
    mode = open_flags & (os.O_RDONLY | os.O_RDWR | os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    if mode == os.O_RDONLY:
        return open_query(name, dict_flags)
    if mode in (os.O_WRONLY | os.O_CREAT | os.O_TRUNC, os.O_RDWR | os.O_CREAT | os.O_TRUNC):
        return open_make(name, dict_flags)
    msg.fatal("dict_cdb_open: inappropriate open flags for cdb database"
              " - specify O_RDONLY or O_WRONLY|O_CREAT|O_TRUNC")

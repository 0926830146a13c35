"""texthash: tables, a postmap source file read into memory at open (Postfix's
util/dict_thash.c), and the source-file syntax that postmap shares with it.

A source line is `key whitespace value`: the key ends at the first whitespace outside
double quotes (a backslash protects the next character; the key keeps its quotes and
backslashes), the value is the rest without surrounding whitespace. Logical lines,
comments and continuation lines are common/readlline.py's. A file whose modification time
is not yet in the past is read again after a pause (it may still be being written).
"""

import os
import re
import time

from pyfix.common import msg
from pyfix.common.readlline import logical_lines
from pyfix.common.strings import SPACE
from pyfix.maps.dict import (ERR_NONE, FLAG_DUP_IGNORE, FLAG_DUP_REPLACE, FLAG_DUP_WARN,
                             FLAG_FIXED, FLAG_FOLD_FIX, FLAG_SRC_RHS_IS_FILE, FLAG_UTF8_ACTIVE,
                             STAT_FAIL, STAT_SUCCESS, Dict, SurrogateDict, lowercase,
                             utf8_activate_if_needed)
from pyfix.maps.dict_utf8 import valid_utf8

# split_entry() results besides a (key, value) pair
UNBALANCED = "unbalanced"
NO_KEY_OR_VALUE = "format"


class SourceFile:
    """A table source read whole: text, and the fstat() taken after reading it."""

    def __init__(self, path, text, st, read_error=None):
        self.path = path
        self.text = text
        self.st = st
        self.read_error = read_error


def read_source(path):
    """Read a source file; OSError when it cannot be opened. A read error (a
    directory) ends the text early and is kept in read_error, as Postfix's stream does."""
    fd = os.open(path, os.O_RDONLY)
    chunks = []
    read_error = None
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError as exc:
                read_error = exc
                break
            if not chunk:
                break
            chunks.append(chunk)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return SourceFile(path, b"".join(chunks).decode("utf-8", "surrogateescape"), st, read_error)


def source_lines(text, path):
    """(logical line, line number) pairs; a line ends at a NUL, as a C string does."""
    for line, first, _ in logical_lines(text, path):
        nul = line.find("\0")
        yield (line if nul < 0 else line[:nul]), first


# A line whose key has no quote or backslash (nearly all of them): split in one step.
_PLAIN_KEY = re.compile(r'([^ \t\n\v\f\r"\\]+)(?:[ \t\n\v\f\r](.*))?\Z', re.S)


def split_entry(line):
    """(key, value) of a source line, or (None, UNBALANCED | NO_KEY_OR_VALUE)."""
    plain = _PLAIN_KEY.match(line)
    if plain is not None:
        value = (plain.group(2) or "").strip(SPACE)
        return (plain.group(1), value) if value else (None, NO_KEY_OR_VALUE)
    in_quotes = False
    length = len(line)
    end = 0
    while end < length:
        ch = line[end]
        if ch == "\\":
            end += 1
            if end >= length:
                break
        elif ch in SPACE:
            if not in_quotes:
                break
        elif ch == '"':
            in_quotes = not in_quotes
        end += 1
    if in_quotes:
        return None, UNBALANCED
    key = line[:end]
    value = line[end + 1:].strip(SPACE) if end < length else ""
    if not key or not value:
        return None, NO_KEY_OR_VALUE
    return key, value


def non_utf8_line(table, line):
    """A line that a UTF-8 table must skip."""
    return bool(table.flags & FLAG_UTF8_ACTIVE) and not valid_utf8(line)


class ThashDict(Dict):
    """The in-memory table (Postfix's dict_ht, typed as texthash)."""

    type = "texthash"

    def __init__(self, name, open_flags, dict_flags):
        super().__init__(name, open_flags, dict_flags | FLAG_FIXED)
        self.table = {}

    def _folded(self, key):
        return lowercase(key) if self.flags & FLAG_FOLD_FIX else key

    def lookup(self, key):
        self.error = ERR_NONE
        return self.table.get(self._folded(key))

    def update(self, key, value):
        self.error = ERR_NONE
        self.table[self._folded(key)] = value
        return STAT_SUCCESS

    def delete(self, key):
        self.error = ERR_NONE
        return STAT_SUCCESS if self.table.pop(self._folded(key), None) is not None \
            else STAT_FAIL

    def items(self):
        self.error = ERR_NONE
        return iter(list(self.table.items()))

    def close(self):
        self.table = {}


def _load(table, source, path, dict_flags):
    """Fill the table from the source; a surrogate for a fatal duplicate."""
    for line, lineno in source_lines(source.text, path):
        if non_utf8_line(table, line):
            msg.warn('%s, line %d: non-UTF-8 input "%s" -- ignoring this line'
                     % (path, lineno, line))
            continue
        key, value = split_entry(line)
        if key is None:
            if value == UNBALANCED:
                msg.warn("%s, line %d: unbalanced '\"' in '%s' -- ignoring this line"
                         % (path, lineno, line))
            else:
                msg.warn("%s, line %d: expected format: key whitespace value"
                         " -- ignoring this line" % (path, lineno))
            continue
        if key.endswith(":"):
            msg.warn('%s, line %d: record is in "key: value" format; is this an alias file?'
                     % (path, lineno))
        if dict_flags & FLAG_SRC_RHS_IS_FILE:
            value = _file_value(path, lineno, value)
            if value is None:
                continue
        if table.lookup(key) is None:
            table.update(key, value)
        elif dict_flags & FLAG_DUP_IGNORE:
            pass
        elif dict_flags & FLAG_DUP_REPLACE:
            table.update(key, value)
        elif dict_flags & FLAG_DUP_WARN:
            msg.warn('%s, line %d: duplicate entry: "%s"' % (path, lineno, key))
        else:
            table.close()
            return SurrogateDict("texthash", path, os.O_RDONLY, dict_flags,
                                 '%s, line %d: duplicate entry: "%s"' % (path, lineno, key))
    return None


def _file_value(path, lineno, value):
    """postmap -F: the value names files; their contents are stored in base64."""
    from pyfix.maps.dict_file import DictFileError, file_to_b64
    try:
        return file_to_b64(value)
    except DictFileError as exc:
        msg.warn("%s, line %d: %s: skipping this entry" % (path, lineno, exc))
        return None


def open_thash(name, open_flags, dict_flags):
    if open_flags != os.O_RDONLY:
        return SurrogateDict("texthash", name, open_flags, dict_flags,
                             "texthash:%s map requires O_RDONLY access mode" % name)
    before = time.time()
    while True:
        try:
            source = read_source(name)
        except OSError as exc:
            return SurrogateDict("texthash", name, open_flags, dict_flags,
                                 "open database %s: %s" % (name, msg.strerror(exc)))
        table = utf8_activate_if_needed(ThashDict(name, open_flags, dict_flags), dict_flags)
        failed = _load(table, source, name, dict_flags)
        if failed is not None:
            return failed
        if source.read_error is not None:
            msg.fatal("read %s: %s" % (name, msg.strerror(source.read_error)))
        after = time.time()
        mtime = int(source.st.st_mtime)
        if mtime < int(before) - 1 or mtime > int(after):
            break
        table.close()
        if msg.verbose > 1:
            msg.info("pausing to let file %s cool down" % name)
        time.sleep(0.3)
        before = after
    table.owner_uid = source.st.st_uid
    return table

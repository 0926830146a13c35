"""Lookup tables: the `type:name` opener and the behavior every table shares (Postfix's
util/dict.c, dict_open.c, dict_surrogate.c).

A table is a Dict: lookup(key) gives the value or None, and sets `error` (ERR_NONE,
ERR_RETRY for a temporary failure such as a database that is down, ERR_CONFIG for a
broken table); update/delete/items for the tables that support them. Keys and values are
text (bytes that are not UTF-8 survive as surrogates). Flags are Postfix's DICT_FLAG_*:
FOLD_FIX asks a table to lowercase keys (ASCII letters only, as Postfix's lowercase()),
TRY0NULL/TRY1NULL say whether keys and values are stored with a trailing NUL (postmap
writes them with one), and so on. With UTF-8 enabled (msg.utf8_enable, from
smtputf8_enable) a table opened with FLAG_UTF8_REQUEST sits behind maps/dict_utf8.py,
which checks keys and values and case-folds the Unicode way, as Postfix's dict_utf8.c.

dict_open("hash:/etc/postfix/virtual") opens a table by name; a table type that does not
exist, or a table that cannot be opened, is a fatal error in a command and, in a daemon
(the skeletons set allow_surrogate), a surrogate that fails every lookup with ERR_RETRY,
so that the daemon defers mail instead of crashing, as Postfix does.
open_table() opens each table once per process and reuses it; changed_name() names a
file-based table whose file changed since it was opened.
"""

import importlib
import os

from pyfix.common import msg

# DICT_FLAG_*, as in Postfix's util/dict.h.
FLAG_NONE = 0
FLAG_DUP_WARN = 1 << 0
FLAG_DUP_IGNORE = 1 << 1
FLAG_TRY0NULL = 1 << 2
FLAG_TRY1NULL = 1 << 3
FLAG_FIXED = 1 << 4
FLAG_PATTERN = 1 << 5
FLAG_LOCK = 1 << 6
FLAG_DUP_REPLACE = 1 << 7
FLAG_SYNC_UPDATE = 1 << 8
FLAG_DEBUG = 1 << 9
FLAG_NO_REGSUB = 1 << 11
FLAG_NO_PROXY = 1 << 12
FLAG_NO_UNAUTH = 1 << 13
FLAG_FOLD_FIX = 1 << 14
FLAG_FOLD_MUL = 1 << 15
FLAG_FOLD_ANY = FLAG_FOLD_FIX | FLAG_FOLD_MUL
FLAG_OPEN_LOCK = 1 << 16
FLAG_BULK_UPDATE = 1 << 17
FLAG_MULTI_WRITER = 1 << 18
FLAG_UTF8_REQUEST = 1 << 19
FLAG_UTF8_ACTIVE = 1 << 20
FLAG_SRC_RHS_IS_FILE = 1 << 21

FLAG_UTF8_MASK = FLAG_UTF8_REQUEST

ERR_NONE = 0
ERR_RETRY = -1
ERR_CONFIG = -2

STAT_FAIL = 1
STAT_SUCCESS = 0
STAT_ERROR = -1

# Postfix's dict_allow_surrogate: when a table cannot be opened, a daemon carries on with a
# surrogate table (below), while a command such as postmap or postalias stops with the
# reason as its fatal error. The daemon skeleton sets this.
allow_surrogate = False

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def lowercase(text):
    """Postfix's lowercase(): ASCII letters only (UTF-8 case folding is dict_utf8's)."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


class Dict:
    """One open table. Subclasses implement _lookup() and, if they can, the rest."""

    type = "abstract"
    surrogate = False                  # True for a table that could not be opened

    def __init__(self, name, open_flags=os.O_RDONLY, dict_flags=0):
        self.name = name
        self.open_flags = open_flags
        self.flags = dict_flags
        self.error = ERR_NONE
        self.stat_path = None          # the file whose change means "restart me"
        self.mtime = None
        self.owner_uid = None          # owner of the table file (unknown: None)

    @property
    def spec(self):
        return "%s:%s" % (self.type, self.name)

    # -- what callers use ----------------------------------------------------------------

    def fold(self, key):
        """The key as the table compares it: ASCII-lowercased for FOLD_FIX tables."""
        return lowercase(key) if self.flags & FLAG_FOLD_FIX else key

    def lookup(self, key):
        self.error = ERR_NONE
        return self._lookup(key)

    def update(self, key, value):
        msg.fatal("table %s: update operation is not supported" % self.spec)

    def delete(self, key):
        msg.fatal("table %s: delete operation is not supported" % self.spec)

    def items(self):
        """(key, value) pairs in the table's order (`postmap -s`)."""
        msg.fatal("table %s: sequence operation is not supported" % self.spec)

    def close(self):
        pass

    # -- change detection --------------------------------------------------------------

    def watch_file(self, path, fd=None):
        """Remember the file behind this table (dict->stat_fd / dict->mtime)."""
        st = os.fstat(fd) if fd is not None else os.stat(path)
        self.stat_path = path
        self.mtime = st.st_mtime
        self.owner_uid = st.st_uid

    def changed(self):
        if self.stat_path is None or self.flags & FLAG_MULTI_WRITER:
            return False
        try:
            st = os.stat(self.stat_path)
        except OSError:
            return True
        return st.st_mtime != self.mtime or st.st_nlink == 0

    # -- for subclasses --------------------------------------------------------------------

    def _lookup(self, key):
        raise NotImplementedError


class SurrogateDict(Dict):
    """A table that could not be opened (dict_surrogate.c). The reason is reported when it
    is created: an error in a daemon, which carries on; a fatal error in a command. Each
    later use warns `<type>:<name> is unavailable. <reason>` and fails with ERR_RETRY, so
    that mail waits for the table to be fixed instead of bouncing."""

    surrogate = True

    def __init__(self, dict_type, name, open_flags, dict_flags, reason):
        if not allow_surrogate:
            msg.fatal(reason)
        msg.error(reason)
        super().__init__(name, open_flags, dict_flags | FLAG_PATTERN)
        self.type = dict_type
        self.reason = reason

    def _fail(self):
        msg.warn("%s:%s is unavailable. %s" % (self.type, self.name, self.reason))
        self.error = ERR_RETRY

    def lookup(self, key):
        self._fail()
        return None

    def update(self, key, value):
        self._fail()
        return STAT_ERROR

    def delete(self, key):
        self._fail()
        return STAT_ERROR

    def items(self):
        self._fail()
        return iter(())


def split_spec(spec):
    """`type:name` -> (type, name); Postfix's fatal error for anything else."""
    dict_type, colon, name = spec.partition(":")
    if not colon:
        msg.fatal('open dictionary: expecting "type:name" form instead of "%s"' % spec)
    return dict_type, name


def dict_open(spec, open_flags=os.O_RDONLY, dict_flags=0):
    dict_type, name = split_spec(spec)
    return dict_open3(dict_type, name, open_flags, dict_flags)


def dict_open3(dict_type, name, open_flags=os.O_RDONLY, dict_flags=0):
    """Open one table; a surrogate when the type is unknown or the open fails."""
    from pyfix.maps.types import opener
    if not dict_type or not name:
        msg.fatal('open dictionary: expecting "type:name" form instead of "%s:%s"'
                  % (dict_type, name))
    open_fn = opener(dict_type)
    if open_fn is None:
        return SurrogateDict(dict_type, name, open_flags, dict_flags,
                             "unsupported dictionary type: %s" % dict_type)
    try:
        table = open_fn(name, open_flags, dict_flags)
    except OSError as exc:
        # Postfix's type modules return this surrogate themselves, so it gets the UTF-8
        # proxy below like any table (a malformed key is "not found", not "try again").
        table = SurrogateDict(dict_type, name, open_flags, dict_flags,
                              "cannot open %s:%s: %s" % (dict_type, name, msg.strerror(exc)))
    if msg.verbose:
        msg.info("dict_open: %s:%s" % (dict_type, name))
    return utf8_activate_if_needed(table, dict_flags)


def utf8_activate_if_needed(table, dict_flags):
    """Put Postfix's UTF-8 proxy (key checks and casefolding) in front of a table that
    asks for it, when UTF-8 is enabled (smtputf8_enable, kept in msg.utf8_enable)."""
    if (table.flags & FLAG_UTF8_ACTIVE or not msg.utf8_enable
            or not dict_flags & FLAG_UTF8_MASK):
        return table
    from pyfix.maps.dict_utf8 import Utf8Dict
    return Utf8Dict(table)


# -- one instance per process -------------------------------------------------------------

_open_tables = {}


def open_table(spec, open_flags=os.O_RDONLY, dict_flags=0):
    """The process's shared instance of a table (Postfix's dict_register/dict_handle)."""
    key = (spec, open_flags, dict_flags)
    table = _open_tables.get(key)
    if table is None:
        table = _open_tables[key] = dict_open(spec, open_flags, dict_flags)
    return table


def changed_name():
    """The spec of an open table whose file changed, or None (dict_changed_name())."""
    for (spec, _, _), table in _open_tables.items():
        if table.changed():
            return spec
    return None


def load_module_opener(path):
    """`module:function` -> the function (table types are imported when first used)."""
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)

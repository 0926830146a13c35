"""internal: tables, in-memory hash tables (Postfix's util/dict_ht.c).

An `internal:name` table starts empty and lives as long as the process; programs fill it
with update(). inline: tables (maps/dict_inline.py) are internal tables filled from their
name. Keys are lowercased (ASCII only, as Postfix's lowercase()) when the table is opened
with FLAG_FOLD_FIX. items() lists the entries; Postfix's order is that of a hash table
with a per-process random seed, so no order is promised beyond "each entry once".
"""

from pyfix.common import msg
from pyfix.maps.dict import (FLAG_FIXED, FLAG_FOLD_FIX, STAT_FAIL, STAT_SUCCESS, Dict,
                             lowercase)


def c_string(text):
    """The text up to its first NUL, as a C function would see it."""
    nul = text.find("\0")
    return text if nul < 0 else text[:nul]


class HtDict(Dict):
    type = "internal"

    def __init__(self, name, open_flags, dict_flags):
        super().__init__(name, open_flags, dict_flags | FLAG_FIXED)
        self.table = {}

    def _key(self, key):
        key = c_string(key)
        return lowercase(key) if self.flags & FLAG_FOLD_FIX else key

    def _lookup(self, key):
        return self.table.get(self._key(key))

    def update(self, key, value):
        self.error = 0
        self.table[self._key(key)] = c_string(value)
        return STAT_SUCCESS

    def delete(self, key):
        self.error = 0
        try:
            del self.table[self._key(key)]
        except KeyError:
            return STAT_FAIL
        return STAT_SUCCESS

    def items(self):
        self.error = 0
        return iter(list(self.table.items()))

    def close(self):
        self.table = {}


def open_internal(name, open_flags, dict_flags):
    table = HtDict(name, open_flags, dict_flags)
    if msg.verbose:
        msg.info("dict_ht_open: %s" % name)
    return table

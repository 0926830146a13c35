"""A parameter's list of tables, searched in order (Postfix's global/maps.c).

`virtual_alias_maps = hash:/etc/postfix/virtual, regexp:/etc/postfix/virtual.re` becomes
Maps("virtual_alias_maps", that text, flags); find(key) asks each table in turn and
returns the first answer. A table error stops the search (error is set: the caller defers
instead of guessing), and an empty answer is a configuration error, with Postfix's
warnings in both cases.
"""

import os

from pyfix.common import msg
from pyfix.common.strings import CHARS_BRACE, CHARS_COMMA_SP, tokens_quoted

from pyfix.maps.dict import ERR_CONFIG, ERR_NONE, open_table


class Maps:
    def __init__(self, title, map_names, dict_flags=0):
        self.title = title
        self.error = ERR_NONE
        self.tables = [open_table(spec, os.O_RDONLY, dict_flags)
                       for spec in tokens_quoted(map_names or "", CHARS_COMMA_SP, CHARS_BRACE)]

    def __bool__(self):
        return bool(self.tables)

    def find(self, key, flags=0):
        """The first table's answer for key, or None (then `error` says whether to retry).

        With flags, only tables that have one of those flags (FLAG_FIXED: tables with
        fixed keys, for partial-address keys) are asked.
        """
        self.error = ERR_NONE
        if not key:
            return None
        for table in self.tables:
            if flags and not table.flags & flags:
                continue
            value = table.lookup(key)
            if value is not None:
                if value == "":
                    msg.warn("%s lookup of %s returns an empty string result"
                             % (self.title, key))
                    msg.warn("%s should return NO RESULT in case of NOT FOUND" % self.title)
                    self.error = ERR_CONFIG
                    return None
                if msg.verbose:
                    msg.info("maps_find: %s: %s: %s = %s"
                             % (self.title, table.spec, key, value[:100]))
                return value
            if table.error != ERR_NONE:
                self.error = table.error
                msg.warn('%s:%s lookup error for "%s"' % (table.type, table.name, key))
                break
        return None

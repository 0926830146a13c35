"""unionmap: tables, the answers of several tables together (Postfix's util/dict_union.c).

`unionmap:{type:name, type:name, ...}` asks every table and joins the answers that were
found with commas (`a,b`); no answer at all is "not found". A table error stops the lookup
with that error. The member tables are the process's shared instances (maps.dict
open_table), and the first member decides whether the union has fixed keys or patterns.
"""

import os

from pyfix.common import msg
from pyfix.common.strings import CHARS_BRACE, CHARS_COMMA_SP, balanced_length, tokens_quoted
from pyfix.maps.dict import ERR_NONE, FLAG_FIXED, FLAG_PATTERN, Dict, SurrogateDict, open_table


def open_members(dict_type, name, open_flags, dict_flags):
    """The member tables of `{type:name, ...}`, or a surrogate Dict with Postfix's reason."""
    if open_flags != os.O_RDONLY:
        return SurrogateDict(dict_type, name, open_flags, dict_flags,
                             "%s:%s map requires O_RDONLY access mode" % (dict_type, name))
    def bad():
        return SurrogateDict(dict_type, name, open_flags, dict_flags,
                             'bad syntax: "%s:%s"; need "%s:{type:name...}"'
                             % (dict_type, name, dict_type))

    length = balanced_length(name, CHARS_BRACE)
    if not length or length != len(name) or length == 2:
        return bad()
    specs = tokens_quoted(name[1:-1], CHARS_COMMA_SP, CHARS_BRACE)
    if not specs:
        return bad()
    members = []
    for spec in specs:
        if msg.verbose:
            msg.info("dict_%s_open: %s" % ("union" if dict_type == "unionmap" else "pipe", spec))
        if ":" not in spec:
            return bad()
        members.append((spec, open_table(spec, open_flags, dict_flags)))
    return members


class UnionDict(Dict):
    type = "unionmap"

    def __init__(self, name, open_flags, dict_flags, members):
        first = members[0][1]
        super().__init__(name, open_flags,
                         dict_flags | (first.flags & (FLAG_FIXED | FLAG_PATTERN)))
        self.members = members
        owners = [table.owner_uid for _, table in members]
        self.owner_uid = None if None in owners else max(owners)

    def _lookup(self, key):
        result = ""
        for _, table in self.members:
            value = table.lookup(key)
            if value is not None:
                result = result + "," + value if result else value
            elif table.error != ERR_NONE:
                self.error = table.error
                return None
        return result or None


def open_union(name, open_flags, dict_flags):
    members = open_members("unionmap", name, open_flags, dict_flags)
    if isinstance(members, Dict):
        return members
    return UnionDict(name, open_flags, dict_flags, members)

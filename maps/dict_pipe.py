"""pipemap: tables, a pipeline of tables (Postfix's util/dict_pipe.c).

`pipemap:{type:name, type:name, ...}` looks the key up in the first table, the answer in
the second, and so on; the last answer is the result. A table that does not find its
input ends the pipeline with "not found", or with its error. Member tables are shared with
the rest of the process as for unionmap: (maps/dict_union.py).
"""

from pyfix.maps.dict import FLAG_FIXED, FLAG_PATTERN, Dict
from pyfix.maps.dict_union import open_members


class PipeDict(Dict):
    type = "pipemap"

    def __init__(self, name, open_flags, dict_flags, members):
        first = members[0][1]
        super().__init__(name, open_flags,
                         dict_flags | (first.flags & (FLAG_FIXED | FLAG_PATTERN)))
        self.members = members
        owners = [table.owner_uid for _, table in members]
        self.owner_uid = None if None in owners else max(owners)

    def _lookup(self, key):
        value = key
        for _, table in self.members:
            value = table.lookup(value)
            if value is None:
                self.error = table.error
                return None
        return value


def open_pipe(name, open_flags, dict_flags):
    members = open_members("pipemap", name, open_flags, dict_flags)
    if isinstance(members, Dict):
        return members
    return PipeDict(name, open_flags, dict_flags, members)

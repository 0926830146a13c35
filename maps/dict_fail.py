"""fail: tables, which fail every request (Postfix's util/dict_fail.c).

`fail:name` answers each lookup (and each update, delete or listing, when it allows them)
with a temporary error: ERR_RETRY, so that mail waits instead of being routed on a guess.
Useful as a placeholder and in tests.
"""

import os

from pyfix.maps.dict import ERR_RETRY, FLAG_PATTERN, STAT_ERROR, Dict


class FailDict(Dict):
    type = "fail"

    def __init__(self, name, open_flags, dict_flags):
        super().__init__(name, open_flags, dict_flags | FLAG_PATTERN)
        self.writable = bool(open_flags & os.O_RDWR)

    def lookup(self, key):
        self.error = ERR_RETRY
        return None

    def update(self, key, value):
        if not self.writable:
            return super().update(key, value)
        self.error = ERR_RETRY
        return STAT_ERROR

    def delete(self, key):
        if not self.writable:
            return super().delete(key)
        self.error = ERR_RETRY
        return STAT_ERROR

    def items(self):
        self.error = ERR_RETRY
        return iter(())


def open_fail(name, open_flags, dict_flags):
    return FailDict(name, open_flags, dict_flags)

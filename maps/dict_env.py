"""environ: tables, the process environment (Postfix's util/dict_env.c).

A lookup of `environ:` returns the value of the environment variable named by the key
(lowercased first with FLAG_FOLD_FIX, ASCII only, as Postfix does); update() sets one.
A process running with privileges it was not started with (set-uid or set-gid) sees no
environment, as Postfix's safe_getenv() arranges.
"""

import os

from pyfix.common import msg
from pyfix.maps.dict import FLAG_FIXED, FLAG_FOLD_FIX, STAT_SUCCESS, Dict
from pyfix.maps.dict_ht import c_string, lowercase


def _unsafe():
    return os.getuid() != os.geteuid() or os.getgid() != os.getegid()


class EnvDict(Dict):
    type = "environ"

    def __init__(self, name, open_flags, dict_flags):
        super().__init__(name, open_flags, dict_flags | FLAG_FIXED)

    def _name(self, key):
        key = c_string(key)
        return lowercase(key) if self.flags & FLAG_FOLD_FIX else key

    def _lookup(self, key):
        if _unsafe():
            return None
        return os.environ.get(self._name(key))

    def update(self, key, value):
        self.error = 0
        name = self._name(key)
        if not name or "=" in name:
            msg.fatal("setenv: Invalid argument")
        os.environ[name] = c_string(value)
        return STAT_SUCCESS


def open_env(name, open_flags, dict_flags):
    return EnvDict(name, open_flags, dict_flags)

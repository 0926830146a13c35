"""The UTF-8 proxy in front of a table (Postfix's util/dict_utf8.c).

With UTF-8 enabled (smtputf8_enable = yes) a table opened with FLAG_UTF8_REQUEST gets this
proxy: a key that is not valid UTF-8 is not looked up (warning, "not found"), a fixed-key
table's key is case-folded the Unicode way (full case folding, as ICU's does it for
Postfix) instead of ASCII-lowercased by the table, and a value that is not valid UTF-8 is
a configuration error. Text that was not UTF-8 arrives here as surrogate escapes, so the
validity test is a search for those.
"""

import re

from pyfix.common import msg
from pyfix.maps.dict import (ERR_CONFIG, ERR_NONE, FLAG_FIXED, FLAG_FOLD_ANY, FLAG_FOLD_FIX,
                             FLAG_FOLD_MUL, FLAG_UTF8_ACTIVE, STAT_SUCCESS, Dict, lowercase)

UTF8_ERROR = "malformed UTF-8 or invalid codepoint"

_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def valid_utf8(text):
    """valid_utf8_string(): no byte of the text failed to decode."""
    return _NOT_UTF8.search(text) is None


def casefold(text):
    """Postfix's casefold() with UTF-8 enabled: ASCII text is lowercased, other text is
    Unicode case-folded."""
    if text.isascii():
        return lowercase(text)
    return text.casefold()


class Utf8Dict(Dict):
    """Forwards everything to the real table, with UTF-8 checks around lookup, update
    and delete. Attributes (flags, error, name, ...) are the real table's."""

    def __init__(self, real):         # pylint: disable=super-init-not-called
        object.__setattr__(self, "real", real)
        real.flags |= FLAG_UTF8_ACTIVE

    def __getattr__(self, name):
        return getattr(self.real, name)

    @property
    def surrogate(self):
        # Dict's class attribute would hide the real table's.
        return self.real.surrogate

    def __setattr__(self, name, value):
        setattr(self.real, name, value)

    def _check_fold(self, key):
        """The key to hand to the real table, or None when it is not UTF-8."""
        if not valid_utf8(key):
            return None
        flags = self.real.flags
        fold = flags & FLAG_FOLD_ANY
        if fold and fold & (FLAG_FOLD_FIX if flags & FLAG_FIXED else FLAG_FOLD_MUL):
            return casefold(key)
        return key

    def _call(self, method, *args):
        real = self.real
        saved = real.flags & FLAG_FOLD_ANY
        real.flags &= ~FLAG_FOLD_ANY
        try:
            return method(*args)
        finally:
            real.flags |= saved

    def _bad_key(self, key):
        msg.warn('%s:%s: non-UTF-8 key "%s": %s'
                 % (self.real.type, self.real.name, key, UTF8_ERROR))
        self.real.error = ERR_NONE

    def lookup(self, key):
        folded = self._check_fold(key)
        if folded is None:
            self._bad_key(key)
            return None
        value = self._call(self.real.lookup, folded)
        if value is not None and not valid_utf8(value):
            msg.warn('%s:%s: key "%s": non-UTF-8 value "%s": %s'
                     % (self.real.type, self.real.name, key, value, UTF8_ERROR))
            self.real.error = ERR_CONFIG
            return None
        return value

    def update(self, key, value):
        folded = self._check_fold(key)
        if folded is None:
            self._bad_key(key)
            return STAT_SUCCESS
        if not valid_utf8(value):
            msg.warn('%s:%s: key "%s": non-UTF-8 value "%s": %s'
                     % (self.real.type, self.real.name, key, value, UTF8_ERROR))
            self.real.error = ERR_NONE
            return STAT_SUCCESS
        return self._call(self.real.update, folded, value)

    def delete(self, key):
        folded = self._check_fold(key)
        if folded is None:
            self._bad_key(key)
            return STAT_SUCCESS
        return self._call(self.real.delete, folded)

    def items(self):
        return self.real.items()

    def close(self):
        self.real.close()

    def changed(self):
        return self.real.changed()

    def watch_file(self, path, fd=None):
        self.real.watch_file(path, fd)

    @property
    def type(self):
        return self.real.type

    @property
    def spec(self):
        return self.real.spec

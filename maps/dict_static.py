"""static: tables, one answer for every key (Postfix's util/dict_static.c).

`static:value` returns `value` for any key; `static:{ text with spaces }` allows spaces
(the braces and the whitespace inside them are removed). With FLAG_SRC_RHS_IS_FILE the
value names files whose contents are the answer.
"""

from pyfix.common.strings import CHARS_BRACE, extract_parens
from pyfix.maps import dict_file
from pyfix.maps.dict import FLAG_FIXED, FLAG_SRC_RHS_IS_FILE, Dict, SurrogateDict
from pyfix.maps.dict_ht import c_string


class StaticDict(Dict):
    type = "static"

    def __init__(self, name, open_flags, dict_flags, value):
        super().__init__(name, open_flags, dict_flags | FLAG_FIXED)
        self.value = value

    def _lookup(self, key):
        return self.value


def open_static(name, open_flags, dict_flags):
    if name.startswith(CHARS_BRACE[0]):
        value, err = extract_parens(name, CHARS_BRACE, strip=True)
        if err:
            return SurrogateDict("static", name, open_flags, dict_flags,
                                 "bad static:name syntax: %s" % err)
    else:
        value = name
    if dict_flags & FLAG_SRC_RHS_IS_FILE:
        try:
            value = dict_file.file_to_b64(value)
        except dict_file.DictFileError as exc:
            return SurrogateDict("static", name, open_flags, dict_flags, str(exc))
    return StaticDict(name, open_flags, dict_flags, c_string(value))

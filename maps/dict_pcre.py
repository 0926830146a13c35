"""pcre: tables, Perl-compatible regular expressions (Postfix's util/dict_pcre.c).

The rule syntax is regexp:'s (maps/dict_regexp.py): `/pattern/flags result`,
`!/pattern/flags result`, `if /pattern/` ... `endif`, `$n` substitution, inline
`pcre:{ {rule}, ... }`; there is no `/p1/!/p2/` form. Flags toggle PCRE2 options:
`i` CASELESS (on by default), `s` DOTALL (on by default), `m` MULTILINE, `x` EXTENDED,
`A` ANCHORED, `E` DOLLAR_ENDONLY, `U` UNGREEDY; `X` (PCRE_EXTRA) no longer exists in
PCRE2 and is ignored with Postfix's warning.

Why libpcre2-8 through ctypes: Debian's postfix-pcre (built with HAS_PCRE=2) links this
very library, so compiling and matching through it gives the same matches, the same group
offsets and the same error texts (pcre2_get_error_message) as Postfix; Python's re is a
different dialect, and the PyPI bindings of PCRE2 need a compiler and headers that a
Debian host with only the runtime library does not have. Without the library, pcre: is an
unsupported type, as in a Postfix built without PCRE.
"""

import ctypes
import ctypes.util

from pyfix.maps.dict import SurrogateDict
from pyfix.maps.dict_regexp import (SPACE_BYTES, Pattern, RuleTable, open_rule_table,
                                    to_text)

PCRE2_CASELESS = 0x00000008
PCRE2_DOLLAR_ENDONLY = 0x00000010
PCRE2_DOTALL = 0x00000020
PCRE2_EXTENDED = 0x00000080
PCRE2_MULTILINE = 0x00000400
PCRE2_UNGREEDY = 0x00040000
PCRE2_ANCHORED = 0x80000000
PCRE2_ZERO_TERMINATED = ctypes.c_size_t(-1).value
PCRE2_INFO_CAPTURECOUNT = 4
PCRE2_ERROR_NOMATCH = -1

_FLAGS = {
    0x69: PCRE2_CASELESS,        # i
    0x6D: PCRE2_MULTILINE,       # m
    0x73: PCRE2_DOTALL,          # s
    0x78: PCRE2_EXTENDED,        # x
    0x41: PCRE2_ANCHORED,        # A
    0x45: PCRE2_DOLLAR_ENDONLY,  # E
    0x55: PCRE2_UNGREEDY,        # U
}


class _Pcre2:
    def __init__(self):
        try:
            lib = ctypes.CDLL("libpcre2-8.so.0")
        except OSError:
            lib = ctypes.CDLL(ctypes.util.find_library("pcre2-8"))
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        self.compile = lib.pcre2_compile_8
        self.compile.argtypes = [ctypes.c_char_p, sz, ctypes.c_uint32,
                                 ctypes.POINTER(ctypes.c_int), ctypes.POINTER(sz), vp]
        self.compile.restype = vp
        self.match_data_create = lib.pcre2_match_data_create_from_pattern_8
        self.match_data_create.argtypes = [vp, vp]
        self.match_data_create.restype = vp
        self.match = lib.pcre2_match_8
        self.match.argtypes = [vp, ctypes.c_char_p, sz, sz, ctypes.c_uint32, vp, vp]
        self.match.restype = ctypes.c_int
        self.ovector = lib.pcre2_get_ovector_pointer_8
        self.ovector.argtypes = [vp]
        self.ovector.restype = ctypes.POINTER(sz)
        self.pattern_info = lib.pcre2_pattern_info_8
        self.pattern_info.argtypes = [vp, ctypes.c_uint32, vp]
        self.pattern_info.restype = ctypes.c_int
        self.error_message = lib.pcre2_get_error_message_8
        self.error_message.argtypes = [ctypes.c_int, ctypes.c_char_p, sz]
        self.error_message.restype = ctypes.c_int
        self.code_free = lib.pcre2_code_free_8
        self.code_free.argtypes = [vp]
        self.code_free.restype = None
        self.match_data_free = lib.pcre2_match_data_free_8
        self.match_data_free.argtypes = [vp]
        self.match_data_free.restype = None

    def error_text(self, code):
        buf = ctypes.create_string_buffer(256)
        length = self.error_message(code, buf, 256)
        if length > 0:
            return to_text(buf.raw[:length])
        return "unexpected pcre2 error code %d" % code


_lib = None
_lib_error = None


def _get_lib():
    global _lib, _lib_error
    if _lib is None and _lib_error is None:
        try:
            _lib = _Pcre2()
        except (OSError, TypeError, AttributeError) as exc:
            _lib_error = exc
    return _lib


class _Engine:
    """One compiled pattern and the match data PCRE2 fills in."""
    __slots__ = ("code", "match_data", "ovector", "groups")


class PcreDict(RuleTable):
    type = "pcre"
    label = "pcre"
    range_word = "out of range"
    second_pattern = False

    def __init__(self, name, open_flags, dict_flags):
        super().__init__(name, open_flags, dict_flags)
        self.lib = _get_lib()
        self._engines = []

    def get_pattern(self, lineno, line, pos):
        match = 1
        size = len(line)
        while pos < size:
            if line[pos] == 0x21:
                match = not match
            elif line[pos] not in SPACE_BYTES:
                break
            pos += 1
        if pos >= size:
            self.warn(lineno, "no regexp: skipping this rule")
            return None
        delim = line[pos]
        pos += 1
        start = pos
        while pos < size:
            if line[pos] == 0x5C:
                pos += 1
                if pos >= size:
                    break
            elif line[pos] == delim:
                break
            pos += 1
        if pos >= size:
            self.warn(lineno, 'no closing regexp delimiter "%s": ignoring this rule'
                      % to_text(bytes([delim])))
            return None
        regexp = line[start:pos]
        pos += 1
        options = PCRE2_CASELESS | PCRE2_DOTALL
        while pos < size and line[pos] not in SPACE_BYTES:
            flag = line[pos]
            if flag in _FLAGS:
                options ^= _FLAGS[flag]
            elif flag == 0x58:          # X
                self.warn(lineno, 'ignoring obsolete regexp option "X"')
            else:
                self.warn(lineno, 'unknown regexp option "%s": skipping this rule'
                          % to_text(bytes([flag])))
                return None
            pos += 1
        return Pattern(regexp, options, int(match)), pos

    def compile(self, lineno, pattern, nosub):
        lib = self.lib
        error = ctypes.c_int(0)
        offset = ctypes.c_size_t(0)
        code = lib.compile(pattern.regexp, PCRE2_ZERO_TERMINATED, pattern.options,
                           ctypes.byref(error), ctypes.byref(offset), None)
        if not code:
            self.warn(lineno, "error in regex at offset %d: %s"
                      % (offset.value, lib.error_text(error.value)))
            return None
        engine = _Engine()
        engine.code = code
        engine.match_data = lib.match_data_create(code, None)
        engine.ovector = lib.ovector(engine.match_data)
        count = ctypes.c_uint32(0)
        if lib.pattern_info(code, PCRE2_INFO_CAPTURECOUNT, ctypes.byref(count)) != 0:
            self.warn(lineno, "pcre2_pattern_info failed")
        engine.groups = count.value
        self._engines.append(engine)
        return engine

    def group_count(self, expr):
        return expr.groups

    def execute(self, lineno, expr, match, subject, nsub):
        code = self.lib.match(expr.code, subject, len(subject), 0, 0, expr.match_data, None)
        if code > 0:
            return bool(match), expr.ovector
        if code == PCRE2_ERROR_NOMATCH:
            return not match, None
        self.warn(lineno, self.lib.error_text(code))
        return False, None

    def group_text(self, subject, ovector, n):
        start, end = ovector[2 * n], ovector[2 * n + 1]
        if end == start:
            return b""
        if end < start:                 # \K games; C copies to the end of the string
            return subject[start:] if start < len(subject) else b""
        return subject[start:end]

    def close(self):
        for engine in self._engines:
            self.lib.match_data_free(engine.match_data)
            self.lib.code_free(engine.code)
        self._engines = []
        self.rules = []

    def __del__(self):
        if getattr(self, "_engines", None):
            self.close()


def open_pcre(name, open_flags, dict_flags):
    if _get_lib() is None:
        return SurrogateDict("pcre", name, open_flags, dict_flags,
                             "unsupported dictionary type: pcre")
    return open_rule_table(PcreDict, name, open_flags, dict_flags)

"""regexp: tables, POSIX regular expressions (Postfix's util/dict_regexp.c).

A table is a list of rules, tried in order against the whole key; the first rule that
matches gives the result:

    /pattern/flags result          !/pattern/flags result (a rule that does not match)
    /pattern1/!/pattern2/ result   (pattern1 matches and pattern2 does not)
    if /pattern/flags  ...  endif  (nestable; `if !/pattern/`)

Any non-alphanumeric character may delimit a pattern. Flags toggle regcomp() options:
`i` case-insensitive (on by default), `x` extended syntax (on by default), `m` REG_NEWLINE
(off). `$1`..`$n`, `${n}` and `$(n)` in a result are replaced by the matched subexpression,
`$$` is a dollar. Bad rules are skipped with Postfix's warnings, naming file and line.
The whole file is read when the table is opened (or the rules come inline:
`regexp:{ {/a/ b}, {/c/ d} }`); as in Postfix, a changed file is seen by new processes
only: these tables are not watched for `has changed -- restarting`.

Why the C library's regcomp()/regexec() through ctypes: Postfix uses exactly these
functions, and POSIX matching differs from Python's re in ways that change results
(leftmost-longest alternation, `[[:classes:]]` and equivalence classes, BRE syntax with the
`x` flag, back-references, REG_NEWLINE, the error texts of regerror()). Calling glibc gives
the same matches and the same warnings by construction, where a translation into Python's
re would only approximate them. Postfix never calls setlocale(), so its regex code runs in
the C locale (bytes, ASCII-only case folding); Python sets LC_CTYPE from the environment,
so pyfix switches this thread to the C locale (uselocale) while it compiles and matches.

The parsing, if/endif structure, `$n` pre-scan and expansion are shared with pcre:
(maps/dict_pcre.py), which differs only in its engine and a few words of its warnings.
"""

import ctypes
import os

from pyfix.common import msg
from pyfix.common.libc import libc as c_library
from pyfix.common.macro import EXPR, LITERAL, PARSE_ERROR, PARSE_OK, PARSE_UNDEF, mac_parse
from pyfix.common.readlline import logical_lines
from pyfix.maps import dict_file
from pyfix.maps.dict import (FLAG_FOLD_MUL, FLAG_NO_REGSUB, FLAG_PATTERN,
                             FLAG_SRC_RHS_IS_FILE, Dict, SurrogateDict)
from pyfix.maps.dict_stream import StreamError, dict_stream_open

SPACE_BYTES = b" \t\n\v\f\r"
_UPPER = bytes(range(65, 91))
_LOWER_TABLE = bytes.maketrans(_UPPER, _UPPER.lower())


def c_isalnum(byte):
    return 48 <= byte <= 57 or 65 <= byte <= 90 or 97 <= byte <= 122


def c_bytes(text):
    """A key as the C string Postfix sees: its bytes up to the first NUL."""
    data = text.encode("utf-8", "surrogateescape")
    nul = data.find(b"\0")
    return data if nul < 0 else data[:nul]


def to_text(data):
    return data.decode("utf-8", "surrogateescape")


def lowercase(data):
    """Postfix's lowercase(): ASCII letters only."""
    return data.translate(_LOWER_TABLE)


def c_atoi(digits):
    """atoi() of a digit string on LP64 glibc: strtol clamps, the int cast wraps."""
    value = min(int(digits), 2 ** 63 - 1) & 0xFFFFFFFF
    return value - 2 ** 32 if value >= 2 ** 31 else value


def c_int(value):
    value &= 0xFFFFFFFF
    return value - 2 ** 32 if value >= 2 ** 31 else value


def skip_space(line, pos):
    while pos < len(line) and line[pos] in SPACE_BYTES:
        pos += 1
    return pos


def is_keyword(line, word):
    """strncasecmp(line, word) == 0 && !ISALNUM(line[len(word)])."""
    size = len(word)
    return (lowercase(line[:size]) == word
            and (len(line) == size or not c_isalnum(line[size])))


class Pattern:
    __slots__ = ("regexp", "options", "match")

    def __init__(self, regexp, options, match):
        self.regexp = regexp
        self.options = options
        self.match = match


class MatchRule:
    __slots__ = ("lineno", "first", "first_match", "second", "second_match",
                 "replacement", "max_sub")
    kind = 1


class IfRule:
    __slots__ = ("lineno", "expr", "match", "endif")
    kind = 2


class EndifRule:
    __slots__ = ("lineno",)
    kind = 3


class RuleTable(Dict):
    """What regexp: and pcre: tables share: rule syntax, if/endif, `$n` handling."""

    label = "regexp"                     # "<label> map <name>, line <n>: ..."
    range_word = "out-of-range"          # the prescan's wording differs between the two
    second_pattern = True                # /pattern1/!/pattern2/

    def __init__(self, name, open_flags, dict_flags):
        super().__init__(name, open_flags, dict_flags | FLAG_PATTERN)
        self.rules = []

    # -- diagnostics ----------------------------------------------------------------------

    def warn(self, lineno, text):
        msg.warn("%s map %s, line %d: %s" % (self.label, self.name, lineno, text))

    # -- hooks for the engines ----------------------------------------------------------

    def get_pattern(self, lineno, line, pos):
        """Parse `[!]<delim>regexp<delim>flags` at pos: (Pattern, new pos) or None."""
        raise NotImplementedError

    def compile(self, lineno, pattern, nosub):
        """The compiled expression, or None after a warning."""
        raise NotImplementedError

    def group_count(self, expr):
        raise NotImplementedError

    def execute(self, lineno, expr, match, subject, nsub):
        """(rule condition holds, match offsets or None)."""
        raise NotImplementedError

    def group_text(self, subject, spans, n):
        raise NotImplementedError

    # -- loading ----------------------------------------------------------------------------

    def load(self, source):
        stack = []
        for line, lineno, _ in logical_lines(source.text, self.name):
            data = c_bytes(line).rstrip(SPACE_BYTES)
            if not data:
                continue
            rule = self.parse_line(lineno, data, len(stack))
            if rule is None:
                continue
            if rule.kind == IfRule.kind:
                stack.append(rule)
            elif rule.kind == EndifRule.kind:
                stack.pop().endif = len(self.rules)
            self.rules.append(rule)
        while stack:
            self.warn(stack.pop().lineno, "IF has no matching ENDIF")

    def prescan(self, lineno, text):
        """Check the `$n` in a result: (ok, largest n, the literal text or None)."""
        state = {"max_sub": 0, "literal": None}

        def action(kind, name):
            if kind == EXPR:
                state["literal"] = None
                if not name.isascii() or not name.isdigit():
                    self.warn(lineno, 'non-numeric replacement index "%s"' % name)
                    return PARSE_ERROR
                n = c_atoi(name) & 0xFFFFFFFFFFFFFFFF
                if n < 1:
                    self.warn(lineno, '%s replacement index "%s"' % (self.range_word, name))
                    return PARSE_ERROR
                state["max_sub"] = max(state["max_sub"], n)
            elif kind == LITERAL and state["max_sub"] == 0:
                state["literal"] = name
            return PARSE_OK

        status = mac_parse(text, action)
        return not status & PARSE_ERROR, state["max_sub"], state["literal"]

    def parse_line(self, lineno, line, nesting):
        if not c_isalnum(line[0]):
            return self.parse_match(lineno, line)
        if is_keyword(line, b"if"):
            pos = skip_space(line, 2)
            got = self.get_pattern(lineno, line, pos)
            if got is None:
                return None
            pattern, pos = got
            pos = skip_space(line, pos)
            if pos < len(line):
                self.warn(lineno, 'ignoring extra text after IF statement: "%s"'
                          % to_text(line[pos:]))
                self.warn(lineno, "do not prepend whitespace to statements between IF and ENDIF")
            expr = self.compile(lineno, pattern, False)
            if expr is None:
                return None
            rule = IfRule()
            rule.lineno, rule.expr, rule.match, rule.endif = lineno, expr, pattern.match, None
            return rule
        if is_keyword(line, b"endif"):
            if nesting == 0:
                self.warn(lineno, "ignoring ENDIF without matching IF")
                return None
            if skip_space(line, 5) < len(line):
                self.warn(lineno, "ignoring extra text after ENDIF")
            rule = EndifRule()
            rule.lineno = lineno
            return rule
        self.warn(lineno, "ignoring unrecognized request")
        return None

    def parse_match(self, lineno, line):
        got = self.get_pattern(lineno, line, 0)
        if got is None:
            return None
        first, pos = got
        second = None
        if self.second_pattern and pos < len(line) and line[pos] == 0x21:
            got = self.get_pattern(lineno, line, pos)
            if got is None:
                return None
            second, pos = got
        pos = skip_space(line, pos)
        if pos >= len(line):
            self.warn(lineno, "no replacement text: using empty string")
        text = to_text(line[pos:])
        if self.flags & FLAG_SRC_RHS_IS_FILE:
            try:
                text = dict_file.file_to_b64(text)
            except dict_file.DictFileError as exc:
                self.warn(lineno, "%s: skipping this rule" % exc)
                return None
        ok, max_sub, literal = self.prescan(lineno, text)
        if not ok:
            self.warn(lineno, "bad replacement syntax: skipping this rule")
            return None
        if max_sub > 0 and not first.match:
            self.warn(lineno, "$number found in negative match replacement text: "
                      "skipping this rule")
            return None
        if max_sub > 0 and self.flags & FLAG_NO_REGSUB:
            self.warn(lineno, "regular expression substitution is not allowed: "
                      "skipping this rule")
            return None
        first_expr = self.compile(lineno, first, max_sub == 0)
        if first_expr is None:
            return None
        if max_sub > self.group_count(first_expr):
            self.warn(lineno, 'out of range replacement index "%d": skipping this rule'
                      % c_int(max_sub))
            return None
        second_expr = None
        if second is not None:
            second_expr = self.compile(lineno, second, True)
            if second_expr is None:
                return None
        rule = MatchRule()
        rule.lineno = lineno
        rule.first, rule.first_match = first_expr, first.match
        rule.second = second_expr
        rule.second_match = second.match if second is not None else 1
        rule.max_sub = max_sub
        rule.replacement = literal if literal is not None else text
        return rule

    # -- lookups ------------------------------------------------------------------------------

    def _lookup(self, key):
        if msg.verbose:
            msg.info("dict_%s_lookup: %s: %s" % (self.label, self.name, key))
        subject = c_bytes(key)
        if self.flags & FLAG_FOLD_MUL:
            subject = lowercase(subject)
        return self.search(subject)

    def search(self, subject):
        rules = self.rules
        count = len(rules)
        index = 0
        while index < count:
            rule = rules[index]
            index += 1
            kind = rule.kind
            if kind == 1:
                hit, spans = self.execute(rule.lineno, rule.first, rule.first_match,
                                          subject, rule.max_sub)
                if not hit:
                    continue
                if rule.second is not None and not self.execute(
                        rule.lineno, rule.second, rule.second_match, subject, 0)[0]:
                    continue
                if rule.max_sub == 0:
                    return rule.replacement
                return self.expand(rule, subject, spans)
            if kind == 2:
                if self.execute(rule.lineno, rule.expr, rule.match, subject, 0)[0]:
                    continue
                if rule.endif is None:
                    return None
                index = rule.endif + 1
        return None

    def expand(self, rule, subject, spans):
        parts = []

        def action(kind, text):
            if kind == EXPR:
                piece = self.group_text(subject, spans, int(text))
                if not piece:
                    return PARSE_UNDEF
                parts.append(piece)
            else:
                parts.append(text.encode("utf-8", "surrogateescape"))
            return PARSE_OK

        if mac_parse(rule.replacement, action) & PARSE_ERROR:
            msg.panic("%s map %s, line %d: bad replacement syntax"
                      % (self.label, self.name, rule.lineno))
        return to_text(b"".join(parts))


# -- the C library's POSIX regex functions ------------------------------------------------

REG_EXTENDED, REG_ICASE, REG_NEWLINE, REG_NOSUB = 1, 2, 4, 8
REG_NOMATCH = 1


class _RegexT(ctypes.Structure):
    # glibc's struct re_pattern_buffer, with room to spare after re_nsub.
    _fields_ = [("buffer", ctypes.c_void_p), ("allocated", ctypes.c_size_t),
                ("used", ctypes.c_size_t), ("syntax", ctypes.c_ulong),
                ("fastmap", ctypes.c_void_p), ("translate", ctypes.c_void_p),
                ("re_nsub", ctypes.c_size_t), ("bits", ctypes.c_uint),
                ("spare", ctypes.c_char * 64)]


class _RegMatch(ctypes.Structure):
    _fields_ = [("rm_so", ctypes.c_int), ("rm_eo", ctypes.c_int)]


class _Libc:
    def __init__(self):
        libc = c_library()
        self.regcomp = libc.regcomp
        self.regcomp.argtypes = [ctypes.POINTER(_RegexT), ctypes.c_char_p, ctypes.c_int]
        self.regcomp.restype = ctypes.c_int
        self.regexec = libc.regexec
        self.regexec.argtypes = [ctypes.POINTER(_RegexT), ctypes.c_char_p, ctypes.c_size_t,
                                 ctypes.c_void_p, ctypes.c_int]
        self.regexec.restype = ctypes.c_int
        self.regerror = libc.regerror
        self.regerror.argtypes = [ctypes.c_int, ctypes.POINTER(_RegexT), ctypes.c_char_p,
                                  ctypes.c_size_t]
        self.regerror.restype = ctypes.c_size_t
        self.regfree = libc.regfree
        self.regfree.argtypes = [ctypes.POINTER(_RegexT)]
        self.regfree.restype = None
        libc.newlocale.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p]
        libc.newlocale.restype = ctypes.c_void_p
        self.uselocale = libc.uselocale
        self.uselocale.argtypes = [ctypes.c_void_p]
        self.uselocale.restype = ctypes.c_void_p
        self.c_locale = libc.newlocale(1, b"C", None)     # LC_CTYPE_MASK; the rest is C too

    def enter_c_locale(self):
        return self.uselocale(self.c_locale)

    def leave_c_locale(self, previous):
        self.uselocale(previous)

    def error_text(self, code, expr):
        buf = ctypes.create_string_buffer(256)
        self.regerror(code, expr, buf, 256)
        return to_text(buf.value)


_libc = None


def _get_libc():
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


class RegexpDict(RuleTable):
    type = "regexp"

    def __init__(self, name, open_flags, dict_flags):
        super().__init__(name, open_flags, dict_flags)
        self.lib = _get_libc()
        self.pmatch = None
        self._compiled = []

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
                if pos + 1 < size:
                    pos += 1
                else:
                    break       # a backslash at the end closes the pattern
            elif line[pos] == delim:
                break
            pos += 1
        if pos >= size:
            self.warn(lineno, 'no closing regexp delimiter "%s": skipping this rule'
                      % to_text(bytes([delim])))
            return None
        regexp = line[start:pos]
        pos += 1
        options = REG_EXTENDED | REG_ICASE
        while pos < size and line[pos] not in SPACE_BYTES and line[pos] != 0x21:
            flag = line[pos]
            if flag == 0x69:                # i
                options ^= REG_ICASE
            elif flag == 0x6D:              # m
                options ^= REG_NEWLINE
            elif flag == 0x78:              # x
                options ^= REG_EXTENDED
            else:
                self.warn(lineno, 'unknown regexp option "%s": skipping this rule'
                          % to_text(bytes([flag])))
                return None
            pos += 1
        return Pattern(regexp, options, int(match)), pos

    def compile(self, lineno, pattern, nosub):
        expr = _RegexT()
        code = self.lib.regcomp(ctypes.byref(expr), pattern.regexp,
                                pattern.options | (REG_NOSUB if nosub else 0))
        if code != 0:
            self.warn(lineno, self.lib.error_text(code, expr))
            return None
        self._compiled.append(expr)
        return expr

    def group_count(self, expr):
        return expr.re_nsub

    def execute(self, lineno, expr, match, subject, nsub):
        if nsub > 0:
            nmatch, pmatch = nsub + 1, self.pmatch
        else:
            nmatch, pmatch = 0, None
        code = self.lib.regexec(ctypes.byref(expr), subject, nmatch, pmatch, 0)
        if code == REG_NOMATCH:
            return not match, None
        if code == 0:
            return bool(match), pmatch
        self.warn(lineno, self.lib.error_text(code, expr))
        return False, None

    def group_text(self, subject, spans, n):
        span = spans[n]
        if span.rm_so < 0 or span.rm_so == span.rm_eo:
            return b""
        return subject[span.rm_so:span.rm_eo]

    def load(self, source):
        previous = self.lib.enter_c_locale()
        try:
            super().load(source)
        finally:
            self.lib.leave_c_locale(previous)
        max_sub = max((r.max_sub for r in self.rules if r.kind == 1), default=0)
        if max_sub > 0:
            self.pmatch = (_RegMatch * (max_sub + 1))()

    def _lookup(self, key):
        previous = self.lib.enter_c_locale()
        try:
            return super()._lookup(key)
        finally:
            self.lib.leave_c_locale(previous)

    def close(self):
        for expr in self._compiled:
            self.lib.regfree(ctypes.byref(expr))
        self._compiled = []
        self.rules = []

    def __del__(self):
        if getattr(self, "_compiled", None):
            self.close()


def open_rule_table(cls, name, open_flags, dict_flags):
    """The opener that regexp:, pcre: share: read-only, file or inline source."""
    if open_flags != os.O_RDONLY:
        return SurrogateDict(cls.type, name, open_flags, dict_flags,
                             "%s:%s map requires O_RDONLY access mode" % (cls.type, name))
    try:
        source = dict_stream_open(cls.type, name)
    except StreamError as exc:
        return SurrogateDict(cls.type, name, open_flags, dict_flags, str(exc))
    table = cls(name, open_flags, dict_flags)
    table.owner_uid = source.owner_uid
    table.load(source)
    return table


def open_regexp(name, open_flags, dict_flags):
    return open_rule_table(RegexpDict, name, open_flags, dict_flags)

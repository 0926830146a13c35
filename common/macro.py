"""`$name` expansion of parameter values (util/mac_parse.c, util/mac_expand.c).

Every form Postfix 3.7 knows: `$name`, `${name}`, `$(name)`, `$$`, `${name?value}`,
`${name:value}`, `${name?{value1}:{value2}}`, and the relational form
`${{expr1} op {expr2} ? {a} : {b}}` with == != < <= >= > (numeric when both sides are
all digits) plus the compatibility-level operators `<level` etc. Syntax errors are warned
with Postfix's wording and reported in the returned status; nothing here raises.

lookup(name, mode) returns the value of a name or None when it is undefined; mode is
MODE_TEST for `${name?...}`/`${name:...}` and MODE_USE otherwise.
"""

import re

from pyfix.common import msg
from pyfix.common.compat_level import compat_level_from_string
from pyfix.common.strings import SPACE, byte_prefix
from pyfix.common.valid_hostname import all_digits

LITERAL, EXPR = 1, 2
PARSE_OK, PARSE_ERROR, PARSE_UNDEF = 0, 1, 2
FLAG_NONE, FLAG_RECURSE, FLAG_APPEND, FLAG_SCAN, FLAG_PRINTABLE = 0, 1, 2, 4, 8
MODE_TEST, MODE_USE = 0, 1

_TRUE, _FALSE = "true", ""
_OPERATORS = ("==", "!=", "<", "<=", ">=", ">")
_OPERATOR_CHARS = "<>!=?+-*/~&|%"
# Postfix's own text, doubled quotes and all (MAC_EXP_OP_STR_ANY in mac_expand.c).
_OPERATOR_LIST = '"==" or "!="" or "<"" or "<="" or ">="" or ">"'
_LONG_MAX = 2 ** 63 - 1
_MAX_NESTING = 100
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")


def _compare(delta, op):
    return {"==": delta == 0, "!=": delta != 0, "<": delta < 0, "<=": delta <= 0,
            ">=": delta >= 0, ">": delta > 0}[op]


def _to_long(text):
    if int(text) > _LONG_MAX:
        msg.fatal("mac_exp_eval: bad conversion: %s" % text)
    return int(text)


def _plain_relop(left, op, right):
    if all_digits(left) and all_digits(right):
        delta = _to_long(left) - _to_long(right)
    else:
        a = left.encode("utf-8", "surrogateescape")
        b = right.encode("utf-8", "surrogateescape")
        delta = (a > b) - (a < b)
    return _compare(delta, op)


def _level_relop(left, op, right):
    """`<level` and friends: compare compatibility levels such as 3.6 and 2."""
    left_val = compat_level_from_string(left, msg.warn)
    if left_val < 0:
        return None
    right_val = compat_level_from_string(right, msg.warn)
    if right_val < 0:
        return None
    return _compare(left_val - right_val, op)


# Operator suffixes (mac_expand_add_relop): "level" is registered in every Postfix program.
_RELOP_EXTENSIONS = {op + "level": _level_relop for op in _OPERATORS}


def mac_parse(value, action):
    """Split value into literal text and macro references; call action(kind, text)."""
    status = PARSE_OK
    buf = []
    pos = 0
    n = len(value)
    while pos < n:
        dollar = value.find("$", pos)
        if dollar < 0:
            buf.append(value[pos:])
            break
        if dollar > pos:
            buf.append(value[pos:dollar])
            pos = dollar
        if pos + 1 < n and value[pos + 1] == "$":
            buf.append("$")
            pos += 2
            continue
        if buf:
            status |= action(LITERAL, "".join(buf))
            buf = []
        pos += 1
        if pos < n and value[pos] in "({":
            open_paren = value[pos]
            close_paren = ")" if open_paren == "(" else "}"
            level = 1
            pos += 1
            end = pos
            while level > 0:
                if end >= n:
                    msg.warn('truncated macro reference: "%s"' % value)
                    status |= PARSE_ERROR
                    break
                if value[end] == open_paren:
                    level += 1
                if value[end] == close_paren:
                    level -= 1
                end += 1
            if status & PARSE_ERROR:
                break
            buf.append(value[pos:end - 1])
            pos = end
        else:
            end = pos
            while end < n and (value[end].isascii() and value[end].isalnum() or value[end] == "_"):
                end += 1
            buf.append(value[pos:end])
            pos = end
        name = "".join(buf)
        buf = []
        if not name:
            status |= PARSE_ERROR
            msg.warn('empty macro name: "%s"' % value)
            break
        status |= action(EXPR, name)
    if buf and not status & PARSE_ERROR:
        status |= action(LITERAL, "".join(buf))
    return status


def _find_left_curly(text, pos):
    """Position of a `{` after optional whitespace at pos, or -1."""
    skip = pos
    while skip < len(text) and text[skip] in SPACE:
        skip += 1
    return skip if skip < len(text) and text[skip] == "{" else -1


def _skip_space(text, pos):
    while pos < len(text) and text[pos] in SPACE:
        pos += 1
    return pos


def _is_name_char(ch):
    return ch.isascii() and ch.isalnum() or ch == "_"


class _Expansion:
    """The state of one mac_expand() call (MAC_EXP_CONTEXT)."""

    def __init__(self, lookup, flags, filter_chars):
        self.lookup = lookup
        self.flags = flags
        self.filter = filter_chars
        self.result = []
        self.status = PARSE_OK
        self.level = 0

    def error(self, text):
        msg.warn(text)
        self.status |= PARSE_ERROR
        return self.status

    def curly_payload(self, text, pos):
        """Balance the `{}` at pos; return (payload, position after it and its blanks)."""
        level = 1
        cp = pos + 1
        while True:
            if cp >= len(text):
                self.error('unbalanced {} in attribute expression: "%s"' % text[pos:])
                return None, cp
            if text[cp] == "{":
                level += 1
            elif text[cp] == "}":
                level -= 1
                if level <= 0:
                    break
            cp += 1
        return text[pos + 1:cp], _skip_space(text, cp + 1)

    def relational(self, text, pos):
        """Parse and evaluate `{left} op {right}` at pos; return (lookup result, new pos)."""
        left, cp = self.curly_payload(text, pos)
        if left is None:
            return None, None
        op_len = 0
        while cp + op_len < len(text) and text[cp + op_len] in _OPERATOR_CHARS:
            op_len += 1
        op = text[cp:cp + op_len]
        if op not in _OPERATORS:
            self.error('%s expected at: "...%s}>>>%s"'
                       % (_OPERATOR_LIST, left, byte_prefix(text[cp:], 20)))
            return None, None
        op_pos = cp
        cp += op_len
        relop = _plain_relop
        if cp < len(text) and text[cp].isascii() and text[cp].isalnum():
            suffix_end = cp
            while suffix_end < len(text) and text[suffix_end].isascii() \
                    and text[suffix_end].isalnum():
                suffix_end += 1
            relop = _RELOP_EXTENSIONS.get(text[op_pos:suffix_end])
            if relop is None:
                self.error('bad operator suffix at: "...%s>>>%s"' % (op, text[cp:suffix_end]))
                return None, None
            cp = suffix_end
        right_pos = _find_left_curly(text, cp)
        if right_pos < 0:
            self.error('"{expression}" expected at: "...{%s} %s>>>%s"'
                       % (left, op, byte_prefix(text[cp:], 20)))
            return None, None
        right, cp = self.curly_payload(text, right_pos)
        if right is None:
            return None, None
        left_value, left_status = mac_expand(left, self.lookup, self.flags, self.filter)
        right_value, right_status = mac_expand(right, self.lookup, self.flags, self.filter)
        self.status |= left_status | right_status
        result = None
        if not self.flags & FLAG_SCAN:
            result = relop(left_value, op, right_value)
            if result is None:
                self.status |= PARSE_ERROR
        if self.status & PARSE_ERROR:
            return None, None
        if self.flags & FLAG_SCAN:
            return None, cp
        return (_TRUE if result else _FALSE), cp

    def named(self, text):
        """Parse `name`, `name?...` or `name:...`; return (operator, lookup result, pos)."""
        if _PLAIN_NAME.fullmatch(text):
            return "", self.lookup(text, MODE_USE), len(text)
        start = cp = _skip_space(text, 0)
        while True:
            after = _skip_space(text, cp)
            ch = text[after] if after < len(text) else ""
            if ch == "":
                return "", self.lookup(text[start:cp], MODE_USE), len(text)
            if ch in "?:":
                return ch, self.lookup(text[start:cp], MODE_TEST), after + 1
            if not _is_name_char(text[cp]):
                self.error('attribute name syntax error at: "...%s>>>%s"'
                           % (text[:cp], byte_prefix(text[cp:], 20)))
                return None, None, None
            cp += 1

    def branch(self, text, cp):
        """The operand after `?` or `:`: a `{...}` group or the rest of the text."""
        curly = _find_left_curly(text, cp)
        if curly >= 0:
            payload, cp = self.curly_payload(text, curly)
            return payload, cp
        return text[cp:], len(text)

    def callback(self, kind, text):
        if self.level > _MAX_NESTING:
            self.error('unreasonable macro call nesting: "%s"' % text)
        self.level += 1
        if self.status & PARSE_ERROR:
            return self.status
        if kind == EXPR:
            if self.expression(text) is None:
                return self.status
        elif not self.flags & FLAG_SCAN:
            self.result.append(text)
        self.level -= 1
        return self.status

    def expression(self, text):
        """Expand one `${...}` body; None after a syntax error."""
        scan = self.flags & FLAG_SCAN
        curly = _find_left_curly(text, 0)
        if curly >= 0:
            lookup, cp = self.relational(text, curly)
            if cp is None:
                return None
            op = text[cp] if cp < len(text) else ""
            if op:
                if op not in "?:":
                    self.error('"?" or ":" expected at: "...}>>>%s"' % byte_prefix(text[cp:], 20))
                    return None
                cp += 1
        else:
            op, lookup, cp = self.named(text)
            if op is None:
                return None
        if op == "?":
            if_true, cp = self.branch(text, cp)
            if if_true is None:
                return None
            if lookup or scan:
                self.status |= mac_parse(if_true, self.callback)
            if cp >= len(text):
                return True
            if text[cp] != ":":
                self.error('":" expected at: "...%s}>>>%s"' % (if_true, byte_prefix(text[cp:], 20)))
                return None
            op = ":"
            cp += 1
        if op == ":":
            if_false, cp = self.branch(text, cp)
            if if_false is None:
                return None
            if not lookup or scan:
                self.status |= mac_parse(if_false, self.callback)
            if cp < len(text):
                self.error('unexpected input at: "...%s}>>>%s"'
                           % (if_false, byte_prefix(text[cp:], 20)))
                return None
            return True
        self.use_value(lookup)
        return True

    def use_value(self, lookup):
        if lookup is None:
            self.status |= PARSE_UNDEF
        elif lookup == "" or self.flags & FLAG_SCAN:
            pass
        elif self.flags & FLAG_RECURSE:
            self.status |= mac_parse(lookup, self.callback)
        elif self.flags & FLAG_PRINTABLE:
            self.result.append("".join(ch if ch.isprintable() and ch.isascii() else "_"
                                       for ch in lookup))
        elif self.filter is not None:
            self.result.append("".join(ch if ch in self.filter else "_" for ch in lookup))
        else:
            self.result.append(lookup)


def mac_expand(pattern, lookup, flags=FLAG_RECURSE, filter_chars=None):
    """Expand pattern; return (text, status) where status has PARSE_ERROR/PARSE_UNDEF bits."""
    expansion = _Expansion(lookup, flags, filter_chars)
    status = mac_parse(pattern, expansion.callback)
    return "".join(expansion.result), status | expansion.status

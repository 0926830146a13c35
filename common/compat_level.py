"""Compatibility levels (global/compat_level.c): `major[.minor[.patch]]` as one comparable number.

`compatibility_level` selects the defaults of a Postfix release; values compare numerically
field by field (3.10 is above 3.9), which the `<level` relational operators rely on.
"""

_PATCH_BITS = 10
_MINOR_BITS = 10
_MAJOR_SHIFT = _PATCH_BITS + _MINOR_BITS
_LONG_MAX = 2 ** 63 - 1
_FIELD_MAX = (1 << 10) - 1


def _leading_number(text):
    """strtol() on a field: (value, rest) or None when no digits start the text."""
    pos = 0
    sign = 1
    while pos < len(text) and text[pos] in " \t\n\v\f\r":
        pos += 1
    if pos < len(text) and text[pos] in "+-":
        sign = -1 if text[pos] == "-" else 1
        pos += 1
    start = pos
    while pos < len(text) and "0" <= text[pos] <= "9":
        pos += 1
    if pos == start:
        return None
    return sign * int(text[start:pos]), text[pos:]


def compat_level_from_string(text, complain):
    """The internal form of a level, or -1 after complain(message) for bad syntax."""
    major = _leading_number(text)
    if major is not None and (major[1] == "" or major[1][0] == ".") \
            and 0 <= major[0] <= (_LONG_MAX >> _MAJOR_SHIFT):
        result = major[0] << _MAJOR_SHIFT
        if major[1] == "":
            return result
        minor = _leading_number(major[1][1:])
        if minor is not None and (minor[1] == "" or minor[1][0] == ".") \
                and 0 <= minor[0] <= _FIELD_MAX:
            result |= minor[0] << _PATCH_BITS
            if minor[1] == "":
                return result
            patch = _leading_number(minor[1][1:])
            if patch is not None and patch[1] == "" and 0 <= patch[0] <= _FIELD_MAX:
                return result | patch[0]
    complain('malformed compatibility level syntax: "%s"' % text)
    return -1


def compat_level_to_string(level):
    major = level >> _MAJOR_SHIFT
    if major <= 2:
        return str(major)
    text = "%d.%d" % (major, (level >> _PATCH_BITS) & _FIELD_MAX)
    patch = level & _FIELD_MAX
    return text + (".%d" % patch if patch else "")

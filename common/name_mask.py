"""Bit masks from lists of names, such as canonical_classes = envelope_sender,
header_sender (Postfix's util/name_mask.c and name_code.c).

name_mask() splits the text on commas and white space and ORs the bits of each name;
by default an unknown name is Postfix's fatal error `unknown <context> value "<name>" in
"<text>"`, with FLAG_WARN a warning (the name is skipped), with FLAG_RETURN a warning
and a result of 0. Names compare exactly, or case-insensitively with FLAG_ANY_CASE.
"""

from pyfix.common import msg

FLAG_FATAL = 1 << 0
FLAG_RETURN = 1 << 1
FLAG_WARN = 1 << 2
FLAG_IGNORE = 1 << 3
FLAG_ANY_CASE = 1 << 4
DELIMITERS = ", \t\r\n"


def name_mask(context, table, text, flags=FLAG_FATAL, delimiters=DELIMITERS):
    """table is a sequence of (name, bits)."""
    result = 0
    for name in _split(text, delimiters):
        for entry_name, bits in table:
            if (name.lower() == entry_name.lower()) if flags & FLAG_ANY_CASE \
                    else name == entry_name:
                result |= bits
                break
        else:
            if flags & FLAG_FATAL:
                msg.fatal('unknown %s value "%s" in "%s"' % (context, name, text))
            elif flags & FLAG_RETURN:
                msg.warn('unknown %s value "%s" in "%s"' % (context, name, text))
                return 0
            elif flags & FLAG_WARN:
                msg.warn('unknown %s value "%s" in "%s"' % (context, name, text))
    return result


def name_code(table, text, default=-1):
    """The code of the name in table (pairs of name, code), or default."""
    for entry_name, code in table:
        if entry_name == text:
            return code
    return default


def _split(text, delimiters):
    word = []
    for ch in text:
        if ch in delimiters:
            if word:
                yield "".join(word)
                word = []
        else:
            word.append(ch)
    if word:
        yield "".join(word)

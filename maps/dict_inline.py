"""inline: tables, written in the table name (Postfix's util/dict_inline.c).

    inline:{ key1=value1, key2 = value2, { key3 = text with spaces }, "quoted key"=x }

Entries are separated by commas or whitespace outside braces; an entry in braces may hold
spaces (its outer whitespace is dropped). A key ends at whitespace or `=` outside double
quotes (the quotes stay part of the key, as in Postfix's split_qnameval()). A later
duplicate replaces an earlier one. The entries live in an internal table (dict_ht.py):
fixed keys, lowercased with FLAG_FOLD_FIX. A table that cannot be parsed is a surrogate
with Postfix's message (`bad syntax: ...`, `missing '=' after attribute name: ...`).
"""

import os

from pyfix.common import msg
from pyfix.common.strings import (CHARS_BRACE, CHARS_COMMA_SP, SPACE, balanced_length,
                                  extract_parens, tokens_quoted, trim_trailing)
from pyfix.maps import dict_file
from pyfix.maps.dict import FLAG_SRC_RHS_IS_FILE, FLAG_UTF8_MASK, SurrogateDict
from pyfix.maps.dict_ht import HtDict


def split_qnameval(text):
    """`key = value` with an optionally quoted key: (key, value, error)."""
    pos = 0
    while pos < len(text) and text[pos] in SPACE:
        pos += 1
    if pos >= len(text):
        return None, None, "no key found; expected format: key = value"
    start = end = pos
    in_quotes = False
    while end < len(text):
        ch = text[end]
        if ch == "\\":
            end += 1
            if end >= len(text):
                break
        elif ch in SPACE or ch == "=":
            if not in_quotes:
                break
        elif ch == '"':
            in_quotes = not in_quotes
        end += 1
    if in_quotes:
        return None, None, "unbalanced '\"'"
    eq = end
    while eq < len(text) and text[eq] in SPACE:
        eq += 1
    if eq >= len(text) or text[eq] != "=":
        return None, None, "missing '=' after attribute name"
    value = eq + 1
    while value < len(text) and text[value] in SPACE:
        value += 1
    return text[start:end], trim_trailing(text[value:]), None


class InlineDict(HtDict):
    type = "inline"


def _valid_utf8(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:          # bytes that were not UTF-8 (surrogate escapes)
        return False
    return True


def _bad(name, open_flags, dict_flags, reason):
    return SurrogateDict("inline", name, open_flags, dict_flags, reason)


def open_inline(name, open_flags, dict_flags):
    if open_flags != os.O_RDONLY:
        return _bad(name, open_flags, dict_flags,
                    "inline:%s map requires O_RDONLY access mode" % name)
    if msg.utf8_enable and dict_flags & FLAG_UTF8_MASK and not _valid_utf8(name):
        return _bad(name, open_flags, dict_flags,
                    'bad UTF-8 syntax: "inline:%s"; need "inline:{name=value...}"' % name)
    length = balanced_length(name, CHARS_BRACE)
    if length == 0 or length != len(name) or length == 2:
        return _bad(name, open_flags, dict_flags,
                    'bad syntax: "inline:%s"; need "inline:{name=value...}"' % name)
    table = InlineDict(name, open_flags, dict_flags)
    table.owner_uid = 0
    err = None
    count = 0
    for nameval in tokens_quoted(name[1:-1], CHARS_COMMA_SP, CHARS_BRACE):
        if nameval.startswith(CHARS_BRACE[0]):
            nameval, err = extract_parens(nameval, CHARS_BRACE, strip=True)
            if err:
                break
        key, value, err = split_qnameval(nameval)
        if err:
            break
        if dict_flags & FLAG_SRC_RHS_IS_FILE:
            try:
                value = dict_file.file_to_b64(value)
            except dict_file.DictFileError as exc:
                err = str(exc)
                break
        table.update(key, value)
        count += 1
    if err or count == 0:
        return _bad(name, open_flags, dict_flags,
                    '%s: "inline:%s"; need "inline:{name=%s...}"'
                    % (err or "empty table", name,
                       "filename" if dict_flags & FLAG_SRC_RHS_IS_FILE else "value"))
    return table

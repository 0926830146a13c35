"""The source text of a rule-based table, from a file or inline (Postfix's util/dict_stream.c).

regexp:, pcre: and cidr: read their rules from a file, or, when the table name starts with
`{`, from the name itself: `regexp:{ {/a/ b}, {/c/ d} }` is the two-line file `/a/ b` and
`/c/ d`. The outer braces are removed first; then the text is cut at commas and whitespace
outside braces, and each piece must be one `{rule}` whose surrounding whitespace is dropped.
Errors are Postfix's extpar() texts, prefixed with `<type> map: `.
"""

import os

from pyfix.common import msg
from pyfix.common.readlline import ReadError, read_text
from pyfix.common.strings import CHARS_BRACE, CHARS_COMMA_SP, extract_parens, tokens_quoted


class StreamError(Exception):
    """The table cannot be opened; str(exc) is the reason, worded as Postfix words it."""


def inline_to_multiline(mapname):
    """`{ {rule}, {rule} }` -> ("rule\\nrule\\n", None), or (None, error text)."""
    payload, err = extract_parens(mapname, CHARS_BRACE)
    if err:
        return None, err
    lines = []
    for token in tokens_quoted(payload, CHARS_COMMA_SP, CHARS_BRACE):
        rule, err = extract_parens(token, CHARS_BRACE, strip=True)
        if err:
            return None, err
        lines.append(rule + "\n")
    return "".join(lines), None


class Source:
    """The text of a table and facts about where it came from."""

    def __init__(self, text, path, owner_uid, read_error=None):
        self.text = text
        self.path = path                # None for an inline table
        self.owner_uid = owner_uid
        self.read_error = read_error    # an OSError after a successful open (a directory)


def dict_stream_open(dict_type, mapname):
    """The table's Source; raises StreamError with Postfix's reason text."""
    if mapname.startswith(CHARS_BRACE[0]):
        text, err = inline_to_multiline(mapname)
        if err:
            raise StreamError("%s map: %s" % (dict_type, err))
        return Source(text, None, os.getuid())
    try:
        st = os.stat(mapname)
        text = read_text(mapname)
    except ReadError as exc:
        # Postfix opens a directory without complaint and then reads nothing.
        return Source("", mapname, st.st_uid, read_error=exc)
    except OSError as exc:
        raise StreamError("open %s: %s" % (mapname, msg.strerror(exc))) from None
    return Source(text, mapname, st.st_uid)

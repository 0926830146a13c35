"""Splitting an SMTP command line into words (Postfix's smtpd/smtpd_token.c).

Words are separated by white space; `<...>` and `"..."` are single words that may hold
white space (nested quotes inside `<>` too, backslash escapes kept), and `to:`/`from:`
end a word so that `MAIL FROM:<a@b>` is three words. A `<` or `"` without its end marks
the word as an error (SMTPD_TOK_ERROR): mail_cmd/rcpt_cmd answer "bad address syntax".
"""

TOK_OTHER = 0
TOK_ADDR = 1
TOK_ERROR = 2

_SPACE = " \t\n\v\f\r"


class Token:
    __slots__ = ("strval", "tokval")

    def __init__(self, strval, tokval=TOK_OTHER):
        self.strval = strval
        self.tokval = tokval

    def __repr__(self):
        return "Token(%r, %d)" % (self.strval, self.tokval)


def _quoted(text, pos, out, start, last):
    """smtp_quoted(): copy through the matching `last`; returns (pos, complete)."""
    stack = [last]
    wanted = last
    out.append(start)
    n = len(text)
    while pos < n:
        c = text[pos]
        pos += 1
        out.append(c)
        if c == "\\":
            if pos >= n:
                break
            out.append(text[pos])
            pos += 1
        elif c == wanted:
            if len(stack) == 1:
                return pos, True
            stack.pop()
            wanted = stack[-1]
        elif c == '"':
            stack.append('"')
            wanted = '"'
        elif c == "<" and wanted == ">":
            stack.append(">")
            wanted = ">"
    return pos, False


def _next_token(text, pos):
    """smtp_next_token(): (Token or None, next position)."""
    out = []
    tokval = TOK_OTHER
    n = len(text)
    while pos < n:
        c = text[pos]
        pos += 1
        if c in _SPACE:
            while pos < n and text[pos] in _SPACE:
                pos += 1
            if out:
                break
        elif c == "<" or c == '"':
            pos, complete = _quoted(text, pos, out, c, ">" if c == "<" else c)
            if not complete:
                tokval = TOK_ERROR
        elif c == ":":
            out.append(c)
            word = "".join(out).lower()
            if word in ("to:", "from:"):
                break
        else:
            if c == "\\":
                out.append(c)
                if pos >= n:
                    break
                c = text[pos]
                pos += 1
            out.append(c)
    if not out:
        return None, pos
    return Token("".join(out), tokval), pos


def smtpd_token(text):
    """The words of a command line (an empty list for a blank line)."""
    argv = []
    pos = 0
    while True:
        token, pos = _next_token(text, pos)
        if token is None:
            return argv
        argv.append(token)

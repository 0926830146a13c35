"""String operations with Postfix's exact semantics (util/ stringops, split_nameval, extpar).

Configuration syntax in Postfix rests on a handful of small tokenizers; reproducing
their corner cases (what counts as whitespace, how `{}` nests, what an error says) is
what keeps pyfix's reading of a file identical to Postfix's.
"""

# ISSPACE() in Postfix is the C locale's isspace(): these six characters only.
SPACE = " \t\n\v\f\r"
CHARS_COMMA_SP = ", \t\r\n"
CHARS_BRACE = "{}"


def isspace(ch):
    return ch != "" and ch in SPACE


def skip_space(text, pos=0):
    """Index of the first non-SPACE character at or after pos."""
    while pos < len(text) and text[pos] in SPACE:
        pos += 1
    return pos


def trim_trailing(text):
    end = len(text)
    while end > 0 and text[end - 1] in SPACE:
        end -= 1
    return text[:end]


def split_nameval(text):
    """Split `name = value` as Postfix's split_nameval(); returns (name, value, error)."""
    start = skip_space(text)
    if start == len(text) or text[start] == "=":
        return None, None, "missing attribute name"
    end = start
    while end < len(text) and text[end] not in SPACE and text[end] != "=":
        end += 1
    eq = skip_space(text, end)
    if eq >= len(text) or text[eq] != "=":
        return None, None, "missing '=' after attribute name"
    value = trim_trailing(text[skip_space(text, eq + 1):])
    return text[start:end], value, None


def tokens(text, separators=CHARS_COMMA_SP):
    """mystrtok(): the non-empty runs between separator characters."""
    out = []
    token = []
    for ch in text:
        if ch in separators:
            if token:
                out.append("".join(token))
                token = []
        else:
            token.append(ch)
    if token:
        out.append("".join(token))
    return out


def tokens_quoted(text, separators=CHARS_COMMA_SP, parens=CHARS_BRACE):
    """mystrtokq(): like tokens(), but a separator inside balanced parens is data."""
    out = []
    pos = 0
    n = len(text)
    while True:
        while pos < n and text[pos] in separators:
            pos += 1
        if pos >= n:
            return out
        start = pos
        level = 0
        while pos < n:
            ch = text[pos]
            if ch == parens[0]:
                level += 1
            elif level > 0 and ch == parens[1]:
                level -= 1
            elif level == 0 and ch in separators:
                break
            pos += 1
        out.append(text[start:pos])
        pos += 1


def balanced_length(text, parens=CHARS_BRACE):
    """balpar(): length of the balanced `{...}` group at the start of text, or 0."""
    if not text or text[0] != parens[0]:
        return 0
    level = 1
    for i in range(1, len(text)):
        ch = text[i]
        if ch == parens[1]:
            level -= 1
            if level == 0:
                return i + 1
        elif ch == parens[0]:
            level += 1
    return 0


def extract_parens(text, parens=CHARS_BRACE, strip=False):
    """extpar(): the text inside a leading `{...}`; returns (payload, error or None)."""
    err = None
    if not text or text[0] != parens[0]:
        err = "no '%s' at start of text in \"%s\"" % (parens[0], text)
        payload = text
    else:
        length = balanced_length(text, parens)
        if length == 0:
            err = "missing '%s' in \"%s\"" % (parens[1:], text)
            payload = text[1:]
        else:
            if length != len(text):
                err = "syntax error after '%s' in \"%s\"" % (parens[1:], text)
            payload = text[1:length - 1]
    if strip:
        payload = trim_trailing(payload)
        payload = payload[skip_space(payload):]
    return payload, err


def byte_prefix(text, limit):
    """The first `limit` bytes of text, as C's %.Ns prints them."""
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "surrogateescape")


def byte_length(text):
    return len(text.encode("utf-8", "surrogateescape"))


_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def unescape(text):
    """Postfix's unescape(): C escapes (\\n, \\t, ..., \\ooo octal, \\\\) in a parameter
    value such as message_reject_characters or smtpd_expansion_filter. A backslash at
    the end is dropped; an octal value wraps to one byte, as C's char does."""
    out = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        pos += 1
        if ch != "\\":
            out.append(ch)
            continue
        if pos >= len(text):
            break
        ch = text[pos]
        pos += 1
        if ch in _C_ESCAPES:
            out.append(_C_ESCAPES[ch])
        elif "0" <= ch <= "7":
            value = ord(ch) - ord("0")
            for _ in range(2):
                if pos < len(text) and "0" <= text[pos] <= "7":
                    value = (value << 3) | (ord(text[pos]) - ord("0"))
                    pos += 1
            out.append(chr(value & 0xFF))
        else:
            out.append(ch)
    return "".join(out)

"""RFC 822 quoting of the local part of an address (Postfix's global/quote_822_local.c).

Postfix keeps addresses in two forms: internal (unquoted: `foo bar@example.com`) and
external (quoted as RFC 822 requires: `"foo bar"@example.com`). Lookups try one form and
then the other; these are the two conversions, character for character as Postfix does
them. Source routes (`@a,@b:user@c`) keep their route part unquoted.
"""

SPECIALS = '()<>,;:\\"[]'
QUOTE_FLAG_8BITCLEAN = 1 << 0
QUOTE_FLAG_EXPOSE_AT = 1 << 1
QUOTE_FLAG_APPEND = 1 << 2
QUOTE_FLAG_BARE_LOCALPART = 1 << 3
QUOTE_FLAG_DEFAULT = QUOTE_FLAG_8BITCLEAN   # quote_flags.h: UTF-8 text needs no quotes


def _is_dot_string(local, flags):
    if not local or local[0] == "." or local[-1] == ".":
        return False
    previous = ""
    for ch in local:
        code = ord(ch)
        if ch == "." and previous == ".":
            return False
        if code > 127 and not flags & QUOTE_FLAG_8BITCLEAN:
            return False
        if ch == " " or code < 32 or code == 127:
            return False
        if ch in SPECIALS or (ch == "@" and not flags & QUOTE_FLAG_EXPOSE_AT):
            return False
        previous = ch
    return True


def _quoted(local, flags):
    out = ['"']
    for ch in local:
        if (ord(ch) > 127 and not flags & QUOTE_FLAG_8BITCLEAN) or ch in '"\\\r':
            out.append("\\")
        out.append(ch)
    out.append('"')
    return "".join(out)


def _route_end(mbox):
    if mbox.startswith("@"):
        colon = mbox.find(":")
        if colon >= 0:
            return colon + 1
    return 0


def quote_822_local(mbox, flags=QUOTE_FLAG_DEFAULT):
    """The external form of an internal-form address (quote_822_local_flags())."""
    start = _route_end(mbox)
    at = -1 if flags & QUOTE_FLAG_BARE_LOCALPART else mbox.rfind("@", start)
    end = len(mbox) if at < 0 else at
    local = mbox[start:end]
    if _is_dot_string(local, flags):
        return mbox
    return mbox[:start] + _quoted(local, flags & QUOTE_FLAG_8BITCLEAN) + mbox[end:]


def unquote_822_local(mbox):
    """The internal form of an external-form address: quotes and backslashes removed."""
    start = _route_end(mbox)
    out = [mbox[:start]]
    in_quote = False
    bare_at_out = bare_at_src = None
    pos = start
    while pos < len(mbox):
        ch = mbox[pos]
        if ch == '"':
            in_quote = not in_quote
            pos += 1
            continue
        if ch == "@" and not in_quote:
            bare_at_out = len("".join(out))
            bare_at_src = pos
        elif ch == "\\":
            if pos + 1 >= len(mbox):
                pos += 1
                continue
            pos += 1
            ch = mbox[pos]
        out.append(ch)
        pos += 1
    text = "".join(out)
    if bare_at_out is not None:
        text = text[:bare_at_out] + mbox[bare_at_src:]
    return text

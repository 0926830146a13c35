"""RFC 3463 enhanced status codes in reply texts (Postfix's global/dsn_util.c).

dsn_valid() measures a `d.ddd.ddd` code at the start of a text, dsn_split() separates an
optional code from the free text (falling back to a default code), and dsn_prepend()
gives "code text" with the text's own code if it has one.
"""

DSN_DIGS2 = 3
DSN_DIGS3 = 3
_SPACE = " \t\n\v\f\r"


def dsn_valid(text):
    """The length of the status code at the start of text, or 0."""
    if len(text) < 2 or text[0] not in "245" or text[1] != ".":
        return 0
    pos = 2
    end = pos
    while end < len(text) and text[end].isdigit() and text[end].isascii():
        end += 1
    if not 1 <= end - pos <= DSN_DIGS2 or end >= len(text) or text[end] != ".":
        return 0
    pos = end + 1
    end = pos
    while end < len(text) and text[end].isdigit() and text[end].isascii():
        end += 1
    if not 1 <= end - pos <= DSN_DIGS3 or (end < len(text) and text[end] not in _SPACE):
        return 0
    return end


def dsn_split(def_dsn, text):
    """(status code, free text): the text's own code, else def_dsn."""
    text = text.lstrip(_SPACE)
    length = dsn_valid(text)
    if length:
        status = text[:length]
        rest = text[length + 1:]
    else:
        length = dsn_valid(def_dsn)
        if not length:
            raise ValueError('dsn_split: bad default status "%s"' % def_dsn)
        status = def_dsn[:length]
        rest = text
    return status, rest.lstrip(_SPACE)


def dsn_prepend(def_dsn, text):
    status, rest = dsn_split(def_dsn, text)
    return status + " " + rest

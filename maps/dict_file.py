"""Table values that name files (Postfix's util/dict_file.c; `postmap -F`).

With FLAG_SRC_RHS_IS_FILE a table's right-hand side is a list of file names (separated by
commas or whitespace); the value stored is the base64 encoding of the files' contents,
joined with a newline, and a lookup decodes it again. Errors are Postfix's texts.
"""

import base64

from pyfix.common import msg
from pyfix.common.strings import CHARS_COMMA_SP, tokens


class DictFileError(Exception):
    """str(exc) is Postfix's reason (`open /x: No such file or directory`)."""


def file_to_buf(pathnames):
    """The contents of the named files, joined with newlines (bytes)."""
    names = tokens(pathnames, CHARS_COMMA_SP)
    if not names:
        raise DictFileError("empty pathname list: >>%s<<'" % pathnames)
    parts = []
    for name in names:
        try:
            with open(name, "rb") as fp:
                parts.append(fp.read())
        except IsADirectoryError as exc:
            raise DictFileError("read %s: %s" % (name, msg.strerror(exc))) from None
        except OSError as exc:
            raise DictFileError("open %s: %s" % (name, msg.strerror(exc))) from None
    return b"\n".join(parts)


def file_to_b64(pathnames):
    """The base64 text that a table stores for `pathnames`."""
    return base64.b64encode(file_to_buf(pathnames)).decode("ascii")


_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_UNB64 = {ch: i for i, ch in enumerate(_B64)}


def _b64_decode(raw):
    """base64_decode(): groups of four; a `=` in the third or fourth place ends the data."""
    if len(raw) % 4:
        return None
    out = bytearray()
    for pos in range(0, len(raw), 4):
        c0, c1 = _UNB64.get(raw[pos]), _UNB64.get(raw[pos + 1])
        if c0 is None or c1 is None:
            return None
        out.append((c0 << 2 | c1 >> 4) & 0xFF)
        if raw[pos + 2] == 0x3D:
            break
        c2 = _UNB64.get(raw[pos + 2])
        if c2 is None:
            return None
        out.append((c1 << 4 | c2 >> 2) & 0xFF)
        if raw[pos + 3] == 0x3D:
            break
        c3 = _UNB64.get(raw[pos + 3])
        if c3 is None:
            return None
        out.append((c2 << 6 | c3) & 0xFF)
    return bytes(out)


def file_from_b64(value):
    """Decode a stored value; DictFileError on bad base64 (text as Postfix's)."""
    raw = value.encode("utf-8", "surrogateescape")
    data = _b64_decode(raw)
    if data is None:
        raise DictFileError("malformed BASE64 value: %s"
                            % raw[:30].decode("utf-8", "surrogateescape"))
    return data.decode("utf-8", "surrogateescape")


def file_lookup(table, key):
    """dict_file_lookup(): look up key and decode the file contents it names."""
    from pyfix.maps.dict import ERR_CONFIG
    value = table.lookup(key)
    if value is None:
        return None
    try:
        return file_from_b64(value)
    except DictFileError as exc:
        msg.warn("table %s:%s: key %s: %s" % (table.type, table.name, key, exc))
        table.error = ERR_CONFIG
        return None

"""Postfix's attribute protocol in its "attr0" form (util/attr_print0.c, attr_scan0.c).

Every request between Postfix processes is a list of attributes: `name\\0value\\0` for
each, and an empty name (a lone `\\0`) to end the list. Numbers travel as unsigned
decimal text, binary data as base64, and a name-value table as `{\\0` name/value pairs
`}\\0`. print0() builds the bytes of one list; AttrStream reads lists from a socket the
way attr_scan0() does, with its warnings for a list that is not what the reader wants.

A reader says what it wants as a list of (type, name) pairs, (STREQ, name, expected)
for an attribute that must have one exact value, or (HASH,) for "all the rest". The
flags are Postfix's: STRICT (= MISSING | EXTRA) complains about a missing or an
unexpected attribute, MORE leaves the rest of the list for another scan. scan() returns
(count, values) where count is attr_scan0()'s result: the number of attributes
converted, 0 at a clean end of input, -1 on an error.
"""

import base64
import binascii
import socket

from pyfix.common import msg

END, INT, STR, HASH, LONG, DATA, FUNC, STREQ = 0, 1, 2, 3, 4, 5, 6, 7

FLAG_NONE = 0
FLAG_MISSING = 1 << 0
FLAG_EXTRA = 1 << 1
FLAG_MORE = 1 << 2
FLAG_PRINTABLE = 1 << 3
FLAG_STRICT = FLAG_MISSING | FLAG_EXTRA

NAME_OPEN = "{"
NAME_CLOSE = "}"
HASH_LIMIT = 1024
_UINT_MAX = 2 ** 32
_ULONG_MAX = 2 ** 64


def _bytes(text):
    if isinstance(text, bytes):
        return text
    return text.encode("utf-8", "surrogateescape")


def _text(data):
    return data.decode("utf-8", "surrogateescape")


# -- writing --------------------------------------------------------------------------------

def print0(attrs, flags=FLAG_NONE):
    """The bytes of one attribute list.

    attrs holds (name, value) pairs: an int is sent as an unsigned number, str as text,
    bytes as base64 data, a dict as a name-value table; (LONG, name, value) sends an
    unsigned long. With FLAG_MORE the list terminator is left off.
    """
    out = []
    for item in attrs:
        if len(item) == 3:
            kind, name, value = item
        else:
            name, value = item
            kind = None
        if type(value) is str:                      # the usual case first
            out.append(_name_prefix(name))
            out.append(value.encode("utf-8", "surrogateescape"))
            out.append(b"\0")
            continue
        if isinstance(value, dict):
            out.append(NAME_OPEN.encode() + b"\0")
            for key, val in value.items():
                out.append(_bytes(key) + b"\0" + _bytes(val) + b"\0")
            out.append(NAME_CLOSE.encode() + b"\0")
            continue
        out.append(_name_prefix(name))
        if isinstance(value, bool) or isinstance(value, int):
            limit = _ULONG_MAX if kind == LONG else _UINT_MAX
            out.append(b"%d" % (int(value) % limit))
        elif isinstance(value, (bytes, bytearray)):
            out.append(base64.b64encode(bytes(value)))
        else:
            out.append(_bytes(value))
        out.append(b"\0")
    if not flags & FLAG_MORE:
        out.append(b"\0")
    return b"".join(out)


# -- reading --------------------------------------------------------------------------------

class AttrStream:
    """A buffered attribute reader and writer on one connected socket.

    path names the stream in warnings as Postfix's VSTREAM_PATH does ("private/proxymap
    socket" on the client side, "proxymap socket" in a server). timeout (seconds, None
    for none) bounds each wait for input; running out is reported as Postfix's
    `timeout on ... while reading ...`.
    """

    def __init__(self, sock, path, timeout=None):
        self.sock = sock
        self.path = path
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.timed_out = False

    # -- bytes ------------------------------------------------------------------------------

    def _fill(self):
        if self.eof:
            return False
        try:
            self.sock.settimeout(self.timeout)
            data = self.sock.recv(65536)
        except socket.timeout:
            self.timed_out = True
            self.eof = True
            return False
        except OSError:
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def pending(self):
        """Whether input is buffered (another request may be waiting)."""
        return bool(self.buf)

    def peek(self):
        """The next byte without consuming it, or None at end of input."""
        if not self.buf and not self._fill():
            return None
        return self.buf[0]

    def getc(self):
        ch = self.peek()
        if ch is not None:
            del self.buf[0]
        return ch

    def get_null(self):
        """Bytes up to a NUL (consumed): (data, True), or (partial data, False) at EOF."""
        start = 0
        while True:
            end = self.buf.find(b"\0", start)
            if end >= 0:
                data = bytes(self.buf[:end])
                del self.buf[:end + 1]
                return data, True
            start = len(self.buf)
            if not self._fill():
                data = bytes(self.buf)
                self.buf.clear()
                return data, False

    def write(self, data):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def send(self, attrs, flags=FLAG_NONE):
        """attr_print0() and flush; False when the peer is gone."""
        try:
            self.write(print0(attrs, flags))
        except OSError:
            return False
        return True

    # -- attr_scan0 ---------------------------------------------------------------------------

    def _string(self, context):
        data, terminated = self.get_null()
        if not terminated and not data:
            msg.warn("%s on %s while reading %s"
                     % ("timeout" if self.timed_out else "premature end-of-input",
                        self.path, context))
            return None
        if not terminated:
            msg.warn("unexpected end-of-input from %s while reading %s"
                     % (self.path, context))
            return None
        if msg.verbose:
            msg.info("%s: %s" % (context, _text(data) or "(end)"))
        return data

    def _number(self, context, limit):
        data = self._string(context)
        if data is None:
            return None
        value = _parse_unsigned(data, limit)
        if value is None:
            msg.warn("malformed numerical data from %s while reading %s: %.100s"
                     % (self.path, context, _text(data)))
        return value

    def _data(self, context):
        data = self._string(context)
        if data is None:
            return None
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            msg.warn("malformed base64 data from %s while reading %s: %.100s"
                     % (self.path, context, _text(data)))
            return None

    def scan(self, wanted, flags=FLAG_NONE):
        """Read one attribute list; returns (count, {name: value}) as attr_scan0() does."""
        values = {}
        if self.peek() is None:
            return 0, values
        if not msg.verbose:
            found = self._scan_buffered(wanted, flags)
            if found is not None:
                return found
        specs = list(wanted) + [(END,)]
        index = 0
        conversions = 0
        kind = None
        while True:
            if kind not in (HASH, "close"):
                spec = specs[index]
                index += 1
                kind = spec[0]
                if kind == END:
                    if flags & FLAG_MORE:
                        return conversions, values
                    wanted_name = "(list terminator)"
                elif kind == HASH:
                    wanted_name = "(any attribute name or list terminator)"
                    table = values.setdefault(spec[1] if len(spec) > 1 else "", {})
                else:
                    wanted_name = spec[1]
            result = self._locate(kind, wanted_name, flags)
            if result is None:
                return -1, values
            status, name = result
            if status == "end":
                return conversions, values
            if status == "open":
                kind = "close"
                wanted_name = "(any attribute name or '}')"
                continue
            if status == "close":
                kind = None
                continue
            if status == "stop":
                return conversions, values
            ok = self._convert(kind, spec, name, flags, values,
                               table if kind in (HASH, "close") else None)
            if ok is None:
                return -1, values
            if ok == "stop":
                return conversions, values
            if ok != "skip":
                conversions += 1

    def _scan_buffered(self, wanted, flags):
        """The usual case in one pass over the buffer: the whole list is already read,
        every wanted attribute comes in the wanted order with a good value, and the list
        ends there. Then (count, values), as scan() would return; otherwise None, with
        nothing consumed, and scan() takes its general way (reading, warnings)."""
        buf = self.buf
        pos = 0
        values = {}
        count = 0
        for spec in wanted:
            kind = spec[0]
            if kind not in _FAST_KINDS:
                return None
            prefix = _name_prefix(spec[1])
            if not buf.startswith(prefix, pos):
                return None
            start = pos + len(prefix)
            end = buf.find(b"\0", start)
            if end < 0:
                return None
            data = bytes(buf[start:end])
            pos = end + 1
            if kind == STR:
                value = data.decode("utf-8", "surrogateescape")
                if flags & FLAG_PRINTABLE:
                    value = msg.printable(value)
            elif kind == INT or kind == LONG:
                value = _parse_unsigned(data, _UINT_MAX if kind == INT else _ULONG_MAX)
                if value is None:
                    return None
            elif kind == DATA:
                try:
                    value = base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    return None
            else:                                   # STREQ
                if data.decode("utf-8", "surrogateescape") != spec[2]:
                    return None
                continue
            values[spec[1]] = value
            count += 1
        if not flags & FLAG_MORE:
            if pos >= len(buf) or buf[pos] != 0:
                return None
            pos += 1
        del buf[:pos]
        return count, values

    def _locate(self, kind, wanted_name, flags):
        """Find the next wanted attribute name; (status, name) or None on error."""
        while True:
            if msg.verbose:
                msg.info("%s: wanted attribute: %s" % (self.path, wanted_name))
            data = self._string("input attribute name")
            if data is None:
                return None
            name = _text(data)
            if not name:
                if kind not in (END, HASH) and flags & FLAG_MISSING:
                    msg.warn("missing attribute %s in input from %s" % (wanted_name, self.path))
                return "end", name
            if kind == HASH and name == NAME_OPEN:
                return "open", name
            if kind == "close" and name == NAME_CLOSE:
                return "close", name
            if kind in (HASH, "close") or (kind != END and name == wanted_name):
                return "found", name
            if flags & FLAG_EXTRA:
                msg.warn("unexpected attribute %s from %s (expecting: %s)"
                         % (name, self.path, wanted_name))
                return "stop", name
            self._string("input attribute value")

    def _convert(self, kind, spec, name, flags, values, table):
        context = "input attribute value"
        if kind in (INT, LONG):
            value = self._number(context, _UINT_MAX if kind == INT else _ULONG_MAX)
        elif kind == STR:
            data = self._string(context)
            value = None if data is None else _text(data)
            if value is not None and flags & FLAG_PRINTABLE:
                value = msg.printable(value)
        elif kind == DATA:
            value = self._data(context)
        elif kind == STREQ:
            data = self._string(context)
            if data is None:
                return None
            if _text(data) != spec[2]:
                msg.warn("unexpected %s %s from %s (expected: %s)"
                         % (name, _text(data), self.path, spec[2]))
                return None
            return "skip"
        else:
            return self._hash_entry(name, flags, table)
        if value is None:
            return None
        values[spec[1]] = value
        return "ok"

    def _hash_entry(self, name, flags, table):
        data = self._string("input attribute value")
        if data is None:
            return None
        value = _text(data)
        if flags & FLAG_PRINTABLE:
            name, value = msg.printable(name), msg.printable(value)
        if name in table:
            if flags & FLAG_EXTRA:
                msg.warn("duplicate attribute %s in input from %s" % (name, self.path))
                return "stop"
        elif len(table) >= HASH_LIMIT:
            msg.warn("attribute count exceeds limit %d in input from %s"
                     % (HASH_LIMIT, self.path))
            return "stop"
        else:
            table[name] = value
        return "ok"


_FAST_KINDS = (INT, STR, LONG, DATA, STREQ)
_name_prefixes = {}


def _name_prefix(name):
    """`name\\0` as bytes, made once per attribute name."""
    prefix = _name_prefixes.get(name)
    if prefix is None:
        prefix = _bytes(name) + b"\0"
        if len(_name_prefixes) < 1000:          # names are the programs' constants
            _name_prefixes[name] = prefix
    return prefix


def _parse_unsigned(data, limit):
    """sscanf("%u%c"): optional leading space and sign, digits, nothing after."""
    if data.isdigit():                      # plain digits: the usual case
        return int(data) % limit
    text = data.decode("ascii", "replace")
    body = text.lstrip(" \t\n\v\f\r")
    sign = 1
    if body[:1] in "+-" and body[:1]:
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if not body or not body.isascii() or not body.isdigit():
        return None
    return (sign * int(body)) % limit

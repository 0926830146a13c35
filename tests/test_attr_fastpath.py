"""The attr0 codec's fast paths give what its general code gives.

AttrStream.scan() first tries one pass over a buffered, well-formed list
(_scan_buffered); print0() sends text values the short way. Both must be invisible:
the same values, the same count, the same bytes left unread, the same warnings, the
same request bytes, for good and bad input alike. Each case runs twice over a socket
pair, once as it is and once with the fast path switched off.
"""

import random
import socket

import pytest

from pyfix.common import attr, msg

NAMES = ["flags", "queue_id", "x", "status"]
VALUES = [b"12", b"0", b"-3", b" 7", b"+4", b"abc", b"YWJj", b"", b"4294967296",
          b"18446744073709551617", b"\xff\xfe", b"a\x01b"]
KINDS = [attr.INT, attr.STR, attr.LONG, attr.DATA, attr.STREQ]
FLAGS = [attr.FLAG_NONE, attr.FLAG_STRICT, attr.FLAG_MORE, attr.FLAG_STRICT | attr.FLAG_MORE,
         attr.FLAG_MISSING, attr.FLAG_EXTRA, attr.FLAG_PRINTABLE | attr.FLAG_STRICT]


def _random_list(rng):
    out = b""
    for _ in range(rng.randint(0, 4)):
        out += rng.choice(NAMES + [""]).encode() + b"\0" + rng.choice(VALUES) + b"\0"
    if rng.random() < 0.8:
        out += b"\0"
    return out


def _random_wanted(rng):
    wanted = []
    for name in rng.sample(NAMES, rng.randint(0, 3)):
        kind = rng.choice(KINDS)
        wanted.append((kind, name, "abc") if kind == attr.STREQ else (kind, name))
    if rng.random() < 0.1:
        wanted.append((attr.HASH,))
    return wanted


def _scan_twice(data, wanted, flags, monkeypatch, fast):
    warnings = []
    with monkeypatch.context() as patch:
        patch.setattr(msg, "warn", warnings.append)
        if not fast:
            patch.setattr(attr.AttrStream, "_scan_buffered", lambda self, w, f: None)
        writer, reader = socket.socketpair()
        try:
            writer.sendall(data)
            writer.close()
            stream = attr.AttrStream(reader, "test socket", 5)
            results = [stream.scan(wanted, flags), stream.scan(wanted, flags)]
            return results, bytes(stream.buf), warnings
        finally:
            reader.close()


@pytest.mark.parametrize("seed", range(4))
def test_scan_fast_path_matches_general_path(seed, monkeypatch):
    rng = random.Random(seed)
    for _ in range(500):
        data = _random_list(rng) + _random_list(rng)
        wanted = _random_wanted(rng)
        flags = rng.choice(FLAGS)
        fast = _scan_twice(data, wanted, flags, monkeypatch, True)
        general = _scan_twice(data, wanted, flags, monkeypatch, False)
        assert fast == general, (data, wanted, flags)


def test_scan_fast_path_takes_a_delivery_request(monkeypatch):
    """The usual request: every attribute in order, the list ends; nothing is left."""
    data = attr.print0([("flags", 3), ("queue_id", "4ABC"), ("x", b"raw")])
    wanted = [(attr.INT, "flags"), (attr.STR, "queue_id"), (attr.DATA, "x")]
    results, rest, warnings = _scan_twice(data, wanted, attr.FLAG_STRICT, monkeypatch, True)
    assert results[0] == (3, {"flags": 3, "queue_id": "4ABC", "x": b"raw"})
    assert results[1] == (0, {})
    assert rest == b"" and warnings == []


def _print0_general(attrs, flags=attr.FLAG_NONE):
    """print0() as it was written first: one growing buffer, every type checked."""
    out = bytearray()
    for item in attrs:
        if len(item) == 3:
            kind, name, value = item
        else:
            name, value = item
            kind = None
        if isinstance(value, dict):
            out += b"{\0"
            for key, val in value.items():
                out += attr._bytes(key) + b"\0" + attr._bytes(val) + b"\0"
            out += b"}\0"
            continue
        out += attr._bytes(name) + b"\0"
        if isinstance(value, bool) or isinstance(value, int):
            limit = 2 ** 64 if kind == attr.LONG else 2 ** 32
            out += b"%d" % (int(value) % limit)
        elif isinstance(value, (bytes, bytearray)):
            import base64
            out += base64.b64encode(bytes(value))
        else:
            out += attr._bytes(value)
        out += b"\0"
    if not flags & attr.FLAG_MORE:
        out += b"\0"
    return bytes(out)


def test_print0_matches_general_encoding():
    rng = random.Random(7)
    values = ["abc", "\u00e9\udcff", "", 5, -1, 2 ** 40, True, b"xyz", bytearray(b"q"),
              {"k": "v", "k2": "\u00e9"}]
    for _ in range(2000):
        items = []
        for _ in range(rng.randint(0, 4)):
            value, name = rng.choice(values), rng.choice(["a", "\u00e9", "status"])
            items.append((attr.LONG, name, value) if rng.random() < 0.3 else (name, value))
        flags = rng.choice([attr.FLAG_NONE, attr.FLAG_MORE])
        assert attr.print0(items, flags) == _print0_general(items, flags), items

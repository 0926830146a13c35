"""The record codec's fast paths give what its general code gives.

split_attribute() is split_nameval() with a regex for the well-formed case; get_raw()
reads the type and the first length byte at once; encode() has a table for one-byte
lengths; SocketReader.read() answers from its buffer. Each is compared with the plain
way on many inputs, good and bad.
"""

import io
import random
import socket

from pyfix.common import msg
from pyfix.common.strings import split_nameval
from pyfix.queue import record


def test_split_attribute_matches_split_nameval():
    rng = random.Random(1)
    alphabet = " \t\n\v\f\r=ab\x00\u00e9\x1c\x85\u3000"
    for _ in range(50000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        assert record.split_attribute(text) == split_nameval(text), repr(text)
    for text in ["log_client_name=localhost", "a = b c  ", "x=", "=y", "a b=c",
                 "rewrite_context=remote\n", "", "   ", "name=value=more"]:
        assert record.split_attribute(text) == split_nameval(text), repr(text)


def _get_raw_plain(reader):
    """rec_get_raw() one byte at a time, as get_raw() was first written."""
    stream = reader.stream
    rec_type = stream.read(1)
    if not rec_type:
        return record.EOF, None
    length = shift = 0
    while True:
        if shift >= 32:
            msg.warn("%s: too many length bits, record type %d" % (reader.path, rec_type[0]))
            return record.ERROR, None
        byte = stream.read(1)
        if not byte:
            msg.warn("%s: unexpected EOF reading length, record type %d"
                     % (reader.path, rec_type[0]))
            return record.ERROR, None
        length |= record._int_shift(byte[0] & 0x7F, shift)
        if not byte[0] & 0x80:
            break
        shift += 7
    if length < 0 or (reader.maxsize > 0 and length > reader.maxsize):
        msg.warn("%s: illegal length %d, record type %d" % (reader.path, length, rec_type[0]))
        reader._read(length)
        return record.ERROR, None
    payload = reader._read(length)
    if len(payload) != length:
        msg.warn("%s: unexpected EOF in data, record type %d length %d"
                 % (reader.path, rec_type[0], length))
        return record.ERROR, None
    return rec_type, payload


def _records(data, maxsize, get, monkeypatch):
    warnings = []
    with monkeypatch.context() as patch:
        patch.setattr(msg, "warn", warnings.append)
        reader = record.RecordReader(io.BytesIO(data), "q", maxsize=maxsize)
        found = []
        for _ in range(8):
            found.append((get(reader), reader.tell()))
    return found, warnings


def test_get_raw_matches_bytewise_reading(monkeypatch):
    """Type and length bytes read together or one by one: the same records, the same
    warnings, the same position after each."""
    rng = random.Random(2)
    for _ in range(20000):
        data = bytes(rng.choice([0x52, 0x80, 0xFF, 0x01, 0x00, 0x81, 0x45, 0x7F])
                     for _ in range(rng.randint(0, 14)))
        maxsize = rng.choice([0, 3])
        assert _records(data, maxsize, record.RecordReader.get_raw, monkeypatch) == \
            _records(data, maxsize, _get_raw_plain, monkeypatch), data


def test_encode_lengths():
    for length in list(range(300)) + [16383, 16384, 2 ** 21, 2 ** 28]:
        payload = b"x" * length
        assert record.encode(record.NORM, payload) == \
            record.NORM + record.encode_length(length) + payload
    assert record.encode(record.NORM, "\u00e9") == b"N\x02\xc3\xa9"


def test_socket_reader_reads_like_a_stream():
    rng = random.Random(3)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        writer, sock = socket.socketpair()
        try:
            writer.sendall(data[2:])
            writer.close()
            reader = record.SocketReader(sock, data[:2], 5)
            expected = io.BytesIO(data)
            for _ in range(10):
                size = rng.randint(0, 10)
                assert reader.read(size) == expected.read(size)
        finally:
            sock.close()

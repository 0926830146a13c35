"""Queue-file records: one type byte, a base-128 length, the payload (Postfix's
global/record.c and rec_type.h).

The one record codec of pyfix: cleanup writes queue files with it, smtpd and pickup stream
messages to cleanup with it, qmgr, showq, postcat and postsuper read them with it. The
length is little-endian base 128 (low seven bits first, 0x80 = more bytes follow); a
zero length is a single 0x00 byte. Payloads are bytes.
"""

from pyfix.common import msg

# Record types (rec_type.h).
SIZE = b"C"
TIME = b"T"
CTIME = b"c"
FULL = b"F"
INSP = b"I"
FILT = b"L"
FROM = b"S"
DONE = b"D"
RCPT = b"R"
ORCP = b"O"
DRCP = b"/"
WARN = b"W"
ATTR = b"A"
KILL = b"K"
RDR = b">"
FLGS = b"f"
DELAY = b"d"
MESG = b"M"
CONT = b"L"
NORM = b"N"
DTXT = b"w"
XTRA = b"X"
RRTO = b"r"
ERTO = b"e"
PRIO = b"P"
PTR = b"p"
VERP = b"V"
DSN_RET = b"<"
DSN_ENVID = b"i"
DSN_ORCPT = b"o"
DSN_NOTIFY = b"n"
MILT_COUNT = b"m"
END = b"E"

EOF = None            # no more records
ERROR = b"\0"         # a malformed record (a warning was logged)

# The record types allowed in each part of a queue file (rec_type.h's REC_TYPE_ENVELOPE,
# REC_TYPE_CONTENT, REC_TYPE_EXTRACT).
ENVELOPE_TYPES = b"MCTcFILSDRO/WVA>K<ion"
CONTENT_TYPES = b"XLNw"
EXTRACT_TYPES = b"EDRO/PreAFIL>Kon"

# Fixed-width numbers, so that a record can be rewritten in place (REC_TYPE_*_FORMAT).
PTR_FORMAT = b"%15d"
SIZE_FORMAT = b"%15d %15d %15d %15d %15d %15d"
WARN_FORMAT = b"%15d"

_INT_BITS = 32
REVERSE_JUMP_LIMIT = 10000


def encode_length(length):
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            byte |= 0x80
        out.append(byte)
        if not length:
            return bytes(out)


def encode(rec_type, payload=b""):
    """One record as bytes (rec_put())."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogateescape")
    return rec_type + encode_length(len(payload)) + payload


def rec_put(stream, rec_type, payload=b""):
    stream.write(encode(rec_type, payload))


class RecordReader:
    """Records from a binary stream (rec_get_raw()); the stream's name is used in warnings."""

    def __init__(self, stream, path=None, maxsize=0):
        self.stream = stream
        self.path = path or getattr(stream, "name", "(stream)")
        self.maxsize = maxsize
        self._last_jump = 0
        self._reverse_jumps = 0

    def tell(self):
        return self.stream.tell()

    def get_raw(self):
        """(type, payload), (EOF, None) at the end, (ERROR, None) for a bad record."""
        rec_type = self.stream.read(1)
        if not rec_type:
            return EOF, None
        length = 0
        shift = 0
        while True:
            if shift >= _INT_BITS:
                msg.warn("%s: too many length bits, record type %d" % (self.path, rec_type[0]))
                return ERROR, None
            byte = self.stream.read(1)
            if not byte:
                msg.warn("%s: unexpected EOF reading length, record type %d"
                         % (self.path, rec_type[0]))
                return ERROR, None
            length |= (byte[0] & 0x7F) << shift
            if not byte[0] & 0x80:
                break
            shift += 7
        if self.maxsize > 0 and length > self.maxsize:
            msg.warn("%s: illegal length %d, record type %d" % (self.path, length, rec_type[0]))
            self.stream.read(length)
            return ERROR, None
        payload = self.stream.read(length)
        if len(payload) != length:
            msg.warn("%s: unexpected EOF in data, record type %d length %d"
                     % (self.path, rec_type[0], length))
            return ERROR, None
        return rec_type, payload

    def get(self, follow_pointers=True, skip_padding=True):
        """The next record, following `p` pointers and skipping `w` padding (rec_get())."""
        while True:
            rec_type, payload = self.get_raw()
            if rec_type == PTR and follow_pointers:
                if not self.goto(payload):
                    return ERROR, None
                continue
            if rec_type == DTXT and skip_padding:
                continue
            return rec_type, payload

    def goto(self, payload):
        """Follow a pointer record; a zero offset is a placeholder (rec_goto()). Backward
        jumps are limited, so that a damaged file cannot loop forever."""
        text = payload.lstrip(b" \t\n\v\f\r")
        if not text.isdigit():
            msg.warn("%s: malformed pointer record value: %s"
                     % (self.path, payload.decode("ascii", "replace")))
            return False
        offset = int(text)
        if offset == 0:
            return True
        if offset <= self._last_jump:
            self._reverse_jumps += 1
            if self._reverse_jumps > REVERSE_JUMP_LIMIT:
                msg.warn("%s: too many reverse jump records" % self.path)
                return False
        self.stream.seek(offset)
        self._last_jump = offset
        return True

    def __iter__(self):
        while True:
            rec_type, payload = self.get()
            if rec_type is EOF or rec_type == ERROR:
                return
            yield rec_type, payload


def parse_size_record(payload):
    """The numbers of a `C` record: up to six integers (older files have fewer)."""
    fields = payload.split()
    return [int(field) for field in fields]


"""Queue-file records: one type byte, a base-128 length, the payload (Postfix's
global/record.c and rec_type.h).

The one record codec of pyfix: cleanup writes queue files with it, smtpd and pickup stream
messages to cleanup with it, qmgr, showq, postcat and postsuper read them with it. The
length is little-endian base 128 (low seven bits first, 0x80 = more bytes follow); a
zero length is a single 0x00 byte. Payloads are bytes.
"""

import re

from pyfix.common import msg
from pyfix.common.strings import split_nameval

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
# A malformed record (a warning was logged); it comes with payload None, which tells it
# from a real record of type 0.
ERROR = b"\0"

# The record types allowed in each part of a queue file (rec_type.h's REC_TYPE_ENVELOPE,
# REC_TYPE_CONTENT, REC_TYPE_EXTRACT), and those that start the recipient part of the
# envelope and of the extracted segment (REC_TYPE_ENV_RECIPIENT, REC_TYPE_EXT_RECIPIENT).
ENVELOPE_TYPES = b"MCTcFILSDRO/WVA>K<ion"
CONTENT_TYPES = b"XLNw"
EXTRACT_TYPES = b"EDRO/PreAFIL>Kon"
ENV_RECIPIENT_TYPES = b"MDRO/Kon"
EXT_RECIPIENT_TYPES = b"EDRO/Kon"
# Types a client must not send (REC_GET_HIDDEN_TYPE): only cleanup writes them.
HIDDEN_TYPES = (PTR, DTXT)

# Fixed-width numbers, so that a record can be rewritten in place (REC_TYPE_*_FORMAT).
PTR_FORMAT = b"%15d"
SIZE_FORMAT = b"%15d %15d %15d %15d %15d %15d"
WARN_FORMAT = b"%15d"

PTR_PAYL_SIZE = 15          # a pointer record's payload, without type and length

# DSN and create-time attributes travel as `A name=value` but act as records of their
# own (rec_attr_map.c).
_ATTR_TYPES = {"dsn_orig_rcpt": DSN_ORCPT, "notify_flags": DSN_NOTIFY,
               "envelope_id": DSN_ENVID, "ret_flags": DSN_RET, "create_time": CTIME}

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


# The one-byte length fields: most records are shorter than 128 bytes.
_SHORT_LENGTHS = [bytes((n,)) for n in range(0x80)]


def encode(rec_type, payload=b""):
    """One record as bytes (rec_put())."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogateescape")
    length = len(payload)
    if length < 0x80:
        return rec_type + _SHORT_LENGTHS[length] + payload
    return rec_type + encode_length(length) + payload


def rec_put(stream, rec_type, payload=b""):
    stream.write(encode(rec_type, payload))


def pad(rec_type, length):
    """rec_pad(): a record of at least `length` bytes in all, payload `0` right-aligned
    in spaces."""
    width = max(length - 2, 1)
    return encode(rec_type, b"%*s" % (width, b"0"))


def attr_map(name):
    """rec_attr_map(): the pseudo record type of an attribute name, or None."""
    return _ATTR_TYPES.get(name)


# split_nameval() of a well-formed `name=value` in one regex match: the name is a run
# without blanks or `=`, blanks around `=` and after the value are dropped (Postfix's
# ISSPACE set). Anything else goes to split_nameval() itself, for its error text.
_NAMEVAL = re.compile("[ \t\n\v\f\r]*([^ \t\n\v\f\r=]+)[ \t\n\v\f\r]*="
                      "[ \t\n\v\f\r]*(.*?)[ \t\n\v\f\r]*\\Z", re.DOTALL)


def split_attribute(text):
    """split_nameval() of an `A` record's text: (name, value, error)."""
    match = _NAMEVAL.match(text)
    if match is not None:
        return match.group(1), match.group(2), None
    return split_nameval(text)


def time_scan(payload):
    """REC_TYPE_TIME_SCAN: (seconds, microseconds) of a `T` record, atol() style."""
    text = payload.decode("ascii", "replace")
    seconds, pos = _atol(text, 0)
    while pos < len(text) and text[pos].isdigit():
        pos += 1
    usec, _ = _atol(text, pos)
    return seconds, usec


def _atol(text, pos):
    end = pos
    while end < len(text) and text[end] in " \t\n\v\f\r":
        end += 1
    start = end
    if end < len(text) and text[end] in "+-":
        end += 1
    while end < len(text) and text[end].isdigit():
        end += 1
    try:
        return int(text[start:end]), end
    except ValueError:
        return 0, end


class SocketReader:
    """A socket as a binary input stream for RecordReader: read(n) gives n bytes, or
    fewer only at the end of input or after a timeout (then timed_out is set)."""

    def __init__(self, sock, initial=b"", timeout=None, name="(socket)"):
        self.sock = sock
        self.buf = bytes(initial)
        self.pos = 0
        self.timeout = timeout
        self.timed_out = False
        self.name = name

    def _fill(self):
        try:
            self.sock.settimeout(self.timeout)
            data = self.sock.recv(65536)
        except TimeoutError:
            self.timed_out = True
            return False
        except OSError:
            return False
        if not data:
            return False
        self.buf = self.buf[self.pos:] + data
        self.pos = 0
        return True

    def read(self, size):
        pos = self.pos
        end = pos + size
        if end <= len(self.buf):                # buffered already: the usual case
            self.pos = end
            return self.buf[pos:end]
        while len(self.buf) - self.pos < size:
            if not self._fill():
                break
        data = self.buf[self.pos:self.pos + size]
        self.pos += len(data)
        return data

    def tell(self):
        return 0


_READ_CHUNK = 1 << 20


def _int_shift(value, shift):
    """(value << shift) as a C int: the length bytes are shifted as 32-bit ints, so that
    a fifth length byte can make the length negative (rec_get_raw() then calls it an
    illegal length)."""
    result = (value << shift) & 0xFFFFFFFF
    return result - (1 << 32) if result & 0x80000000 else result


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
        # The type and the first length byte in one read: most records are shorter
        # than 128 bytes, so that byte is the whole length.
        head = self.stream.read(2)
        if not head:
            return EOF, None
        rec_type = head[:1]
        pending = head[1:]
        length = 0
        shift = 0
        while True:
            if shift >= _INT_BITS:
                msg.warn("%s: too many length bits, record type %d" % (self.path, rec_type[0]))
                return ERROR, None
            if pending:
                byte, pending = pending, b""
            else:
                byte = self.stream.read(1)
            if not byte:
                msg.warn("%s: unexpected EOF reading length, record type %d"
                         % (self.path, rec_type[0]))
                return ERROR, None
            length |= _int_shift(byte[0] & 0x7F, shift)
            if not byte[0] & 0x80:
                break
            shift += 7
        if length < 0 or (self.maxsize > 0 and length > self.maxsize):
            msg.warn("%s: illegal length %d, record type %d" % (self.path, length, rec_type[0]))
            self._read(length)
            return ERROR, None
        payload = self._read(length)
        if len(payload) != length:
            msg.warn("%s: unexpected EOF in data, record type %d length %d"
                     % (self.path, rec_type[0], length))
            return ERROR, None
        return rec_type, payload

    def _read(self, size):
        """Up to size bytes; a damaged length field can claim gigabytes that the file
        does not have, so memory follows the data actually read."""
        if size <= _READ_CHUNK:
            return self.stream.read(size) if size > 0 else b""
        parts = []
        while size > 0:
            part = self.stream.read(min(size, _READ_CHUNK))
            if not part:
                break
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    def get(self, follow_pointers=True, skip_padding=True, seek_end=False):
        """The next record, following `p` pointers and skipping `w` padding (rec_get()).

        seek_end: after the `E` record, move to the end of the file, so that whatever
        follows it is never read (REC_FLAG_SEEK_END, part of Postfix's default flags).
        """
        while True:
            rec_type, payload = self.get_raw()
            if rec_type == PTR and follow_pointers:
                if not self.goto(payload):
                    return ERROR, None
                continue
            if rec_type == DTXT and skip_padding:
                continue
            if rec_type == END and seek_end:
                try:
                    self.stream.seek(0, 2)
                except OSError as exc:
                    msg.warn("%s: seek error after reading END record: %s"
                             % (self.path, msg.strerror(exc)))
                    return ERROR, None
            return rec_type, payload

    def goto(self, payload):
        """Follow a pointer record; a zero offset is a placeholder (rec_goto()). Backward
        jumps are limited, so that a damaged file cannot loop forever."""
        text = payload.split(b"\0", 1)[0].lstrip(b" \t\n\v\f\r")
        if text and not text.isdigit():
            msg.warn("%s: malformed pointer record value: %s"
                     % (self.path, text.decode("ascii", "replace")))
            return False
        offset = int(text) if text else 0
        if offset == 0:
            return True
        if offset <= self._last_jump:
            self._reverse_jumps += 1
            if self._reverse_jumps > REVERSE_JUMP_LIMIT:
                msg.warn("%s: too many reverse jump records" % self.path)
                return False
        try:
            self.stream.seek(offset)
        except (OSError, ValueError) as exc:
            msg.warn("%s: seek error after pointer record: %s"
                     % (self.path, msg.strerror(exc)))
            return False
        self._last_jump = offset
        return True

    def __iter__(self):
        while True:
            rec_type, payload = self.get()
            if rec_type is EOF or rec_type == ERROR:
                return
            yield rec_type, payload


# Printable names of the record types (rec_type.c); `L` is listed once, as the content
# filter it is in the envelope.
_TYPE_NAMES = (
    (SIZE, "message_size"), (TIME, "message_arrival_time"),
    (CTIME, "queue_file_create_time"), (FULL, "sender_fullname"),
    (INSP, "content_inspector"), (FILT, "content_filter"), (FROM, "sender"),
    (DONE, "done_recipient"), (DRCP, "canceled_recipient"), (RCPT, "recipient"),
    (ORCP, "original_recipient"), (WARN, "warning_message_time"),
    (ATTR, "named_attribute"), (PTR, "pointer_record"), (KILL, "killed_record"),
    (MESG, "message_content"), (NORM, "regular_text"), (DTXT, "padding"),
    (XTRA, "extracted_info"), (RRTO, "return_receipt"), (ERTO, "errors_to"),
    (PRIO, "priority"), (VERP, "verp_delimiters"), (END, "message_end"),
    (RDR, "redirect_to"), (FLGS, "flags"), (DSN_RET, "dsn_return_flags"),
    (DSN_ENVID, "dsn_envelope_id"), (DSN_ORCPT, "dsn_original_recipient"),
    (DSN_NOTIFY, "dsn_notify_flags"),
)
TYPE_NAMES = dict(_TYPE_NAMES)


def rec_type_name(rec_type):
    """The printable name of a record type (rec_type_name()); type 0 is a real, unknown,
    type here (a read error has no name: it comes with payload None)."""
    if rec_type is EOF:
        return "end-of-file"
    return TYPE_NAMES.get(rec_type, "unknown_record_type")


def parse_size_record(payload):
    """The numbers of a `C` record: up to six integers (older files have fewer)."""
    fields = payload.split()
    return [int(field) for field in fields]


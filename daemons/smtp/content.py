"""The message content as it goes out after DATA (Postfix's smtp_proto.c, the
content part of smtp_loop(), smtp_text_out(), smtp_header_out() and
smtp_mime_fail()).

The content records of the queue file, from the request's data offset up to the
extracted-information record: `N` is a line, `L` a piece of a longer line. A line
that starts with "." gets another "." (dot-stuffing). A line longer than
smtp_line_length_limit is broken with CR LF SPACE, logged once per message. When the
server lacks 8BITMIME and the message is not known to be 7-bit, the content goes
through the MIME parser with downgrading (8-bit parts become quoted-printable), as
Postfix does; a MIME error then fails the message. Headers and body are otherwise
sent as they are: no smtp_header_checks, smtp_body_checks or smtp_generic_maps.
"""

from pyfix.common import mime_state as mime
from pyfix.common import msg
from pyfix.queue import record

CRLF = b"\r\n"
CHUNK = 65536


class ContentError(Exception):
    """The queue file has a record that does not belong in the content."""

    def __init__(self, rec_type):
        super().__init__(rec_type)
        self.rec_type = rec_type


class MimeError(Exception):
    """The MIME parser found a problem while downgrading (dsn status, text)."""

    def __init__(self, status, text):
        super().__init__(text)
        self.status = status
        self.text = text


class TextOut:
    """smtp_text_out(): dot-stuffing and the line length limit, into a buffer."""

    def __init__(self, queue_id, line_limit):
        self.queue_id = queue_id
        self.line_limit = line_limit
        self.space_left = line_limit
        self.logged = False
        self.out = bytearray()

    def write(self, rec_type, data):
        line_limit = self.line_limit
        out = self.out
        while True:
            if self.space_left == line_limit and data[:1] == b".":
                out += b"."
            if line_limit > 0 and len(data) >= self.space_left:
                out += data[:self.space_left] + CRLF
                data = data[self.space_left:]
                self.space_left = line_limit
                if data or rec_type == record.CONT:
                    out += b" "
                    self.space_left -= 1
                    if not self.logged:
                        msg.info("%s: breaking line > %d bytes with <CR><LF>SPACE"
                                 % (self.queue_id, line_limit))
                        self.logged = True
                if data:
                    continue
                return
            if rec_type == record.CONT:
                out += data
                self.space_left -= len(data)
            else:
                out += data + CRLF
                self.space_left = line_limit
            return

    def take(self):
        data = bytes(self.out)
        self.out = bytearray()
        return data


def _encode(text):
    return text.encode("utf-8", "surrogateescape")


def content_chunks(request, line_limit, downgrade=False, headers=()):
    """Yield the content in pieces of about CHUNK bytes; raise ContentError when the
    records do not end with the extracted-information record, MimeError for a MIME
    problem while downgrading."""
    fp = request.fp
    fp.seek(request.data_offset)
    reader = record.RecordReader(fp, getattr(fp, "qpath", None))
    writer = TextOut(request.queue_id, line_limit)
    parser = None
    if downgrade:
        def head_out(header_class, info, text, offset):
            for line in text.split("\n"):                 # smtp_header_out()
                writer.write(record.NORM, _encode(line))

        def body_out(rec_type, text, offset):
            writer.write(bytes([rec_type]), _encode(text))

        parser = mime.MimeState(mime.OPT_DOWNGRADE | mime.OPT_REPORT_NESTING,
                                head_out=head_out, body_out=body_out)
    prev_type = None
    records = [(record.NORM, _encode(line)) for line in headers]
    while True:
        rec_type, payload = records.pop(0) if records else reader.get()
        if rec_type not in (record.NORM, record.CONT):
            break
        if parser is not None:
            errors = parser.update(rec_type[0], payload.decode("utf-8", "surrogateescape"))
            if errors:
                raise MimeError(*mime.error_detail(errors))
        else:
            writer.write(rec_type, payload)
        prev_type = rec_type
        if len(writer.out) >= CHUNK:
            yield writer.take()
    if parser is not None:
        errors = parser.update(mime.REC_TYPE_END, "")
        if errors:
            raise MimeError(*mime.error_detail(errors))
    elif prev_type == record.CONT:
        writer.out += CRLF                        # the missing newline
    if rec_type != record.XTRA:
        raise ContentError(rec_type)
    if writer.out:
        yield writer.take()

"""The SMTP dialog's input and output (Postfix's global/smtp_stream.c and
smtpd/smtpd_chat.c) on top of aiosmtpd's protocol object.

Input is read into a buffer of our own, line by line with Postfix's bound
(line_length_limit): a longer command line is cut and its rest skipped; a longer message
line comes back in pieces (queue-file CONT records). A bare LF is noted so that
smtpd_forbid_bare_newline can act on it. Replies are buffered and written when smtpd
would wait for input, which is what makes PIPELINING work and what Postfix does (a
two-way VSTREAM flushes its output before it reads).

Errors unwind the session as Postfix's vstream_longjmp() does: SmtpEOF (the client went
away), SmtpTimeout (smtpd_timeout passed while waiting for the client).
"""

import asyncio
import socket

REPLY_TIMEOUT = None            # set per session from smtpd_timeout
READ_SIZE = 65536


class SmtpEOF(Exception):
    """SMTP_ERR_EOF: the client closed the connection or it broke."""


class SmtpTimeout(Exception):
    """SMTP_ERR_TIME: no input (or no progress writing) within smtpd_timeout."""


class SmtpQuiet(Exception):
    """SMTP_ERR_QUIET: end the session without further reply or log line."""


class SmtpDataError(Exception):
    """SMTP_ERR_DATA: a local problem (table lookup error ...) ends the session."""


def escape(data):
    """Postfix's escape(): C-style escapes for what is not printable ASCII."""
    out = []
    for byte in data:
        ch = chr(byte)
        if ch == "\\":
            out.append("\\\\")
        elif 32 <= byte < 127:
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        else:
            out.append("\\%03o" % byte)
    return "".join(out)


class Chat:
    """The line I/O of one session. `proto` is the aiosmtpd protocol object (its
    reader and transport), `sock` the accepted socket, for peeking at unread input."""

    def __init__(self, proto, sock, timeout):
        self.proto = proto
        self.sock = sock
        self.timeout = timeout
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.lost = False
        self.detect_bare_lf = 0      # smtp_detect_bare_lf
        self.got_bare_lf = 0         # smtp_got_bare_lf of the last line read

    # -- input ------------------------------------------------------------------------

    async def _fill(self):
        """Read more input, flushing pending replies first."""
        await self.flush()
        reader = self.proto._reader
        try:
            data = await asyncio.wait_for(reader.read(READ_SIZE), self.timeout)
        except asyncio.TimeoutError:
            raise SmtpTimeout() from None
        except (ConnectionError, OSError):
            raise SmtpEOF() from None
        if not data:
            raise SmtpEOF()
        self.inbuf += data

    async def get(self, bound, skip=False):
        """smtp_get(): one line of at most `bound` bytes without its terminator, and
        whether it was complete (ended in newline). With skip, the rest of an
        over-long line is read and dropped."""
        self.got_bare_lf = 0
        while True:
            end = self.inbuf.find(b"\n", 0, bound)
            if end >= 0:
                line = bytes(self.inbuf[:end + 1])
                del self.inbuf[:end + 1]
                break
            if len(self.inbuf) >= bound:
                line = bytes(self.inbuf[:bound])
                del self.inbuf[:bound]
                break
            try:
                await self._fill()
            except (SmtpEOF, SmtpTimeout):
                self.inbuf.clear()      # the partial line was consumed, as in Postfix
                raise
        if line.endswith(b"\r"):
            # We stopped in the middle of CRLF: repair.
            if not self.inbuf:
                await self._fill()
            if self.inbuf[:1] == b"\n":
                del self.inbuf[0]
                line += b"\n"
        complete = line.endswith(b"\n")
        if complete:
            line = line[:-1]
            if self.detect_bare_lf:
                if not line.endswith(b"\r"):
                    self.got_bare_lf = self.detect_bare_lf
                else:
                    line = line[:-1]
            else:
                line = line.rstrip(b"\r")
        elif skip:
            await self._skip_line()
        return line, complete

    async def _skip_line(self):
        """Drop input through the next newline."""
        while True:
            end = self.inbuf.find(b"\n")
            if end >= 0:
                del self.inbuf[:end + 1]
                return
            self.inbuf.clear()
            await self._fill()

    async def read_exact(self, count, sink):
        """BDAT: pass exactly count bytes to sink(chunk) as they arrive."""
        while count > 0:
            if not self.inbuf:
                await self._fill()
            piece = bytes(self.inbuf[:count])
            del self.inbuf[:len(piece)]
            count -= len(piece)
            sink(piece)

    def purge_input(self):
        """vstream_fpurge(): forget unread input (after STARTTLS)."""
        self.inbuf.clear()
        reader_buf = getattr(self.proto._reader, "_buffer", None)
        if reader_buf:
            reader_buf.clear()

    def pending_input(self):
        """Unread client input that is already here (vstream_peek + peekfd)."""
        reader_buf = getattr(self.proto._reader, "_buffer", None)
        if reader_buf:
            self.inbuf += reader_buf
            reader_buf.clear()
        if self.inbuf:
            return bytes(self.inbuf[:100])
        if self.sock is not None and self.proto.tls_active is False:
            try:
                return self.sock.recv(100, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (BlockingIOError, OSError):
                return b""
        return b""

    # -- output ---------------------------------------------------------------------------

    def put(self, line):
        self.outbuf += line.encode("utf-8", "surrogateescape") + b"\r\n"

    async def flush(self):
        if not self.outbuf:
            return
        if self.lost or self.proto.transport is None:
            self.outbuf.clear()
            raise SmtpEOF()
        data = bytes(self.outbuf)
        self.outbuf.clear()
        try:
            self.proto.transport.write(data)
            await asyncio.wait_for(self.proto._writer.drain(), self.timeout)
        except asyncio.TimeoutError:
            raise SmtpTimeout() from None
        except (ConnectionError, OSError, RuntimeError):
            raise SmtpEOF() from None

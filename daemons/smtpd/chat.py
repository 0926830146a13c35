"""The SMTP dialog's input and output (Postfix's global/smtp_stream.c and
smtpd/smtpd_chat.c) on the session's asyncio transport.

Input collects in a buffer of our own and is taken line by line with Postfix's bound
(line_length_limit): a longer command line is cut and its rest skipped; a longer message
line comes back in pieces (queue-file CONT records). A bare LF is noted so that
smtpd_forbid_bare_newline can act on it. Replies are buffered and written when smtpd
would wait for input, which is what makes PIPELINING work and what Postfix does (a
two-way VSTREAM flushes its output before it reads).

Errors unwind the session as Postfix's vstream_longjmp() does: SmtpEOF (the client went
away), SmtpTimeout (smtpd_timeout passed while waiting for the client).
"""

import array
import asyncio
import fcntl
import socket
import termios

INPUT_HIGH_WATER = 2 * 65536     # unread input that pauses reading (as StreamReader)


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
    """The line I/O of one session, fed by the session's asyncio protocol (`proto`,
    proto.py's SmtpdProtocol, which passes on data_received() and the other transport
    events); `sock` is the accepted socket, for peeking at unread input.

    Input goes straight from the transport into inbuf and output from outbuf to the
    transport: no StreamReader/StreamWriter and no task per read or write in between,
    only a future to wait on with smtpd_timeout as its deadline. Reading is paused while
    more than INPUT_HIGH_WATER bytes wait unread, as the StreamReader did."""

    def __init__(self, proto, sock, timeout):
        self.proto = proto
        self.sock = sock
        self.timeout = timeout
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.lost = False
        self.eof = False
        self.detect_bare_lf = 0      # smtp_detect_bare_lf
        self.got_bare_lf = 0         # smtp_got_bare_lf of the last line read
        self._waiter = None          # waits for input, EOF or the connection's loss
        self._read_paused = False
        self._write_paused = False
        self._drain_waiter = None    # waits for the transport to take output again

    # -- transport events (from the protocol) ---------------------------------------------

    def data_received(self, data):
        self.inbuf += data
        if len(self.inbuf) > INPUT_HIGH_WATER and not self._read_paused:
            try:
                self.proto.transport.pause_reading()
                self._read_paused = True
            except (AttributeError, NotImplementedError, RuntimeError):
                pass
        self._wake(self._waiter)

    def eof_received(self):
        self.eof = True
        self._wake(self._waiter)

    def connection_lost(self):
        self.lost = self.eof = True
        self._wake(self._waiter)
        self._wake(self._drain_waiter)

    def pause_writing(self):
        self._write_paused = True

    def resume_writing(self):
        self._write_paused = False
        self._wake(self._drain_waiter)

    @staticmethod
    def _wake(waiter):
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, event):
        """Wait for the waiter future `event` to be woken, at most smtpd_timeout;
        False on timeout (asyncio.wait_for's rule: a timeout <= 0 expires at once)."""
        timeout = self.timeout
        if timeout is not None and timeout <= 0:
            return False
        handle = None
        if timeout is not None:
            handle = self.proto.loop.call_later(timeout, _expire, event)
        try:
            await event
        finally:
            if handle is not None:
                handle.cancel()
        return event.result()

    # -- input ------------------------------------------------------------------------

    async def _fill(self):
        """Wait for more input, flushing pending replies first."""
        have = len(self.inbuf)
        await self.flush()
        if len(self.inbuf) > have:
            return
        if self.lost or self.eof:
            raise SmtpEOF()
        if self._read_paused:
            self._read_paused = False
            try:
                self.proto.transport.resume_reading()
            except (AttributeError, NotImplementedError, RuntimeError):
                pass
        waiter = self._waiter = self.proto.loop.create_future()
        try:
            woken = await self._wait(waiter)
        finally:
            self._waiter = None
        if len(self.inbuf) > have:
            return
        if woken is False:
            raise SmtpTimeout()
        raise SmtpEOF()

    def get_ready(self, bound):
        """get() without waiting, for the common case: the next line is complete (its
        newline within `bound`) in the buffer; else None, and the caller awaits get().
        Inside DATA this saves a coroutine per line."""
        inbuf = self.inbuf
        end = inbuf.find(b"\n", 0, bound)
        if end < 0:
            return None
        line = bytes(inbuf[:end])
        del inbuf[:end + 1]
        self.got_bare_lf = 0
        return self._strip_cr(line)

    def _strip_cr(self, line):
        """A complete line (its LF already gone) without its CR; with
        smtpd_forbid_bare_newline, a line that had no CR is noted."""
        if self.detect_bare_lf:
            if not line.endswith(b"\r"):
                self.got_bare_lf = self.detect_bare_lf
                return line
            return line[:-1]
        return line.rstrip(b"\r")

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
            line = self._strip_cr(line[:-1])
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

    def pending_input(self):
        """Unread client input that is already here (vstream_peek + peekfd)."""
        if self.inbuf:
            return bytes(self.inbuf[:100])
        if self.sock is not None and self.proto.tls_active is False:
            # peekfd(): ask the kernel how much is waiting before peeking at it (a
            # peek at nothing would cost an exception each time).
            try:
                count = array.array("i", [0])
                fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, count)
                if count[0] <= 0:
                    return b""
                return self.sock.recv(100, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (BlockingIOError, OSError, ValueError):
                return b""
        return b""

    # -- output ---------------------------------------------------------------------------

    def put(self, line):
        self.outbuf += line.encode("utf-8", "surrogateescape") + b"\r\n"

    async def flush(self):
        """Write the pending replies; wait (smtpd_timeout at most) only when the
        transport's buffer is full, as StreamWriter.drain() does."""
        if not self.outbuf:
            return
        transport = self.proto.transport
        if self.lost or transport is None:
            self.outbuf.clear()
            raise SmtpEOF()
        data = bytes(self.outbuf)
        self.outbuf.clear()
        try:
            transport.write(data)
        except (ConnectionError, OSError, RuntimeError):
            raise SmtpEOF() from None
        if transport.is_closing():
            # A failed write closes the transport; let its connection_lost() run.
            await asyncio.sleep(0)
        while not self.lost and self._write_paused:
            waiter = self._drain_waiter = self.proto.loop.create_future()
            try:
                woken = await self._wait(waiter)
            finally:
                self._drain_waiter = None
            if woken is False:
                raise SmtpTimeout()
        if self.lost:
            raise SmtpEOF()


def _expire(waiter):
    if not waiter.done():
        waiter.set_result(False)

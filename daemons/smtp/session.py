"""One SMTP or LMTP conversation with one server (Postfix's smtp/smtp_session.c and
smtp_chat.c): the socket, the server's replies, the EHLO/LHLO features.

This is the interface that the protocol engine (proto.py) and the TLS and SASL
modules (smtp_tls.py, smtp_sasl.py) share:

    Reply           one server reply: code, dsn, text, lines
    SessionFailure  a failure of this host or session (dsn, text, soft)
    Session         command(line) -> Reply, read_reply() -> Reply, ehlo() -> Reply

I/O errors become SessionFailure with Postfix's texts: `lost connection with
host[addr] while <stage>` and `conversation with host[addr] timed out while <stage>`
(smtp_trouble.c smtp_stream_except()); the stage is `session.where`, which the
protocol engine sets before each step.
"""

import re
import socket

from pyfix.common import msg
from pyfix.common.dsn_util import dsn_valid

CRLF = b"\r\n"
_KEYWORD = re.compile(r"[ ]*([^ \t=]+)[ \t=]*(.*)")


class Reply:
    """One (possibly multi-line) server reply. text is all lines joined with " ", as
    Postfix shows a reply in a reason (translit(resp->str, "\\n", " ")); dsn is the
    enhanced status code, or the reply code's class with 0.0 (`5.0.0`) when the server
    sent none, or `5.5.0` for a malformed reply (smtp_chat_resp())."""

    def __init__(self, code, dsn, lines):
        self.code = code
        self.dsn = dsn
        self.lines = list(lines)
        self.text = " ".join(self.lines)

    def __repr__(self):
        return "Reply(%d, %r, %r)" % (self.code, self.dsn, self.lines)


class SessionFailure(Exception):
    """A failure of this host or this session: smtp_trouble turns it into a deferral,
    a bounce, or a try with the next host. soft: a temporary failure."""

    def __init__(self, dsn, text, soft=True):
        super().__init__(text)
        self.dsn = dsn
        self.text = text
        self.soft = soft


class StreamFailure(SessionFailure):
    """A lost connection or a timeout (SMTP_ERR_EOF, SMTP_ERR_TIME): always 4.4.2."""

    def __init__(self, text, kind="eof"):
        super().__init__("4.4.2", text, True)
        self.kind = kind                # "eof" or "time"


def printable(text):
    """Postfix's printable(str, '?') with UTF-8 allowed: control characters become ?."""
    if text.isascii() and text.isprintable():      # the usual reply: nothing to replace
        return text
    return "".join(ch if (" " <= ch < "\x7f" or ch >= "\xa0") and ch != "\udcff"
                   and not ("\udc80" <= ch <= "\udcff") else "?" for ch in text)


def reply_dsn(code, first_line):
    """The enhanced status code of a reply whose first line is first_line."""
    if not first_line[:1] or first_line[0] not in "245":
        return "5.5.0"
    rest = first_line[4:].lstrip(" ")
    length = dsn_valid(rest)
    if length > 0 and rest[0] == first_line[0]:
        return rest[:length]
    return first_line[0] + ".0.0"


class Session:
    """The conversation with one server. Attributes: config, service (the program
    name: smtp or lmtp), lmtp (LMTP rather than SMTP), nexthop, host (the server's name),
    addr (its address text), port, sender, sock (replaceable, e.g. by a TLS socket),
    features (EHLO keyword in upper case -> its parameter text), tls (None or what
    smtp_tls returned), where (the stage, for error texts), timeout (of the next I/O)."""

    def __init__(self, config, service, lmtp, nexthop, host, addr, port, sock,
                 sender=""):
        self.config = config
        self.service = service
        self.lmtp = lmtp
        self.nexthop = nexthop
        self.host = host
        self.addr = addr
        self.port = port
        self.sock = sock
        self.sender = sender
        self.features = {}
        self.tls = None
        self.where = "receiving the initial server greeting"
        self.timeout = 300
        self.helo_name = ""
        self.line_limit = config.get_int("line_length_limit") if config else 2048
        self.reuse_count = 0
        self.esmtp = False              # the server answered EHLO (not HELO)
        self._buffer = b""
        self.protocol_error = False     # a reply line that was not NNN-text
        self.reusable = True            # may be kept for another delivery
        self.best_mx = False            # the server is a best-preference MX host
        self.broken = False             # I/O failed: no QUIT, no reuse
        self.write_failed = False       # a write failed: the peer is gone
        self.ehlo_lines = []            # the last EHLO/LHLO reply
        self.size_limit = 0
        self.from_cache = False         # taken from scache: no greeting, no EHLO
        self.cached = False             # to be handed to scache instead of QUIT
        self.expire_time = 0            # no reuse after this (reuse time limit)

    # Names as Postfix logs them.
    @property
    def namaddr(self):
        return "%s[%s]" % (self.host, self.addr)

    @property
    def namaddrport(self):
        if self.port:
            return "%s:%d" % (self.namaddr, self.port)
        return self.namaddr

    # ---- low-level I/O -------------------------------------------------------------

    def _fail(self, kind):
        if kind == "eof":
            raise StreamFailure("lost connection with %s while %s"
                                % (self.namaddr, self.where), "eof")
        raise StreamFailure("conversation with %s timed out while %s"
                            % (self.namaddr, self.where), "time")

    def send(self, data):
        """Write bytes (one or more commands, or message content). A write error is
        remembered, not raised: as with Postfix's buffered stream, the next read
        decides (the server may have said why it stopped reading, as smtp-sink -A
        does); only a timeout fails at once."""
        if self.write_failed:
            return
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
        except socket.timeout:
            self._fail("time")
        except OSError:
            self.write_failed = True

    def send_line(self, line):
        if msg.verbose:
            msg.info("> %s: %s" % (self.namaddrport, line))
        self.send(line.encode("utf-8", "surrogateescape") + CRLF)

    def _fill(self):
        try:
            self.sock.settimeout(self.timeout)
            data = self.sock.recv(65536)
        except socket.timeout:
            self._fail("time")
        except OSError:
            self._fail("eof")
        if not data:
            self._fail("eof")
        self._buffer += data

    def read_line(self):
        """One line without its CR LF; a line longer than line_length_limit is cut
        there and the rest skipped (smtp_get() with SMTP_GET_FLAG_SKIP)."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end], self._buffer[end + 1:]
                if line.endswith(b"\r"):
                    line = line[:-1]
                too_long = len(line) > self.line_limit
                line = line[:self.line_limit]
                if too_long:
                    msg.warn("%s: response longer than %d: %.30s..."
                             % (self.namaddrport, self.line_limit, _text(line)))
                return _text(line)
            if len(self._buffer) > self.line_limit * 4:
                # Keep a bounded buffer while skipping an endless line.
                self._buffer = self._buffer[:self.line_limit + 1]
            self._fill()

    def read_reply(self):
        """The server's next reply (smtp_chat_resp())."""
        lines = []
        stored = 0
        while True:
            line = printable(self.read_line())
            if msg.verbose:
                msg.info("< %s: %.100s" % (self.namaddrport, line))
            if stored < self.line_limit:
                lines.append(line)
                stored += len(line) + 1
            digits = len(line) - len(line.lstrip("0123456789"))
            if digits == 3:
                if line[3:4] == "-":
                    continue
                if line[3:4] in (" ", ""):
                    break
            self.protocol_error = True
        if digits == 3:
            code = int(line[:3])
            dsn = reply_dsn(code, line) if line[0] in "245" else "5.5.0"
        else:
            code, dsn = 0, "5.5.0"
        return Reply(code, dsn, lines)

    def command(self, line):
        """Send one command line and read its reply."""
        self.send_line(line)
        return self.read_reply()

    def ehlo(self):
        """(Re-)send EHLO (LHLO for LMTP) and refresh the features from the reply."""
        verb = "LHLO" if self.lmtp else "EHLO"
        reply = self.command("%s %s" % (verb, self.helo_name))
        if reply.code // 100 == 2:
            self.ehlo_lines = reply.lines
            self.features = parse_features(reply.lines)
            self.esmtp = True
        return reply

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def pending_input(self):
        """Bytes already read but not yet parsed (none may remain before STARTTLS)."""
        return self._buffer


def _text(raw):
    return raw.decode("utf-8", "surrogateescape")


def parse_features(lines):
    """EHLO keywords in upper case -> the rest of the line (`SIZE` -> `10240000`); the
    first line is the greeting name and not a feature."""
    features = {}
    for line in lines[1:]:
        words = line[4:].split(None, 1)
        if words:
            features[words[0].upper()] = words[1] if len(words) > 1 else ""
    return features

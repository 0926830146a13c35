"""Debian's Postfix smtpd beside pyfix's: the oracle of the smtpd tests.

SmtpPair starts two masters with the same main.cf settings, each with smtpd on its own
free loopback port and the services smtpd talks to (cleanup, trivial-rewrite,
proxymap): Debian's Postfix 3.7 (tests/cleanup_oracle.py's PostfixMaster, as root) and
pyfix (a QueueMaster). A scripted session is played against both; the replies
(codes, enhanced status codes, texts) and the smtpd log lines must be the same once
what legitimately differs is masked: queue IDs, dates, process IDs.

A script is a list of steps:
    "EHLO x"                  send the line + CRLF, read one reply
    ("send", b"raw", n)       send raw bytes, read n replies (pipelining, bare LF ...)
    ("data", b"message")      send message bytes as they are (must end in CRLF.CRLF), read one reply
    ("wait", n)               read n replies without sending (a 421 after a timeout ...)
    ("close",)                close the connection without QUIT
    ("starttls",)             TLS handshake (after a 220 to STARTTLS), then go on
The greeting is read first (after the handshake with wrapper=True).
"""

import os
import re
import socket
import ssl
import time

from cleanup_oracle import QueueMaster, PostfixMaster, postfix_available, settle_log
from master_run import free_port

SMTPD_COMMON = """\
alias_maps =
alias_database =
local_recipient_maps = proxy:unix:passwd.byname
mydestination = $myhostname, localhost.$mydomain, localhost
"""

# One process each: pyfix's multi-server skeleton keeps its accept lock while it serves
# its own clients, so a second process that waits for the lock starves its clients
# (reported; until fixed the tests run these two services as single processes).
PYFIX_EXTRA_SERVICES = """\
rewrite unix - - n - 1 trivial-rewrite
proxymap unix - - n - 1 proxymap
anvil unix - - n - 1 anvil
"""

POSTFIX_EXTRA_SERVICES = """\
proxymap  unix  -       -       n       -       -       proxymap
anvil     unix  -       -       n       -       1       anvil
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
"""


def smtpd_line(port, options=""):
    return "127.0.0.1:%d inet n - n - - smtpd%s\n" % (port, options)


class PyfixSmtp(QueueMaster):
    def __init__(self, main_cf_extra="", options=""):
        from cleanup_oracle import PYFIX_SERVICES
        self.port = free_port()
        super().__init__(SMTPD_COMMON + main_cf_extra,
                         services=PYFIX_SERVICES + PYFIX_EXTRA_SERVICES
                         + smtpd_line(self.port, options))


class PostfixSmtp(PostfixMaster):
    def __init__(self, main_cf_extra="", options=""):
        super().__init__(SMTPD_COMMON + main_cf_extra)
        self.port = free_port()
        with open(os.path.join(self.etc, "master.cf"), "a") as f:
            f.write(POSTFIX_EXTRA_SERVICES + smtpd_line(self.port, options))


class SmtpPair:
    """Debian's Postfix and pyfix, same main.cf, each with smtpd on a loopback port."""

    def __init__(self, main_cf_extra="", options=""):
        self.postfix = PostfixSmtp(main_cf_extra, options)
        self.pyfix = PyfixSmtp(main_cf_extra, options)

    def start(self):
        try:
            self.postfix.start()
            self.pyfix.start()
        except BaseException:
            self.cleanup()
            raise
        for side in (self.postfix, self.pyfix):
            wait_listening(side)
        return self

    def cleanup(self):
        self.pyfix.cleanup()
        self.postfix.cleanup()

    def sides(self):
        return (self.postfix, self.pyfix)

    def both(self, script, timeout=10.0, wrapper=False):
        """Play script against both; returns (postfix replies, pyfix replies), masked."""
        return tuple(mask(play(side.port, script, timeout, wrapper)) for side in self.sides())

    def both_logged(self, script, timeout=10.0, programs=("smtpd",), wrapper=False):
        """Like both(), plus each side's new log lines of the given programs, masked."""
        out = []
        for side in self.sides():
            start = len(side.log())
            replies = play(side.port, script, timeout, wrapper)
            text = wait_disconnect(side, start)
            out.append((mask(replies), mask_log(text[start:], programs)))
        return tuple(out)


def wait_listening(side, limit=15.0):
    """Wait until smtpd answers: one connection, and its `disconnect from` log line."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", side.port), timeout=1):
                pass
        except OSError:
            time.sleep(0.1)
            continue
        wait_disconnect(side, 0, max(1.0, deadline - time.monotonic()))
        return
    raise AssertionError("nothing listens on port %d" % side.port)


def wait_disconnect(side, start, limit=10.0):
    """The log once this session's `disconnect from` line is in it."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        text = side.log()
        if "disconnect from" in text[start:]:
            return settle_log(side, quiet=0.1, limit=2.0)
        time.sleep(0.03)
    return side.log()


# -- playing a script -----------------------------------------------------------------------

class Client:
    def __init__(self, port, timeout, wrapper=False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if wrapper:
            self.starttls()

    def starttls(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock)
        self.buf = b""

    def read_reply(self):
        """One complete (possibly multi-line) reply, lines joined by newlines; or
        `<closed>` / `<timeout>`."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    return "<timeout>"
                except OSError:
                    chunk = b""
                if not chunk:
                    return "\n".join(lines + ["<closed>"]) if lines else "<closed>"
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\n")
            text = line.rstrip(b"\r").decode("utf-8", "replace")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "\n".join(lines)

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    def close(self):
        self.sock.close()


def play(port, script, timeout=10.0, wrapper=False):
    client = Client(port, timeout, wrapper)
    replies = [client.read_reply()]
    try:
        for step in script:
            if isinstance(step, str):
                client.send(step.encode("utf-8", "surrogateescape") + b"\r\n")
                replies.append(client.read_reply())
            elif step[0] == "send":
                client.send(step[1])
                replies += [client.read_reply() for _ in range(step[2])]
            elif step[0] == "data":
                client.send(step[1])
                replies.append(client.read_reply())
            elif step[0] == "wait":
                replies += [client.read_reply() for _ in range(step[1])]
            elif step[0] == "close":
                break
            elif step[0] == "starttls":
                try:
                    client.starttls()
                except (OSError, ssl.SSLError) as exc:
                    replies.append("<tls failed: %s>" % type(exc).__name__)
                    break
            if replies[-1] in ("<closed>",):
                break
    finally:
        client.close()
    return replies


# -- masking ----------------------------------------------------------------------------

_QID_LOG = re.compile(r"\b[0-9A-F]{8,12}(?=: )")


def mask(replies):
    return [re.sub(r"queued as [0-9A-Za-z]+", "queued as QUEUEID", r) for r in replies]


_LOG_PREFIX = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ postfix/([\w-]+)\[\d+\]: ", re.M)


def mask_log(text, programs=("smtpd",)):
    out = []
    for line in text.splitlines():
        match = _LOG_PREFIX.match(line)
        if not match or match.group(1) not in programs:
            continue
        body = line[match.end():]
        body = _QID_LOG.sub("QUEUEID", body)
        body = re.sub(r"/tmp/pyfix-(master|postfix)-\w+/", "ROOT/", body)
        # The service name is the master.cf name, here the listening address:port.
        body = re.sub(r"for service 127\.0\.0\.1:\d+", "for service SMTPD", body)
        body = re.sub(r"\[127\.0\.0\.1\]:\d+", "[127.0.0.1]:PORT", body)
        out.append("%s: %s" % (match.group(1), body))
    return out


__all__ = ["SmtpPair", "PyfixSmtp", "PostfixSmtp", "play", "mask", "mask_log",
           "postfix_available"]

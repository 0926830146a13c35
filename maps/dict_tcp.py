"""tcp: tables, a lookup server over TCP (Postfix's util/dict_tcp.c; tcp_table(5)).

`tcp:host:port` sends `get <key>` and reads one reply line: `200 <value>` found,
`500 <text>` not found, `400 <text>` temporary error. Both sides encode `%`, whitespace
and unprintable bytes as `%XX`. Replies are limited to 4096 bytes, I/O to 100 seconds.
The connection stays open between lookups. A server that cannot be reached, or that
breaks off, is tried up to ten times a second apart; then the lookup fails with ERR_RETRY,
as does a 400 reply or a malformed one (the connection is then closed). The warnings are
Postfix's (`connect to TCP map ...`, `read TCP map reply from ...: ...`).
"""

import os
import socket
import time

from pyfix.common import msg
from pyfix.common.host_port import host_port
from pyfix.maps.dict import (ERR_RETRY, FLAG_FOLD_MUL, FLAG_NO_UNAUTH, FLAG_PATTERN, Dict,
                             SurrogateDict)
from pyfix.maps.dict_regexp import c_bytes, lowercase, to_text

MAXTRY = 10
TIMEOUT = 100
MAXLEN = 4096
RETRY_SLEEP = float(os.environ.get("PYFIX_TEST_TCP_RETRY_SLEEP", "1"))  # tests: shorter

_HEX = b"0123456789ABCDEF"


def hex_quote(data):
    """`%`, whitespace and unprintable bytes as %XX."""
    out = bytearray()
    for byte in data:
        if byte != 0x25 and 0x21 <= byte <= 0x7E:
            out.append(byte)
        else:
            out += b"%" + _HEX[byte >> 4:(byte >> 4) + 1] + _HEX[byte & 15:(byte & 15) + 1]
    return bytes(out)


def _hexval(byte):
    if 0x30 <= byte <= 0x39:
        return byte - 0x30
    if 0x61 <= byte <= 0x66:
        return byte - 0x61 + 10
    if 0x41 <= byte <= 0x46:
        return byte - 0x41 + 10
    return None


def hex_unquote(data):
    """The bytes of %XX-encoded data, or None when an escape is malformed."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        byte = data[pos]
        if byte == 0x25:
            high = _hexval(data[pos + 1]) if pos + 1 < len(data) else None
            low = _hexval(data[pos + 2]) if high is not None and pos + 2 < len(data) else None
            if high is None or low is None:
                return None
            byte = high << 4 | low
            pos += 2
        out.append(byte)
        pos += 1
    return bytes(out)


def printable(data, replacement="_"):
    return "".join(chr(b) if 0x20 <= b <= 0x7E else replacement for b in data)


def inet_connect(addr, timeout):
    """Postfix's inet_connect(): a connected socket, or OSError with the errno."""
    host, port, err = host_port(addr, "localhost", None)
    if err:
        msg.fatal("%s: %s" % (addr, err))
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        msg.warn("host or service %s not found: %s" % (addr, exc.strerror))
        raise OSError(99, os.strerror(99)) from None      # EADDRNOTAVAIL
    error = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    if isinstance(error, socket.timeout):
        raise OSError(110, os.strerror(110))               # ETIMEDOUT
    raise error


class TcpDict(Dict):
    type = "tcp"

    def __init__(self, name, open_flags, dict_flags):
        super().__init__(name, open_flags, dict_flags | FLAG_PATTERN)
        self.sock = None
        self.fp = None

    def _connect(self):
        try:
            self.sock = inet_connect(self.name, TIMEOUT)
        except OSError as exc:
            msg.warn("connect to TCP map %s: %s" % (self.name, msg.strerror(exc)))
            return False
        self.fp = self.sock.makefile("rwb")
        return True

    def _disconnect(self):
        for thing in (self.fp, self.sock):
            try:
                if thing is not None:
                    thing.close()
            except OSError:
                pass
        self.sock = self.fp = None

    def _exchange(self, key):
        """Send one request; (last character read, reply bytes without newline)."""
        error = None
        try:
            self.fp.write(b"get " + hex_quote(key) + b"\n")
            self.fp.flush()
            line = self.fp.readline(MAXLEN)
        except socket.timeout:
            line, error = b"", os.strerror(110)
        except OSError as exc:
            line, error = b"", msg.strerror(exc)
        if line.endswith(b"\n"):
            return "\n", line[:-1], None
        if line:
            return "x", line, None
        return None, b"", error or os.strerror(115)       # EINPROGRESS, as Postfix shows it

    def _lookup(self, key):
        if msg.verbose:
            msg.info("dict_tcp_lookup: key %s" % key)
        data = c_bytes(key)
        if self.flags & FLAG_FOLD_MUL:
            data = lowercase(data)
        tries = 0
        while True:
            if self.fp is not None or self._connect():
                last, reply, error = self._exchange(data)
                if last == "\n":
                    break
                if last is None:
                    msg.warn("read TCP map reply from %s: unexpected EOF (%s)"
                             % (self.name, error))
                else:
                    msg.warn("read TCP map reply from %s: text longer than %d"
                             % (self.name, MAXLEN))
                self._disconnect()
            tries += 1
            if tries >= MAXTRY:
                self.error = ERR_RETRY
                return None
            time.sleep(RETRY_SLEEP)
        nul = reply.find(b"\0")
        if nul >= 0:
            reply = reply[:nul]
        if msg.verbose:
            msg.info("dict_tcp_lookup: recv: %s" % to_text(reply))
        value = None
        if (len(reply) >= 4 and all(0x30 <= b <= 0x39 for b in reply[:3])
                and reply[3] in b" \t\n\v\f\r"):
            value = hex_unquote(reply[4:])
        if value is None:
            msg.warn("read TCP map reply from %s: malformed reply: %s"
                     % (self.name, printable(reply)[:100]))
            self._disconnect()
            self.error = ERR_RETRY
            return None
        status = reply[:1]
        if status == b"2":
            return to_text(c_bytes(to_text(value)))
        if status == b"5":
            return None
        if status != b"4":
            msg.warn("read TCP map reply from %s: bad status code: %s"
                     % (self.name, printable(reply)[:100]))
        self._disconnect()
        self.error = ERR_RETRY
        return None

    def close(self):
        self._disconnect()


def open_tcp(name, open_flags, dict_flags):
    if dict_flags & FLAG_NO_UNAUTH:
        return SurrogateDict("tcp", name, open_flags, dict_flags,
                             "tcp:%s map is not allowed for security sensitive data" % name)
    if open_flags != os.O_RDONLY:
        return SurrogateDict("tcp", name, open_flags, dict_flags,
                             "tcp:%s map requires O_RDONLY access mode" % name)
    return TcpDict(name, open_flags, dict_flags)

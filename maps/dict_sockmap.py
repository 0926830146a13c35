"""socketmap: tables, Sendmail's socket map protocol (Postfix's util/dict_sockmap.c).

`socketmap:inet:host:port:name` or `socketmap:unix:/path:name` sends the netstring
`<name> <key>` and reads one netstring reply: `OK <value>`, `NOTFOUND `, or `TEMP`,
`TIMEOUT`, `PERM` with a reason (temporary failures are ERR_RETRY, PERM is ERR_CONFIG).
Replies are limited to 100000 bytes and I/O to 100 seconds. Tables with the same server
share one connection, which is closed after 10 idle seconds or 100 seconds of use (checked
when the next lookup comes, since pyfix has no event loop here); a connection that the
server closed is reopened once, transparently. Warnings are Postfix's.
"""

import os
import socket
import time

from pyfix.common import msg
from pyfix.maps.dict import (ERR_CONFIG, ERR_RETRY, FLAG_FOLD_MUL, FLAG_NO_UNAUTH,
                             FLAG_PATTERN, Dict, SurrogateDict)
from pyfix.maps.dict_regexp import c_bytes, lowercase, to_text
from pyfix.maps.dict_tcp import inet_connect

TIMEOUT = 100
MAX_REPLY = 100000
MAX_IDLE = 10
MAX_TTL = 100

NETSTRING_ERR_EOF, NETSTRING_ERR_TIME, NETSTRING_ERR_FORMAT, NETSTRING_ERR_SIZE = 1, 2, 3, 4
_NETSTRING_ERRORS = {
    NETSTRING_ERR_EOF: "unexpected disconnect",
    NETSTRING_ERR_TIME: "time limit exceeded",
    NETSTRING_ERR_FORMAT: "input format error",
    NETSTRING_ERR_SIZE: "input exceeds size limit",
}


class NetstringError(Exception):
    def __init__(self, code, timed_out=False):
        super().__init__(_NETSTRING_ERRORS.get(code, "unknown netstring error"))
        self.code = code
        self.timed_out = timed_out


class Client:
    """auto_clnt: one connection to `transport:endpoint`, opened when needed."""

    def __init__(self, service):
        transport, colon, endpoint = service.partition(":")
        if not colon or not endpoint or not transport:
            msg.fatal('need service transport:endpoint instead of "%s"' % service)
        if transport not in ("inet", "unix", "local"):
            msg.fatal("invalid transport name: %s in service: %s" % (transport, service))
        self.transport = transport
        self.endpoint = endpoint
        self.refcount = 0
        self.sock = self.fp = None
        self.opened = self.used = 0.0

    def _connect(self):
        if self.transport == "inet":
            return inet_connect(self.endpoint, TIMEOUT)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(self.endpoint)
        except OSError:
            sock.close()
            raise
        return sock

    def access(self):
        """The stream (a buffered file), or None after Postfix's warning (errno in .error)."""
        now = time.monotonic()
        if self.fp is not None and (now - self.used > MAX_IDLE or now - self.opened > MAX_TTL):
            self.recover()
        if self.fp is None:
            try:
                self.sock = self._connect()
            except OSError as exc:
                self.error = msg.strerror(exc)
                msg.warn("connect to %s: %s" % (self.endpoint, self.error))
                return None
            self.fp = self.sock.makefile("rwb")
            self.opened = now
        self.used = now
        return self.fp

    def recover(self):
        for thing in (self.fp, self.sock):
            try:
                if thing is not None:
                    thing.close()
            except OSError:
                pass
        self.sock = self.fp = None


_clients = {}


def _read(fp, size):
    try:
        data = fp.read(size)
    except socket.timeout:
        raise NetstringError(NETSTRING_ERR_TIME, True) from None
    except OSError:
        raise NetstringError(NETSTRING_ERR_EOF) from None
    if len(data) != size:
        raise NetstringError(NETSTRING_ERR_EOF)
    return data


def netstring_get(fp, limit):
    length = 0
    while True:
        ch = _read(fp, 1)
        if ch == b":":
            break
        if not ch.isdigit():
            raise NetstringError(NETSTRING_ERR_FORMAT)
        length = length * 10 + ch[0] - 0x30
        if length > 2 ** 63 - 1:
            raise NetstringError(NETSTRING_ERR_SIZE)
    if length > limit:
        raise NetstringError(NETSTRING_ERR_SIZE)
    data = _read(fp, length)
    if _read(fp, 1) != b",":
        raise NetstringError(NETSTRING_ERR_FORMAT)
    return data


def netstring_put(fp, data):
    try:
        fp.write(b"%d:%s," % (len(data), data))
        fp.flush()
    except socket.timeout:
        raise NetstringError(NETSTRING_ERR_TIME, True) from None
    except OSError:
        raise NetstringError(NETSTRING_ERR_EOF) from None


class SockmapDict(Dict):
    type = "socketmap"

    def __init__(self, name, open_flags, dict_flags, client, sockmap_name):
        super().__init__(name, open_flags, dict_flags | FLAG_PATTERN)
        self.client = client
        self.sockmap_name = sockmap_name
        client.refcount += 1

    def _lookup(self, key):
        if msg.verbose:
            msg.info("dict_sockmap_lookup: key %s" % key)
        data = c_bytes(key)
        if self.flags & FLAG_FOLD_MUL:
            data = lowercase(data)
        request = c_bytes(self.sockmap_name) + b" " + data
        attempt = 0
        while True:
            fp = self.client.access()
            if fp is None:
                msg.warn("table %s:%s lookup error: %s" % (self.type, self.name,
                                                           self.client.error))
                self.error = ERR_RETRY
                return None
            try:
                netstring_put(fp, request)
                reply = netstring_get(fp, MAX_REPLY)
                break
            except NetstringError as exc:
                if attempt == 0 and exc.code == NETSTRING_ERR_EOF and not exc.timed_out:
                    self.client.recover()
                    attempt += 1
                    continue
                self.client.recover()
                msg.warn("table %s:%s lookup error: %s" % (self.type, self.name, exc))
                self.error = ERR_RETRY
                return None
        nul = reply.find(b"\0")
        if nul >= 0:
            reply = reply[:nul]
        status, space, payload = reply.partition(b" ")
        if status == b"OK":
            return to_text(payload) if space else None
        if status == b"NOTFOUND":
            return None
        if status == b"TEMP":
            error_class, self.error = "temporary", ERR_RETRY
        elif status == b"TIMEOUT":
            error_class, self.error = "timeout", ERR_RETRY
        elif status == b"PERM":
            error_class, self.error = "permanent", ERR_CONFIG
        else:
            error_class, self.error = "unknown", ERR_RETRY
        payload = payload.lstrip(b" \t\n\v\f\r") if space else b""
        detail = ""
        if payload:
            detail = ": " + msg.printable(to_text(payload)).encode(
                "utf-8", "surrogateescape")[:200].decode("utf-8", "surrogateescape")
        msg.warn("%s:%s socketmap server %s error%s" % (self.type, self.name, error_class,
                                                         detail))
        return None

    def close(self):
        self.client.refcount -= 1
        if self.client.refcount <= 0:
            self.client.recover()
            _clients.pop(self.client_key, None)


def open_sockmap(name, open_flags, dict_flags):
    if open_flags != os.O_RDONLY:
        return SurrogateDict("socketmap", name, open_flags, dict_flags,
                             "socketmap:%s map requires O_RDONLY access mode" % name)
    if dict_flags & FLAG_NO_UNAUTH:
        return SurrogateDict("socketmap", name, open_flags, dict_flags,
                             "socketmap:%s map is not allowed for security-sensitive data"
                             % name)
    service, colon, sockmap_name = name.rpartition(":")
    if not colon:
        return SurrogateDict("socketmap", name, open_flags, dict_flags,
                             "socketmap requires server:socketmap argument")
    client = _clients.get(service)
    if client is None:
        client = _clients[service] = Client(service)
    table = SockmapDict(name, open_flags, dict_flags, client, sockmap_name)
    table.client_key = service
    return table


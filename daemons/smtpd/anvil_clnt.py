"""The client of the anvil(8) service (Postfix's global/anvil_clnt.c): one connection per
process to private/$anvil_service, opened on first use, Postfix's plain attribute
format, one retry after a lost connection. Every call returns the reply attributes, or
None when anvil cannot be reached (smtpd then applies no limit, as Postfix does).
"""

import socket

from pyfix.daemons.anvil import plain_print, plain_requests

CLASS = "private"


class AnvilClient:
    def __init__(self, service, timeout):
        self.path = "%s/%s" % (CLASS, service)
        self.timeout = timeout
        self.sock = None
        self.buffer = bytearray()

    def _connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
            self.sock = sock
            self.buffer = bytearray()
            hello = self._read()
            if hello is None or dict(hello).get("protocol") != "anvil_protocol":
                raise OSError("bad anvil handshake")
        except OSError:
            sock.close()
            self.sock = None
            return False
        return True

    def _read(self):
        while True:
            requests = plain_requests(self.buffer)
            if requests:
                return requests[0]
            data = self.sock.recv(4096)
            if not data:
                return None
            self.buffer += data

    def request(self, request, ident):
        """(reply attributes as a dict of ints) or None."""
        for _ in range(2):
            if self.sock is None and not self._connect():
                return None
            try:
                self.sock.sendall(plain_print([("request", request), ("ident", ident)]))
                reply = self._read()
            except OSError:
                reply = None
            if reply is not None:
                try:
                    values = {name: int(value) for name, value in reply}
                except ValueError:
                    return None
                return values if values.get("status") == 0 else None
            self.sock.close()
            self.sock = None
        return None

    def connect(self, service, addr):
        return self.request("connect", "%s:%s" % (service, addr))

    def disconnect(self, service, addr):
        return self.request("disconnect", "%s:%s" % (service, addr))

    def rate(self, request, service, addr):
        reply = self.request(request, "%s:%s" % (service, addr))
        return None if reply is None else reply.get("rate")

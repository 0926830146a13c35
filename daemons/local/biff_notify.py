"""Telling comsat(8) that mail arrived (Postfix's local/biff_notify.c): a UDP datagram
`user@offset` with a null byte, to the biff/udp service of localhost."""

import socket

from pyfix.common import msg

_target = []
_sock = []


def _lookup():
    """The address of localhost's biff/udp service, looked up once."""
    if not _target:
        try:
            port = socket.getservbyname("biff", "udp")
        except OSError:
            msg.warn("service not found: biff/udp")
            return None
        try:
            address = socket.gethostbyname("localhost")
        except OSError:
            msg.warn("host not found: localhost")
            return None
        _target.append((address, port))
    return _target[0]


def biff_init():
    """Look up the service and localhost now, while the Python library (whose idna
    codec gethostbyname() loads) is still readable: before the privilege drop."""
    _lookup()


def biff_notify(text):
    data = text.encode("utf-8", "surrogateescape") + b"\0"
    target = _lookup()
    if target is None:
        return
    if not _sock:
        try:
            _sock.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        except OSError as exc:
            msg.warn("socket: %s" % msg.strerror(exc))
            return
    try:
        if _sock[0].sendto(data, target) != len(data):
            msg.warn("biff_notify: short write")
    except OSError as exc:
        msg.warn("biff_notify: %s" % msg.strerror(exc))

"""Wake-up triggers: a few bytes written into a service's endpoint (Postfix's util/
unix_trigger.c, inet_trigger.c, fifo_trigger.c, pass_trigger.c and global/mail_trigger.c).

master's wakeup timers send `W` this way; postdrop, cleanup and flush use the same calls
to wake qmgr and pickup. Stream triggers end the request with a null byte, as Postfix's
do. Connecting never waits longer than `timeout` seconds; failures are returned as
OSError, for the caller to report.
"""

import os
import socket

TRIGGER_REQ_WAKEUP = b"W"


def _stream_trigger(family, address, data, timeout, events):
    """Connect, write the request and a null byte; then, with an event loop, keep the
    connection until the peer closes it or `timeout` + 100 seconds pass (Postfix's
    unix_trigger_event()): a server that answers its wakeup, such as flush, must not
    write into a closed socket. Without one, the socket closes at once."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    try:
        sock.sendall(data + b"\0")
    except OSError:
        pass                    # the write failed: the peer is gone, nothing to wait for
    if events is None or timeout <= 0:
        sock.close()
        return
    _await_close(sock, events, timeout + 100)


def _await_close(sock, events, patience):
    key = ("trigger", sock.fileno())

    def done(*_):
        events.disable(sock.fileno())
        events.cancel_timer(key)
        sock.close()
    sock.setblocking(False)
    events.enable_read(sock.fileno(), lambda fd, ev: done())
    events.request_timer(key, done, patience)


def unix_trigger(path, data, timeout=1, events=None):
    _stream_trigger(socket.AF_UNIX, path, data, timeout, events)


def inet_trigger(address, port, data, timeout=1, events=None):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    _stream_trigger(family, (address, int(port)), data, timeout, events)


def fifo_trigger(path, data, timeout=1):
    """Write into a FIFO without blocking; a FIFO nobody reads is an error."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def pass_trigger(path, data, timeout=1):
    """Pass one end of a socket pair carrying the trigger to a pass service."""
    carrier = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left, right = socket.socketpair()
    try:
        carrier.settimeout(timeout)
        carrier.connect(path)
        socket.send_fds(carrier, [b"x"], [right.fileno()])
        left.sendall(data + b"\0")
    finally:
        for sock in (carrier, left, right):
            sock.close()

"""Wake-up triggers: a few bytes written into a service's endpoint (Postfix's util/
unix_trigger.c, inet_trigger.c, fifo_trigger.c, pass_trigger.c and global/mail_trigger.c).

master's wakeup timers send `W` this way; postqueue, postdrop and cleanup will use the
same calls to wake qmgr and pickup. A trigger never waits longer than `timeout` seconds;
failures are returned as OSError, for the caller to report.
"""

import os
import socket

TRIGGER_REQ_WAKEUP = b"W"


def _stream_trigger(family, address, data, timeout):
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(data)
    finally:
        sock.close()


def unix_trigger(path, data, timeout=1):
    _stream_trigger(socket.AF_UNIX, path, data, timeout)


def inet_trigger(address, port, data, timeout=1):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    _stream_trigger(family, (address, int(port)), data, timeout)


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
        left.sendall(data)
    finally:
        for sock in (carrier, left, right):
            sock.close()

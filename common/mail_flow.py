"""Inbound flow control through master's token pipe (Postfix's master/mail_flow.c).

master hands every child the two ends of one pipe (descriptors 3 and 4). qmgr puts
tokens in as it makes progress; cleanup takes one per message and, when there is none,
waits in_flow_delay seconds before it accepts the message (so mail arriving faster than
it is delivered slows down). The descriptors are non-blocking: an empty pipe is "no
token", never a wait.
"""

import os

from pyfix.common import master_proto, msg


def _nonblocking(fd):
    try:
        os.set_blocking(fd, False)
    except OSError:
        pass


def mail_flow_get(count):
    """Take count tokens; count, or -1 when there are not enough."""
    if count <= 0:
        msg.panic("mail_flow_get: bad length %d" % count)
    try:
        os.fstat(master_proto.FLOW_WRITE)
    except OSError as exc:
        msg.fatal("fstat flow pipe write descriptor: %s" % msg.strerror(exc))
    _nonblocking(master_proto.FLOW_READ)
    left = count
    while left > 0:
        try:
            data = os.read(master_proto.FLOW_READ, min(left, 1024))
        except OSError:
            return -1
        if not data:
            return -1
        left -= len(data)
    if msg.verbose:
        msg.info("mail_flow_get: %d %d" % (count, count - left))
    return count - left


def mail_flow_put(count):
    """Add count tokens; count, or -1 on error."""
    if count <= 0:
        msg.panic("mail_flow_put: bad length %d" % count)
    _nonblocking(master_proto.FLOW_WRITE)
    left = count
    while left > 0:
        try:
            written = os.write(master_proto.FLOW_WRITE, b"\0" * min(left, 1024))
        except OSError:
            return -1
        left -= written
    if msg.verbose:
        msg.info("mail_flow_put: %d %d" % (count, count - left))
    return count - left

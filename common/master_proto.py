"""The contract between master and the processes it starts (global/master_proto.h).

A child finds its plumbing at fixed descriptors: 3 and 4 are the two ends of master's
flow-control pipe, 5 is the status channel to master, and the listening sockets of its
service start at 6. Over the status channel a child reports itself available or busy with
a native struct {int pid; unsigned generation; int avail} in one write, so that a pyfix
master can supervise a Postfix daemon and the other way round. GENERATION (octal, in the
environment) tells master which incarnation of the service a report comes from.
"""

import os
import struct

FLOW_READ = 3
FLOW_WRITE = 4
STATUS_FD = 5
LISTEN_FD = 6

STAT_TAKEN = 0
STAT_AVAIL = 1

GENERATION_ENV = "GENERATION"
_STATUS = struct.Struct("=iIi")
STATUS_SIZE = _STATUS.size


def pack_status(pid, generation, avail):
    return _STATUS.pack(pid, generation & 0xFFFFFFFF, avail)


def unpack_status(data):
    """(pid, generation, avail) of a complete status message."""
    return _STATUS.unpack(data)


def notify(generation, avail, fd=STATUS_FD):
    """master_notify(): tell master this process is available or busy; False on error."""
    try:
        return os.write(fd, pack_status(os.getpid(), generation, avail)) == STATUS_SIZE
    except OSError:
        return False


def generation_from_env(environ=None):
    """The generation master gave this process, or 0 when started by hand."""
    text = (environ or os.environ).get(GENERATION_ENV)
    if text is None:
        return None
    return int(text, 8) if text.isdigit() else -1

"""Locks on queue files and logfiles (Postfix's util/myflock.c and global/deliver_flock.c).

Postfix on Linux locks its internal files with flock() (INTERNAL_LOCK): qmgr takes an
exclusive non-blocking lock on a message it activates, delivery agents a shared one while
they deliver, the bounce service an exclusive one while it appends to a bounce, defer or
trace logfile. pyfix uses the same call, so that pyfix and Postfix processes that share a
queue directory exclude each other.
"""

import errno
import fcntl
import os
import random
import time

UNLOCK = 0
SHARED = 1
EXCLUSIVE = 2
NOWAIT = 4

_OPS = {UNLOCK: fcntl.LOCK_UN, SHARED: fcntl.LOCK_SH, EXCLUSIVE: fcntl.LOCK_EX}


def myflock(fd, operation):
    """Lock, or unlock, fd; True on success. With NOWAIT a lock held by another process
    is False (errno EAGAIN), not a wait. Other failures raise OSError."""
    op = _OPS[operation & ~NOWAIT]
    if operation & NOWAIT:
        op |= fcntl.LOCK_NB
    while True:
        try:
            fcntl.flock(fd, op)
            return True
        except InterruptedError:
            time.sleep(1)
        except OSError as exc:
            if operation & NOWAIT and exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK,
                                                    errno.EACCES):
                return False
            raise


def deliver_flock(fd, tries=5, delay=1):
    """An exclusive lock, tried `tries` times (deliver_lock_attempts) with a random pause
    of `delay` seconds, give or take a quarter, (deliver_lock_delay) in between. Returns None when locked, else
    Postfix's reason text: `unable to lock for exclusive access: <error>`."""
    attempt = 1
    while True:
        try:
            if myflock(fd, EXCLUSIVE | NOWAIT):
                return None
            error = errno.EAGAIN
        except OSError as exc:
            error = exc.errno
        if attempt >= tries:
            break
        attempt += 1
        time.sleep(delay + random.uniform(-delay / 4, delay / 4))
    return "unable to lock for exclusive access: %s" % os.strerror(error)

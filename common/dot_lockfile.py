"""Dotlock files and the delivery agents' lock retry settings (Postfix's
global/dot_lockfile.c, dot_lockfile_as.c and deliver_flock.c).

A dotlock is `<path>.lock`, created with O_CREAT|O_EXCL; a lock older than
stale_lock_time is broken. Both the dotlock and the kernel locks of a mailbox are tried
deliver_lock_attempts times with a random pause of deliver_lock_delay seconds, give or
take a quarter, in between. configure(config) reads these three parameters (Postfix's
var_flock_tries, var_flock_delay, var_flock_stale); the defaults are Postfix's.
"""

import errno
import fcntl
import os
import random
import time

from pyfix.common import msg

MYFLOCK_STYLE_FLOCK = 1
MYFLOCK_STYLE_FCNTL = 2

_settings = {"deliver_lock_attempts": 20, "deliver_lock_delay": 1, "stale_lock_time": 500}


def configure(config):
    _settings["deliver_lock_attempts"] = config.get_int("deliver_lock_attempts")
    _settings["deliver_lock_delay"] = config.get_time("deliver_lock_delay")
    _settings["stale_lock_time"] = config.get_time("stale_lock_time")


def rand_sleep(delay):
    """rand_sleep(delay, delay / 2): delay seconds, give or take a quarter."""
    time.sleep(max(0.0, delay + random.uniform(-delay / 4, delay / 4)))


def dot_lockfile(path):
    """Create path.lock (dot_lockfile()). (0, "") when locked, else (errno, Postfix's
    text `unable to create lock file X.lock: <error>`)."""
    lock_file = path + ".lock"
    count = 1
    while True:
        try:
            os.close(os.open(lock_file, os.O_WRONLY | os.O_EXCL | os.O_CREAT, 0))
            return 0, ""
        except OSError as exc:
            err = exc.errno
        if count >= _settings["deliver_lock_attempts"] or err != errno.EEXIST:
            break
        # Break the lock when it is too old; give up when it cannot be removed.
        try:
            st = os.stat(lock_file)
            if time.time() > st.st_ctime + _settings["stale_lock_time"]:
                try:
                    os.unlink(lock_file)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    err = exc.errno
                    break
        except OSError:
            pass
        rand_sleep(_settings["deliver_lock_delay"])
        count += 1
    return err, "unable to create lock file %s: %s" % (lock_file, os.strerror(err))


def dot_unlockfile(path):
    """Remove path.lock (dot_unlockfile()); errors are ignored."""
    try:
        os.unlink(path + ".lock")
    except OSError:
        pass


def set_eugid(euid, egid):
    """Postfix's set_eugid(): become euid/egid (effective ids only), via root."""
    if os.geteuid() != 0:
        os.seteuid(0)
    os.setegid(egid)
    os.setgroups([egid])
    if euid != 0:
        os.seteuid(euid)


def dot_lockfile_as(path, euid, egid):
    """dot_lockfile() with the privileges of euid/egid, restored afterwards."""
    saved = os.geteuid(), os.getegid()
    if saved == (euid, egid) or os.getuid() != 0:
        return dot_lockfile(path)
    set_eugid(euid, egid)
    try:
        return dot_lockfile(path)
    finally:
        set_eugid(*saved)


def dot_unlockfile_as(path, euid, egid):
    saved = os.geteuid(), os.getegid()
    if saved == (euid, egid) or os.getuid() != 0:
        dot_unlockfile(path)
        return
    set_eugid(euid, egid)
    try:
        dot_unlockfile(path)
    finally:
        set_eugid(*saved)


def _myflock(fd, style):
    """An exclusive non-blocking lock of the given style; raises OSError."""
    if style == MYFLOCK_STYLE_FLOCK:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    elif style == MYFLOCK_STYLE_FCNTL:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        msg.panic("myflock: unsupported lock style: 0x%x" % style)


def deliver_flock(fd, style):
    """Lock an open file for delivery (deliver_flock()). (0, "") when locked, else
    (errno, `unable to lock for exclusive access: <error>`)."""
    count = 1
    while True:
        try:
            _myflock(fd, style)
            return 0, ""
        except OSError as exc:
            err = exc.errno
        if count >= _settings["deliver_lock_attempts"]:
            break
        rand_sleep(_settings["deliver_lock_delay"])
        count += 1
    if err == errno.EACCES:
        err = errno.EAGAIN
    return err, "unable to lock for exclusive access: %s" % os.strerror(err)

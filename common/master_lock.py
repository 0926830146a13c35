"""The master's lock files: $queue_directory/pid/master.pid and $data_directory/master.lock
(Postfix's util/open_lock.c and the lock test of `master -t`).

A running master holds an exclusive lock on pid/master.pid and writes its pid there,
right-aligned in 32 columns. On Linux Postfix locks its internal files with flock(2)
(sys_defs.h: INTERNAL_LOCK is MYFLOCK_STYLE_FLOCK), and so does pyfix: `postfix status`
of either sees the master of the other. Files are opened with safe_open(), refusing
links and replaced files as Postfix does.
"""

import fcntl
import os

from pyfix.common.safe_open import safe_open

PID_DIR = "pid"
PID_FILE = "master.pid"
LOCK_WIDTH = 32                     # "%*lu\n" with 4 * sizeof(unsigned long)


def pid_path(queue_dir):
    return os.path.join(queue_dir, PID_DIR, PID_FILE)


def open_lock(path, user=-1, group=-1):
    """open_lock(): (fd, None) with the file created and exclusively locked, or
    (None, reason) in Postfix's words."""
    opened = safe_open(path, os.O_RDWR | os.O_CREAT, 0o644, user, group)
    if opened.fd is None:
        return None, opened.why
    os.set_inheritable(opened.fd, False)
    try:
        fcntl.flock(opened.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(opened.fd)
        return None, "unable to set exclusive lock: %s" % os.strerror(exc.errno)
    return opened.fd, None


def write_pid(fd, pid=None):
    data = b"%*d\n" % (LOCK_WIDTH, os.getpid() if pid is None else pid)
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def master_running(queue_dir):
    """`master -t`: no pid file means not running; an unusable or locked one, running."""
    path = pid_path(queue_dir)
    if not os.path.exists(path):
        return False
    fd, _ = open_lock(path)
    if fd is None:
        return True
    os.close(fd)
    return False


def first_line_words(queue_dir):
    """The words of the first line of master.pid (`sed 1q pid/master.pid` as arguments)."""
    try:
        with open(pid_path(queue_dir), "rb") as f:
            line = f.readline()
    except OSError:
        return []
    return line.decode("ascii", "replace").split()

"""Descriptors 0, 1 and 2 open before a program opens anything else.

Every Postfix command starts with the same loop (postqueue.c, postdrop.c, postmap.c,
sendmail.c, postfix.c, ...):

    for (fd = 0; fd < 3; fd++)
        if (fstat(fd, &st) == -1
            && (close(fd), open("/dev/null", O_RDWR, 0)) != fd)
            msg_fatal("open /dev/null: %m");

so that a file opened later can never become a program's stdout or stderr by accident.
%m is the open() error when /dev/null cannot be opened, else the errno left by fstat()
and close() (EBADF). Only the exit status differs between the commands (postqueue
EX_UNAVAILABLE, sendmail EX_OSERR, the others 1).
"""

import errno
import os

from pyfix.common import msg


def open_standard_fds(status=1):
    """Open /dev/null on whichever of descriptors 0-2 is closed; fatal with status
    when that descriptor cannot be had."""
    for fd in range(3):
        try:
            os.fstat(fd)
            continue
        except OSError as exc:
            left_errno = exc.errno or errno.EBADF
        try:
            opened = os.open(os.devnull, os.O_RDWR)
        except OSError as exc:
            msg.fatal("open /dev/null: %s" % msg.strerror(exc), status)
        if opened != fd:
            msg.fatal("open /dev/null: %s" % os.strerror(left_errno), status)

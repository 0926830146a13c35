"""What postqueue, postsuper and postcat share: exit codes, GNU getopt's complaints,
and stdout that survives a reader that went away. (import_environment handling is
common/clean_env.py.)
"""

import os
import sys


# sysexits.h
EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_IOERR = 74
EX_NOPERM = 77


def getopt_complaint(progname, error):
    """What GNU getopt itself prints for a bad option, before the command's usage line."""
    os.write(2, ("%s: %s\n" % (progname, error)).encode("utf-8", "surrogateescape"))


class Stdout:
    """Bytes to standard output; after EPIPE (the reader is gone) writes are dropped,
    as Postfix's commands with SIGPIPE ignored stop quietly."""

    def __init__(self):
        self.broken = False

    def write(self, data):
        if self.broken:
            return False
        try:
            sys.stdout.buffer.write(data)
        except BrokenPipeError:
            self._broken()
        return not self.broken

    def flush(self):
        """False after EPIPE; other write errors raise OSError."""
        if self.broken:
            return False
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            self._broken()
        return not self.broken

    def _broken(self):
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except OSError:
            pass

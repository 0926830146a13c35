"""Diagnostics in Postfix's shape: the one logging path of every pyfix process.

Postfix's msg(3) prefixes each message with its severity (`warning: `, `error: `, `fatal: `,
`panic: `; nothing for info) and hands it to every registered output. A command writes
`prog: warning: text` to stderr (msg_vstream); a daemon writes to syslog or postlog (added by
the logging service, #3). Code calls warn()/fatal() here and never prints diagnostics itself.

Fatal and panic raise SystemExit instead of calling _exit, so that `finally` blocks and
temporary files are cleaned up; Postfix's one-second sleep before a fatal exit (a brake on
respawn loops of daemons) is left to the master's throttling.
"""

import os
import sys

INFO, WARN, ERROR, FATAL, PANIC = range(5)

SEVERITY_PREFIX = {INFO: "", WARN: "warning: ", ERROR: "error: ", FATAL: "fatal: ",
                   PANIC: "panic: "}

verbose = 0
# Whether UTF-8 text in diagnostics is kept (util_utf8_enable): on where smtputf8_enable is,
# off in postconf, which does not read the parameter. Other non-printable characters
# always become '?', as Postfix's msg_printf() makes them.
utf8_enable = True
_outputs = []
_error_count = 0
_error_bound = 13


class StderrOutput:
    """msg_vstream: `progname: [severity: ]text` on stderr."""

    def __init__(self, progname, stream=None):
        self.progname = progname
        self.stream = stream or sys.stderr

    def __call__(self, level, text):
        self.stream.write("%s: %s%s\n" % (self.progname, SEVERITY_PREFIX[level], text))
        self.stream.flush()


def init_stderr(progname):
    """Send diagnostics to stderr under `progname` (argv[0] as invoked, like Postfix)."""
    _outputs[:] = [StderrOutput(progname)]


def add_output(output):
    _outputs.append(output)


def printable(text, replacement="?"):
    """Postfix's printable(): control characters and non-ASCII bytes replaced."""
    out = []
    for ch in text:
        if " " <= ch <= "~":
            out.append(ch)
        elif utf8_enable and ch > "\x7f" and not "\udc80" <= ch <= "\udcff":
            out.append(ch)
        else:
            out.append(replacement * len(ch.encode("utf-8", "surrogateescape")))
    return "".join(out)


def _emit(level, text):
    text = printable(text)
    if not _outputs:
        init_stderr(os.path.basename(sys.argv[0]) or "pyfix")
    for output in _outputs:
        output(level, text)


def info(text):
    _emit(INFO, text)


def warn(text):
    _emit(WARN, text)


def error(text):
    global _error_count
    _emit(ERROR, text)
    _error_count += 1
    if _error_count >= _error_bound:
        fatal("too many errors - program terminated")


class Fatal(SystemExit):
    """Raised by fatal(); carries the exit status like Postfix's msg_fatal_status."""


def fatal(text, status=1):
    _emit(FATAL, text)
    raise Fatal(status)


def panic(text):
    _emit(PANIC, text)
    raise Fatal(2)


def strerror(exc):
    """The text of Postfix's %m for an OSError."""
    return os.strerror(exc.errno) if getattr(exc, "errno", None) else str(exc)

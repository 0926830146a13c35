"""Diagnostics in Postfix's shape: the one logging path of every pyfix process.

Postfix's msg(3) prefixes each message with its severity (`warning: `, `error: `, `fatal: `,
`panic: `; nothing for info) and hands it to every registered output. A command writes
`prog: warning: text` to stderr (msg_vstream); a daemon writes to syslog or postlog
(common/maillog.py registers that output). Code calls warn()/fatal() here and never prints
diagnostics itself. As in Postfix's msg_output.c, one nested message is allowed (an output
that fails may report why, e.g. a log file that cannot be opened) and deeper ones are
dropped; a fatal error raised while a fatal error is being reported is not reported again.

Fatal and panic raise SystemExit instead of calling _exit, so that `finally` blocks and
temporary files are cleaned up; Postfix's one-second sleep before a fatal exit (a brake on
respawn loops of daemons) is left to the master's throttling.
"""

import os
import re
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
_NESTING_LIMIT = 2
_nesting = 0
_exiting = False


class StderrOutput:
    """msg_vstream: `progname: [severity: ]text` on stderr."""

    def __init__(self, progname, stream=None):
        self.progname = progname
        self._stream = stream

    @property
    def stream(self):
        # sys.stderr as it is now, not as it was when logging was set up.
        return self._stream or sys.stderr

    def __call__(self, level, text):
        stream = self.stream
        stream.write("%s: %s%s\n" % (self.progname, SEVERITY_PREFIX[level], text))
        stream.flush()


def init_stderr(progname):
    """Send diagnostics to stderr under `progname` (argv[0] as invoked, like Postfix)."""
    _outputs[:] = [StderrOutput(progname)]


def vstream_init(progname):
    """msg_vstream_init(): also send diagnostics to stderr, under `progname`.

    The first call adds the stderr output after those already registered; later calls
    only rename it.
    """
    for output in _outputs:
        if isinstance(output, StderrOutput):
            output.progname = progname
            return
    _outputs.append(StderrOutput(progname))


def add_output(output):
    """Register an output function (level, text); registering it again changes nothing."""
    if output not in _outputs:
        _outputs.append(output)


# With UTF-8 enabled, Postfix keeps a byte 194..254 and the run of continuation bytes
# (128..191) after it, whether or not the sequence is valid UTF-8; any other byte that is
# not printable ASCII is replaced.
_UTF8_RUNS = re.compile(rb"([\x20-\x7e]+|[\xc2-\xfe][\x80-\xbf]+)|[\x00-\xff]", re.S)


def printable(text, replacement="?"):
    """Postfix's printable(): control characters and non-ASCII bytes replaced."""
    if text.isascii() and text.isprintable():      # most log lines: nothing to replace
        return text
    if utf8_enable:
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:          # a lone surrogate that is no escaped byte
            data = text.encode("utf-8", "replace")
        repl = replacement.encode("ascii")
        data = _UTF8_RUNS.sub(lambda m: m.group(1) or repl, data)
        return data.decode("utf-8", "surrogateescape")
    out = []
    for ch in text:
        if " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(replacement * len(ch.encode("utf-8", "surrogateescape")))
    return "".join(out)


def _emit(level, text):
    global _nesting
    if _nesting >= _NESTING_LIMIT:
        return
    _nesting += 1
    try:
        text = printable(text)
        if not _outputs:
            init_stderr(os.path.basename(sys.argv[0]) or "pyfix")
        for output in list(_outputs):
            output(level, text)
    finally:
        _nesting -= 1


def printf(level, text):
    """msg_printf(): report text at any level, without the side effects of error()
    (counting) or fatal() (exiting); postlog(1) logs a `fatal:` line this way."""
    _emit(level, text)


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


def _emit_once(level, text):
    """Report a fatal error, unless it happens while one is already being reported."""
    global _exiting
    if _exiting:
        return
    _exiting = True
    try:
        _emit(level, text)
    finally:
        _exiting = False


def fatal(text, status=1):
    _emit_once(FATAL, text)
    raise Fatal(status)


def panic(text):
    _emit_once(PANIC, text)
    raise Fatal(2)


def strerror(exc):
    """The text of Postfix's %m for an OSError."""
    return os.strerror(exc.errno) if getattr(exc, "errno", None) else str(exc)

"""sendmail's command line (part of Postfix's src/sendmail/sendmail.c): glibc getopt as
sendmail drives it (the `-q`, `-V xy` and `-XV` special cases), the options and their
checks (-N, -R, -V, -X, -b, -o, -q), the conflicts between them, and the modes and flags
they select.

Also the exit codes and fatal() that every part of sendmail uses: Postfix's sendmail
installs a run-time error handler that exits with EX_TEMPFAIL, so whatever sysexits code
a message is raised with, the program ends with status 75 (sendmail.run() sees to that).
"""

import sys

from pyfix.common import msg
from pyfix.common.dsn_mask import dsn_notify_mask, dsn_ret_code

GETOPT_LIST = "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx"

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_TEMPFAIL = 75
EX_NOPERM = 77

# Modes of operation.
MODE_ENQUEUE = 1
MODE_NEWALIAS = 2
MODE_MAILQ = 3
MODE_DAEMON = 4
MODE_USER = 5
MODE_FLUSHQ = 6
MODE_IGNORE = 7

FLAG_AEOF = 1 << 0              # a line with "." ends the input
FLAG_XRCPT = 1 << 1             # -t
DEL_REQ_FLAG_MTA_VRFY = 1 << 8
DEL_REQ_FLAG_USR_VRFY = 1 << 9
DEL_REQ_FLAG_RECORD = 1 << 10
DEL_REQ_FLAG_REC_DLY_SENT = 1 << 13
TRACE_FLAGS_MASK = (DEL_REQ_FLAG_MTA_VRFY | DEL_REQ_FLAG_USR_VRFY | DEL_REQ_FLAG_RECORD
                    | DEL_REQ_FLAG_REC_DLY_SENT)
TRACE_ONLY_MASK = DEL_REQ_FLAG_MTA_VRFY | DEL_REQ_FLAG_USR_VRFY



def fatal(text, status=EX_TEMPFAIL):
    """msg_fatal_status(): report; sendmail's error handler makes the exit status 75."""
    msg.fatal(text, status)


# -- getopt, as glibc's getopt("+...") behaves when sendmail drives it -----------------------

class Getopt:
    """One getopt() state over argv: next() returns an option letter, '?' after GNU's
    complaint on stderr, or None at the first non-option (optind is then its index).
    The caller may look at argv[optind] and move optind between calls, as sendmail does
    for `-q`, `-V xy` and `-XV`."""

    def __init__(self, argv, optstring, progname):
        self.argv = argv
        self.optstring = optstring
        self.progname = progname
        self.optind = 1
        self.optarg = None
        self.nextchar = ""

    def current(self):
        return self.argv[self.optind] if self.optind < len(self.argv) else None

    def _complain(self, text):
        sys.stderr.write("%s: %s\n" % (self.progname, text))
        sys.stderr.flush()

    def next(self):
        self.optarg = None
        if not self.nextchar:
            if self.optind >= len(self.argv):
                return None
            arg = self.argv[self.optind]
            if arg == "--":
                self.optind += 1
                return None
            if not arg.startswith("-") or arg == "-":
                return None
            self.nextchar = arg[1:]
        letter = self.nextchar[0]
        self.nextchar = self.nextchar[1:]
        pos = self.optstring.find(letter)
        if letter == ":" or pos < 0:
            self._complain("invalid option -- '%s'" % letter)
            if not self.nextchar:
                self.optind += 1
            return "?"
        if self.optstring[pos + 1:pos + 2] == ":":
            if self.nextchar:
                self.optarg = self.nextchar
                self.optind += 1
            elif self.optind + 1 < len(self.argv):
                self.optarg = self.argv[self.optind + 1]
                self.optind += 2
            else:
                self._complain("option requires an argument -- '%s'" % letter)
                self.optind += 1
                self.nextchar = ""
                return "?"
            self.nextchar = ""
            return letter
        if not self.nextchar:
            self.optind += 1
        return letter


# -- option values ----------------------------------------------------------------------------

def allprint(text):
    return all(" " <= ch <= "~" for ch in text)


def verp_delims_verify(delims, verp_filter):
    if len(delims) != 2:
        return "bad VERP delimiter character count"
    if delims[0] not in verp_filter:
        return "bad first VERP delimiter character"
    if delims[1] not in verp_filter:
        return "bad second VERP delimiter character"
    return None


# -- the command line -------------------------------------------------------------------------

class Options:
    """What the command line asks for; optind is the index of the first recipient."""

    def __init__(self, mode):
        self.mode = mode
        self.flags = FLAG_AEOF
        self.full_name = None
        self.sender = None
        self.site_to_flush = None
        self.id_to_flush = None
        self.encoding = None
        self.qtime = None
        self.rewrite_context = "local"
        self.dsn_notify = 0
        self.dsn_ret = 0
        self.dsn_envid = None
        self.alias_map = None
        self.verp_delims = None
        self.optind = 1


def parse_options(argv, progname, config, mode):
    """The options of argv (which -V/-Vxy rewrite in place to -XV/-Xxy, as sendmail
    does); mode is the one the program name chose. The cases follow sendmail.c's."""
    opts = Options(mode)
    getopt = Getopt(argv, GETOPT_LIST, progname)
    while getopt.current() is not None:
        if _special_argument(argv, getopt, opts, config):
            continue
        letter = getopt.next()
        if letter is None:
            break
        value = getopt.optarg
        if letter == "n":
            fatal("-%s option not supported" % letter, EX_USAGE)
        elif letter == "B":
            if value == "8BITMIME":
                opts.encoding = "8bit"
            elif value == "7BIT":
                opts.encoding = "7bit"
            else:
                fatal("-B option needs 8BITMIME or 7BIT", EX_USAGE)
        elif letter == "F":
            opts.full_name = value
        elif letter == "G":
            opts.rewrite_context = "remote"
        elif letter == "I":
            opts.mode = MODE_NEWALIAS
        elif letter == "N":
            opts.dsn_notify = dsn_notify_mask(value)
            if not opts.dsn_notify:
                msg.warn("bad -N option value -- ignored")
        elif letter == "R":
            opts.dsn_ret = dsn_ret_code(value)
            if not opts.dsn_ret:
                msg.warn("bad -R option value -- ignored")
        elif letter == "V":
            if len(value.encode("utf-8", "surrogateescape")) > 100:
                msg.warn("too long -V option value -- ignored")
            elif not allprint(value):
                msg.warn("bad syntax in -V option value -- ignored")
            else:
                opts.dsn_envid = value
        elif letter == "X":
            if value[:1] != "V":
                fatal("unsupported: -%s%s" % (letter, value[:1]), EX_USAGE)
            if verp_delims_verify(value[1:], config.get("verp_delimiter_filter")):
                fatal("-V requires two characters from %s"
                      % config.get("verp_delimiter_filter"), EX_USAGE)
            opts.verp_delims = value[1:]
        elif letter == "b":
            _b_option(opts, value)
        elif letter in ("f", "r"):
            opts.sender = value
        elif letter == "i":
            opts.flags &= ~FLAG_AEOF
        elif letter == "o":
            _o_option(opts, value)
        elif letter == "q":
            _q_option(opts, value)
        elif letter == "t":
            opts.flags |= FLAG_XRCPT
        elif letter == "v":
            msg.verbose += 1
        elif letter == "?":
            fatal("usage: %s [options]" % progname, EX_USAGE)
        elif msg.verbose:
            msg.info("-%s option ignored" % letter)
    opts.optind = getopt.optind
    return opts


def _special_argument(argv, getopt, opts, config):
    """What sendmail looks at before getopt(): a bare `-q` (flush the queue), the
    deprecated `-V xy` and `-Vxy` (rewritten to `-XV` and `-Xxy`) and `-XV` (the default
    VERP delimiters). True when the argument was consumed here."""
    arg = getopt.current()
    if arg == "-q":
        if opts.mode == MODE_DAEMON:
            msg.warn("ignoring -q option in daemon mode")
        else:
            opts.mode = MODE_FLUSHQ
        getopt.optind += 1
        return True
    if arg == "-V" and getopt.optind + 1 < len(argv) and len(argv[getopt.optind + 1]) == 2:
        msg.warn("option -V is deprecated with Postfix 2.3; specify -XV instead")
        argv[getopt.optind] = arg = "-XV"
    if arg.startswith("-V") and len(arg) == 4:
        msg.warn("option %s is deprecated with Postfix 2.3; specify -X%s instead"
                 % (arg, arg[1:]))
        argv[getopt.optind] = arg = "-X" + arg[1:]
    if arg == "-XV":
        opts.verp_delims = config.get("default_verp_delimiters")
        getopt.optind += 1
        return True
    return False


def _b_option(opts, value):
    """-b<mode>: the mode of operation (-bv: enqueue as a verification request)."""
    sub = value[:1]
    if sub in ("d", "l"):
        if opts.mode == MODE_FLUSHQ:
            msg.warn("ignoring -q option in daemon mode")
        opts.mode = MODE_DAEMON
    elif sub in ("h", "H"):
        opts.mode = MODE_IGNORE
    elif sub == "i":
        opts.mode = MODE_NEWALIAS
    elif sub == "m":
        opts.mode = MODE_ENQUEUE
    elif sub == "p":
        opts.mode = MODE_MAILQ
    elif sub == "s":
        opts.mode = MODE_USER
    elif sub == "v":
        opts.flags |= DEL_REQ_FLAG_USR_VRFY
    else:
        fatal("unsupported: -b%s" % sub, EX_USAGE)


def _o_option(opts, value):
    """-o<x>: only -oA<file> (alias database) and -oi (no `.` line) matter."""
    sub = value[:1]
    if sub == "A":
        if not value[1:]:
            fatal("-oA requires pathname", EX_USAGE)
        opts.alias_map = value[1:]
    elif sub == "i":
        opts.flags &= ~FLAG_AEOF
    elif sub not in ("7", "8", "m") and msg.verbose:
        msg.info("-o%s option ignored" % sub)


def _q_option(opts, value):
    """-q<interval> (ignored later), -qR<site>, -qI<queue id>."""
    if value[:1].isdigit() and value[:1].isascii():
        opts.qtime = value
    elif value[:1] == "R":
        opts.site_to_flush = value[1:]
        if not opts.site_to_flush:
            fatal("specify: -qRsitename", EX_USAGE)
    elif value[:1] == "I":
        opts.id_to_flush = value[1:]
        if not opts.id_to_flush:
            fatal("specify: -qIqueueid", EX_USAGE)
    else:
        fatal("-q%s is not implemented" % value[:1], EX_USAGE)


def check_conflicts(opts):
    """The option combinations sendmail refuses (a fatal error each)."""
    if opts.flags & FLAG_XRCPT and opts.mode != MODE_ENQUEUE:
        fatal("-t can be used only in delivery mode", EX_USAGE)
    if opts.site_to_flush and opts.mode != MODE_ENQUEUE:
        fatal("-qR can be used only in delivery mode", EX_USAGE)
    if opts.id_to_flush and opts.mode != MODE_ENQUEUE:
        fatal("-qI can be used only in delivery mode", EX_USAGE)
    if opts.flags & DEL_REQ_FLAG_USR_VRFY:
        if opts.flags & FLAG_XRCPT:
            fatal("-t option cannot be used with -bv", EX_USAGE)
        if opts.dsn_notify:
            fatal("-N option cannot be used with -bv", EX_USAGE)
        if opts.dsn_ret:
            fatal("-R option cannot be used with -bv", EX_USAGE)
        if msg.verbose == 1:
            fatal("-v option cannot be used with -bv", EX_USAGE)

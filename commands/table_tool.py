"""What postmap(1) and postalias(1) share: start-up, table names, reading keys,
printing results, and the privilege and umask steps of a rebuild (the parts that
Postfix's postmap.c and postalias.c have in common).
"""

import os
import stat
import sys

from pyfix.common import maillog, msg
from pyfix.common.clean_env import import_env, update_env
from pyfix.common.config import CONFIG_ENV, Config
from pyfix.common.getopt import GetoptError, iter_getopt
from pyfix.common.std_fds import open_standard_fds
from pyfix.maps import dict as dict_mod
from pyfix.maps import mkmap
from pyfix.maps.dict import (FLAG_DUP_IGNORE, FLAG_DUP_REPLACE, FLAG_DUP_WARN, FLAG_FOLD_FIX,
                             FLAG_TRY0NULL, FLAG_TRY1NULL, FLAG_UTF8_REQUEST)

VERBOSE_ENV = "MAIL_VERBOSE"


def start(argv):
    """umask, descriptors, MAIL_VERBOSE and logging; returns the program name."""
    os.umask(0o022)
    open_standard_fds()
    if os.environ.get(VERBOSE_ENV):
        msg.verbose = 1
    progname = argv[0] if argv else "postmap"
    slash = progname.rfind("/")
    if slash >= 0 and progname[slash + 1:]:
        progname = progname[slash + 1:]
    msg.init_stderr(progname)
    maillog.init(maillog.mail_task(progname), None)
    return progname


def options(progname, argv, optstring, usage):
    """(letter, value) pairs as getopt() hands them out, GNU's complaint and the usage
    line for a bad one; the remaining arguments are the last item (None, args)."""
    try:
        for item in iter_getopt(argv[1:], optstring):
            yield item
    except GetoptError as exc:
        sys.stderr.write("%s: %s\n" % (progname, exc))
        sys.stderr.flush()
        msg.fatal(usage)


def read_config(progname):
    """main.cf, import_environment's name=value settings, logging and the table
    parameters (mail_conf_read(), update_env(), mail_dict_init())."""
    config = Config.load()
    update_env(import_env(config))
    maillog.init(maillog.mail_task(progname, config), config)
    msg.utf8_enable = config.get_bool("smtputf8_enable")
    mkmap.configure(config)
    dict_mod.allow_surrogate = False
    return config


def split_map(spec, default_type):
    """`type:name` -> (type, name); a bare name has the default database type."""
    dict_type, colon, name = spec.partition(":")
    if not colon:
        return default_type, spec
    return dict_type, name


def c_string(text):
    """Text as a C function receives it: up to the first NUL."""
    nul = text.find("\0")
    return text if nul < 0 else text[:nul]


def stdin_lines():
    """Lines of standard input without their newline (vstring_get_nonl())."""
    for raw in sys.stdin.buffer:
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        yield raw.decode("utf-8", "surrogateescape")


def read_stdin():
    return sys.stdin.buffer.read().decode("utf-8", "surrogateescape")


class Output:
    """Standard output as a Postfix VSTREAM: bytes collect in a buffer that is written in
    4096-byte blocks when it fills, and completely only by flush(). What is still
    buffered when a fatal error ends the program is lost, as in Postfix."""

    BLOCK = 4096

    def __init__(self):
        self.buffer = bytearray()

    def write(self, text):
        self.buffer += text.encode("utf-8", "surrogateescape")
        if len(self.buffer) > self.BLOCK:
            self._write_out(len(self.buffer) // self.BLOCK * self.BLOCK)

    def _write_out(self, count):
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        try:
            while data:
                data = data[os.write(1, data):]
        except BrokenPipeError:
            pass

    def flush(self):
        if self.buffer:
            self._write_out(len(self.buffer))


OUT = Output()


def warn_empty_result(dict_type, name, key):
    msg.warn("table %s:%s: key %s: empty string result is not allowed"
             % (dict_type, name, key))
    msg.warn("table %s:%s should return NO RESULT in case of NOT FOUND" % (dict_type, name))


def errno_text(table):
    """What %m says after a failed table operation: the table's errno when it keeps
    one, else Postfix's text for errno 0."""
    code = getattr(table, "errno", 0) or 0
    return os.strerror(code) if code else "Application error"


def open_source(path):
    """The source of a rebuild: (SourceFile, label); open failure is fatal."""
    from pyfix.maps.dict_thash import read_source
    try:
        return read_source(path)
    except OSError as exc:
        msg.fatal("open %s: %s" % (path, msg.strerror(exc)))


def stdin_source():
    from pyfix.maps.dict_thash import SourceFile
    text = read_stdin()
    try:
        st = os.fstat(0)
    except OSError as exc:
        msg.fatal("fstat stdin: %s" % msg.strerror(exc))
    return SourceFile("stdin", text, st)


def preload(map_type, file_values=False):
    """Import what a rebuild needs while the interpreter's own files are certainly
    readable: RebuildPrivileges may switch to a user who cannot read them."""
    import importlib
    from pyfix.maps.types import opener
    importlib.import_module("pyfix.maps.dict_thash")           # the source parser
    opener(map_type)
    if file_values:
        importlib.import_module("pyfix.maps.dict_file")


class RebuildPrivileges:
    """Around mkmap_open(): the umask that keeps the source's group/other read bits, and
    the source owner's identity when running as root (-p and -o turn these off)."""

    def __init__(self, st, save_perm, as_owner):
        self.st = st
        self.save_perm = save_perm and stat.S_ISREG(st.st_mode)
        self.saved_mask = None
        if as_owner and os.getuid() == 0 and (st.st_uid != os.geteuid()
                                              or st.st_gid != os.getegid()):
            set_eugid(st.st_uid, st.st_gid)

    def __enter__(self):
        if self.save_perm:
            self.saved_mask = os.umask(0o022 | (~self.st.st_mode & 0o077))
        return self

    def __exit__(self, *exc):
        if self.saved_mask is not None:
            os.umask(self.saved_mask)
        return False


def set_eugid(uid, gid):
    """set_eugid(): effective ids of the source file's owner."""
    if os.geteuid() != 0:
        try:
            os.seteuid(0)
        except OSError as exc:
            msg.fatal("set_eugid: seteuid(0): %s" % msg.strerror(exc))
    for call, arg, what in ((os.setegid, gid, "setegid"),
                            (lambda g: os.setgroups([g]), gid, "setgroups")):
        try:
            call(arg)
        except OSError as exc:
            msg.fatal("set_eugid: %s(%d): %s" % (what, arg, msg.strerror(exc)))
    if uid != 0:
        try:
            os.seteuid(uid)
        except OSError as exc:
            msg.fatal("set_eugid: seteuid(%d): %s" % (uid, msg.strerror(exc)))
    if msg.verbose:
        msg.info("set_eugid: euid %d egid %d" % (uid, gid))


def main_wrapper(run):
    """Run a command's run(argv); the exit status is its return value."""
    try:
        return run(sys.argv)
    except KeyboardInterrupt:
        return 1


# -- the options postmap and postalias share ----------------------------------------------

FLAG_AS_OWNER = 1 << 0          # rebuild as the owner of the source file
FLAG_SAVE_PERM = 1 << 1         # give the new table the source file's permissions


class TableOptions:
    """The command line of postmap and postalias; tool_flags holds the FLAG_* bits."""

    def __init__(self):
        self.tool_flags = FLAG_AS_OWNER | FLAG_SAVE_PERM
        self.open_flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
        self.dict_flags = FLAG_DUP_WARN | FLAG_FOLD_FIX | FLAG_UTF8_REQUEST
        self.query = None
        self.delkey = None
        self.sequence = False
        self.args = []


# Option letters that only change flags: (attribute, bits to clear, bits to set).
_FLAG_OPTIONS = {
    "N": ("dict_flags", FLAG_TRY0NULL, FLAG_TRY1NULL),
    "n": ("dict_flags", FLAG_TRY1NULL, FLAG_TRY0NULL),
    "r": ("dict_flags", FLAG_DUP_WARN | FLAG_DUP_IGNORE, FLAG_DUP_REPLACE),
    "w": ("dict_flags", FLAG_DUP_WARN | FLAG_DUP_REPLACE, FLAG_DUP_IGNORE),
    "f": ("dict_flags", FLAG_FOLD_FIX, 0),
    "u": ("dict_flags", FLAG_UTF8_REQUEST, 0),
    "i": ("open_flags", os.O_TRUNC, 0),
    "o": ("tool_flags", FLAG_AS_OWNER, 0),
    "p": ("tool_flags", FLAG_SAVE_PERM, 0),
}


def common_option(opts, letter, value):
    """Apply one option that postmap and postalias treat alike; False if it is not one."""
    if letter in _FLAG_OPTIONS:
        attr, clear, set_ = _FLAG_OPTIONS[letter]
        setattr(opts, attr, (getattr(opts, attr) & ~clear) | set_)
    elif letter == "c":
        os.environ[CONFIG_ENV] = value
    elif letter == "v":
        msg.verbose += 1
    elif letter in "dq":
        if opts.sequence or opts.query is not None or opts.delkey is not None:
            msg.fatal("specify only one of -s -q or -d")
        if letter == "d":
            opts.delkey = value
        else:
            opts.query = value
    elif letter == "s":
        if opts.query is not None or opts.delkey is not None:
            msg.fatal("specify only one of -s or -q or -d")
        opts.sequence = True
    else:
        return False
    return True

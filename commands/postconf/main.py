"""postconf(1): show and edit main.cf and master.cf (Postfix's src/postconf/postconf.c).

Options are parsed as Postfix's getopt-based parser does (stop at the first non-option,
GNU getopt's messages, then Postfix's usage line), and checked against the same matrix of
major modes and compatible modifiers.
"""

import os
import sys

from pyfix.common import msg
from pyfix.common.config import CONFIG_ENV
from pyfix.common.params import BUILTIN, CLASS_MASK, SERVICE, USER

from pyfix.commands.postconf import dispatch, output
from pyfix.commands.postconf import session as S
from pyfix.common.getopt import GetoptError, posix_getopt

OPTSTRING = "aAbc:C:deEfFhHlmMno:pPtT:vxX#"

USAGE = ("usage: %s [-a (server SASL types)] [-A (client SASL types)] [-b (bounce templates)]"
         " [-c config_dir] [-c param_class] [-d (parameter defaults)]"
         " [-e (edit configuration)] [-f (fold lines)] [-F (master.cf fields)]"
         " [-h (no names)] [-H (no values)] [-l (lock types)] [-m (map types)]"
         " [-M (master.cf)] [-n (non-default parameters)]"
         " [-o name=value (override parameter value)] [-p (main.cf, default)]"
         " [-P (master.cf parameters)] [-t (bounce templates)]"
         " [-T compile-version|run-version|public-key-algorithms] [-v (verbose)]"
         " [-x (expand parameter values)] [-X (exclude)] [-# (comment-out)] [name...]")

FLAG_OPTIONS = {
    "a": S.SHOW_SASL_SERV, "A": S.SHOW_SASL_CLNT, "d": S.SHOW_DEFS, "e": S.EDIT_CONF,
    "f": S.FOLD_LINE, "F": S.MASTER_FLD, "#": S.COMMENT_OUT, "h": S.HIDE_NAME,
    "H": S.HIDE_VALUE, "l": S.SHOW_LOCKS, "m": S.SHOW_MAPS, "M": S.MASTER_ENTRY,
    "n": S.SHOW_NONDEF, "p": S.MAIN_PARAM, "P": S.MASTER_PARAM, "x": S.SHOW_EVAL,
    "X": S.EDIT_EXCL,
}

MAJOR_MODES = (S.SHOW_SASL_SERV | S.SHOW_SASL_CLNT | S.EXP_DSN_TEMPL | S.SHOW_LOCKS
               | S.SHOW_MAPS | S.DUMP_DSN_TEMPL | S.MAIN_PARAM | S.MASTER_ENTRY
               | S.MASTER_FLD | S.MASTER_PARAM | S.SHOW_TLS)

# Options of which at most one may be given (the first entry: the major modes).
INCOMPATIBLE = (
    MAJOR_MODES,
    S.SHOW_DEFS | S.EDIT_CONF | S.SHOW_NONDEF | S.COMMENT_OUT | S.EDIT_EXCL,
    S.FOLD_LINE | S.EDIT_CONF | S.COMMENT_OUT | S.EDIT_EXCL,
    S.SHOW_EVAL | S.EDIT_CONF | S.COMMENT_OUT | S.EDIT_EXCL,
    S.MAIN_OVER | S.SHOW_DEFS | S.EDIT_CONF | S.COMMENT_OUT | S.EDIT_EXCL,
    S.HIDE_NAME | S.EDIT_CONF | S.COMMENT_OUT | S.EDIT_EXCL | S.HIDE_VALUE,
)

# Each option, and the only options it may be combined with.
COMPATIBLE = (
    (S.SHOW_SASL_SERV, 0),
    (S.SHOW_SASL_CLNT, 0),
    (S.EXP_DSN_TEMPL, 0),
    (S.SHOW_LOCKS, 0),
    (S.SHOW_MAPS, 0),
    (S.SHOW_TLS, 0),
    (S.DUMP_DSN_TEMPL, 0),
    (S.MAIN_PARAM, S.EDIT_CONF | S.EDIT_EXCL | S.COMMENT_OUT | S.FOLD_LINE | S.HIDE_NAME
     | S.PARAM_CLASS | S.SHOW_EVAL | S.SHOW_DEFS | S.SHOW_NONDEF | S.MAIN_OVER
     | S.HIDE_VALUE),
    (S.MASTER_ENTRY, S.EDIT_CONF | S.EDIT_EXCL | S.COMMENT_OUT | S.FOLD_LINE | S.MAIN_OVER
     | S.SHOW_EVAL),
    (S.MASTER_FLD, S.EDIT_CONF | S.FOLD_LINE | S.HIDE_NAME | S.MAIN_OVER | S.SHOW_EVAL
     | S.HIDE_VALUE),
    (S.MASTER_PARAM, S.EDIT_CONF | S.EDIT_EXCL | S.FOLD_LINE | S.HIDE_NAME | S.MAIN_OVER
     | S.SHOW_EVAL | S.HIDE_VALUE),
    (S.PARAM_CLASS, S.MAIN_PARAM | S.SHOW_DEFS | S.SHOW_NONDEF),
)

# The option letters in Postfix's table order, for messages.
OPTION_NAMES = (
    ("-a", S.SHOW_SASL_SERV), ("-A", S.SHOW_SASL_CLNT), ("-b", S.EXP_DSN_TEMPL),
    ("-C", S.PARAM_CLASS), ("-d", S.SHOW_DEFS), ("-e", S.EDIT_CONF), ("-f", S.FOLD_LINE),
    ("-F", S.MASTER_FLD), ("-h", S.HIDE_NAME), ("-H", S.HIDE_VALUE), ("-l", S.SHOW_LOCKS),
    ("-m", S.SHOW_MAPS), ("-M", S.MASTER_ENTRY), ("-n", S.SHOW_NONDEF), ("-o", S.MAIN_OVER),
    ("-p", S.MAIN_PARAM), ("-P", S.MASTER_PARAM), ("-t", S.DUMP_DSN_TEMPL),
    ("-T", S.SHOW_TLS), ("-x", S.SHOW_EVAL), ("-X", S.EDIT_EXCL), ("-#", S.COMMENT_OUT),
)

PARAM_CLASSES = {"builtin": BUILTIN, "service": SERVICE, "user": USER, "all": CLASS_MASK}


def option_names(mask):
    words = [name for name, bit in OPTION_NAMES if mask & bit]
    leftover = mask & ~sum(bit for _, bit in OPTION_NAMES)
    if leftover:
        words.append("0x%x" % leftover)
    return " ".join(words)


def check_exclusive_options(mode):
    for group in INCOMPATIBLE:
        chosen = group & mode
        if bin(chosen).count("1") > 1:
            msg.fatal("specify one of %s" % option_names(chosen))


def check_compatible_options(mode):
    for option, allowed in COMPATIBLE:
        if mode & option:
            excess = mode & ~(option | allowed)
            if excess:
                msg.fatal("with option %s, do not specify %s"
                          % (option_names(option), option_names(excess)))


def parse_param_class(text):
    mask = 0
    for word in text.replace(",", " ").replace("|", " ").split():
        bit = PARAM_CLASSES.get(word.lower())
        if bit is None:
            msg.fatal('unknown -C option value "%s" in "%s"' % (word, text))
        mask |= bit
    return mask


class Options:
    def __init__(self):
        self.mode = 0
        self.param_class = CLASS_MASK
        self.overrides = []
        self.tls_mode = None
        self.template_request = None
        self.args = []


def parse_args(argv):
    opts = Options()
    progname = argv[0]
    try:
        parsed, opts.args = posix_getopt(argv[1:], OPTSTRING)
    except GetoptError as exc:
        sys.stderr.write("%s: %s\n" % (progname, exc))
        msg.fatal(USAGE % progname)
    for letter, value in parsed:
        if letter in FLAG_OPTIONS:
            opts.mode |= FLAG_OPTIONS[letter]
        elif letter in "bt":
            opts.mode |= S.EXP_DSN_TEMPL if letter == "b" else S.DUMP_DSN_TEMPL
            if opts.template_request:
                msg.fatal("specify one of -b and -t")
            opts.template_request = letter
        elif letter == "c":
            os.environ[CONFIG_ENV] = value
        elif letter == "C":
            opts.param_class = parse_param_class(value)
        elif letter == "o":
            opts.mode |= S.MAIN_OVER
            opts.overrides.append(value)
        elif letter == "T":
            if opts.mode & S.SHOW_TLS:
                msg.fatal("At most one -T <mode> option may be specified")
            opts.mode |= S.SHOW_TLS
            opts.tls_mode = value
        elif letter == "v":
            msg.verbose += 1
        else:
            msg.fatal(USAGE % progname)
    return opts


def run(argv):
    progname = argv[0]
    msg.init_stderr(progname)
    msg.utf8_enable = False
    opts = parse_args(argv)
    mode = opts.mode
    if not mode & MAJOR_MODES:
        mode |= S.MAIN_PARAM
    if mode & (S.MAIN_PARAM | S.MASTER_ENTRY | S.MASTER_FLD | S.MASTER_PARAM) \
            and opts.args and "=" in opts.args[0]:
        mode |= S.EDIT_CONF
    check_exclusive_options(mode)
    check_compatible_options(mode)
    if mode & S.EDIT_CONF and not opts.args:
        msg.fatal("-e requires name=value argument")

    session = S.Session(mode, os.path.basename(progname))
    dispatch.run(session, opts)
    output.flush()
    return 0


def main():
    # Postfix's stdout is fully buffered; a closed pipe is not worth a traceback.
    try:
        return run(sys.argv)
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""postlog(1): log text the way Postfix programs log it (Postfix's src/postlog/postlog.c).

    postlog [-iv] [-c config_dir] [-p priority] [-t tag] [text...]

The text on the command line is one record; without text, each line of standard input is
one record. Records go where common/maillog.py sends them: syslog, or the postlog service
when maillog_file is set, and $maillog_file directly when that service is down. A copy goes
to stderr only when stderr is a terminal.

The steps are Postfix's, because they decide where each early error goes: logging starts
under the tag `postfix/postlog` before the options are read (so a bad option or priority
is reported to syslog, and to the terminal), main.cf is read, and logging is set up again,
this time under -t's tag. The program name is always `postlog`, whatever argv[0] says.
Priorities: info, warn/warning, error/err, fatal/crit, panic (any case); a `fatal` or
`panic` record does not end the program with an error, but it pauses one second, as
Postfix programs do after such a record. -i is accepted and ignored (obsolete since 3.4).
"""

import os
import sys
import time

from pyfix.common import maillog, msg
from pyfix.common.config import CONFIG_ENV, Config
from pyfix.common.getopt import GetoptError, posix_getopt
from pyfix.common.std_fds import open_standard_fds

PROGNAME = "postlog"
OPTSTRING = "c:ip:t:v"
USAGE = "usage: %s [-c config_dir] [-i] [-p priority] [-t tag] [-v] [text]" % PROGNAME

LEVELS = {
    b"info": msg.INFO,
    b"warn": msg.WARN,
    b"warning": msg.WARN,
    b"error": msg.ERROR,
    b"err": msg.ERROR,
    b"fatal": msg.FATAL,
    b"crit": msg.FATAL,
    b"panic": msg.PANIC,
}


def level_map(name):
    """The msg level of a priority name, compared without regard to ASCII case."""
    level = LEVELS.get(name.encode("utf-8", "surrogateescape").lower())
    if level is None:
        msg.fatal('bad severity: "%s"' % name)
    return level


def start_logging(tag, config, fallback):
    """A terminal copy when stderr is a terminal, then syslog or postlog under tag.

    (In Postfix the terminal copy's name is the buffer that mail_task() rewrites, so it
    follows every new mail_task() result; here it is set each time.)
    """
    maillog.init(tag, config, stderr=tag if os.isatty(2) else None, fallback=fallback)


class Options:
    def __init__(self):
        self.level = msg.INFO
        self.tag = None
        self.args = []


def parse_args(argv):
    opts = Options()
    try:
        parsed, opts.args = posix_getopt(argv[1:], OPTSTRING)
    except GetoptError as exc:
        # getopt's own complaint, always on stderr (which may have been closed at start)
        os.write(2, ("%s: %s\n" % (PROGNAME, exc)).encode("utf-8", "surrogateescape"))
        msg.fatal(USAGE)
    for letter, value in parsed:
        if letter == "c":
            os.environ[CONFIG_ENV] = value
        elif letter == "p":
            opts.level = level_map(value)
        elif letter == "t":
            opts.tag = value
        elif letter == "v":
            msg.verbose += 1
    return opts


def read_config():
    """main.cf, and the settings Postfix's mail_params_init() applies to logging."""
    config = Config.load()
    msg.utf8_enable = config.get_bool("smtputf8_enable")
    return config


def log_argv(level, args):
    msg.printf(level, " ".join(args))


def log_stream(level, stream):
    """Each input line is a record (without its newline; text after a NUL is lost)."""
    for raw in stream:
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        line = raw.split(b"\0", 1)[0]
        msg.printf(level, line.decode("utf-8", "surrogateescape"))


def run(argv):
    os.umask(0o022)
    open_standard_fds()
    start_logging(maillog.mail_task(PROGNAME), None, True)
    opts = parse_args(argv)
    config = read_config()
    start_logging(maillog.mail_task(PROGNAME, config), config, False)
    tag = maillog.mail_task(PROGNAME, config) if opts.tag is None else msg.printable(opts.tag)
    start_logging(tag, config, True)
    if opts.args:
        log_argv(opts.level, opts.args)
    else:
        with open(0, "rb", closefd=False) as stdin:
            log_stream(opts.level, stdin)
    if opts.level >= msg.FATAL:
        time.sleep(1)
    return 0


def main():
    try:
        return run(sys.argv)
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""newaliases(1): rebuild the alias databases (Postfix's sendmail.c in its "-bi" mode).

    newaliases [-C config_dir] [-v] [-oA alias_file] [sendmail options]

Postfix's newaliases is sendmail under another name: it takes sendmail's options (only
-C, -v and -oA matter here; the others are accepted and ignored, as sendmail ignores
them in this mode), reads main.cf, changes to the queue directory and runs postalias
on every table in alias_database (or on the -oA table). pyfix runs its own postalias in
the same process rather than $command_directory/postalias, which on a system with
both installed may be Postfix's. Errors before postalias runs end the program with
status 75 (EX_TEMPFAIL), as sendmail's do; an empty alias_database does nothing.
"""

import os
import sys

from pyfix.common import maillog, msg
from pyfix.common.getopt import GetoptError, iter_getopt
from pyfix.common.strings import CHARS_COMMA_SP, tokens
from pyfix.commands import postalias
from pyfix.commands import table_tool as tool

GETOPT_LIST = "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx"
EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75


def _options(argv):
    """sendmail's options ("-q" alone is not getopt-compatible and skipped)."""
    args = list(argv[1:])
    parsed = []
    while True:
        try:
            items = list(iter_getopt(args, GETOPT_LIST))
        except GetoptError as exc:
            sys.stderr.write("%s: %s\n" % (tool_name(argv), exc))
            msg.fatal("usage: %s [options]" % tool_name(argv), EX_USAGE)
        parsed += items[:-1]
        rest = items[-1][1]
        if rest and rest[0] == "-q":
            args = rest[1:]
            continue
        return parsed, rest


def tool_name(argv):
    name = argv[0] if argv else "newaliases"
    return name.rsplit("/", 1)[-1] or name


def _config_dir(value):
    """-C: a directory, or a main.cf file in it."""
    head, tail = os.path.split(value)
    return (head or ".") if tail == "main.cf" else value


def prepare(argv):
    """Everything sendmail does before it runs postalias: the postalias argv, or None."""
    progname = tool_name(argv)
    parsed, rest = _options(argv)
    for letter, value in parsed:
        if letter == "C":
            os.environ[tool.CONFIG_ENV] = _config_dir(value)
    config = tool.read_config(progname)
    maillog.init(maillog.mail_task("sendmail", config), config)
    queue_directory = config.get("queue_directory")
    try:
        os.chdir(queue_directory)
    except OSError as exc:
        msg.fatal("chdir %s: %s" % (queue_directory, msg.strerror(exc)), EX_UNAVAILABLE)
    alias_file = None
    for letter, value in parsed:
        if letter == "v":
            msg.verbose += 1
        elif letter == "o" and value.startswith("A"):
            if not value[1:]:
                msg.fatal("-oA requires pathname", EX_USAGE)
            alias_file = value[1:]
    if rest:
        msg.fatal("alias initialization mode requires no recipient", EX_USAGE)
    maps = [alias_file] if alias_file is not None \
        else tokens(config.get("alias_database") or "", CHARS_COMMA_SP)
    if not maps:
        return None
    return ["postalias"] + ["-v"] * msg.verbose + ["--"] + maps


def run(argv):
    progname = tool.start(argv)
    maillog.init(maillog.mail_task("sendmail"), None)
    try:
        postalias_argv = prepare([progname] + list(argv[1:]))
    except msg.Fatal:
        return EX_TEMPFAIL
    if postalias_argv is None:
        return 0
    msg.verbose = 0                 # postalias counts its own -v options again
    return postalias.run(postalias_argv)


def main():
    return tool.main_wrapper(run)

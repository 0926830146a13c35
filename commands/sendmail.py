"""sendmail(1), mailq(1): the Sendmail-compatible interface (Postfix's src/sendmail/sendmail.c).

    sendmail [option ...] [recipient ...]
    mailq                       (sendmail -bp)
    newaliases                  (sendmail -bi, sendmail -I)

The mode comes from the program name (`mailq`, `newaliases`, `smtpd`), then from the
options. Enqueueing (the default, -bm) reads the message from standard input and hands
it to postdrop(1) as queue-file records over a socket pair (postdrop's standard input and
output), in Postfix's order:

    [A envelope_id=] [A ret_flags=] A rewrite_context=local|remote [F full name]
    S sender [A encoding=] [A trace_flags=] [V delims] ([A notify_flags=] R rcpt)*
    M, the message as N (a line) and L (a piece of a line longer than
    line_length_limit) records, X, ([A notify_flags=] R header-rcpt)* (-t), E

Every command-line argument is parsed as an RFC 822 address list (`a, b`, `Name <a>`,
and also `a b`, two addresses); an argument without an address is an empty recipient.
The input ends at end of file or, without -i/-oi, at a line holding only `.`. Leading
`From ` lines (also `>From `) are dropped; with sendmail_fix_line_endings = always (the
default) a CR before each LF is removed (`strict`: only when the first line has one;
`never`: never). Bytes are passed on unchanged: 8-bit and UTF-8 text needs no option
(-B 8BITMIME only records the body type). With -t the primary headers go through
Postfix's MIME header parser (joined continuation lines, `Name :` normalised, lines cut
at line_length_limit again) and the addresses of To:, Cc: and Bcc: (or of the Resent-
versions, once one of those is seen) are added as recipients after the `X` record.

Other modes run another program, as Postfix does: -bp/mailq `postqueue -p`, -q
`postqueue -f`, -qR<site> `postqueue -s`, -qI<id> `postqueue -i`, -bs `smtpd -S`,
-bd/-bl `postfix start` (in the background), -bi/-I/newaliases the alias rebuild of
commands/newaliases.py. -bh/-bH and -q<interval> do nothing; the other Sendmail options
Postfix ignores (-Am -Ac -h -L -m -O -o7 -o8 -om -ox -U -X, ...) are ignored here too.

Errors are `sendmail: fatal: ...` on stderr and in the mail log. Postfix's sendmail
installs a run-time error handler that exits with EX_TEMPFAIL, so every fatal error ends
with status 75 whatever sysexits code the message was raised with; pyfix does the same.

Which postdrop: when the caller can create files in the maildrop directory (root,
mail_owner, or a development queue owned by the user) sendmail runs pyfix's postdrop
module with this Python. Otherwise it runs `$command_directory/postdrop -r` as Postfix
does: the set-gid launcher that pyfix installs there (see the README), or Postfix's own
postdrop, which writes the same file format.

This module holds the start-up and the modes; the command line is in sendmail_options.py,
the enqueue path in sendmail_enqueue.py.
"""

import importlib.util
import os
import signal
import subprocess
import sys

from pyfix.common import maillog, msg
from pyfix.common.safe_open import sane_dirname
from pyfix.common.clean_env import import_env, update_env
from pyfix.common.std_fds import open_standard_fds
from pyfix.common.user_acl import check_user_acl_byuid
from pyfix.commands import postdrop as pd
from pyfix.commands.sendmail_enqueue import command_argv, enqueue, python_argv
from pyfix.commands.sendmail_options import (
    DEL_REQ_FLAG_RECORD, EX_NOPERM, EX_OSERR, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE,
    GETOPT_LIST, MODE_DAEMON, MODE_ENQUEUE, MODE_FLUSHQ, MODE_IGNORE, MODE_MAILQ,
    MODE_NEWALIAS, MODE_USER, Getopt, check_conflicts, fatal, parse_options)

POSTQUEUE_MODULE = "pyfix.commands.postqueue"
SMTPD_MODULE = "pyfix.daemons.smtpd"


# -- helpers --------------------------------------------------------------------------------

def sane_basename(path):
    """The last name in path, as Postfix's sane_basename()."""
    path = path.rstrip("/")
    return path.rsplit("/", 1)[-1] if path else "/"


def _module_exists(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def daemon_argv(module, progname, args):
    code = ("import sys; from pyfix.daemons.skeleton.server import run_daemon; "
            "from %s import main; sys.exit(run_daemon(main, sys.argv[1:]))" % module)
    return python_argv(code, [progname] + list(args))


def run_replace(argv, what):
    """mail_run_replace(): become the other program."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(argv[0], argv)
    except OSError as exc:
        fatal("execv %s: %s" % (what, msg.strerror(exc)))


# -- start-up and modes ----------------------------------------------------------------------

def check_config_dir(value):
    """-C: a main.cf file or its directory; a user's non-default one must be listed in
    the default main.cf."""
    from pyfix.common import config as config_mod
    directory = sane_dirname(value) if sane_basename(value) == "main.cf" else value
    if directory != config_mod.DEFAULT_CONFIG_DIR and os.geteuid() != 0:
        pd.check_config_dir(directory)
    os.environ[config_mod.CONFIG_ENV] = directory


def prescan(argv, progname):
    """Find -C before main.cf is read (getopt's complaints appear here too)."""
    opts = Getopt(argv, GETOPT_LIST, progname)
    while opts.current() is not None:
        if opts.current() == "-q":
            opts.optind += 1
            continue
        letter = opts.next()
        if letter is None:
            break
        if letter == "C":
            check_config_dir(opts.optarg)


def read_config():
    config = pd.read_config()
    update_env(import_env(config))
    return config


def postqueue(args):
    """Become pyfix's postqueue (Postfix runs $command_directory/postqueue)."""
    if not _module_exists(POSTQUEUE_MODULE):
        fatal("execv postqueue: pyfix has no postqueue command (%s is not installed)"
              % POSTQUEUE_MODULE)
    run_replace(command_argv(POSTQUEUE_MODULE, "postqueue",
                             list(args) + ["-v"] * msg.verbose), "postqueue")


def dispatch(config, opts, argv, progname):
    rest = argv[opts.optind:]
    if opts.qtime and opts.mode != MODE_DAEMON:
        return 0
    mode = opts.mode
    if mode == MODE_ENQUEUE:
        if opts.site_to_flush:
            if rest:
                fatal("flush site requires no recipient", EX_USAGE)
            postqueue(["-s", opts.site_to_flush])
        if opts.id_to_flush:
            if rest:
                fatal("flush queue_id requires no recipient", EX_USAGE)
            postqueue(["-i", opts.id_to_flush])
        enqueue(config, opts.flags, opts.encoding, opts.dsn_envid, opts.dsn_ret,
                opts.dsn_notify, opts.rewrite_context, opts.sender, opts.full_name, rest,
                opts.verp_delims)
        return 0
    if mode == MODE_MAILQ:
        if rest:
            fatal("display queue mode requires no recipient", EX_USAGE)
        postqueue(["-p"])
    if mode == MODE_FLUSHQ:
        if rest:
            fatal("flush queue mode requires no recipient", EX_USAGE)
        postqueue(["-f"])
    if mode == MODE_DAEMON:
        if rest:
            fatal("daemon mode requires no recipient", EX_USAGE)
        from pyfix.commands.postfix import tools
        command = tools.pyfix_command_argv("postfix", ["-v"] * msg.verbose + ["start"])
        if command is None:
            fatal("execv postfix: pyfix's postfix command is not installed")
        try:
            subprocess.Popen(command, stdin=subprocess.DEVNULL)
        except OSError as exc:
            msg.warn("fork postfix: %s" % msg.strerror(exc))
            return 1
        return 0
    if mode == MODE_NEWALIAS:
        if rest:
            fatal("alias initialization mode requires no recipient", EX_USAGE)
        if opts.alias_map is None and not config.get("alias_database"):
            return 0
        from pyfix.commands import newaliases
        return newaliases.run([progname] + list(argv[1:]))
    if mode == MODE_USER:
        if rest:
            fatal("stand-alone mode requires no recipient", EX_USAGE)
        uid = os.getuid()
        denied = check_user_acl_byuid("authorized_submit_users",
                                   config.get("authorized_submit_users"), uid)
        if denied is not None:
            fatal("User %s(%d) is not allowed to submit mail" % (denied, uid), EX_NOPERM)
        if not _module_exists(SMTPD_MODULE):
            fatal("execv %s/smtpd: pyfix has no smtpd daemon (%s is not installed)"
                  % (config.get("daemon_directory"), SMTPD_MODULE), EX_UNAVAILABLE)
        run_replace(daemon_argv(SMTPD_MODULE, "smtpd", ["-S"] + ["-v"] * msg.verbose),
                    "%s/smtpd" % config.get("daemon_directory"))
    if mode == MODE_IGNORE:
        return 0
    msg.panic("unknown operation mode: %d" % mode)


def run(argv):
    os.umask(0o022)
    open_standard_fds(EX_OSERR)
    os.closerange(3, 100)
    if maillog.safe_getenv("MAIL_VERBOSE"):
        msg.verbose = 1
    argv = list(argv)
    progname = sane_basename(argv[0]) if argv and argv[0] else "sendmail"
    argv[0] = progname
    msg.init_stderr(progname)
    maillog.init(maillog.mail_task("sendmail"), None)
    try:
        return _run(argv, progname)
    except msg.Fatal:
        return EX_TEMPFAIL


def _run(argv, progname):
    if os.geteuid() == 0 and os.getuid() != 0:
        msg.warn("the Postfix sendmail command has set-uid root file permissions")
        msg.warn("or the command is run from a set-uid root process")
        msg.warn("the Postfix sendmail command must be installed without set-uid root "
                 "file permissions")
        os.setgid(os.getgid())
        os.setuid(os.getuid())
    prescan(argv, progname)
    config = read_config()
    maillog.init(maillog.mail_task("sendmail", config), config)
    queue_directory = config.get("queue_directory")
    try:
        os.chdir(queue_directory)
    except OSError as exc:
        fatal("chdir %s: %s" % (queue_directory, msg.strerror(exc)), EX_UNAVAILABLE)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    if progname == "mailq":
        mode = MODE_MAILQ
    elif progname == "newaliases":
        mode = MODE_NEWALIAS
    elif progname == "smtpd":
        mode = MODE_DAEMON
    else:
        mode = MODE_ENQUEUE
    opts = parse_options(argv, progname, config, mode)
    check_conflicts(opts)
    if msg.verbose == 1 and opts.mode == MODE_ENQUEUE:
        msg.verbose = 0
        opts.flags |= DEL_REQ_FLAG_RECORD
    return dispatch(config, opts, argv, progname)


def main():
    try:
        return run(sys.argv)
    except KeyboardInterrupt:
        return EX_TEMPFAIL


if __name__ == "__main__":
    sys.exit(main())

"""The commands of postfix-script: start, stop, status, reload, ... (messages and exit
status as Postfix 3.7's postfix-script).

The current directory is the queue directory (main.py). Whether a master runs is the
lock test of `master -t` (common/master_lock.py), done here in Python; the master itself is pyfix's
`python -m pyfix.master.master`, started with Postfix master's flags: `-w` for start
(the foreground process exits when the background master is ready), `-s` for start-fg
(`-i` when this process is pid 1).

Differences from Postfix:
  - start-fg replaces this process with the master (exec) instead of running it as a
    child of the script: signals from the service manager reach the master itself.
    Only when this process leads its process group without leading its session (a
    command typed in an interactive shell), where the master's setsid() would fail, the
    master runs as a child as under Postfix, and SIGINT/SIGTERM/SIGHUP/SIGQUIT are passed
    on to it (so Ctrl-C stops the mail system).
  - flush, reload and the check run postqueue / postsuper only once pyfix has them
    (they are pyfix's console scripts, never Postfix's programs of the same name).
  - logrotate uses the expanded values of the maillog_file parameters (postfix-script
    takes `postconf -h` text, with any `$name` unexpanded).
"""

import os
import signal
import subprocess
import sys
import time

from pyfix.common import msg

from pyfix.common import master_lock as lock
from pyfix.commands.postfix import check, postfix_files, tools, upgrade

USAGE_HINT = ("Usage: postfix start (or stop, reload, abort, flush, check, status,"
              " set-permissions, upgrade-configuration, logrotate)")
NOT_RUNNING = "the Postfix mail system is not running"
STOP_POLLS = 5


def _running(ctx):
    return lock.master_running(ctx.queue_dir)


def _require_running(ctx):
    if not _running(ctx):
        msg.fatal(NOT_RUNNING)


def _signal_master(ctx, sig, group=False, first_only=False):
    """kill [-SIG] `sed 1q pid/master.pid`; True when every signal was delivered."""
    words = lock.first_line_words(ctx.queue_dir)
    if first_only:
        words = words[:1]
    if not words:
        return False
    ok = True
    for word in words:
        if not word.isdigit() or int(word) == 0:
            postfix_files.tool_error("kill", "Illegal number: %s" % word)
            ok = False
            continue
        pid = int(word)
        try:
            os.kill(-pid if group else pid, sig)
        except OSError as exc:
            postfix_files.tool_error("kill", "(%d) - %s" % (-pid if group else pid,
                                                            msg.strerror(exc)))
            ok = False
    return ok


# -- start ---------------------------------------------------------------------------------

def cmd_start(ctx, foreground):
    if not tools.master_available():
        msg.fatal("no Postfix master program %s!" % tools.MASTER_MODULE)
    if _running(ctx):
        msg.fatal("the Postfix mail system is already running")
    quick_start = os.path.join(ctx.queue_dir, "quick-start")
    if os.path.isfile(quick_start):
        try:
            os.remove(quick_start)
        except OSError:
            pass
    else:
        try:
            check.check_fatal(ctx)
        except msg.Fatal:
            msg.fatal("Postfix integrity check failed!")
        check.check_warn(ctx)
    msg.info("starting the Postfix mail system")
    sys.stdout.flush()
    sys.stderr.flush()
    if not foreground:
        argv = tools.master_argv(ctx.config_dir, "-w")
        if subprocess.run(argv, env=ctx.child_env).returncode != 0:
            msg.fatal("mail system startup failed")
        return 0
    if ctx.instances:
        msg.fatal("start-fg does not support multi_instance_directories")
    init_mode = os.getpid() == 1
    argv = tools.master_argv(ctx.config_dir, "-i" if init_mode else "-s")
    if not init_mode and os.getpgrp() == os.getpid() and os.getsid(0) != os.getpid():
        return _run_foreground(argv, ctx.child_env)
    try:
        os.execve(argv[0], argv, ctx.child_env)
    except OSError:
        pass
    msg.fatal("cannot start-fg the master daemon")


FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _run_foreground(argv, env):
    """start-fg from a process-group leader (a command typed in an interactive shell):
    the master's setsid() cannot succeed in this process, so it runs as a child, as
    under Postfix's postfix-script, and the signals that would stop or reload it when
    typed at the terminal (which reach only this process) are passed on to it."""
    try:
        child = subprocess.Popen(argv, env=env)
    except OSError:
        msg.fatal("cannot start-fg the master daemon")

    def forward(signum, frame):
        try:
            child.send_signal(signum)
        except OSError:
            pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    status = child.wait()
    return 128 - status if status < 0 else status


# -- stop, abort, drain, quick-stop ----------------------------------------------------------

def cmd_stop(ctx):
    _require_running(ctx)
    msg.info("stopping the Postfix mail system")
    _signal_master(ctx, signal.SIGTERM)
    for _ in range(STOP_POLLS):
        if not _running(ctx):
            return 0
        msg.info("waiting for the Postfix mail system to terminate")
        time.sleep(1)
    msg.warn("stopping the Postfix mail system with force")
    return 0 if _signal_master(ctx, signal.SIGKILL, group=True, first_only=True) else 1


def cmd_abort(ctx):
    _require_running(ctx)
    msg.info("aborting the Postfix mail system")
    return 0 if _signal_master(ctx, signal.SIGTERM) else 1


def cmd_drain(ctx):
    _require_running(ctx)
    msg.info("stopping the Postfix mail system")
    return 0 if _signal_master(ctx, signal.SIGKILL) else 1


def cmd_quick_stop(ctx):
    try:
        cmd_stop(ctx)
    except msg.Fatal:
        pass
    with open(os.path.join(ctx.queue_dir, "quick-start"), "a"):
        pass
    return 0


# -- reload, flush, status -------------------------------------------------------------------

def cmd_reload(ctx):
    _require_running(ctx)
    msg.info("refreshing the Postfix mail system")
    if tools.run_pyfix_command("postsuper", ["active"], ctx.child_env) not in (None, 0):
        return 1
    _signal_master(ctx, signal.SIGHUP)
    tools.run_pyfix_command("postsuper", [], ctx.child_env, background=True)
    return 0


def cmd_flush(ctx):
    status = tools.run_pyfix_command("postqueue", ["-f"], ctx.child_env)
    if status is None:
        msg.fatal("cannot flush the mail queue: pyfix has no postqueue command yet")
    return status


def cmd_status(ctx):
    if not _running(ctx):
        msg.info(NOT_RUNNING)
        return 1
    words = lock.first_line_words(ctx.queue_dir)
    msg.info("the Postfix mail system is running: PID:" + "".join(" " + w for w in words))
    return 0


# -- set-permissions, upgrade-configuration, logrotate ---------------------------------------

def cmd_post_install(ctx, args):
    """post-install with these arguments (set-permissions and upgrade-configuration run
    `post-install create-missing <command> [name=value ...]`); its exit status."""
    request = postfix_files.parse_args(args)
    if request is None:
        return 1
    values = ctx.install_values()
    for name, value in request.assignments.items():
        if name in values:
            values[name] = value
    if not postfix_files.check_values(values):
        return 1
    changed = ["%s = %s" % (name, values[name]) for name in postfix_files.MOST_PARAMETERS
               if name in request.assignments and values[name] != ctx.config.raw(name)]
    if changed:
        status = tools.run_pyfix_command("postconf", ["-c", ctx.config_dir, "-e"] + changed,
                                         ctx.child_env)
        if status is None:
            msg.error("cannot update %s/main.cf: pyfix's postconf command is not installed"
                      % ctx.config_dir)
        if status != 0:
            return 1
    if request.create and not check.create_missing(ctx, request.set_perms,
                                                   request.upgrade_perms, values):
        return 1
    if request.upgrade_conf and not upgrade.upgrade_configuration(ctx):
        return 1
    if request.first_install_reminder:
        upgrade.first_install_reminder(ctx)
    return 0


def cmd_logrotate(ctx, args):
    if args:
        msg.fatal("usage postfix logrotate (no arguments)")
    values = {}
    for name in ("maillog_file", "maillog_file_compressor", "maillog_file_rotate_suffix"):
        values[name] = ctx.config.get(name)
        if not values[name]:
            msg.fatal("empty '%s' parameter value - logfile rotation failed" % name)
    logfile = values["maillog_file"]
    if logfile.startswith("/dev/"):
        msg.fatal("not rotating '%s'" % logfile)
    rotated = "%s.%s" % (logfile, time.strftime(values["maillog_file_rotate_suffix"]))
    try:
        os.rename(logfile, rotated)
    except FileNotFoundError as exc:
        msg.fatal("logfile '%s' rotation failed: mv: cannot stat '%s': %s"
                  % (logfile, logfile, msg.strerror(exc)))
    except OSError as exc:
        msg.fatal("logfile '%s' rotation failed: mv: cannot move '%s' to '%s': %s"
                  % (logfile, logfile, rotated, msg.strerror(exc)))
    if _running(ctx):
        _signal_master(ctx, signal.SIGHUP)
    time.sleep(1)
    try:
        proc = subprocess.run([values["maillog_file_compressor"], rotated], env=ctx.child_env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as exc:
        msg.fatal("logfile '%s' rotation failed: %s: %s"
                  % (logfile, values["maillog_file_compressor"], msg.strerror(exc)))
    if proc.returncode != 0:
        errors = proc.stdout.decode("utf-8", "replace").rstrip("\n")
        msg.fatal("logfile '%s' rotation failed: %s" % (logfile, errors))
    return 0


# -- dispatch ----------------------------------------------------------------------------------

def dispatch(ctx, words):
    command = words[0] if words else ""
    args = words[1:]
    simple = {
        "stop": cmd_stop, "abort": cmd_abort, "drain": cmd_drain, "quick-stop": cmd_quick_stop,
        "reload": cmd_reload, "flush": cmd_flush, "status": cmd_status,
        "check": check.run_check,
    }
    if command in simple:
        return simple[command](ctx)
    if command in ("start", "start-fg"):
        return cmd_start(ctx, command == "start-fg")
    if command in ("set-permissions", "upgrade-configuration"):
        return cmd_post_install(ctx, ["create-missing", command] + args)
    if command == "post-install":                 # not part of the public interface
        return cmd_post_install(ctx, args)
    if command == "check-fatal":                  # not part of the public interface
        check.check_fatal(ctx)
        return 0
    if command == "check-warn":                   # not part of the public interface
        check.check_warn(ctx)
        return 0
    if command == "logrotate":
        return cmd_logrotate(ctx, args)
    if command == "start_msg":
        print("Start postfix")
        return 0
    if command == "stop_msg":
        print("Stop postfix")
        return 0
    if command == "tls":
        msg.fatal("the 'tls' command (postfix-tls-script) is not implemented by pyfix")
    msg.fatal("unknown command: '%s'. %s" % (command, USAGE_HINT))

"""Starting and reaping service processes (Postfix's master_spawn.c).

A pyfix daemon is forked from the master, which imported its module at start-up, and runs
in the child without an exec: the fork costs about a millisecond and shares memory. Any
other command is exec'd. Both kinds get the same plumbing: the flow-control pipe on
descriptors 3 and 4, the status channel on 5, the service's listeners from 6 on, every
other master descriptor closed, GENERATION in the environment, and (forked children) a
process title that reads like the command line Postfix would show.
"""

import importlib
import os
import signal
import sys

from pyfix.common import master_proto, msg

try:
    import setproctitle
except ImportError:                       # optional: only the process title depends on it
    setproctitle = None

_modules = {}


def preload(services):
    """Import the daemon modules of these services now, in the master, before any fork."""
    for spec in services:
        name = spec.daemon_module
        if name and name not in _modules:
            try:
                _modules[name] = importlib.import_module(name)
            except ImportError as exc:
                if exc.name != name:
                    raise
                _modules[name] = None


def max_fd():
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 1024


def _plumb(flow_fds, status_fd, listen_fds):
    """Put the child's descriptors where master_proto.h says, and close all others."""
    os.dup2(flow_fds[0], master_proto.FLOW_READ)
    os.dup2(flow_fds[1], master_proto.FLOW_WRITE)
    if status_fd <= master_proto.STATUS_FD:
        msg.fatal("master_spawn: status file descriptor collision")
    os.dup2(status_fd, master_proto.STATUS_FD)
    for n, fd in enumerate(listen_fds):
        if fd <= master_proto.LISTEN_FD + n:
            msg.fatal("master_spawn: listen file descriptor collision")
        os.dup2(fd, master_proto.LISTEN_FD + n)
    os.closerange(master_proto.LISTEN_FD + len(listen_fds), max_fd())


def _reset_signals():
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT,
                signal.SIGQUIT, signal.SIGALRM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)
    signal.alarm(0)


def set_process_title(argv):
    """Make ps, top and psutil show the child as Postfix's would be shown: the command
    line master built as the title, the program name as the process name (comm)."""
    if setproctitle is None:
        return
    setproctitle.setproctitle(" ".join(argv))
    setproctitle.setthreadtitle(os.path.basename(argv[0]))


def child_main(spec, argv, generation, flow_fds, status_fd, listen_fds):
    """The child side of a spawn; never returns."""
    status = 1
    try:
        _reset_signals()
        _plumb(flow_fds, status_fd, listen_fds)
        os.environ[master_proto.GENERATION_ENV] = "%o" % generation
        module_name = spec.daemon_module
        if module_name is None:
            os.execvp(spec.path, argv)
        module = _modules.get(module_name)
        if module is None:
            msg.fatal("master_spawn: exec %s: pyfix has no %s daemon"
                      % (spec.path, spec.command))
        set_process_title(argv)
        sys.argv = list(argv)
        from pyfix.daemons.skeleton.server import run_daemon
        status = run_daemon(module.main, argv)
    except OSError as exc:
        msg.error("master_spawn: exec %s: %s" % (spec.path, msg.strerror(exc)))
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 1
    except BaseException as exc:                       # never let a child run master code
        try:
            msg.error("%s: %s: %s" % (spec.path, type(exc).__name__, exc))
        except BaseException:
            pass
    finally:
        os._exit(status)


def describe_exit(path, pid, status):
    """The warnings master logs for a child that did not exit normally, or None."""
    if os.WIFSTOPPED(status):
        return "stopped", "process %s pid %d stopped by signal %d" % (
            path, pid, os.WSTOPSIG(status))
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
        return "exit", "process %s pid %d exit status %d" % (path, pid, os.WEXITSTATUS(status))
    if os.WIFSIGNALED(status):
        return "signal", "process %s pid %d killed by signal %d" % (
            path, pid, os.WTERMSIG(status))
    return None

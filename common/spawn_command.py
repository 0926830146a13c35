"""Run an external command with its standard streams on given descriptors
(Postfix's util/spawn_command.c), as spawn(8), pipe(8) and local(8) do.

The command runs in its own session under the requested user and group (when this process
may switch), with the environment reduced to export_environment and PATH reset, and is
killed with its offspring when it exceeds its time limit. The fork and exec are
subprocess's (in C, with vfork where it can): two to three times cheaper than a fork of
the Python process.
"""

import contextlib
import os
import pwd
import select
import signal
import subprocess
import time

from pyfix.common import msg

DEFAULT_PATH = "/usr/bin:/bin"


def clean_environment(keep, environ=None):
    """clean_env(): the environment reduced to the listed names (`name` or `name=value`)."""
    environ = os.environ if environ is None else environ
    kept = {}
    for entry in keep:
        name, eq, value = entry.partition("=")
        if eq:
            kept[name] = value
        elif name in environ:
            kept[name] = environ[name]
    return kept


def _credentials(uid, gid):
    """The user, group and supplementary groups to run as (set_ugid()), when root."""
    if uid is None or os.getuid() != 0:
        return {}
    try:
        groups = os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
    except KeyError:
        groups = [gid]
    return {"user": uid, "group": gid, "extra_groups": groups}


@contextlib.contextmanager
def _root_privileges(uid):
    """A daemon that waits as mail_owner (spawn) becomes root again to switch users."""
    euid, egid = os.geteuid(), os.getegid()
    regain = uid is not None and os.getuid() == 0 and euid != 0
    if regain:
        os.seteuid(0)
        os.setegid(0)
    try:
        yield
    finally:
        if regain:
            os.setegid(egid)
            os.seteuid(euid)


def _timed_waitpid(pid, time_limit):
    """waitpid() that gives up after time_limit seconds (0 = no limit); None on timeout.

    The wait is a poll() on a pidfd, so the exit is seen at once, with no sleeping loop.
    """
    if not time_limit:
        return os.waitpid(pid, 0)[1]
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + time_limit
        while not poller.poll(max(0, deadline - time.monotonic()) * 1000):
            if time.monotonic() >= deadline:
                return None
    finally:
        os.close(pidfd)
    return os.waitpid(pid, 0)[1]


def spawn_command(argv, *, stdin_fd=None, stdout_fd=None, stderr_fd=None, uid=None,
                  gid=None, time_limit=0, export=None):
    """Run argv and return its wait status (as os.waitpid gives it).

    The command runs in a new session under uid/gid (when this process is root), with
    the exported environment and PATH reset; a command that cannot be started exits 1
    after Postfix's fatal message, as the forked child of spawn_command.c would.
    """
    environ = clean_environment(export) if export is not None else dict(os.environ)
    environ["PATH"] = DEFAULT_PATH
    try:
        with _root_privileges(uid):
            child = subprocess.Popen(argv, stdin=stdin_fd, stdout=stdout_fd,
                                     stderr=stderr_fd, env=environ, start_new_session=True,
                                     close_fds=True, **_credentials(uid, gid))
    except OSError as exc:
        msg.warn("spawn_command: execvp %s: %s" % (argv[0], msg.strerror(exc)))
        return 1 << 8
    status = _timed_waitpid(child.pid, time_limit)
    if status is None:
        msg.warn("%s: process id %d: command time limit exceeded" % (argv[0], child.pid))
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(child.pid, 0)
    child.returncode = 0        # reaped here; keep Popen from waiting again
    return status

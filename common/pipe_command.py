"""Deliver a message to an external command (Postfix's global/pipe_command.c), as pipe(8)
and local(8) do.

The command runs in its own session under the given user and group (never root), with
the environment reduced to export_environment, PATH reset and extra variables set, in
the given directory (and chroot). The message is copied to its standard input with
mail_copy(); its standard output and error share one pipe whose write end is
non-blocking, read only after the message is written: at most 4095 bytes of it are kept,
tabs and newlines turned into spaces and other unprintable bytes into `_`, for the
status text. Each write, each read and the final wait get time_limit seconds, as
Postfix's do; when one runs out the command and its offspring are killed and the
delivery bounces with `Command time limit exceeded`.

The result is PIPE_STAT_OK (why.reason holds the output), _DEFER, _BOUNCE or _CORRUPT,
and why (a dsn_buf.DsnBuf) says what happened, in Postfix's words: an exit status of
<sysexits.h> maps to its enhanced status code and text, output that starts with an
enhanced status code takes precedence.
"""

import errno
import os
import select
import shutil
import signal
import subprocess
import time

from pyfix.common import msg
from pyfix.common.dot_lockfile import set_eugid
from pyfix.common.dsn_util import dsn_split, dsn_valid
from pyfix.common.mail_copy import MAIL_COPY_STAT_CORRUPT, MAIL_COPY_STAT_WRITE, mail_copy
from pyfix.common.mbox_open import mbox_dsn
from pyfix.common.spawn_command import clean_environment
from pyfix.common.sys_exits import EX_IOERR, EX_OSERR, EX_SOFTWARE, EX_TEMPFAIL
from pyfix.common.sys_exits import sys_exits_code, sys_exits_detail

PIPE_STAT_OK = 0
PIPE_STAT_DEFER = 1
PIPE_STAT_BOUNCE = 2
PIPE_STAT_CORRUPT = 3

DEFAULT_PATH = "/usr/bin:/bin"          # _PATH_DEFPATH
_PATH_BSHELL = "/bin/sh"
# exec_command(): a command of only these characters needs no shell.
_EXEC_OK_CHARS = frozenset("1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyz"
                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ \t")
LOG_BUF_SIZE = 4096                     # VSTREAM_BUFSIZE: output kept is one less
WRITE_CHUNK = 4096


class _Limits:
    """pipe_command_timeout and pipe_command_maxtime: once one operation timed out, the
    others no longer wait."""

    def __init__(self, maxtime):
        self.maxtime = maxtime
        self.timed_out = False

    def wait_time(self, after_timeout=0):
        return after_timeout if self.timed_out else self.maxtime

    def expired(self, function, what):
        """Postfix's warning for the first operation that ran out of time."""
        if not self.timed_out:
            msg.warn("%s: %s time limit exceeded" % (function, what))
            self.timed_out = True


def _poll(fd, event, seconds):
    """read_wait()/write_wait(): whether fd became ready within seconds (0: poll only)."""
    poller = select.poll()
    poller.register(fd, event)
    deadline = time.monotonic() + seconds
    while True:
        try:
            if poller.poll(max(0, deadline - time.monotonic()) * 1000):
                return True
        except InterruptedError:
            continue
        if time.monotonic() >= deadline:
            return False


def _feed(fd, data, limits):
    """Write the copied message to the command (pipe_command_write() for each chunk:
    each waits at most the time limit); the errno of a failure, 0 when all was written."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        if not _poll(fd, select.POLLOUT, limits.wait_time()):
            limits.expired("pipe_command_write", "write")
            return errno.ETIMEDOUT
        try:
            done += os.write(fd, view[done:done + WRITE_CHUNK])
        except OSError as exc:
            return exc.errno
    return 0


def _copy_message(src, sender, orig_rcpt, delivered, flags, eol, why):
    """mail_copy() of the message into memory: (status, bytes). The copy is made
    before the command reads it, so that the writes to the command can be timed."""
    memfd = os.memfd_create("pipe_command", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(memfd), "wb") as dst:
            status = mail_copy(sender, orig_rcpt, delivered, src, dst, flags, eol, why)
        os.lseek(memfd, 0, os.SEEK_SET)
        size = os.fstat(memfd).st_size
        with os.fdopen(os.dup(memfd), "rb") as copied:
            return status, copied.read(size)
    finally:
        os.close(memfd)


def _read_output(fd, limits):
    """vstream_fread() of the output pipe: up to 4095 bytes, each read timed."""
    chunks = []
    size = 0
    while size < LOG_BUF_SIZE - 1:
        if not _poll(fd, select.POLLIN, limits.wait_time()):
            limits.expired("pipe_command_read", "read")
            break
        try:
            data = os.read(fd, LOG_BUF_SIZE - 1 - size)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
        size += len(data)
    return b"".join(chunks)


def _log_text(data):
    """The output as the status text shows it (translit() then printable())."""
    text = data.decode("utf-8", "surrogateescape").replace("\t", " ").replace("\n", " ")
    return msg.printable(text, "_")


def _kill_command(pid, sig, uid, gid):
    """kill_command(): kill the command's process group (or the command when it has
    none) with the command's own privileges."""
    saved = os.geteuid(), os.getegid()
    switch = os.getuid() == 0 and uid is not None and saved != (uid, gid)
    if switch:
        set_eugid(uid, gid)
    try:
        try:
            os.killpg(pid, sig)
        except OSError:
            try:
                os.kill(pid, sig)
            except OSError as exc:
                msg.warn("cannot kill process (group) %d: %s" % (pid, msg.strerror(exc)))
    finally:
        if switch:
            set_eugid(*saved)


def _wait_or_kill(pid, limits, uid, gid):
    """pipe_command_wait_or_kill(): the wait status; the command is killed when it does
    not finish within the time limit (one second once a limit was exceeded)."""
    seconds = limits.wait_time(after_timeout=1)
    pidfd = os.pidfd_open(pid)
    try:
        ready = _poll(pidfd, select.POLLIN, seconds)
    finally:
        os.close(pidfd)
    if not ready:
        limits.expired("pipe_command_wait_or_kill", "child wait")
        _kill_command(pid, signal.SIGKILL, uid, gid)
    return os.waitpid(pid, 0)[1]


class _Command:
    """What to run and how (struct pipe_args)."""

    def __init__(self, argv=None, command=None, shell=None, uid=None, gid=None, env=None,
                 export=None, cwd=None, chroot=None, progname="pipe"):
        if argv is None and command is None:
            msg.panic("get_pipe_args: missing PIPE_CMD_ARGV or PIPE_CMD_COMMAND")
        if uid == 0:
            msg.panic("get_pipe_args: privileged uid")
        if gid == 0:
            msg.panic("get_pipe_args: privileged gid")
        self.argv = argv
        self.command = command if command is not None else argv[0]
        self.shell = shell
        self.uid, self.gid = uid, gid
        self.env = env or []
        self.export = export
        self.cwd = cwd
        self.chroot = chroot
        self.progname = progname

    def exec_argv(self):
        """(argv, executable, what a failed exec reports): the argv as given, the
        command after the shell's words (local_command_shell), or exec_command()'s
        choice: split on blanks and run directly when the command has no shell meta
        characters and its program can be found, else `sh -c command`."""
        if self.argv is not None:
            return self.argv, None, "pipe_command: execvp %s" % self.argv[0]
        if self.shell:
            argv = self.shell.split() + [self.command]
            return argv, None, "pipe_command: execvp %s" % argv[0]
        words = self.command.replace("\t", " ").split(" ")
        words = [word for word in words if word]
        if words and all(ch in _EXEC_OK_CHARS for ch in self.command):
            program = words[0]
            if "/" in program or shutil.which(program, path=DEFAULT_PATH):
                return words, None, "execvp %s" % program
        return ["sh", "-c", self.command], _PATH_BSHELL, "execl %s" % _PATH_BSHELL

    def environment(self):
        environ = clean_environment(self.export) if self.export is not None \
            else dict(os.environ)
        environ["PATH"] = DEFAULT_PATH
        for name, value in self.env:
            environ[name] = value
        return environ

    def spawn_options(self):
        """How subprocess sets the child up. Without chroot it switches the user and
        directory itself; with chroot (which needs root, and subprocess changes users
        before it calls preexec_fn) the child does Postfix's order in preexec_fn:
        chroot_uid(), set_ugid(), then chdir to the directory."""
        if not self.chroot:
            return dict(cwd=self.cwd, **_credentials(self.uid, self.gid))
        return dict(preexec_fn=self._chroot_then_user)

    def _chroot_then_user(self):
        os.chroot(self.chroot)
        os.chdir("/")
        if _credentials(self.uid, self.gid):
            os.setgid(self.gid)
            os.setgroups([self.gid])
            os.setuid(self.uid)
        if self.cwd:
            os.chdir(self.cwd)

    def failed_start(self, exc, exec_what):
        """The output and status a forked child would give when chdir or exec fails:
        its msg_fatal() is logged, and, once the child writes its messages to
        standard error (after chdir), it is also the command output; EX_TEMPFAIL."""
        if self.cwd and exc.filename == self.cwd:
            text = 'cannot change directory to "%s" for uid=%d gid=%d: %s' % (
                self.cwd, self.uid if self.uid is not None else os.getuid(),
                self.gid if self.gid is not None else os.getgid(), msg.strerror(exc))
            output = b""
        else:
            text = "%s: %s" % (exec_what, msg.strerror(exc))
            output = ("%s: fatal: %s\n" % (self.progname, text)).encode(
                "utf-8", "surrogateescape")
        msg.printf(msg.FATAL, text)
        return output, EX_TEMPFAIL << 8


def _credentials(uid, gid):
    """set_ugid(): the user, its group and no other groups, when this process may."""
    if os.getuid() != 0 or uid is None:
        return {}
    return {"user": uid, "group": gid, "extra_groups": [gid]}


class _RootPrivileges:
    """Become root again for the fork when only the effective ids were dropped."""

    def __init__(self, wanted):
        self.wanted = wanted and os.getuid() == 0 and os.geteuid() != 0
        self.saved = (os.geteuid(), os.getegid())

    def __enter__(self):
        if self.wanted:
            os.seteuid(0)
            os.setegid(0)

    def __exit__(self, *exc):
        if self.wanted:
            os.setegid(self.saved[1])
            os.seteuid(self.saved[0])


def pipe_command(src, why, *, sender, orig_rcpt, delivered, copy_flags, eol,
                 time_limit, **command):
    """Run the command, feed it the message from src (the queue file at the start of
    the content, copied with mail_copy() and copy_flags, sender, orig_rcpt, delivered
    and eol) and return PIPE_STAT_*, with why (a DsnBuf) saying what happened.

    command: argv (a list) or command (a string, run through shell when given, else
    directly or by /bin/sh as exec_command() would), uid, gid, env (name, value pairs),
    export (export_environment names; None keeps the whole environment), cwd, chroot,
    progname (for the fatal message of a child that cannot start)."""
    cmd = _Command(**command)
    if time_limit < 0:
        msg.panic("get_pipe_args: missing or invalid PIPE_CMD_TIME_LIMIT")
    limits = _Limits(time_limit)
    copy_status, data = _copy_message(src, sender, orig_rcpt, delivered, copy_flags, eol,
                                      why)
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    os.set_blocking(out_write, False)
    argv, executable, exec_what = cmd.exec_argv()
    child = failed = None
    try:
        with _RootPrivileges(cmd.uid is not None):
            child = subprocess.Popen(
                argv, executable=executable, stdin=in_read, stdout=out_write,
                stderr=out_write,
                env=cmd.environment(), start_new_session=True, close_fds=True,
                **cmd.spawn_options())
    except subprocess.SubprocessError as exc:
        os.close(in_write)
        os.close(out_read)
        msg.warn("fork: %s" % exc)
        why.unix("4.3.0", sys_exits_detail(EX_OSERR).text, "Delivery failed: %s" % exc)
        return PIPE_STAT_DEFER
    except OSError as exc:
        failed = cmd.failed_start(exc, exec_what)
    finally:
        os.close(in_read)
        os.close(out_write)
    if child is None:
        os.close(in_write)
        os.close(out_read)
        return _evaluate(cmd, failed[1], _log_text(failed[0]), limits, copy_status,
                         errno.EPIPE, why)
    write_errno = _feed(in_write, data, limits)
    os.close(in_write)
    if copy_status:
        write_errno = why.errno
    elif write_errno:
        why.unix(mbox_dsn(write_errno, "5.3.0"), sys_exits_detail(EX_IOERR).text,
                 "error writing message: %s" % os.strerror(write_errno))
        why.errno = write_errno
        copy_status = MAIL_COPY_STAT_WRITE
    output = _read_output(out_read, limits)
    os.close(out_read)
    if limits.timed_out:
        _kill_command(child.pid, signal.SIGKILL, cmd.uid, cmd.gid)
    status = _wait_or_kill(child.pid, limits, cmd.uid, cmd.gid)
    child.returncode = 0            # reaped here; keep Popen from waiting again
    return _evaluate(cmd, status, _log_text(output), limits, copy_status, write_errno, why)


def _evaluate(cmd, status, log_buf, limits, write_status, write_errno, why):
    """The command's result as a delivery status (the end of pipe_command())."""
    output = ". Command output: " if log_buf else ""
    if limits.timed_out:
        why.unix("5.3.0", log_buf or sys_exits_detail(EX_SOFTWARE).text,
                 'Command time limit exceeded: "%s"%s%s' % (cmd.command, output, log_buf))
        return PIPE_STAT_BOUNCE
    if os.WIFSIGNALED(status):
        why.unix("4.3.0", log_buf or sys_exits_detail(EX_SOFTWARE).text,
                 'Command died with signal %d: "%s"%s%s' % (os.WTERMSIG(status),
                                                          cmd.command, output, log_buf))
        return PIPE_STAT_DEFER
    code = os.WEXITSTATUS(status)
    if code != 0:
        if dsn_valid(log_buf) > 0:
            dsn_status, text = dsn_split("5.3.0", log_buf)
            why.unix(dsn_status, text, text)
            return PIPE_STAT_DEFER if dsn_status.startswith("4") else PIPE_STAT_BOUNCE
        detail = sys_exits_detail(code)
        if sys_exits_code(code):
            why.unix(detail.dsn, log_buf or detail.text,
                     "%s%s%s" % (detail.text, output, log_buf))
            return PIPE_STAT_DEFER if detail.dsn.startswith("4") else PIPE_STAT_BOUNCE
        why.unix(detail.dsn, log_buf or detail.text,
                 'Command died with status %d: "%s"%s%s' % (code, cmd.command, output,
                                                           log_buf))
        return PIPE_STAT_BOUNCE
    if write_status & MAIL_COPY_STAT_CORRUPT:
        return PIPE_STAT_CORRUPT
    if write_status and write_errno != errno.EPIPE:
        why.prepend("Command failed: ")
        why.reason += ': "%s"' % cmd.command
        return PIPE_STAT_BOUNCE
    why.reason = log_buf
    return PIPE_STAT_OK

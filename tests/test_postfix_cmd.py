"""postfix(1): pyfix's postfix command beside Debian's /usr/sbin/postfix.

Postfix's postfix command and postfix-script write their messages to stderr only when
stderr is a terminal (otherwise only to syslog or maillog_file), so both programs run
here with stderr on a pseudo-terminal. Each side gets its own configuration directory
and queue directory (same layout, different paths; the paths are normalized to BASE in
the comparison), so that the directories each one creates and the warnings each one
prints can be compared. Debian's master is never started (it would bind the ports of
master.cf); the start/stop tests run pyfix's master on a service of their own.
"""

import fcntl
import grp
import os
import pty
import pwd
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import psutil
import pytest

from conftest import ROOT, age_files, candidate_path, clean_env, oracle_path

ORACLE = oracle_path("postfix")
CANDIDATE = candidate_path("postfix")
STOCK_MASTER_CF = os.path.join(ROOT, "etc", "master.cf")
MAIN_CF = """\
compatibility_level = {compat}
queue_directory = {base}/spool
data_directory = {base}/lib
"""
# Debian's post-install runs postconf, which warns about a missing master.cf each time.
ORACLE_ONLY = ("/usr/sbin/postconf: warning: open ",)

needs_oracle = pytest.mark.skipif(ORACLE is None, reason="Debian's postfix is not installed")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_pty(argv, env=None, timeout=60):
    """Run argv with stderr on a pseudo-terminal (stdout a pipe); \\r\\n becomes \\n."""
    master_fd, slave_fd = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave_fd, env=clean_env() if env is None else env)
    os.close(slave_fd)
    out, err = b"", b""
    open_fds = {proc.stdout.fileno(), master_fd}
    deadline = time.monotonic() + timeout
    while open_fds and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_fds), [], [], 1.0)
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                open_fds.discard(fd)
            elif fd == master_fd:
                err += data
            else:
                out += data
    os.close(master_fd)
    proc.stdout.close()
    proc.wait(timeout=timeout)
    decode = lambda b: b.decode("utf-8", "replace").replace("\r\n", "\n")
    return Run(proc.returncode, decode(out), decode(err))


def make_config(base, compat="3.6", extra="", master_cf=STOCK_MASTER_CF):
    """base/etc (main.cf, master.cf) and an empty base/spool; returns the config dir."""
    etc, spool = os.path.join(base, "etc"), os.path.join(base, "spool")
    os.makedirs(etc)
    os.makedirs(spool)
    with open(os.path.join(etc, "main.cf"), "w") as f:
        f.write(MAIN_CF.format(compat=compat, base=base) + extra)
    if master_cf:
        shutil.copy(master_cf, os.path.join(etc, "master.cf"))
    age_files(etc)
    return etc


class Pair:
    """The same configuration twice: one for Debian's postfix, one for pyfix's."""

    def __init__(self, tmp_path, **config):
        self.bases = (str(tmp_path / "oracle"), str(tmp_path / "pyfix"))
        self.etcs = [make_config(base, **config) for base in self.bases]

    def run(self, *args, pty_stderr=True):
        results = []
        for program, etc in zip((ORACLE, CANDIDATE), self.etcs):
            argv = [program, "-c", etc] + list(args)
            if pty_stderr:
                results.append(run_pty(argv))
            else:
                proc = subprocess.run(argv, capture_output=True, text=True, env=clean_env())
                results.append(Run(proc.returncode, proc.stdout, proc.stderr))
        return results

    def normalize(self, text, base):
        text = text.replace(base, "BASE").replace("/usr/lib/postfix/sbin/post-install",
                                                  "post-install")
        return [line for line in text.splitlines() if not line.startswith(ORACLE_ONLY)]

    def check(self, *args, pty_stderr=True):
        """Run both; assert the same exit status, stdout and stderr lines."""
        oracle, pyfix = self.run(*args, pty_stderr=pty_stderr)
        want = [sorted(self.normalize(r.stderr, b)) for r, b in ((oracle, self.bases[0]),
                                                                  (pyfix, self.bases[1]))]
        assert "Traceback" not in pyfix.stderr, pyfix.stderr
        assert want[1] == want[0], "stderr differs for %s" % (args,)
        assert self.normalize(pyfix.stdout, self.bases[1]) \
            == self.normalize(oracle.stdout, self.bases[0])
        assert pyfix.returncode == oracle.returncode, (oracle, pyfix)
        return oracle, pyfix

    def trees(self):
        return [tree(base) for base in self.bases]


def tree(base):
    """{relative path: (type, mode, owner, group)} of everything under base."""
    result = {}
    for folder, dirs, files in os.walk(base):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            result[os.path.relpath(path, base)] = (
                stat.S_IFMT(st.st_mode), oct(stat.S_IMODE(st.st_mode)),
                pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name)
    return result


def mess_up(base):
    """Wrong owners, groups and modes, damaged messages and chroot remnants (none of
    which stops Debian's postsuper)."""
    spool, etc, lib = (os.path.join(base, d) for d in ("spool", "etc", "lib"))
    nobody = pwd.getpwnam("nobody").pw_uid
    root_gid = 0
    os.chown(spool, nobody, -1)
    os.chown(os.path.join(spool, "pid"), nobody, -1)
    os.chmod(os.path.join(spool, "pid"), 0o775)
    os.chmod(os.path.join(spool, "hold"), 0o777)
    os.chown(os.path.join(spool, "public"), -1, root_gid)
    os.chown(os.path.join(spool, "maildrop"), -1, grp.getgrnam("nogroup").gr_gid)
    os.chown(lib, nobody, -1)
    with open(os.path.join(lib, "stray"), "w"):
        pass
    os.chmod(os.path.join(lib, "stray"), 0o666)
    os.makedirs(os.path.join(spool, "corrupt", "sub"))
    for name in ("corrupt/ABC", "corrupt/sub/DEF", "saved/kept"):
        with open(os.path.join(spool, name), "w"):
            pass
    os.chown(os.path.join(spool, "saved", "kept"), nobody, -1)
    os.chmod(os.path.join(etc, "master.cf"), 0o666)
    os.symlink("/etc/passwd", os.path.join(etc, "outside"))
    os.symlink("nowhere", os.path.join(etc, "dangling"))
    os.makedirs(os.path.join(spool, "etc"))
    with open(os.path.join(spool, "etc", "services"), "w") as f:
        f.write("not the real one\n")
    with open(os.path.join(spool, "etc", "hosts"), "w"):
        pass
    os.chown(os.path.join(spool, "etc", "hosts"), nobody, -1)
    os.mkfifo(os.path.join(spool, "public", "fifo"))
    os.chown(os.path.join(spool, "public", "fifo"), nobody, -1)


# -- check and set-permissions ------------------------------------------------------------

@needs_oracle
@needs_root
def test_check_creates_the_queue_like_postfix(tmp_path):
    pair = Pair(tmp_path)
    oracle, _ = pair.check("check")
    assert oracle.returncode == 0
    want, got = pair.trees()
    assert got == want
    assert want["spool/maildrop"][1:] == (oct(0o730), "postfix", "postdrop")
    assert want["lib"][1:] == (oct(0o700), "postfix", "root")
    # Nothing to create or report the second time.
    oracle, _ = pair.check("check")
    assert oracle.stderr == ""


@needs_oracle
@needs_root
def test_check_warnings_like_postfix(tmp_path):
    pair = Pair(tmp_path)
    pair.check("check")
    for base in pair.bases:
        mess_up(base)
    oracle, pyfix = pair.check("check")
    for text in ("warning: not owned by root: BASE/spool/.",
                 "warning: group or other writable: BASE/spool/pid",
                 "warning: group or other writable: BASE/etc/./master.cf",
                 "warning: symlink leaves directory: BASE/etc/./outside",
                 "warning: not owned by postfix: BASE/lib/.",
                 "warning: not owned by postfix: BASE/spool/saved/kept",
                 "warning: not owned by group postdrop: BASE/spool/public",
                 "warning: BASE/spool/etc/services and /etc/services differ",
                 "warning: damaged message: corrupt/sub/DEF"):
        assert "postfix/postfix-script: " + text in pair.normalize(pyfix.stderr,
                                                                   pair.bases[1]), text


@needs_oracle
@needs_root
def test_set_permissions_like_postfix(tmp_path):
    pair = Pair(tmp_path)
    pair.check("check")
    for base in pair.bases:
        mess_up(base)
    pair.check("set-permissions")
    want, got = pair.trees()
    assert got == want
    assert got["spool/corrupt/ABC"][2] == "postfix"        # the r flag: chown -R
    assert got["spool/hold"][1] == oct(0o700)
    assert got["etc/master.cf"][1] == oct(0o644)
    assert got["spool/etc/hosts"][2] == "nobody"            # not in postfix-files


@needs_oracle
@pytest.mark.parametrize("args", [["set-permissions", "nonsense"],
                                  ["set-permissions", "a b"],
                                  ["set-permissions", "x=y", "nonsense"]])
def test_post_install_usage_errors(tmp_path, args):
    Pair(tmp_path).check(*args)


@needs_oracle
def test_check_without_master_cf(tmp_path):
    oracle, _ = Pair(tmp_path, master_cf=None).check("check")
    assert oracle.returncode == 1


@needs_oracle
def test_start_without_master_cf(tmp_path):
    oracle, pyfix = Pair(tmp_path, master_cf=None).check("start")
    assert "postfix/postfix-script: fatal: Postfix integrity check failed!" in pyfix.stderr


@needs_oracle
@pytest.mark.parametrize("command", ["check", "start"])
def test_unable_to_create_missing_directories(tmp_path, command):
    pair = Pair(tmp_path)
    for etc, base in zip(pair.etcs, pair.bases):
        main_cf = os.path.join(etc, "main.cf")
        text = open(main_cf).read().replace(base + "/lib", base + "/no/lib")
        with open(main_cf, "w") as f:
            f.write(text)
        age_files(etc)
    oracle, pyfix = pair.check(command)
    assert oracle.returncode == 1
    assert pyfix.stderr.startswith("mkdir: cannot create directory '%s/no/lib': No such"
                                   " file or directory\n" % pair.bases[1])


@needs_oracle
def test_maillog_file_requires_postlog_service(tmp_path):
    plain = tmp_path / "master.cf"
    with open(STOCK_MASTER_CF) as src, open(plain, "w") as dst:
        dst.write("".join(line for line in src if not line.startswith("postlog")))
    logs = [tmp_path / "oracle.log", tmp_path / "pyfix.log"]
    pair = Pair(tmp_path, master_cf=str(plain), extra="maillog_file_prefixes = /\n")
    for etc, log in zip(pair.etcs, logs):
        with open(os.path.join(etc, "main.cf"), "a") as f:
            f.write("maillog_file = %s\n" % log)
        age_files(etc)
    oracle, pyfix = pair.check("check")
    assert pyfix.stderr == ("postfix/postfix-script: fatal: missing 'postlog' service in"
                            " master.cf - run 'postfix upgrade-configuration'\n")
    # The same record in each maillog_file: `Mmm dd HH:MM:SS host tag[pid]: text`.
    records = []
    for log in logs:
        with open(log) as f:
            records.append([line.split(" ", 4)[4].split("]: ", 1)[1] for line in f])
    assert records[1] == records[0]


@needs_oracle
def test_upgrade_configuration_like_postfix(tmp_path):
    old = tmp_path / "old-master.cf"
    old.write_text("smtp inet n - n - - smtpd\npickup fifo n n n 60 1 pickup\n"
                   "cleanup unix - - n - 0 cleanup\nverify unix - - n - 0 verify\n"
                   "tlsmgr fifo - - n 300 1 tlsmgr\n"
                   "proxywrite unix -       -       n       -       -       proxymap\n")
    pair = Pair(tmp_path, master_cf=str(old),
                extra="hash_queue_names = incoming\ninet_protocols = ipv4\n")
    oracle, _ = pair.check("upgrade-configuration")
    assert "making the pickup service unprivileged" in oracle.stdout
    texts = []
    for etc, base in zip(pair.etcs, pair.bases):
        with open(os.path.join(etc, "master.cf")) as f1, open(os.path.join(etc, "main.cf")) as f2:
            texts.append((f1.read(), f2.read().replace(base, "BASE")))
    assert texts[1] == texts[0]


@needs_root
def test_check_leaves_main_cf_alone(tmp_path):
    """Postfix's post-install rewrites main.cf with the expanded installation
    parameters when one of them has a $name in it; pyfix does not."""
    etc = make_config(str(tmp_path), extra="")
    main_cf = os.path.join(etc, "main.cf")
    with open(main_cf, "a") as f:
        f.write("data_directory = $config_directory/../lib\n")
    before = open(main_cf).read()
    result = run_pty([CANDIDATE, "-c", etc, "check"])
    assert result.returncode == 0, result.stderr
    assert open(main_cf).read() == before
    assert os.path.isdir(os.path.join(str(tmp_path), "lib"))


@needs_root
def test_set_permissions_assignment_is_saved(tmp_path):
    etc = make_config(str(tmp_path))
    other = os.path.join(str(tmp_path), "other-spool")
    os.makedirs(other)
    result = run_pty([CANDIDATE, "-c", etc, "set-permissions", "queue_directory=" + other])
    assert result.returncode == 0, result.stderr
    assert "queue_directory = %s\n" % other in open(os.path.join(etc, "main.cf")).read()
    assert stat.S_IMODE(os.stat(os.path.join(other, "public")).st_mode) == 0o710


# -- messages and exit status -------------------------------------------------------------

@needs_oracle
@pytest.mark.parametrize("command", ["status", "stop", "abort", "reload", "drain",
                                     "bogus", "", "start_msg", "stop_msg",
                                     "logrotate extra", "check-warn", "post-install",
                                     "post-install create-missing"])
def test_commands_when_not_running(tmp_path, command):
    pair = Pair(tmp_path)
    oracle, _ = pair.check(*command.split())
    if command in ("status", "stop"):
        assert oracle.returncode == 1


@needs_oracle
def test_status_without_a_terminal(tmp_path):
    """Postfix copies its messages to stderr only when stderr is a terminal."""
    oracle, pyfix = Pair(tmp_path).check("status", pty_stderr=False)
    assert (oracle.returncode, pyfix.stderr) == (1, "")


@needs_oracle
@pytest.mark.parametrize("args", [["-x", "status"], ["-c"], ["-c", "relative", "status"],
                                  ["-c", "/nonexistent", "status"], ["-cx", "status"],
                                  ["-v", "-c", "relative"], ["--", "-c", "/x", "status"]])
def test_usage_errors(args):
    env = clean_env()
    results = [run_pty([program] + args, env) for program in (ORACLE, CANDIDATE)]
    assert [r.returncode for r in results] == [1, 1]
    assert results[1].stderr == results[0].stderr
    assert results[1].stdout == results[0].stdout == ""


@needs_oracle
@pytest.mark.parametrize("setting", [
    "compatibility_level = x.y", "mail_owner = nosuch", "mail_owner = root",
    "setgid_group = nosuch", "setgid_group = postfix", "default_privs = postfix",
    "import_environment = {FOO", "syslog_name = other"])
def test_configuration_errors(tmp_path, setting):
    pair = Pair(tmp_path, extra=setting + "\n")
    pair.check("status")


@needs_oracle
@pytest.mark.parametrize("compat", ["0", "2", "3.5", "3.6", "3.7"])
def test_compatibility_notice(tmp_path, compat):
    oracle, _ = Pair(tmp_path, compat=compat).check("status")
    assert ("backwards-compatible" in oracle.stderr) == (compat not in ("3.6", "3.7"))


@needs_oracle
def test_missing_queue_directory(tmp_path):
    pair = Pair(tmp_path)
    for base in pair.bases:
        os.rmdir(os.path.join(base, "spool"))
    oracle, _ = pair.check("check")
    assert "fatal: chdir(BASE/spool): No such file or directory" in \
        pair.normalize(oracle.stderr, pair.bases[0])[0]


@needs_oracle
def test_lock_test_interoperates(tmp_path):
    """A master.pid that some process holds locked (flock, as Postfix's master does on
    Linux) is a running mail system for both programs."""
    pair = Pair(tmp_path)
    held = []
    for base in pair.bases:
        os.makedirs(os.path.join(base, "spool", "pid"))
        fd = os.open(os.path.join(base, "spool", "pid", "master.pid"),
                     os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"%32d\n" % os.getpid())
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(fd)
    try:
        oracle, pyfix = pair.check("status")
        assert pyfix.stderr == ("postfix/postfix-script: the Postfix mail system is"
                                " running: PID: %d\n" % os.getpid())
        pair.check("start")             # already running
    finally:
        for fd in held:
            os.close(fd)
    oracle, _ = pair.check("status")
    assert oracle.returncode == 1


def test_flush_needs_postqueue(tmp_path):
    from pyfix.commands.postfix.tools import pyfix_entry_point
    if pyfix_entry_point("postqueue") is not None:
        pytest.skip("pyfix has a postqueue command")
    etc = make_config(str(tmp_path))
    result = run_pty([CANDIDATE, "-c", etc, "flush"])
    assert result.returncode == 1
    assert "fatal: cannot flush the mail queue" in result.stderr


# -- as an ordinary user --------------------------------------------------------------------

def _nobody_can_run_python():
    if os.geteuid() != 0:
        return False
    nobody = pwd.getpwnam("nobody")

    def become():
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
    try:
        return subprocess.run([sys.executable, "-c", "import pyfix.commands.postfix.main"],
                              preexec_fn=become, capture_output=True, cwd="/",
                              timeout=60).returncode == 0
    except OSError:
        return False


def test_check_as_ordinary_user(tmp_path):
    if not _nobody_can_run_python():
        pytest.skip("the user nobody cannot run this Python (%s)" % sys.executable)
    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="pyfix-user-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        etc = os.path.join(base, "etc")
        os.makedirs(etc)
        with open(os.path.join(etc, "main.cf"), "w") as f:
            f.write("compatibility_level = 3.7\nqueue_directory = %s/var/spool\n"
                    "data_directory = %s/var/lib\n" % (base, base))
        shutil.copy(STOCK_MASTER_CF, os.path.join(etc, "master.cf"))
        for path in (base, etc) + tuple(os.path.join(etc, n) for n in os.listdir(etc)):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)

        def become():
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
        proc = subprocess.run([CANDIDATE, "-c", etc, "check"], preexec_fn=become,
                              capture_output=True, text=True, env=clean_env())
        assert proc.returncode == 0, proc.stderr
        st = os.stat(os.path.join(base, "var", "spool", "maildrop"))
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, 0o730)
    finally:
        shutil.rmtree(base, ignore_errors=True)



# -- start and stop, with pyfix's master ------------------------------------------------------

def _master_available():
    import importlib.util
    try:
        return importlib.util.find_spec("pyfix.master.master") is not None
    except ImportError:
        return False


needs_master = pytest.mark.skipif(not _master_available(),
                                  reason="pyfix's master (master/master.py) is not there yet")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class System:
    """A configuration of pyfix with one service of its own (a cat on a free loopback
    port), under /tmp with mode 0755 so that unprivileged children can reach it."""

    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="pyfix-postfix-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.port = _free_port()
        self.etc = make_config(self.base, compat="3.7", master_cf=None,
                               extra="inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n")
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("127.0.0.1:%d inet n n n - 2 spawn user=nobody argv=/bin/cat\n"
                    % self.port)
        self.pid_file = os.path.join(self.base, "spool", "pid", "master.pid")

    def postfix(self, *args):
        return run_pty([CANDIDATE, "-c", self.etc] + list(args))

    def master_pid(self):
        try:
            with open(self.pid_file) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def processes(self, pid):
        """The master and all its descendants that are still alive."""
        try:
            proc = psutil.Process(pid)
            procs = [proc] + proc.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        alive = []
        for p in procs:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        return alive

    def cleanup(self):
        from pyfix.common.master_lock import master_running
        pid = self.master_pid()
        if pid and master_running(os.path.join(self.base, "spool")):
            for proc in self.processes(pid):
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def system():
    sys_ = System()
    yield sys_
    sys_.cleanup()


def _listening(port):
    """The master's listener on port accepts connections."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except OSError:
        return False


@needs_master
def test_start_status_stop(system):
    result = system.postfix("start")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "postfix/postfix-script: starting the Postfix mail system\n"
    pid = system.master_pid()
    assert pid and psutil.pid_exists(pid)
    assert psutil.Process(pid).name() == "master"      # pyfix's master, titled as Postfix's
    assert _wait_until(lambda: _listening(system.port))

    result = system.postfix("status")
    assert (result.returncode, result.stderr) == (
        0, "postfix/postfix-script: the Postfix mail system is running: PID: %d\n" % pid)
    result = system.postfix("start")
    assert (result.returncode, result.stderr) == (
        1, "postfix/postfix-script: fatal: the Postfix mail system is already running\n")
    if ORACLE is not None:              # Debian's lock test sees pyfix's master
        assert run_pty([ORACLE, "-c", system.etc, "status"]).returncode == 0

    result = system.postfix("reload")
    assert result.returncode == 0, result.stderr
    assert "refreshing the Postfix mail system" in result.stderr
    assert system.master_pid() == pid
    assert system.postfix("status").returncode == 0

    processes = system.processes(pid)
    result = system.postfix("stop")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("postfix/postfix-script: stopping the Postfix mail system\n")
    assert _wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                       for p in processes))
    result = system.postfix("status")
    assert (result.returncode, result.stderr) == (
        1, "postfix/postfix-script: the Postfix mail system is not running\n")


@needs_master
def test_abort_and_quick_stop(system):
    assert system.postfix("start").returncode == 0
    pid = system.master_pid()
    result = system.postfix("abort")
    assert (result.returncode, result.stderr) == (
        0, "postfix/postfix-script: aborting the Postfix mail system\n")
    assert _wait_until(lambda: not system.processes(pid))

    assert system.postfix("start").returncode == 0
    pid = system.master_pid()
    assert system.postfix("quick-stop").returncode == 0
    quick_start = os.path.join(system.base, "spool", "quick-start")
    assert os.path.exists(quick_start)
    assert _wait_until(lambda: not system.processes(pid))
    result = system.postfix("start")        # without the checks, and the flag is gone
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(quick_start)
    pid = system.master_pid()
    assert system.postfix("stop").returncode == 0
    assert _wait_until(lambda: not system.processes(pid))


@needs_master
def test_start_fg_runs_the_master_in_this_process(system):
    proc = subprocess.Popen([CANDIDATE, "-c", system.etc, "start-fg"], env=clean_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert _wait_until(lambda: system.master_pid() == proc.pid
                           and system.postfix("status").returncode == 0)
        assert "-s" in " ".join(psutil.Process(proc.pid).cmdline()).split()
        assert _wait_until(lambda: _listening(system.port))
        assert system.postfix("stop").returncode == 0
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not system.processes(proc.pid)


@needs_master
def test_start_fg_from_an_interactive_shell(system):
    """A command typed in an interactive shell leads its own process group: the master
    runs as its child, and Ctrl-C (SIGINT to that group) stops the mail system."""
    proc = subprocess.Popen([CANDIDATE, "-c", system.etc, "start-fg"], env=clean_env(),
                            process_group=0, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_until(lambda: system.postfix("status").returncode == 0)
        master = system.master_pid()
        assert master != proc.pid
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=15) == 128 + signal.SIGINT
        assert _wait_until(lambda: not system.processes(master))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert system.postfix("status").returncode == 1

"""postlog(1): pyfix's beside Debian's /usr/sbin/postlog, record for record.

Each program runs on a site of its own (a config directory whose main.cf sets maillog_file
inside the site, a queue directory, nothing else different), at the same time as the other.
What must agree:
  - the log file each writes itself (no postlogd runs): byte for byte once the timestamp
    (checked to be `Mmm dd HH:MM:SS`, zero-padded day, within two minutes of now), each
    process's pid and the site's path are normalized;
  - the datagrams each sends to a postlog socket the test binds;
  - the syslog datagrams each sends to /dev/log, where the test can give both programs a
    private /dev/log (root, a mount namespace);
  - stdout, stderr (as a pipe, and as a terminal, where postlog copies each record), and
    the exit status.
"""

import datetime
import os
import pty
import re
import shutil
import socket
import subprocess
import tempfile
import threading

import pytest

from conftest import TRACEBACK, age_files, candidate_path, clean_env, requires_oracle

pytestmark = requires_oracle("postlog")

ORACLE = "/usr/sbin/postlog"
CANDIDATE = candidate_path("postlog")

BASE_MAIN = ("compatibility_level = 3.6\nmyhostname = mx1.example.com\n"
             "queue_directory = {base}/q\nmaillog_file = {base}/mail.log\n"
             "maillog_file_prefixes = {base}\n")
LOG_TIME = re.compile(rb"^([A-Z][a-z]{2} [0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}) ")
SYSLOG_TIME = re.compile(rb"^<([0-9]+)>([A-Z][a-z]{2} [ 1-3][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}) ")


# -- sites and runs ---------------------------------------------------------------------------

class Site:
    """A config directory with its queue directory and log file, under a short path."""

    def __init__(self, main_cf=BASE_MAIN):
        self.base = tempfile.mkdtemp(prefix="pl", dir="/tmp")
        os.makedirs(os.path.join(self.base, "q", "public"))
        self.conf = os.path.join(self.base, "conf")
        os.makedirs(self.conf)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(main_cf.format(base=self.base))
        age_files(self.conf)
        self.log = os.path.join(self.base, "mail.log")
        self.service = os.path.join(self.base, "q", "public", "postlog")

    def read_log(self):
        try:
            with open(self.log, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError):
            return None

    def remove(self):
        shutil.rmtree(self.base, ignore_errors=True)


class Run:
    """One program's run: exit status, stdout, stderr (pipe or terminal), log, pid."""

    def __init__(self, site, program, args, stdin=b"", env=None, tty=False, wrap=()):
        self.site = site
        argv = list(wrap) + [program, "-c", site.conf] + list(args)
        if tty:
            master, slave = pty.openpty()
            stderr = slave
        else:
            stderr = subprocess.PIPE
        if callable(env):
            env = env(site)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=stderr, env=clean_env(env))
        if tty:
            os.close(slave)
        out, err = proc.communicate(stdin, timeout=60)
        if tty:
            err = _drain(master)
        self.pid = proc.pid
        self.returncode = proc.returncode
        self.stdout = self.norm(out)
        self.stderr = self.norm(err)
        self.log = None if site.read_log() is None else self.norm_log(site.read_log())

    def norm(self, data):
        return data.replace(self.site.base.encode(), b"BASE")

    def norm_log(self, data):
        lines = data.split(b"\n")
        return b"\n".join(self.norm_line(line) if line else line for line in lines)

    def norm_line(self, line):
        """The line with its timestamp checked and replaced, and the pid replaced."""
        match = LOG_TIME.match(line)
        assert match, "no Postfix timestamp: %r" % line
        check_recent(match.group(1).decode(), "%b %d %H:%M:%S")
        line = b"TIME " + line[match.end():]
        return self.norm(line.replace(b"[%d]: " % self.pid, b"[PID]: ", 1))


def _drain(fd):
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return data


def check_recent(stamp, fmt):
    """A year-less timestamp is within two minutes of now."""
    now = datetime.datetime.now()
    for year in (now.year, now.year - 1, now.year + 1):
        when = datetime.datetime.strptime("%d %s" % (year, " ".join(stamp.split())),
                                          "%Y " + fmt.replace("%e", "%d"))
        if abs((now - when).total_seconds()) < 120:
            return
    raise AssertionError("timestamp %r is not now" % stamp)


def in_parallel(job):
    """[job(0, ORACLE), job(1, CANDIDATE)], run at the same time (Postfix sleeps a second
    before a fatal exit); an exception in either is raised here."""
    results, errors = [None, None], []

    def go(index, program):
        try:
            results[index] = job(index, program)
        except BaseException as exc:        # handed to the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i, p))
               for i, p in enumerate((ORACLE, CANDIDATE))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def run_both(args, stdin=b"", env=None, tty=False, main_cf=BASE_MAIN, prepare=None,
             wrap=()):
    """(oracle Run, candidate Run), run at the same time on sites of their own."""
    sites = [Site(main_cf), Site(main_cf)]
    try:
        extra = [prepare(site) if prepare else None for site in sites]

        results = in_parallel(lambda index, program: Run(sites[index], program, args, stdin,
                                                         env, tty, wrap))
        for index, value in enumerate(extra):
            if value is not None:
                results[index].extra = value
    finally:
        for site in sites:
            site.remove()
    return results


def assert_same(oracle, candidate):
    assert TRACEBACK.encode() not in candidate.stderr, candidate.stderr.decode()
    assert (candidate.returncode, candidate.stdout, candidate.stderr, candidate.log) == \
        (oracle.returncode, oracle.stdout, oracle.stderr, oracle.log)


# -- records ------------------------------------------------------------------------------------

RECORD_CASES = {
    "words": (["hello", "world"], b""),
    "end-of-options": (["--", "-p", "x"], b""),
    "obsolete-i": (["-i", "x"], b""),
    "verbose": (["-vv", "x"], b""),
    "tag": (["-t", "my/tag[x]", "text"], b""),
    "tag-unprintable": (["-t", "a\x01b\u00e9c", "t"], b""),
    "tag-empty": (["-t", "", "t"], b""),
    "stdin": ([], b"l1\nl2\n\nl4"),
    "stdin-empty": ([], b""),
    "stdin-nul": ([], b"a\0b\nc\n"),
    "stdin-crlf": ([], b"x\r\ny\r\n"),
    "long": (["x" * 3000], b""),
    "long-utf8": (["a" + "\u00e9" * 1500], b""),
    "bytes": ([], b"h\xc3\xa9llo \x01 tab\there \xff end \xc3\n\xed\xa0\x80 \xc0\x80 \xc3\xa9\xa9\n"),
    "fatal-stdin": (["-p", "fatal"], b"one\ntwo\n"),
}
for _name in ("info", "warn", "warning", "error", "err", "crit", "panic", "WaRnInG", "ERR"):
    RECORD_CASES["p-" + _name] = (["-p", _name, "text of", _name], b"")


@pytest.mark.parametrize("case", sorted(RECORD_CASES))
def test_records(case):
    args, stdin = RECORD_CASES[case]
    oracle, candidate = run_both(args, stdin)
    assert oracle.returncode == 0 and (oracle.log or not stdin)
    assert_same(oracle, candidate)


SITE_CASES = {
    "utf8-off": "myhostname = h.example\nqueue_directory = {base}/q\n"
                "maillog_file = {base}/mail.log\nmaillog_file_prefixes = /nowhere, {base}\n",
    "syslog-name": BASE_MAIN + "syslog_name = postfix-out\n",
    "multi-instance": BASE_MAIN + "multi_instance_name = postfix-b\n",
    "bare-hostname": BASE_MAIN + "myhostname = loghost\n",
    "default-hostname": "compatibility_level = 3.6\nqueue_directory = {base}/q\n"
                        "maillog_file = {base}/mail.log\nmaillog_file_prefixes = {base}\n",
}


@pytest.mark.parametrize("case", sorted(SITE_CASES))
def test_site_settings(case):
    stdin = b"h\xc3\xa9llo \xff\n"
    oracle, candidate = run_both(["-p", "error"], stdin, main_cf=SITE_CASES[case])
    assert oracle.log
    assert_same(oracle, candidate)


def test_mail_logtag_is_replaced_by_syslog_name():
    oracle, candidate = run_both(["x"], env={"MAIL_LOGTAG": "inherited"})
    assert b"postfix/postlog[PID]: x" in oracle.log
    assert_same(oracle, candidate)


def test_dev_stdout():
    main_cf = ("myhostname = box.example.org\nqueue_directory = {base}/q\n"
               "maillog_file = /dev/stdout\n")
    oracle, candidate = run_both(["-p", "warn", "to stdout"], main_cf=main_cf)
    assert oracle.log is None
    for run in (oracle, candidate):
        run.stdout = run.norm_log(run.stdout)
    assert oracle.stdout == b"TIME box postfix/postlog[PID]: warning: to stdout\n"
    assert_same(oracle, candidate)


# -- failures, with stderr as a pipe and as a terminal -----------------------------------------

def _directory_log(site):
    os.mkdir(site.log)


FAILURE_CASES = {
    "bad-option": (["-x", "text"], BASE_MAIN, None),
    "missing-argument": (["-p"], BASE_MAIN, None),
    "bad-severity": (["-p", "loud", "text"], BASE_MAIN, None),
    "no-config": (["-c", "/nonexistent/dir", "text"], BASE_MAIN, None),
    "prefix": (["text"], BASE_MAIN.replace("maillog_file_prefixes = {base}",
                                           "maillog_file_prefixes = /var, /dev/stdout"), None),
    "prefix-syslog-name": (["-t", "t", "text"], BASE_MAIN.replace(
        "maillog_file_prefixes = {base}", "syslog_name = foo"), None),
    "logfile-is-directory": (["-p", "warn", "text"], BASE_MAIN, _directory_log),
    "bad-facility": (["text"], BASE_MAIN + "syslog_facility = bogus\n", None),
}


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "tty"])
@pytest.mark.parametrize("case", sorted(FAILURE_CASES))
def test_failures(case, tty):
    args, main_cf, prepare = FAILURE_CASES[case]
    oracle, candidate = run_both(args, tty=tty, main_cf=main_cf, prepare=prepare)
    assert oracle.returncode == 1
    assert_same(oracle, candidate)


@pytest.mark.parametrize("args", [["-p", "warn", "on the terminal"], ["-t", "x/y", "tagged"],
                                  ["-p", "crit", "critical"]], ids=["warn", "tag", "crit"])
def test_terminal_copy(args):
    oracle, candidate = run_both(args, tty=True)
    assert oracle.stderr.endswith(b"\r\n")
    assert_same(oracle, candidate)


# -- the postlog socket ---------------------------------------------------------------------------

def bind_service(site):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(site.service)
    return sock


def received(sock, run):
    sock.setblocking(False)
    packets = []
    while True:
        try:
            packets.append(run.norm_line(sock.recv(65536)))
        except BlockingIOError:
            break
    sock.close()
    return packets


@pytest.mark.parametrize("args,stdin", [(["-p", "err", "via socket"], b""),
                                        (["-t", "t/x"], b"a\nb\n"),
                                        (["x" * 2100], b"")], ids=["err", "stdin", "long"])
def test_postlog_socket(args, stdin):
    oracle, candidate = run_both(args, stdin, prepare=bind_service)
    want, got = received(oracle.extra, oracle), received(candidate.extra, candidate)
    assert want and oracle.log is None
    assert got == want
    assert_same(oracle, candidate)


def test_stale_postlog_socket_falls_back_to_the_file():
    def stale(site):
        bind_service(site).close()

    oracle, candidate = run_both(["-p", "err", "socket stale"], prepare=stale)
    assert oracle.log == b"TIME mx1 postfix/postlog[PID]: error: socket stale\n"
    assert_same(oracle, candidate)


# -- started by a program that logs to postlog (postfix-script): POSTLOG_* inherited ------------

def inherited(site):
    return {"POSTLOG_SERVICE": site.service, "POSTLOG_HOSTNAME": "relay.example.net"}


INHERITED_CASES = {
    "record": (["-p", "warn", "x"], BASE_MAIN),
    "bad-facility": (["x"], BASE_MAIN + "syslog_facility = bogus\n"),
    "bad-severity": (["-p", "loud", "x"], BASE_MAIN),
    "prefix": (["x"], BASE_MAIN.replace("maillog_file_prefixes = {base}",
                                        "maillog_file_prefixes = /var")),
}


@pytest.mark.parametrize("bound", [False, True], ids=["no-postlogd", "postlogd"])
@pytest.mark.parametrize("case", sorted(INHERITED_CASES))
def test_inherited_postlog_service(case, bound):
    """Before main.cf is read, POSTLOG_SERVICE decides: early errors go to that socket
    (with POSTLOG_HOSTNAME), or to the file once maillog_file is known, or are lost."""
    args, main_cf = INHERITED_CASES[case]
    oracle, candidate = run_both(args, env=inherited, main_cf=main_cf,
                                 prepare=bind_service if bound else None)
    if bound:
        want, got = received(oracle.extra, oracle), received(candidate.extra, candidate)
        assert got == want
    assert_same(oracle, candidate)


# -- syslog, through a private /dev/log ---------------------------------------------------------

def _can_unshare():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return probe.returncode == 0


needs_namespace = pytest.mark.skipif(not _can_unshare(),
                                     reason="needs root and unshare -m to give /dev/log")

SYSLOG_MAIN = "compatibility_level = 3.6\nmyhostname = mx1.example.com\n"
DEV_SETUP = ("mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && "
             "mknod -m 666 /dev/urandom c 1 9 && ln -s \"$SYSLOG_SOCKET\" /dev/log && "
             "exec \"$@\"")


def bind_syslog(site):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.path.join(site.base, "log"))
    return sock


def syslog_received(sock, run):
    sock.setblocking(False)
    packets = []
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            break
        match = SYSLOG_TIME.match(data)
        assert match, data
        check_recent(match.group(2).decode(), "%b %e %H:%M:%S")
        data = b"<%s>TIME " % match.group(1) + data[match.end():]
        packets.append(run.norm(data.replace(b"[%d]: " % run.pid, b"[PID]: ", 1)))
    sock.close()
    return packets


SYSLOG_CASES = {
    "warn": (["-p", "warn", "hello syslog"], b"", SYSLOG_MAIN),
    "crit": (["-p", "crit", "critical"], b"", SYSLOG_MAIN),
    "stdin-tag": (["-t", "my/tag"], b"one\ntwo\n", SYSLOG_MAIN),
    "long": (["y" * 2100], b"", SYSLOG_MAIN),
    "facility": (["-p", "info", "local5"], b"", SYSLOG_MAIN + "syslog_facility = local5\n"),
    "kern-is-mail": (["kern"], b"", SYSLOG_MAIN + "syslog_facility = kern\n"),
    "bad-severity-before-main-cf": (["-p", "loud", "x"], b"", SYSLOG_MAIN),
    "bad-prefix": (["x"], b"", SYSLOG_MAIN + "maillog_file = /tmp/nope.log\n"),
}


@needs_namespace
@pytest.mark.parametrize("case", sorted(SYSLOG_CASES))
def test_syslog(case):
    args, stdin, main_cf = SYSLOG_CASES[case]
    runs = run_both_syslog(args, stdin, main_cf)
    oracle, candidate = runs
    want = syslog_received(oracle.extra, oracle)
    got = syslog_received(candidate.extra, candidate)
    assert want
    assert got == want
    assert_same(oracle, candidate)


@needs_namespace
def test_syslog_mail_logtag_before_main_cf():
    runs = run_both_syslog(["-p", "loud"], b"", SYSLOG_MAIN, {"MAIL_LOGTAG": "envtag"})
    want = syslog_received(runs[0].extra, runs[0])
    assert want == [b'<18>TIME envtag/postlog[PID]: fatal: bad severity: "loud"']
    assert syslog_received(runs[1].extra, runs[1]) == want


def run_both_syslog(args, stdin, main_cf, env=None):
    """run_both() with each program in a mount namespace whose /dev/log is the site's."""
    sites = [Site(main_cf), Site(main_cf)]
    try:
        socks = [bind_syslog(site) for site in sites]

        def go(index, program):
            wrap = ["env", "SYSLOG_SOCKET=" + os.path.join(sites[index].base, "log"),
                    "unshare", "-m", "sh", "-c", DEV_SETUP, "sh"]
            return Run(sites[index], program, args, stdin, env, False, wrap)

        results = in_parallel(go)
        for run, sock in zip(results, socks):
            run.extra = sock
    finally:
        for site in sites:
            site.remove()
    return results

"""master(8) under load, recycling, failure, reload and stop: real masters, real children,
real TCP clients, counted with psutil."""

import os
import pwd
import re
import signal
import socket
import threading
import time

import psutil
import pytest

from master_run import MasterRun, connect, echo, free_port, wait_until

ROOT = os.geteuid() == 0


@pytest.fixture
def run_master():
    runs = []

    def start(master_cf, main_cf_extra="", start=True):
        run = MasterRun("" if callable(master_cf) else master_cf, main_cf_extra)
        runs.append(run)
        if callable(master_cf):
            run.write_master_cf(master_cf(run))
        return run.start() if start else run

    yield start
    for run in runs:
        before = run.stop()
        leftovers = [pid for pid in before if psutil.pid_exists(pid)
                     and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        run.cleanup()
        assert not leftovers, "processes left behind: %s" % leftovers


def spawn_entry(port, maxproc, command, extra=""):
    return "127.0.0.1:%d inet n n n - %s spawn %s user=nobody argv=%s\n" % (
        port, maxproc, extra, command)


def hold_sessions(port, count):
    """Open count connections at once; return the sockets (each holds a child busy)."""
    socks = []
    for _ in range(count):
        socks.append(connect(port))
    return socks


def peak_children(run, service, seconds):
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, len(run.children(service)))
        time.sleep(0.02)
    return peak


def clients_in_parallel(port, count):
    """count clients at once, each waiting for its session to end; returns their replies."""
    replies = [None] * count

    def client(i):
        with connect(port, timeout=30) as sock:
            sock.shutdown(socket.SHUT_WR)
            replies[i] = sock.recv(100)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, replies


def test_burst_never_exceeds_maxproc(run_master):
    port = free_port()
    run = run_master(spawn_entry(port, 3, "/bin/sh -c { sleep 0.5; echo done }"))
    service = "127.0.0.1:%d" % port
    threads, replies = clients_in_parallel(port, 12)
    peak = peak_children(run, service, 3.0)
    for thread in threads:
        thread.join(30)
    assert peak == 3
    assert replies == [b"done\n"] * 12


def test_unlimited_service_grows_with_demand(run_master):
    port = free_port()
    run = run_master(spawn_entry(port, 0, "/bin/sh -c { sleep 1; echo done }"))
    service = "127.0.0.1:%d" % port
    threads, replies = clients_in_parallel(port, 8)
    peak = peak_children(run, service, 0.9)
    for thread in threads:
        thread.join(30)
    assert peak >= 8
    assert replies == [b"done\n"] * 8


def test_max_use_recycles_the_process(run_master):
    port = free_port()
    run = run_master(spawn_entry(port, 1, "/bin/sh -c { echo $PPID }", "-o max_use=2"))
    pids = [echo(port, b"").strip() for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert "warning" not in run.log()


def test_max_idle_ends_an_idle_process(run_master):
    port = free_port()
    run = run_master(spawn_entry(port, 2, "/bin/cat", "-o max_idle=1"))
    assert echo(port) == b"hello\n"
    service = "127.0.0.1:%d" % port
    assert run.children(service)
    assert wait_until(lambda: not run.children(service), timeout=5)
    assert "warning" not in run.log()


def test_process_title_and_argv(run_master):
    port = free_port()
    run = run_master(spawn_entry(port, 2, "/bin/cat", "-o max_idle=5"))
    echo(port)
    child = run.children("127.0.0.1:%d" % port)[0]
    assert child.name() == "spawn"
    assert " ".join(child.cmdline()).split() == ["spawn", "-n", "127.0.0.1:%d" % port, "-t", "inet", "-d",
                               "-o", "max_idle=5", "user=nobody", "argv=/bin/cat"]


def test_bad_startup_throttles_then_recovers(run_master):
    port = free_port()

    def master_cf(run):
        flaky = os.path.join(run.root, "flaky")
        flag = os.path.join(run.root, "failed-once")
        real = run.program("echo_daemon.py")
        with open(flaky, "w") as f:
            f.write('#!/bin/sh\nif [ ! -e %s ]; then touch %s; exit 1; fi\nexec %s "$@"\n'
                    % (flag, flag, real))
        os.chmod(flaky, 0o755)
        return "127.0.0.1:%d inet n n n - 1 %s\n" % (port, flaky)

    run = run_master(master_cf)
    with connect(port) as first:
        first.sendall(b"x\n")
        run.wait_log(r"bad command startup -- throttling")
    assert "exit status 1" in run.log()
    throttled_at = time.monotonic()
    with connect(port, timeout=15) as sock:
        sock.sendall(b"hello\n")
        assert sock.recv(100) == b"hello\n"
    assert time.monotonic() - throttled_at > 1.0      # service_throttle_time = 2s
    assert run.log().count("throttling") == 1


def test_kill_9_of_a_busy_child(run_master):
    port = free_port()
    program = None

    def master_cf(run):
        nonlocal program
        program = run.program("echo_daemon.py")
        return "127.0.0.1:%d inet n - n - 1 %s\n" % (port, program)

    run = run_master(master_cf)
    assert echo(port, b"warm up\n") == b"warm up\n"
    with connect(port) as busy:
        busy.sendall(b"pid\n")
        pid = int(busy.recv(100))
        os.kill(pid, signal.SIGKILL)
        run.wait_log(r"pid %d killed by signal 9" % pid)
    assert echo(port) == b"hello\n"
    assert "throttling" not in run.log()


def test_exec_of_a_postfix_daemon_on_fd_6(run_master):
    """Postfix's own spawn(8), exec'd by pyfix's master, serves clients: the descriptor and
    status-channel contract is Postfix's."""
    postfix_spawn = "/usr/lib/postfix/sbin/spawn"
    if not os.path.exists(postfix_spawn) or not ROOT:
        pytest.skip("needs Debian's Postfix and root")
    port = free_port()
    run = run_master("127.0.0.1:%d inet n n n - 2 %s user=nobody argv=/bin/cat\n"
                     % (port, postfix_spawn))
    for _ in range(3):
        assert echo(port) == b"hello\n"
    children = run.children("127.0.0.1:%d" % port)
    assert children and children[0].exe() == postfix_spawn


def test_unprivileged_service_runs_as_mail_owner(run_master):
    if not ROOT:
        pytest.skip("privileges are dropped only when master runs as root")
    port = free_port()
    chroot_port = free_port()

    def master_cf(run):
        program = run.program("echo_daemon.py")
        return ("127.0.0.1:%d inet n - n - 1 %s\n127.0.0.1:%d inet n - y - 1 %s\n"
                % (port, program, chroot_port, program))

    run = run_master(master_cf)
    uid, gid, cwd = echo(port, b"whoami\n").split()
    owner = pwd.getpwnam("postfix")
    assert (int(uid), int(gid)) == (owner.pw_uid, owner.pw_gid)
    assert cwd.decode() == run.spool
    jailed = run.children("127.0.0.1:%d" % chroot_port)
    echo(chroot_port, b"x\n")
    jailed = run.children("127.0.0.1:%d" % chroot_port)
    assert os.readlink("/proc/%d/root" % jailed[0].pid) == run.spool


def test_multi_server_serves_many_connections_in_one_process(run_master):
    port = free_port()

    def master_cf(run):
        return "127.0.0.1:%d inet n - n - 1 %s\n" % (port, run.program("multi_echo.py"))

    run_master(master_cf)
    socks = hold_sessions(port, 4)
    answers = []
    for sock in socks:
        sock.sendall(b"ping")
        answers.append(sock.recv(100).split())
    assert len({pid for pid, _ in answers}) == 1
    assert all(word == b"ping" for _, word in answers)
    for sock in socks:
        sock.close()


def test_wakeup_timer_and_conditional_wakeup(run_master):
    plain = "plain"
    conditional = "conditional"

    def master_cf(run):
        program = run.program("trigger_recorder.py")
        return ("%s unix n n n 1 1 %s %s/plain.log\n%s unix n n n 1? 1 %s %s/cond.log\n"
                % (plain, program, run.root, conditional, program, run.root))

    run = run_master(master_cf)
    plain_log = os.path.join(run.root, "plain.log")
    cond_log = os.path.join(run.root, "cond.log")
    assert wait_until(lambda: os.path.exists(plain_log)
                      and open(plain_log).read().count("W") >= 2, timeout=6)
    assert not os.path.exists(cond_log)
    from pyfix.common.trigger import unix_trigger
    unix_trigger(os.path.join(run.spool, "public", conditional), b"X")
    assert wait_until(lambda: os.path.exists(cond_log)
                      and open(cond_log).read().count("W") >= 1, timeout=6)
    assert open(cond_log).read().startswith("X")


@pytest.mark.skipif(not ROOT or not os.path.exists("/usr/lib/postfix/sbin/flush"),
                    reason="needs root and Debian's flush")
def test_wakeup_waits_for_a_server_that_answers_it(run_master):
    """Postfix's flush answers master's `W` wakeup: the trigger ends with a null byte and
    master keeps the connection until flush closes it, so flush never logs
    "end-of-input while reading request ... Broken pipe"."""
    from cleanup_oracle import QueueMaster
    run = QueueMaster("", services="flush unix n - n 1 0 /usr/lib/postfix/sbin/flush\n")
    try:
        run.start()
        assert wait_until(lambda: len(run.children("flush")) > 0, timeout=5)
        time.sleep(3.5)                                    # three wakeups
        assert "warning" not in run.log(), run.log()
    finally:
        run.cleanup()


def test_reload_adds_removes_and_changes_services(run_master):
    kept, removed, added = free_port(), free_port(), free_port()
    run = run_master(spawn_entry(kept, 2, "/bin/cat") + spawn_entry(removed, 2, "/bin/cat"))
    assert echo(removed) == b"hello\n"
    mid_session = connect(kept)
    mid_session.sendall(b"before reload\n")
    assert mid_session.recv(100) == b"before reload\n"
    busy = {p.pid for p in run.children("127.0.0.1:%d" % kept)}
    assert echo(kept) == b"hello\n"                  # a second child, idle after this
    idle = {p.pid for p in run.children("127.0.0.1:%d" % kept)} - busy
    assert len(busy) == len(idle) == 1
    run.write_master_cf(spawn_entry(kept, 1, "/bin/cat") + spawn_entry(added, 2, "/bin/cat"))
    run.reload()
    # Idle children of a changed service leave; the busy one finishes its session.
    assert wait_until(lambda: not idle & {p.pid for p in run.children()}, timeout=5)
    assert busy <= {p.pid for p in run.children()}
    with pytest.raises(OSError):
        connect(removed, timeout=2).close()
    assert echo(added) == b"hello\n"
    mid_session.sendall(b"after reload\n")
    assert mid_session.recv(100) == b"after reload\n"
    mid_session.close()
    assert echo(kept) == b"hello\n"
    assert "warning" not in run.log()


def test_stop_leaves_no_process_and_no_zombie(run_master):
    port = free_port()
    run = run_master(spawn_entry(port, 4, "/bin/sh -c { sleep 0.2; echo done }"))
    threads, _ = clients_in_parallel(port, 4)
    assert wait_until(lambda: len(run.children("127.0.0.1:%d" % port)) == 4, timeout=5)
    children = [p.pid for p in run.children()]
    run.stop()
    for thread in threads:
        thread.join(10)
    assert run.proc.returncode == -signal.SIGTERM
    assert "terminating on signal 15" in run.log()
    for pid in children:
        assert not psutil.pid_exists(pid)


def test_multi_server_use_limit_waits_for_its_clients(run_master):
    port = free_port()

    def master_cf(run):
        return "127.0.0.1:%d inet n - n - 1 %s -o max_use=2\n" % (
            port, run.program("multi_echo.py"))

    run_master(master_cf)
    first, second = hold_sessions(port, 2)
    pids = set()
    for sock in (first, second):
        sock.sendall(b"ping")
        pids.add(sock.recv(100).split()[0])
    assert len(pids) == 1
    (pid,) = pids
    first.close()
    second.sendall(b"still here")
    assert second.recv(100).split()[0] == pid        # one use counted, one client left
    second.close()
    assert wait_until(lambda: not psutil.pid_exists(int(pid)), timeout=5)
    with connect(port) as third:
        third.sendall(b"ping")
        assert third.recv(100).split()[0] != pid


LOG_LINE = r"^[A-Z][a-z]{2} [0-3]\d \d\d:\d\d:\d\d \S+ %s\[(\d+)\]: %s$"


def test_log_lines_through_postlogd_with_the_service_tag(run_master):
    """A child's lines reach $maillog_file through postlogd, shaped as Postfix's, under the
    tag that `-o syslog_name=...` gives; postlogd itself is exempt from max_use."""
    port = free_port()
    run = run_master(spawn_entry(port, 2, "/bin/false", "-o syslog_name=postfix/custom"),
                     "max_use = 2\n")
    pattern = "(?m)" + LOG_LINE % (re.escape("postfix/custom/spawn"),
                                   re.escape("warning: command /bin/false exit status 1"))
    echo(port, b"")
    run.wait_log(pattern)
    postlogd = [p for p in run.children() if p.name() == "postlogd"]
    for _ in range(5):
        echo(port, b"")
    run.wait_log(pattern, count=6)
    assert [p.pid for p in run.children() if p.name() == "postlogd"] == [postlogd[0].pid]
    assert postlogd[0].uids().effective == (pwd.getpwnam("postfix").pw_uid if ROOT
                                            else os.geteuid())
    first = run.log().splitlines()[0]
    assert re.match(LOG_LINE % (re.escape("postfix/master"),
                                re.escape("daemon started -- version 3.7.11, configuration ")
                                + re.escape(run.etc)), first)


@pytest.mark.parametrize("kind", ["fifo", "pass"])
def test_fifo_and_pass_services(run_master, kind):
    """A FIFO service reads triggers from the FIFO master created (mode 0622); a pass
    service receives each client as a passed descriptor."""
    def master_cf(run):
        return "probe %s n n n 1 1 %s %s/probe.log\n" % (
            kind, run.program("trigger_recorder.py"), run.root)

    run = run_master(master_cf)
    log = os.path.join(run.root, "probe.log")
    endpoint = os.path.join(run.spool, "public", "probe")
    if kind == "fifo":
        assert oct(os.stat(endpoint).st_mode & 0o777) == "0o622"
    assert wait_until(lambda: os.path.exists(log) and "W" in open(log).read(), timeout=6)
    from pyfix.common import trigger
    getattr(trigger, kind + "_trigger")(endpoint, b"D")
    assert wait_until(lambda: "D" in open(log).read(), timeout=6)


def test_watchdog_spares_an_idle_daemon(run_master):
    """watchdog.c wakes an idle event loop every third of the timeout and each round
    restarts it, so only a process stuck inside one round trips it: a proxymap with a
    3 s daemon_timeout and nothing to do lives on past several timeouts."""
    run = run_master("proxymap unix - - n - - proxymap -o daemon_timeout=3s"
                     " -o max_idle=3600s\n")
    path = os.path.join(run.spool, "private", "proxymap")
    wait_until(lambda: os.path.exists(path))
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    wait_until(lambda: run.children("proxymap"))
    first = [p.pid for p in run.children("proxymap")]
    sock.close()
    time.sleep(7)      # two watchdog timeouts of idleness; no time is asserted
    assert [p.pid for p in run.children("proxymap")] == first
    assert "watchdog timeout" not in run.log()

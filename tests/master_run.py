"""A real pyfix master for tests: its own config and queue directory, started, watched
through psutil and its log, and stopped by its pid.

The directory lives under /tmp with mode 0755 (not under pytest's 0700 tmp_path) because
tests run as root here and unprivileged children drop to mail_owner, which must reach the
queue directory.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil

DEFAULT_MAIN_CF = """\
compatibility_level = 3.7
queue_directory = {root}/spool
data_directory = {root}/lib
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
service_throttle_time = 2s
maillog_file = {root}/maillog
maillog_file_prefixes = /tmp
"""
POSTLOG_SERVICE = "postlog unix-dgram n - n - 1 postlogd\n"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


class MasterRun:
    def __init__(self, master_cf, main_cf_extra=""):
        self.root = tempfile.mkdtemp(prefix="pyfix-master-", dir="/tmp")
        os.chmod(self.root, 0o755)
        self.etc = os.path.join(self.root, "etc")
        self.spool = os.path.join(self.root, "spool")
        for path in (self.etc, self.spool, os.path.join(self.root, "lib")):
            os.makedirs(path)
        for sub in ("pid", "private", "public"):
            os.makedirs(os.path.join(self.spool, sub))
        if os.geteuid() == 0:
            for sub in ("private", "public"):
                shutil.chown(os.path.join(self.spool, sub), "postfix")
            shutil.chown(os.path.join(self.root, "lib"), "postfix")
        self.write_main_cf(main_cf_extra)
        self.write_master_cf(master_cf)
        self.log_path = os.path.join(self.root, "maillog")
        self.stderr_path = os.path.join(self.root, "master.stderr")
        self.proc = None

    def program(self, script):
        """An executable in the test root that runs tests/bin/<script> with this Python."""
        path = os.path.join(self.root, os.path.splitext(script)[0])
        source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", script)
        with open(path, "w") as f:
            f.write('#!/bin/sh\nexec %s %s "$@"\n' % (sys.executable, source))
        os.chmod(path, 0o755)
        return path

    def write_main_cf(self, extra=""):
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(DEFAULT_MAIN_CF.format(root=self.root) + extra)

    def write_master_cf(self, text):
        """master.cf: the given services, and the postlog service that writes the log."""
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(text + POSTLOG_SERVICE)

    # -- running it -------------------------------------------------------------------------

    def start(self):
        log = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyfix.master.master", "-c", self.etc, "-d"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        if not wait_until(lambda: "daemon started" in self.log() or self.proc.poll() is not None):
            raise AssertionError("master did not start:\n" + self.log() + self.stderr())
        if self.proc.poll() is not None:
            raise AssertionError("master exited:\n" + self.log() + self.stderr())
        return self

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stderr(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout=10.0, count=1):
        regex = re.compile(pattern)
        found = wait_until(lambda: len(regex.findall(self.log())) >= count, timeout)
        assert found, "no %r in the log:\n%s" % (pattern, self.log())

    def children(self, service=None):
        """Live (non-zombie) children of master, optionally those of one service."""
        try:
            procs = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        result = []
        for proc in procs:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                # A forked pyfix daemon's title is one string (setproctitle).
                cmdline = " ".join(proc.cmdline()).split()
            except psutil.NoSuchProcess:
                continue
            if service is None or ("-n" in cmdline and service in cmdline) \
                    or (cmdline and cmdline[0].endswith(service)):
                result.append(proc)
        return result

    def reload(self):
        os.kill(self.pid, signal.SIGHUP)
        self.wait_log("reload -- version")

    def stop(self):
        """SIGTERM to master; wait for it; return the pids that were its children."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            before = [p.pid for p in psutil.Process(self.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            before = []
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait()
        return before

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def connect(port, timeout=5.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def echo(port, text=b"hello\n"):
    """One short session with an echo (cat) service: send, half-close, read it back."""
    with connect(port) as sock:
        if text:
            sock.sendall(text)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk

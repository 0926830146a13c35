#!/usr/bin/env python3
"""master(8), pyfix beside Debian's Postfix in one run: start-up, spawn cost, memory.

    sudo .venv/bin/python bench/bench_master.py [--sessions N]

For each implementation a master is started on its own temporary config and queue
directory with one service on a loopback port: spawn(8) running /bin/cat (pyfix's spawn
module for pyfix, Postfix's own spawn from its daemon_directory for Postfix). Measured:
  - start: seconds from starting master to the first echoed session;
  - spawn: extra seconds per session when every session needs a new process
    (max_use = 1) over sessions served by a kept process (max_use = 100);
  - master RSS, and the PSS of one idle child (psutil, from /proc/<pid>/smaps).
Prints one line per figure with both values and pyfix/Postfix as a ratio. Needs root
(Postfix's master refuses to run otherwise) and Debian's postfix package.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import psutil

from pyfix.common.master_lock import master_running

POSTFIX_COMMAND = "/usr/sbin/postfix"
PYFIX_COMMAND = os.path.join(os.path.dirname(sys.executable), "postfix")

MAIN_CF = """\
compatibility_level = 3.7
queue_directory = {root}/spool
data_directory = {root}/lib
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Installation:
    """One implementation's master on a private directory."""

    def __init__(self, label, postfix_command, spawn_command):
        self.label = label
        self.postfix_command = postfix_command
        self.spawn_command = spawn_command
        self.root = tempfile.mkdtemp(prefix="bench-%s-" % label, dir="/tmp")
        os.chmod(self.root, 0o755)
        self.etc = os.path.join(self.root, "etc")
        os.makedirs(self.etc)
        for sub, owner in (("lib", "postfix"), ("spool", "root"), ("spool/pid", "root"),
                           ("spool/private", "postfix"), ("spool/public", "postfix")):
            path = os.path.join(self.root, sub)
            os.makedirs(path)
            shutil.chown(path, owner)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(root=self.root))
        self.port = None

    def configure(self, max_use):
        self.port = free_port()
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("127.0.0.1:%d inet n n n - 10 %s -o max_use=%d user=nobody argv=/bin/cat\n"
                    % (self.port, self.spawn_command, max_use))
        # Postfix re-reads a configuration file whose mtime is not yet in the past (up to
        # 2 s); date both in the past so that start-up is not measured with that wait.
        for name in ("main.cf", "master.cf"):
            os.utime(os.path.join(self.etc, name), (946684800, 946684800))

    def postfix(self, command):
        subprocess.run([self.postfix_command, "-c", self.etc, command], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def start(self):
        began = time.perf_counter()
        self.postfix("start")
        while True:
            try:
                session(self.port)
                return time.perf_counter() - began
            except OSError:
                time.sleep(0.002)

    @property
    def master_pid(self):
        with open(os.path.join(self.root, "spool", "pid", "master.pid")) as f:
            return int(f.read())

    def stop(self):
        if master_running(os.path.join(self.root, "spool")):
            self.postfix("stop")

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def child_pss(self):
        children = psutil.Process(self.master_pid).children()
        return min(child.memory_full_info().pss for child in children) if children else 0

    def master_rss(self):
        return psutil.Process(self.master_pid).memory_info().rss


def session(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"ping\n")
        sock.shutdown(socket.SHUT_WR)
        if sock.recv(16) != b"ping\n":
            raise OSError("bad echo")


def seconds_per_session(inst, count):
    began = time.perf_counter()
    for _ in range(count):
        session(inst.port)
    return (time.perf_counter() - began) / count


def measure(inst, sessions):
    figures = {}
    inst.configure(max_use=100)
    figures["start_s"] = inst.start()
    session(inst.port)
    time.sleep(0.2)
    figures["master_rss_kb"] = inst.master_rss() / 1024
    figures["child_pss_kb"] = inst.child_pss() / 1024
    reuse = seconds_per_session(inst, sessions)
    inst.stop()
    inst.configure(max_use=1)
    inst.start()
    fresh = seconds_per_session(inst, sessions)
    inst.stop()
    figures["spawn_ms"] = max(fresh - reuse, 0) * 1000
    figures["session_reuse_ms"] = reuse * 1000
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0 or not os.path.exists(POSTFIX_COMMAND):
        sys.exit("bench_master: needs root and Debian's postfix package")
    installs = [
        Installation("pyfix", PYFIX_COMMAND, "spawn"),
        Installation("postfix", POSTFIX_COMMAND, "spawn"),
    ]
    results = {}
    try:
        for inst in installs:
            results[inst.label] = measure(inst, args.sessions)
    finally:
        for inst in installs:
            inst.cleanup()
    print("%-18s %12s %12s %8s" % ("figure", "pyfix", "postfix", "ratio"))
    for key in ("start_s", "spawn_ms", "session_reuse_ms", "master_rss_kb", "child_pss_kb"):
        mine, theirs = results["pyfix"][key], results["postfix"][key]
        ratio = mine / theirs if theirs else float("nan")
        print("%-18s %12.3f %12.3f %8.2f" % (key, mine, theirs, ratio))


if __name__ == "__main__":
    main()

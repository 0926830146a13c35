#!/usr/bin/env python3
"""smtpd(8), pyfix beside Debian's Postfix in one run: messages accepted per second and
memory per session.

    sudo .venv/bin/python bench/bench_smtpd.py [--messages N] [--sessions 1,10,50]

Both sides are started as in the differential tests (tests/smtp_oracle.py: a master
with smtpd on a loopback port, cleanup, trivial-rewrite, proxymap, anvil; nothing
delivers, so accepted mail stays in the incoming queue). For each concurrency, Postfix's
smtp-source sends N messages of one recipient over that many parallel sessions;
messages/s is N over the wall time smtp-source took. Then 10 idle sessions are held
open and the proportional set size (PSS) of the smtpd processes serving them is
divided by 10. Prints one line per figure with both values and pyfix/Postfix.
Needs root and Debian's postfix package (smtp-source).
"""

import argparse
import os
import socket
import subprocess
import sys
import time

import psutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from smtp_oracle import SmtpPair  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"


def rate(side, sessions, messages):
    started = time.monotonic()
    subprocess.run([SMTP_SOURCE, "-s", str(sessions), "-m", str(messages),
                    "-f", "alice@example.com", "-t", "root@mx.example.com",
                    "127.0.0.1:%d" % side.port], check=True, capture_output=True,
                   timeout=600)
    return messages / (time.monotonic() - started)


def smtpd_processes(side):
    procs = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            line = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if "smtpd" in line and str(side.port) in line:
            procs.append(proc)
    return procs


def memory_per_session(side, count=10):
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", side.port), timeout=10)
            sock.recv(1024)
            socks.append(sock)
        time.sleep(0.5)
        total = 0
        busy = 0
        for proc in smtpd_processes(side):
            try:
                if any(
                        c.status == psutil.CONN_ESTABLISHED for c in proc.net_connections("tcp")):
                    total += proc.memory_full_info().pss
                    busy += 1
            except psutil.Error:
                continue
        return total / max(busy, 1)
    finally:
        for sock in socks:
            sock.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--sessions", default="1,10,50")
    args = parser.parse_args()
    pair = SmtpPair("default_process_limit = 100\n").start()
    try:
        for sessions in [int(n) for n in args.sessions.split(",")]:
            values = [rate(side, sessions, args.messages) for side in pair.sides()]
            print("messages/s with %2d sessions: postfix %7.1f  pyfix %7.1f  ratio %.2f"
                  % (sessions, values[0], values[1], values[1] / values[0]))
        values = [memory_per_session(side) for side in pair.sides()]
        print("PSS per idle session:        postfix %6.1f MB pyfix %6.1f MB ratio %.2f"
              % (values[0] / 2 ** 20, values[1] / 2 ** 20, values[1] / values[0]))
    finally:
        pair.cleanup()


if __name__ == "__main__":
    main()

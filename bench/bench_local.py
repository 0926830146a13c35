#!/usr/bin/env python3
"""local(8) into Maildir, pyfix beside Debian's Postfix in one run: deliveries per second
from smtp-source through smtpd, cleanup, qmgr and local into users' Maildir/new.

    sudo .venv/bin/python bench/bench_local.py [--messages N] [--sessions 1,10]
                                               [--rcpt-messages M] [--drain N]
                                               [--agent N]

Each side is a whole system on loopback (tests/e2e_rig.py's System) plus a `local`
service, with home_mailbox = Maildir/, biff = no and no alias or local recipient table;
mydestination holds the system's own name mx.example.com, so that is the test domain.
The bench makes ten real UNIX users (useradd, homes in a temporary directory; removed at
the end): X, 2X, 3X, ... 10X, because smtp-source -r 10 -t X@domain sends the recipients
10X@, 9X@, ... 2X@, X@ (it prepends the count to all but the last).

Injection is over SMTP: Postfix's smtp-source against the side's smtpd on loopback. The
clock runs from smtp-source's start until the users' Maildir/new directories hold every
delivered file (files counted; each Maildir is removed before a run). Figures:
  * N one-recipient messages to X, for each number of parallel SMTP sessions;
  * M messages of 10 recipients each (10 distinct users, so 10 deliveries a message);
  * the deferred drain: with defer_transports = local a second pair of systems takes
    N messages into deferred/, then `postqueue -f` starts the clock, which stops when
    N files are in Maildir/new (qmgr and local only; no smtpd, cleanup or smtp-source
    in the measured time);
  * the local agent alone: the same drain, both times on pyfix's system (master, qmgr
    and the rest), once with Debian's /usr/lib/postfix/sbin/local as the `local`
    service (the "postfix" column) and once with pyfix's; only the agent differs.
Local's concurrency is Postfix's default for both sides (local_destination_concurrency_
limit = 2 per user). Prints one line per figure, "postfix X pyfix Y ratio Z", with the
ratio pyfix/Postfix (higher is better). Needs root, Debian's postfix and smtp-sink.
"""

import argparse
import os
import pwd
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from e2e_rig import System, available                     # noqa: E402
from master_run import wait_until                         # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"
DOMAIN = "mx.example.com"
USERS = 10
LOCAL_SERVICE = "local unix - n n - - %s\n"
DEBIAN_LOCAL = "/usr/lib/postfix/sbin/local"
MAIN_CF = "home_mailbox = Maildir/\nbiff = no\nalias_maps =\nlocal_recipient_maps =\n"
LIMIT = 900


class Mailboxes:
    """The bench's UNIX users X, 2X, ... and their Maildirs; remove() deletes them."""

    def __init__(self, count=USERS):
        self.home_root = tempfile.mkdtemp(prefix="pyfix-benchlocal-", dir="/tmp")
        os.chmod(self.home_root, 0o755)
        self.base = "bl%05x" % random.randrange(0x100000)
        self.names = []
        self.homes = []
        try:
            for n in range(1, count + 1):
                self._add(self.base if n == 1 else "%d%s" % (n, self.base))
        except BaseException:
            self.remove()
            raise

    def _add(self, name):
        home = os.path.join(self.home_root, name)
        # --badname: names that start with a digit are smtp-source's -r recipients.
        subprocess.run(["useradd", "--badname", "-M", "-d", home, "-s", "/bin/sh", "-U",
                        name], check=True, capture_output=True)
        self.names.append(name)
        entry = pwd.getpwnam(name)
        os.makedirs(home)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        self.homes.append(home)

    def address(self):
        return "%s@%s" % (self.base, DOMAIN)

    def delivered(self):
        total = 0
        for home in self.homes:
            try:
                total += len(os.listdir(os.path.join(home, "Maildir", "new")))
            except FileNotFoundError:
                pass
        return total

    def empty(self):
        for home in self.homes:
            shutil.rmtree(os.path.join(home, "Maildir"), ignore_errors=True)

    def remove(self):
        for name in self.names:
            subprocess.run(["userdel", name], capture_output=True)
            subprocess.run(["groupdel", name], capture_output=True)
        self.names = []
        shutil.rmtree(self.home_root, ignore_errors=True)


def inject(system, users, sessions, messages, rcpts):
    subprocess.run([SMTP_SOURCE, "-s", str(sessions), "-m", str(messages),
                    "-r", str(rcpts), "-f", "alice@example.com", "-t", users.address(),
                    "127.0.0.1:%d" % system.port], check=True, capture_output=True,
                   timeout=LIMIT)


def wait_delivered(system, users, expected):
    if not wait_until(lambda: users.delivered() >= expected, LIMIT, 0.02):
        raise SystemExit("%s: %d of %d deliveries in Maildir/new\n%s"
                         % (system.side, users.delivered(), expected, system.log()[-3000:]))


def settle(system):
    """Wait until the queue is empty again, so that one run does not slow the next."""
    if not wait_until(lambda: system.queued() == 0, 120, 0.05):
        raise SystemExit("%s: the queue does not empty" % system.side)


def rate(system, users, sessions, messages, rcpts=1):
    """Deliveries per second from smtp-source's start to the last file in Maildir/new."""
    users.empty()
    started = time.monotonic()
    inject(system, users, sessions, messages, rcpts)
    wait_delivered(system, users, messages * rcpts)
    elapsed = time.monotonic() - started
    settle(system)
    return messages * rcpts / elapsed


def drain_rate(system, users, messages):
    """Deliveries per second from `postqueue -f` to the last file in Maildir/new, with
    the messages waiting in deferred/ (defer_transports = local)."""
    users.empty()
    inject(system, users, 10, messages, 1)
    if not wait_until(lambda: len(system.queue_ids("deferred")) == messages
                      and system.queued() == messages, LIMIT, 0.05):
        raise SystemExit("%s: the messages did not reach deferred/" % system.side)
    started = time.monotonic()
    result = system.postqueue("-f")
    if result.returncode != 0:
        raise SystemExit("%s: postqueue -f: %s" % (system.side, result.stderr))
    wait_delivered(system, users, messages)
    elapsed = time.monotonic() - started
    settle(system)
    return messages / elapsed


def start_pair(main_cf_extra="", sides=(("postfix", "local"), ("pyfix", "local"))):
    """Two systems; sides: (side, program of the local service) for each."""
    systems = []
    try:
        for side, local in sides:
            systems.append(System(side, main_cf_extra=MAIN_CF + main_cf_extra,
                                  master_cf_extra=LOCAL_SERVICE % local).start())
    except BaseException:
        stop(systems)
        raise
    return systems


def stop(systems):
    for system in systems:
        system.cleanup()


def report(label, values):
    print("%-38s postfix %7.1f  pyfix %7.1f  ratio %.2f"
          % (label + ":", values[0], values[1], values[1] / values[0]), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--sessions", default="1,10")
    parser.add_argument("--rcpt-messages", type=int, default=300,
                        help="messages with 10 recipients each (0: skip)")
    parser.add_argument("--drain", type=int, default=1000,
                        help="messages for the deferred-queue drain (0: skip)")
    parser.add_argument("--agent", type=int, default=1000,
                        help="messages for the drain with either local on pyfix's "
                        "system (0: skip)")
    args = parser.parse_args()
    if not available() or os.geteuid() != 0 or not os.path.exists(SMTP_SOURCE):
        raise SystemExit("needs root, Debian's Postfix, smtp-source and smtp-sink")
    users = Mailboxes()
    try:
        systems = start_pair()
        try:
            for sessions in [int(n) for n in args.sessions.split(",")]:
                report("deliveries/s, 1 rcpt, %d sessions" % sessions,
                       [rate(s, users, sessions, args.messages) for s in systems])
            if args.rcpt_messages:
                report("deliveries/s, 10 rcpts, 10 sessions",
                       [rate(s, users, 10, args.rcpt_messages, USERS) for s in systems])
        finally:
            stop(systems)
        if args.drain:
            systems = start_pair("defer_transports = local\n")
            try:
                report("deliveries/s, deferred drain",
                       [drain_rate(s, users, args.drain) for s in systems])
            finally:
                stop(systems)
        if args.agent:
            systems = start_pair("defer_transports = local\n",
                                 (("pyfix", DEBIAN_LOCAL), ("pyfix", "local")))
            try:
                report("local alone (drain on pyfix's qmgr)",
                       [drain_rate(s, users, args.agent) for s in systems])
            finally:
                stop(systems)
    finally:
        users.remove()


if __name__ == "__main__":
    main()

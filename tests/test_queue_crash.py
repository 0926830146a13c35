"""Crash safety of the queue: cleanup(8) is killed with SIGKILL at random points while
a stream of messages goes through it, and the queue it leaves must hold every message
it acknowledged, whole, and nothing partial that looks complete.

A pyfix master runs cleanup (process limit 0, as cleanup requires); the process to kill
is the one that holds the queue file whose ID our handshake brought. Each message of the stream is sent with the cleanup
protocol (queue/cleanup_client.py, as pickup and smtpd send it); a seeded random
generator picks, per message, whether cleanup dies and where:

  - after the handshake, before the flags;
  - after k of the n records (small and large messages, so that cleanup is reading,
    rewriting headers or writing the file);
  - after the last record, following a seeded pause of 0-25 ms, which lands in
    cleanup's final steps (rewrite the size record, flush, fchmod 0700, fsync, close,
    trigger) or after its answer;
  - not at all.

Some messages carry a header that header_checks sends to hold/, so that the
rename-before-commit path is crashed too. Afterwards, with master stopped:

  1. every message whose status 0 the client read is in incoming/ or hold/, complete
     (mode 0700), parses to the end (`E`) with the record codec, and has the sender,
     recipient and body line that were sent; Debian's postcat reads it without
     complaint;
  2. every complete (0700) file, acknowledged or not, is whole in the same sense: a
     file killed before its commit is never taken for complete (a file committed just
     before the kill and never acknowledged is allowed: the client retries, which is
     the RFC 1047 duplicate that Postfix accepts too);
  3. every other file is still 0600 (an embryo that qmgr, showq, postsuper and pickup
     skip; postsuper removes it later).

The same through `sendmail -t -i` and pickup (test_kill_cleanup_under_pickup): while
the messages are submitted, a seeded killer SIGKILLs cleanup processes at seeded
intervals under pickup; once it stops and pickup has emptied maildrop/, every message is
whole in incoming/ (plus one copy per cleanup killed between its commit and its
answer), because pickup removes a maildrop file only after cleanup acknowledged it.

The seeds are fixed; no assertion depends on the clock.
"""

import os
import random
import re
import signal
import stat
import subprocess
import threading
import time

import pytest

from cleanup_oracle import POSTCAT, RECEIVED, RECEIVED2, QueueMaster
from conftest import candidate_path
from master_run import wait_until
from pyfix.common.trigger import unix_trigger
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record as R
from pyfix.queue.cleanup_client import CleanupClient, CleanupError

ROOT = os.geteuid() == 0
MESSAGES_PER_SEED = 30
SEEDS = (1, 2, 3)

SERVICES = "cleanup unix n - n - 0 cleanup\n"


def make_message(rng, number):
    """(records, sender, recipient, marker): a message of 1 to ~3000 body lines."""
    sender = "sender%d@example.com" % number
    rcpt = "rcpt%d@example.org" % number
    marker = "marker line of message %d" % number
    lines = rng.choice((1, 10, 200, 3000))
    headers = ["From: %s" % sender, "To: %s" % rcpt, "Subject: message %d" % number]
    if rng.random() < 0.25:
        headers.append("X-Hold: please")
    records = [(R.TIME, b"%d 0" % (1795625618 + number)),
               (R.ATTR, b"rewrite_context=local"),
               (R.FROM, sender.encode()), (R.RCPT, rcpt.encode()), (R.MESG, b"")]
    records += [RECEIVED, RECEIVED2] + [(R.NORM, h.encode()) for h in headers]
    records.append((R.NORM, b""))
    records += [(R.NORM, b"%d: %s" % (i, b"x" * rng.randrange(0, 120)))
                for i in range(lines)]
    records += [(R.NORM, marker.encode()), (R.XTRA, b""), (R.END, b"")]
    return records, sender, rcpt, marker


class Crasher:
    """The master and one seeded stream of messages."""

    def __init__(self, run, seed):
        self.run = run
        self.rng = random.Random(seed)
        self.socket = run.cleanup_socket()
        self.acked = {}             # queue ID -> (sender, recipient, marker)
        self.kills = 0

    def serving_pid(self, queue_id):
        """The cleanup process that has queue_id's file open (it created it)."""
        for proc in self.run.children("cleanup"):
            try:
                for fd in os.listdir("/proc/%d/fd" % proc.pid):
                    target = os.readlink("/proc/%d/fd/%s" % (proc.pid, fd))
                    if target.endswith("/" + queue_id):
                        return proc.pid
            except OSError:
                continue
        return None

    def kill(self, queue_id, pid=None):
        pid = pid or wait_until(lambda: self.serving_pid(queue_id), timeout=10)
        assert pid, "no cleanup process holds %s" % queue_id
        os.kill(pid, signal.SIGKILL)
        self.kills += 1
        wait_until(lambda: not os.path.exists("/proc/%d/fd" % pid), timeout=10)

    def connect(self):
        # master (re)spawns cleanup on demand; the socket itself is master's.
        return CleanupClient.connect(self.socket, timeout=30, wait=False)

    def one(self, number):
        records, sender, rcpt, marker = make_message(self.rng, number)
        plan = self.rng.choice(("none", "none", "handshake", "records", "records", "end",
                                "end", "end"))
        cut = self.rng.randrange(len(records)) if plan == "records" else None
        pause = self.rng.uniform(0, 0.025) if plan == "end" else 0
        try:
            client = self.connect()
        except CleanupError:
            return
        with client:
            if plan == "handshake":
                self.kill(client.queue_id)
            try:
                client.send_flags(cu.FLAG_MASK_EXTERNAL)
            except CleanupError:
                return
            for index, item in enumerate(records):
                if index == cut:
                    client.flush()
                    self.kill(client.queue_id)
                client.put(*item)
            if plan == "end":
                client.flush()
                time.sleep(pause)
                # Unless cleanup has already closed the file (then it answered or is
                # about to: too late for this message).
                pid = self.serving_pid(client.queue_id)
                if pid:
                    self.kill(client.queue_id, pid)
            status, _ = client.finish()
            if status == 0:
                self.acked[client.queue_id] = (sender, rcpt, marker)


def parse(path):
    """The records of a queue file, or None when it does not parse to its `E`."""
    with open(path, "rb") as f:
        reader = R.RecordReader(f, path)
        records = []
        while True:
            rec_type, payload = reader.get()
            if payload is None:
                return None
            records.append((rec_type, payload))
            if rec_type == R.END:
                return records


def queue_files(run):
    for queue in ("incoming", "hold", "active", "deferred"):
        top = os.path.join(run.spool, queue)
        for folder, _, names in os.walk(top):
            for name in names:
                yield queue, name, os.path.join(folder, name)


@pytest.mark.skipif(not ROOT or not os.path.exists(POSTCAT),
                    reason="needs root and Debian's postcat")
@pytest.mark.parametrize("seed", SEEDS)
def test_kill_cleanup_at_random_points(seed):
    run = QueueMaster("header_checks = regexp:ROOT/header_checks\n", services=SERVICES)
    # The path is only known once the directory exists.
    with open(os.path.join(run.etc, "main.cf")) as f:
        main_cf = f.read().replace("ROOT", run.root)
    with open(os.path.join(run.etc, "main.cf"), "w") as f:
        f.write(main_cf)
    with open(os.path.join(run.root, "header_checks"), "w") as f:
        f.write("/^X-Hold:/ HOLD crash test\n")
    try:
        run.start()
        crasher = Crasher(run, seed)
        for number in range(MESSAGES_PER_SEED):
            crasher.one(number)
        run.stop()

        complete, embryos, extra = {}, [], []
        for queue, name, path in queue_files(run):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o700 == 0o700:
                records = parse(path)
                assert records is not None, "complete (%o) but partial: %s" % (mode, path)
                complete[name] = (queue, path, records)
            else:
                assert mode & 0o700 == 0o600, "%s: mode %o" % (path, mode)
                embryos.append(path)
        for queue_id, (sender, rcpt, marker) in crasher.acked.items():
            assert queue_id in complete, "acknowledged %s is not in the queue" % queue_id
            queue, path, records = complete[queue_id]
            assert (R.FROM, sender.encode()) in records
            assert (R.RCPT, rcpt.encode()) in records
            assert (R.NORM, marker.encode()) in records
            cat = subprocess.run([POSTCAT, "-c", run.etc, "-q", queue_id],
                                 capture_output=True, text=True)
            assert cat.returncode == 0 and cat.stderr == "", cat.stderr
            assert "*** MESSAGE FILE END %s/%s ***" % (queue, queue_id) in cat.stdout
        extra = sorted(set(complete) - set(crasher.acked))
        # The stream did crash cleanup, and most messages still got through.
        assert crasher.kills >= MESSAGES_PER_SEED // 4
        assert len(crasher.acked) >= MESSAGES_PER_SEED // 4
        print("seed %d: %d messages, %d kills, %d acknowledged, %d committed but not "
              "acknowledged, %d embryos" % (seed, MESSAGES_PER_SEED, crasher.kills,
                                             len(crasher.acked), len(extra), len(embryos)))
    finally:
        run.cleanup()


# -- through sendmail and pickup ------------------------------------------------------------

PICKUP_SERVICES = SERVICES + "pickup unix n - n 60 1 pickup\n"
SENDMAIL_MESSAGES = 25


class Killer(threading.Thread):
    """Watches for a cleanup process with a queue file open (a transaction under way)
    and kills it, after a seeded pause, with a seeded probability, until stopped."""

    def __init__(self, run, seed):
        super().__init__(daemon=True)
        self.run_ = run
        self.rng = random.Random(seed)
        self.stopped = threading.Event()
        self.kills = 0
        self.seen = set()

    def busy_cleanup(self):
        for proc in self.run_.children("cleanup"):
            try:
                for fd in os.listdir("/proc/%d/fd" % proc.pid):
                    target = os.readlink("/proc/%d/fd/%s" % (proc.pid, fd))
                    if "/incoming/" in target or "/hold/" in target:
                        return proc.pid, target
            except OSError:
                continue
        return None

    def run(self):
        while not self.stopped.wait(0.0005):
            busy = self.busy_cleanup()
            if busy is None or busy in self.seen:
                continue
            self.seen.add(busy)
            if self.rng.random() < 0.5:
                time.sleep(self.rng.uniform(0, 0.003))
                try:
                    os.kill(busy[0], signal.SIGKILL)
                    self.kills += 1
                except ProcessLookupError:
                    pass


def sendmail(run, number):
    marker = "marker line of message %d" % number
    text = ("From: sender%d@example.com\nTo: rcpt%d@example.org\nSubject: %d\n\n%s\n"
            % (number, number, number, marker))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAIL_")}
    env["MAIL_CONFIG"] = run.etc
    proc = subprocess.run([candidate_path("sendmail"), "-t", "-i"], input=text.encode(),
                          capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return marker


@pytest.mark.skipif(not ROOT or not os.path.exists(POSTCAT),
                    reason="needs root and Debian's postcat")
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_kill_cleanup_under_pickup(seed):
    """`sendmail -t -i` submissions while cleanup processes are killed under pickup:
    pickup removes a maildrop file only after cleanup acknowledged its copy, so once
    the killing stops and pickup has emptied maildrop/, every message is whole in
    incoming/ (once, plus one copy for each cleanup that died between its commit and
    its answer), and every complete file is whole."""
    run = QueueMaster("", services=PICKUP_SERVICES)
    killer = None
    try:
        run.start()
        killer = Killer(run, seed)
        killer.start()
        markers = [sendmail(run, number) for number in range(SENDMAIL_MESSAGES)]
        killer.stopped.set()
        killer.join()
        maildrop = os.path.join(run.spool, "maildrop")
        pickup_socket = os.path.join(run.spool, "public", "pickup")

        def drained():
            if not os.listdir(maildrop):
                return True
            try:
                unix_trigger(pickup_socket, b"W")
            except OSError:
                pass
            return False
        assert wait_until(drained, timeout=60, interval=0.5), os.listdir(maildrop)
        run.stop()
        attempts = len(re.findall(r"postfix/pickup\[\d+\]: \w+: uid=", run.log()))

        found = {}
        for queue, name, path in queue_files(run):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o700 != 0o700:
                assert mode & 0o700 == 0o600, "%s: mode %o" % (path, mode)
                continue
            records = parse(path)
            assert records is not None, "complete (%o) but partial: %s" % (mode, path)
            for rec_type, payload in records:
                if rec_type == R.NORM and payload.startswith(b"marker line"):
                    found.setdefault(payload.decode(), []).append(name)
        for marker in markers:
            assert found.get(marker), "lost: %s" % marker
        # Each extra copy is one cleanup killed between its commit and its answer.
        duplicates = sum(len(names) - 1 for names in found.values())
        assert duplicates <= killer.kills
        print("seed %d: %d messages, %d kills, %d pickup attempts, %d duplicates" % (
            seed, SENDMAIL_MESSAGES, killer.kills, attempts, duplicates))
    finally:
        if killer is not None:
            killer.stopped.set()
        run.cleanup()

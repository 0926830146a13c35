#!/usr/bin/env python3
"""The queue, pyfix beside Debian's Postfix in one run: queue files committed per second
through the cleanup service, beside a plain write+fsync of the same disk.

    sudo .venv/bin/python bench/bench_queue.py [--messages N] [--rounds R] [--clients C]

A pyfix master and Debian's Postfix 3.7 master (both from tests/cleanup_oracle.py, each
on its own temporary config and queue directory under /tmp, with cleanup and no qmgr)
receive the same small message (about 1 KB: envelope, a Received: header like pickup's,
five headers, 12 body lines) N times over the cleanup protocol, from C client threads.
Each message is a complete cleanup transaction: connect, queue ID handshake, flags,
records, then the answer, which cleanup sends only after it has created, written,
fsync'ed and committed (fchmod 0700) the queue file; only status 0 counts.

The disk figure is the same work without any mail system: C threads each create a file
in a directory on the same file system, write as many bytes as one queue file, fsync
and close it. Rounds alternate pyfix, Postfix and the disk, and the median of each is
printed, with pyfix/Postfix and both against the disk (the fraction of the raw
write+fsync rate each one reaches). Needs root (Postfix's master refuses to run
otherwise) and Debian's postfix package.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from cleanup_oracle import (PostfixMaster, QueueMaster, message,  # noqa: E402
                            postfix_available)
from pyfix.queue import cleanup_user as cu  # noqa: E402
from pyfix.queue.cleanup_client import CleanupClient  # noqa: E402

HEADERS = ["From: Alice <alice@example.com>", "To: Bob <bob@example.org>",
           "Subject: queue benchmark", "Message-ID: <bench@example.com>",
           "Date: Wed, 25 Nov 2026 17:00:00 +0000"]
BODY = ["line %02d of the benchmark message, long enough to be a realistic line" % i
        for i in range(12)]


def records():
    return message(headers=HEADERS, body=BODY)


def submit(socket_path, recs):
    client = CleanupClient.connect(socket_path, 30, wait=False)
    with client:
        client.send_flags(cu.FLAG_MASK_EXTERNAL)
        for item in recs:
            client.put(*item)
        status, reason = client.finish()
    if status != 0:
        raise RuntimeError("cleanup status %d %s" % (status, reason))


def in_threads(clients, count, work):
    """Run work(index) count times spread over clients threads; seconds elapsed."""
    errors = []
    shares = [range(i, count, clients) for i in range(clients)]

    def worker(share):
        try:
            for index in share:
                work(index)
        except BaseException as exc:     # reported after the run
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def cleanup_rate(run, count, clients):
    recs = records()
    path = run.cleanup_socket()
    submit(path, recs)                  # a warm cleanup process, tables opened
    return count / in_threads(clients, count, lambda index: submit(path, recs))


def disk_rate(directory, size, count, clients):
    data = b"x" * size

    def one(index):
        path = os.path.join(directory, "f%d" % index)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    rate = count / in_threads(clients, count, one)
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    return rate


def queue_file_size(run):
    for folder, _, names in os.walk(os.path.join(run.spool, "incoming")):
        for name in names:
            return os.path.getsize(os.path.join(folder, name))
    return 1024


def clear_incoming(run):
    top = os.path.join(run.spool, "incoming")
    for folder, _, names in os.walk(top):
        for name in names:
            os.unlink(os.path.join(folder, name))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=1)
    args = parser.parse_args()
    if not postfix_available():
        sys.exit("bench_queue: needs root and Debian's postfix package")
    pyfix = postfix = None
    disk_dir = None
    try:
        postfix = PostfixMaster().start()
        pyfix = QueueMaster().start()
        disk_dir = tempfile.mkdtemp(prefix="bench-disk-", dir="/tmp")
        submit(pyfix.cleanup_socket(), records())
        size = queue_file_size(pyfix)
        rates = {"pyfix": [], "postfix": [], "disk": []}
        for _ in range(args.rounds):
            rates["pyfix"].append(cleanup_rate(pyfix, args.messages, args.clients))
            rates["postfix"].append(cleanup_rate(postfix, args.messages, args.clients))
            rates["disk"].append(disk_rate(disk_dir, size, args.messages, args.clients))
            clear_incoming(pyfix)
            clear_incoming(postfix)
    finally:
        for run in (pyfix, postfix):
            if run is not None:
                run.cleanup()
        if disk_dir:
            shutil.rmtree(disk_dir, ignore_errors=True)
    median = {key: statistics.median(values) for key, values in rates.items()}
    print("%d messages x %d rounds, %d client(s), queue file %d bytes; medians"
          % (args.messages, args.rounds, args.clients, size))
    print("%-34s %10s" % ("figure", "per second"))
    print("%-34s %10.1f" % ("pyfix cleanup: files committed", median["pyfix"]))
    print("%-34s %10.1f" % ("Postfix cleanup: files committed", median["postfix"]))
    print("%-34s %10.1f" % ("disk: create+write+fsync+close", median["disk"]))
    print("%-34s %10.2f" % ("ratio pyfix / Postfix", median["pyfix"] / median["postfix"]))
    print("%-34s %10.2f" % ("ratio pyfix / disk", median["pyfix"] / median["disk"]))
    print("%-34s %10.2f" % ("ratio Postfix / disk", median["postfix"] / median["disk"]))
    print("rounds: " + "; ".join("%s %s" % (key, " ".join("%.1f" % v for v in values))
                                 for key, values in rates.items()))


if __name__ == "__main__":
    main()

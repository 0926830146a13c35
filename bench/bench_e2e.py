#!/usr/bin/env python3
"""End to end, pyfix beside Debian's Postfix in one run: messages per second from
smtp-source through smtpd, cleanup, qmgr and smtp to smtp-sink, and the latency from the
end of DATA to the sink.

    sudo .venv/bin/python bench/bench_e2e.py [--messages N] [--sessions 1,10,50]
                                             [--latency N]

Each side is a whole system on loopback (tests/e2e_rig.py: smtpd on a free port, every
queue and delivery service, relayhost = Debian's smtp-sink on another port). For each
concurrency, Postfix's smtp-source sends N one-recipient messages over that many
parallel sessions; the clock runs from its start until the sink holds all N
transactions. Latency: single messages sent one after another with smtplib; for each,
the time from sending DATA (a one-line message: its end follows at once) until the sink
wrote the transaction (the dump file's modification time; same host, same clock);
median and 90th percentile.
Prints one line per figure with both values and pyfix/Postfix (for rates higher is
better, for latency lower is better). Needs root, Debian's postfix and smtp-sink.
"""

import argparse
import os
import smtplib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from e2e_rig import System, available                     # noqa: E402
from master_run import wait_until                         # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"


def sink_count(system):
    return len(os.listdir(system.sink.dump))


def rate(system, sessions, messages):
    before = sink_count(system)
    started = time.monotonic()
    subprocess.run([SMTP_SOURCE, "-s", str(sessions), "-m", str(messages),
                    "-f", "alice@example.com", "-t", "bob@example.org",
                    "127.0.0.1:%d" % system.port], check=True, capture_output=True,
                   timeout=900)
    if not wait_until(lambda: sink_count(system) >= before + messages, 900, 0.02):
        raise SystemExit("%s: %d of %d messages reached the sink"
                         % (system.side, sink_count(system) - before, messages))
    return messages / (time.monotonic() - started)


def latencies(system, count):
    out = []
    for _ in range(count):
        seen = set(os.listdir(system.sink.dump))
        with smtplib.SMTP("127.0.0.1", system.port, timeout=30) as client:
            client.ehlo("client.example.net")
            client.mail("alice@example.com")
            client.rcpt("bob@example.org")
            started = time.time()
            code, _ = client.data(b"From: <alice@example.com>\nSubject: latency\n\nHi.\n")
            if code != 250:
                raise SystemExit("%s: DATA answered %d" % (system.side, code))
        new = wait_until(lambda: set(os.listdir(system.sink.dump)) - seen, 60, 0.002)
        if not new:
            raise SystemExit("%s: a message did not reach the sink" % system.side)
        path = os.path.join(system.sink.dump, new.pop())
        out.append(os.stat(path).st_mtime - started)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--sessions", default="1,10,50")
    parser.add_argument("--latency", type=int, default=50)
    args = parser.parse_args()
    if not available() or os.geteuid() != 0:
        raise SystemExit("needs root, Debian's Postfix and smtp-sink")
    systems = [System(side).start() for side in ("postfix", "pyfix")]
    try:
        for sessions in [int(n) for n in args.sessions.split(",")]:
            values = [rate(system, sessions, args.messages) for system in systems]
            print("messages/s, %2d sessions:   postfix %7.1f  pyfix %7.1f  ratio %.2f"
                  % (sessions, values[0], values[1], values[1] / values[0]))
        samples = [latencies(system, args.latency) for system in systems]
        for name, figure in (("median", statistics.median),
                             ("90th pct", lambda s: statistics.quantiles(s, n=10)[-1])):
            values = [figure(sample) * 1000 for sample in samples]
            print("latency %-8s (ms):      postfix %7.1f  pyfix %7.1f  ratio %.2f"
                  % (name, values[0], values[1], values[1] / values[0]))
    finally:
        for system in systems:
            system.cleanup()


if __name__ == "__main__":
    main()

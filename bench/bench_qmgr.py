#!/usr/bin/env python3
"""qmgr(8), pyfix's beside Debian's in one run: how fast a full deferred queue drains.

    sudo .venv/bin/python bench/bench_qmgr.py [--messages N]

For each queue manager the test rig of tests/qmgr_rig.py is started (pyfix's master and
cleanup, Postfix's trivial-rewrite, bounce and smtp, smtp-sink on a loopback port) with
`defer_transports = smtp`: N messages are submitted and wait in deferred/. Then
`postqueue -f` (F A D I: the flush overrides defer_transports) starts the clock, which
stops when the last message is logged `removed`; every message must have reached the
sink. Prints both rates and pyfix/Postfix as a ratio. Needs root and Debian's postfix.
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from master_run import wait_until                                   # noqa: E402
from qmgr_rig import DEBIAN_QMGR, PYFIX_QMGR, Rig, rig_available   # noqa: E402

POSTQUEUE = os.path.join(os.path.dirname(sys.executable), "postqueue")


def drain_rate(qmgr, count):
    rig = Rig(qmgr=qmgr, main_cf_extra="defer_transports = smtp\n")
    try:
        rig.start_sink()
        rig.start()
        for n in range(count):
            rig.submit(rcpts=("bob%d@example.org" % (n % 5),))
        if not wait_until(lambda: len(rig.queue_ids("deferred")) == count, 300):
            raise SystemExit("%s: the messages did not reach deferred/" % qmgr)
        start = time.monotonic()
        subprocess.run([POSTQUEUE, "-c", rig.master.etc, "-f"], check=True)
        rig.wait_log(": removed", timeout=600, count=count)
        elapsed = time.monotonic() - start
        if not wait_until(lambda: len(rig.sink.messages()) >= count, 60):
            raise SystemExit("%s: messages missing at the sink" % qmgr)
        return count / elapsed
    finally:
        rig.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()
    if not rig_available():
        raise SystemExit("needs root, Debian's Postfix daemons and smtp-sink")
    ours = drain_rate(PYFIX_QMGR, args.messages)
    theirs = drain_rate(DEBIAN_QMGR, args.messages)
    print("deferred queue drain, %d messages: pyfix %.0f msg/s, Postfix %.0f msg/s, "
          "ratio %.2f" % (args.messages, ours, theirs, ours / theirs))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A test trigger server: appends every trigger it receives to the file named in argv."""

import sys

from pyfix.daemons.skeleton.server import run_daemon
from pyfix.daemons.skeleton.trigger import trigger_server_main


def record(data, server):
    with open(server.argv[0], "ab") as f:
        f.write(data + b"\n")


if __name__ == "__main__":
    sys.exit(run_daemon(lambda argv: trigger_server_main(argv, record), sys.argv))

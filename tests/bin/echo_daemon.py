#!/usr/bin/env python3
"""A test daemon master execs (not forks): echoes lines back, one client at a time.

It is built on pyfix's single-server skeleton, so it honours master's descriptor contract
like any Postfix daemon; `pid` answers with its process id, `whoami` with its uid, gid and
root directory, `wait` blocks until the client closes.
"""

import os
import sys

from pyfix.daemons.skeleton.server import run_daemon
from pyfix.daemons.skeleton.single import single_server_main


def serve(conn, server):
    reader = conn.makefile("rb")
    for line in reader:
        command = line.strip()
        if command == b"pid":
            reply = b"%d" % os.getpid()
        elif command == b"whoami":
            reply = b"%d %d %s" % (os.geteuid(), os.getegid(), os.getcwd().encode())
        elif command == b"uses":
            reply = b"%d" % server.use_count
        else:
            reply = command
        conn.sendall(reply + b"\n")
    reader.close()


if __name__ == "__main__":
    sys.exit(run_daemon(lambda argv: single_server_main(argv, serve), sys.argv))

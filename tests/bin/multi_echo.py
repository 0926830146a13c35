#!/usr/bin/env python3
"""A test multi server: answers each line with `<pid> <line>` on any number of connections."""

import os
import sys

from pyfix.daemons.skeleton.multi import multi_server_main
from pyfix.daemons.skeleton.server import run_daemon


def answer(conn, server):
    data = conn.recv(4096)
    if not data:
        server.disconnect(conn)
        return
    conn.sendall(b"%d %s" % (os.getpid(), data))


if __name__ == "__main__":
    sys.exit(run_daemon(lambda argv: multi_server_main(argv, answer), sys.argv))

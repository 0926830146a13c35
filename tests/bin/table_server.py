"""Small lookup servers for tests of tcp: and socketmap: tables.

    table_server.py tcp|socketmap inet|unix:/path

Listens on a free loopback port (its number is printed on the first line of stdout) or
on the given UNIX socket, and answers every connection until killed. Keys choose the
answer, so that one server exercises every kind of reply:

  tcp (tcp_table(5)):  notfound -> 500, temp -> 400, bad -> malformed line,
      status3 -> 300, long -> a line longer than 4096 bytes, close -> disconnect,
      partial -> text without newline then disconnect, badhex -> `200 a%zz`,
      empty -> `200 `, anything else -> `200 =<key>` (%XX-encoded).
  socketmap:  notfound -> NOTFOUND, temp/timeout/perm -> TEMP/TIMEOUT/PERM <reason>,
      weird -> an unknown status, okbare -> `OK` without a space, big -> a reply over
      100000 bytes, badformat -> not a netstring, close -> disconnect,
      anything else -> `OK <mapname>:<key>`.
"""

import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from pyfix.maps.dict_tcp import hex_quote, hex_unquote  # noqa: E402


def tcp_reply(key):
    if key == b"notfound":
        return b"500 no such key\n"
    if key == b"temp":
        return b"400 try%20again\n"
    if key == b"bad":
        return b"hello there\n"
    if key == b"status3":
        return b"300 what\n"
    if key == b"long":
        return b"200 " + b"a" * 5000 + b"\n"
    if key == b"close":
        return None
    if key == b"partial":
        return b"200 abc"
    if key == b"badhex":
        return b"200 a%zz\n"
    if key == b"empty":
        return b"200 \n"
    return b"200 " + hex_quote(b"=" + key) + b"\n"


def serve_tcp(conn):
    fp = conn.makefile("rwb")
    for line in fp:
        parts = line.rstrip(b"\n").split(b" ", 1)
        key = hex_unquote(parts[1]) if len(parts) == 2 else b""
        reply = tcp_reply(key)
        if reply is None:
            break
        fp.write(reply)
        fp.flush()
        if not reply.endswith(b"\n"):
            break
    fp.close()


def netstring(data):
    return b"%d:%s," % (len(data), data)


def read_netstring(fp):
    digits = b""
    while True:
        ch = fp.read(1)
        if not ch:
            return None
        if ch == b":":
            break
        digits += ch
    data = fp.read(int(digits))
    fp.read(1)
    return data


def sockmap_reply(request):
    name, _, key = request.partition(b" ")
    replies = {
        b"notfound": netstring(b"NOTFOUND "),
        b"temp": netstring(b"TEMP database is busy"),
        b"timeout": netstring(b"TIMEOUT too slow"),
        b"perm": netstring(b"PERM broken\x01config"),
        b"weird": netstring(b"HUH  what is this"),
        b"okbare": netstring(b"OK"),
        b"big": netstring(b"OK " + b"b" * 100001),
        b"badformat": b"12x",
        b"close": None,
    }
    if key in replies:
        return replies[key]
    return netstring(b"OK " + name + b":" + key)


def serve_sockmap(conn):
    fp = conn.makefile("rwb")
    while True:
        request = read_netstring(fp)
        if request is None:
            break
        reply = sockmap_reply(request)
        if reply is None:
            break
        fp.write(reply)
        fp.flush()
        if not reply.endswith(b","):
            break
    fp.close()


def main(argv):
    kind, where = argv[0], argv[1]
    if where.startswith("unix:"):
        path = where[5:]
        if os.path.exists(path):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        print(path, flush=True)
    else:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        print(listener.getsockname()[1], flush=True)
    listener.listen(16)
    handler = serve_tcp if kind == "tcp" else serve_sockmap
    while True:
        conn, _ = listener.accept()

        def run(conn=conn):
            try:
                handler(conn)
            except OSError:
                pass
            finally:
                conn.close()

        threading.Thread(target=run, daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1:])

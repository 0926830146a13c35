"""Debian's trivial-rewrite beside pyfix's: the oracle of the rewrite and resolve tests.

RewritePair starts Debian's Postfix master (tests/cleanup_oracle.py PostfixMaster: its
master.cf has `rewrite unix - - n - - trivial-rewrite`) and a pyfix master with the
same rewrite service, both on the same main.cf settings, and sends the same requests
to both private/rewrite sockets with a raw attribute-protocol client that keeps every
attribute of a reply, in order (a resolve reply holds `flags` twice).
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile

from cleanup_oracle import COMMON_MAIN_CF, PostfixMaster
from master_run import DEFAULT_MAIN_CF, MasterRun, wait_until
from pyfix.common import attr

POSTMAP = "/usr/sbin/postmap"
PYFIX_REWRITE_SERVICE = "rewrite unix - - n - - trivial-rewrite\n"
# What PostfixMaster's main.cf has and MasterRun's lacks, so that both see one config.
PYFIX_MAIN_CF = """\
inet_interfaces = loopback-only
alias_maps =
alias_database =
"""
_LOG_LINE = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ postfix/trivial-rewrite\[\d+\]: (.*)$",
                       re.M)


class RawClient:
    """One connection to a private/rewrite socket."""

    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.announcement = self.read_list()

    def _field(self):
        while b"\0" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("server closed the connection")
            self.buf += data
        field, _, self.buf = self.buf.partition(b"\0")
        return field.decode("utf-8", "surrogateescape")

    def read_list(self):
        """Every (name, value) of one attribute list."""
        out = []
        while True:
            name = self._field()
            if not name:
                return out
            out.append((name, self._field()))

    def ask(self, attrs):
        self.sock.sendall(attr.print0(attrs))
        return self.read_list()

    def rewrite(self, rule, address):
        return self.ask([("request", "rewrite"), ("rule", rule), ("address", address)])

    def resolve(self, address, sender="", klass="resolve"):
        return self.ask([("request", klass), ("sender", sender), ("address", address)])

    def close(self):
        self.sock.close()


class PyfixRewrite(MasterRun):
    def __init__(self, main_cf_extra, service=PYFIX_REWRITE_SERVICE):
        super().__init__(service, COMMON_MAIN_CF + main_cf_extra)
        self.config_dir = self.etc
        self.name = "pyfix"

    def write_main_cf(self, extra=""):
        base = DEFAULT_MAIN_CF.format(root=self.root).replace("inet_interfaces = 127.0.0.1\n",
                                                              "")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(base + PYFIX_MAIN_CF + extra)

    def socket_path(self):
        return os.path.join(self.spool, "private", "rewrite")


class PostfixRewrite(PostfixMaster):
    def socket_path(self):
        return os.path.join(self.spool, "private", "rewrite")


class RewritePair:
    """Both masters on one main.cf; ask() sends a request to both."""

    def __init__(self, main_cf_extra=""):
        self.pyfix = PyfixRewrite(main_cf_extra)
        self.postfix = PostfixRewrite(main_cf_extra)
        self.clients = {}

    def start(self):
        self.postfix.start()
        self.pyfix.start()
        for side in (self.pyfix, self.postfix):
            assert wait_until(lambda: os.path.exists(side.socket_path()), 10)
        return self

    def client(self, side):
        if side.name not in self.clients:
            self.clients[side.name] = RawClient(side.socket_path())
        return self.clients[side.name]

    def ask(self, method, *args, **kwargs):
        """(pyfix answer, Postfix answer)."""
        return tuple(getattr(self.client(side), method)(*args, **kwargs)
                     for side in (self.pyfix, self.postfix))

    def ask_both(self, method, *args, **kwargs):
        """ask(), but a side that closed the connection answers "EOF" (and the next
        request gets a new connection)."""
        answers = []
        for side in (self.pyfix, self.postfix):
            try:
                answers.append(getattr(self.client(side), method)(*args, **kwargs))
            except (EOFError, OSError):
                self.clients.pop(side.name).close()
                answers.append("EOF")
        return tuple(answers)

    def reconnect(self):
        for client in self.clients.values():
            client.close()
        self.clients = {}

    def stop(self):
        self.reconnect()
        self.pyfix.cleanup()
        self.postfix.cleanup()


def rewrite_log(side):
    """The messages trivial-rewrite logged, temp paths masked."""
    return [re.sub(r"/tmp/pyfix-(master|postfix)-\w+/", "ROOT/", line)
            for line in _LOG_LINE.findall(side.log())]


class TableDir:
    """A directory of lookup tables both sides read (mode 0755: trivial-rewrite runs as
    the postfix user)."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="pyfix-tables-", dir="/tmp")
        os.chmod(self.root, 0o755)
        # postmap wants a main.cf to read.
        self.config_dir = os.path.join(self.root, "cf")
        os.mkdir(self.config_dir)
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            f.write("compatibility_level = 3.7\n")

    def write(self, name, text, postmap=None):
        """Write a table source; with postmap ("hash", "cdb", ...) build it with
        Debian's postmap. Returns `type:path` (or the path for a plain file)."""
        path = os.path.join(self.root, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        if postmap:
            subprocess.run([POSTMAP, "-c", self.config_dir, "%s:%s" % (postmap, path)],
                           check=True)
            return "%s:%s" % (postmap, path)
        return path

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)

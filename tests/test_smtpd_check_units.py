"""The pure parts of the access policy, and the policy client's connection handling
(daemons/smtpd/check): DSN fixing, DNS list query names and reply patterns, host
lists, the restriction list parser and the policy protocol's limits."""

import socket
import threading

import pytest

from master_run import free_port
from pyfix.common.config import Config, MainCf
from pyfix.daemons.smtpd.check.core import smtpd_dsn_fix
from pyfix.common.strings import unescape
from pyfix.daemons.smtpd.check.dnsxl import _byte_pattern, _matches, reverse_query
from pyfix.daemons.smtpd.check.mynetworks import NamadrList
from pyfix.daemons.smtpd.check.policy import PolicyClient


@pytest.mark.parametrize("status, reply_class, expected", [
    ("5.1.1", "Sender address", "4.1.7"), ("5.1.1", "Recipient address", "4.1.1"),
    ("4.1.2", "Sender address", "4.1.8"), ("5.1.8", "Recipient address", "4.1.2"),
    ("5.1.9", "Sender address", "4.1.0"), ("5.1.1", "Helo command", "4.0.0"),
    ("5.7.1", "Sender address", "5.7.1"),
])
def test_dsn_fix(status, reply_class, expected):
    # The caller puts the reply code's class digit back in front.
    assert smtpd_dsn_fix(status, reply_class) == expected


def test_reverse_query():
    assert reverse_query("192.0.2.10") == "10.2.0.192."
    assert reverse_query("2001:db8::1") == "1." + "0." * 23 + "8.b.d.0.1.0.0.2."


@pytest.mark.parametrize("pattern, address, expected", [
    ("127.0.0.2", "127.0.0.2", True), ("127.0.0.2", "127.0.0.3", False),
    ("127.0.0.[2..4]", "127.0.0.3", True), ("127.0.0.[2..4;10]", "127.0.0.10", True),
    ("127.0.0.[2..4;10]", "127.0.0.5", False),
])
def test_reply_patterns(pattern, address, expected):
    assert _matches(_byte_pattern(pattern), address) is expected


def test_unescape():
    assert unescape(r"\t\40a\\b\101") == "\t a\\bA"
    assert unescape("x\\") == "x"                 # a trailing backslash is dropped
    assert unescape(r"\777") == "\xff"              # octal wraps to one byte


@pytest.mark.parametrize("name, addr, expected", [
    ("x.example", "192.0.2.5", True), ("x.example", "192.0.2.16", False),
    ("host.trusted.example", "203.0.113.1", True), ("x.example", "2001:db8:1::9", True),
    ("x.example", "10.9.9.9", False), ("x.example", "10.1.1.1", True),
    ("x.example", "192.0.2.77", True),
])
def test_namadr_list(name, addr, expected):
    networks = NamadrList("mynetworks", "192.0.2.0/28 [2001:db8:1::]/48 !10.9.9.9 "
                          "10.0.0.0/8 .trusted.example [192.0.2.77]")
    assert networks.match(name, addr) is expected


class CountingServer:
    """A policy server that counts its connections and answers DUNNO."""

    def __init__(self):
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    @staticmethod
    def _session(conn):
        with conn, conn.makefile("rb") as reader:
            while True:
                line = reader.readline()
                if not line:
                    return
                if line == b"\n":
                    conn.sendall(b"action=DUNNO\n\n")


def test_policy_request_limit():
    server = CountingServer()
    try:
        config = Config(MainCf(entries={}))
        client = PolicyClient(config, "{inet:127.0.0.1:%d, request_limit=2}" % server.port)
        answers = [client.request([("request", "smtpd_access_policy")]) for _ in range(5)]
        client.close()
        assert answers == ["DUNNO"] * 5
        assert server.connections == 3
    finally:
        server.listener.close()

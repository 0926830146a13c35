"""check_policy_service (the SMTPD policy delegation protocol) against Debian's Postfix:
one policy server on loopback answers both Postfix's smtpd and pyfix's SmtpdCheck; the
replies, the log lines and the requests themselves must be the same."""

import os
import socket
import threading

import pytest

from smtpd_check_oracle import CheckOracle, Client, compare, postfix_available
from master_run import free_port, wait_until

pytestmark = pytest.mark.skipif(not postfix_available(),
                                reason="needs root and Debian's Postfix")

ACTIONS = {
    "ok": "OK", "reject": "REJECT", "text": "REJECT go away", "defer": "DEFER busy",
    "code": "521 5.7.0 not here", "dunno": "DUNNO", "warn": "WARN noted",
    "prepend": "PREPEND X-Policy: seen", "hold": "HOLD", "class": "strict",
    "dip": "DEFER_IF_PERMIT later", "empty": "", "bad": "FOO",
}


class PolicyServer:
    """A policy server: the recipient's local part chooses the action; `silent` never
    answers, `noaction` answers without an action. On TCP, or on a UNIX socket."""

    def __init__(self, path=None):
        self.port = free_port()
        if path is None:
            self.listener = socket.create_server(("127.0.0.1", self.port))
        else:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(path)
            self.listener.listen(5)
        self.requests = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.listener.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        reader = conn.makefile("rb")
        with conn:
            while True:
                request = {}
                while True:
                    line = reader.readline()
                    if not line:
                        return
                    line = line.rstrip(b"\n").decode()
                    if not line:
                        break
                    name, _, value = line.partition("=")
                    request[name] = value
                self.requests.append(request)
                local = request.get("recipient", "").partition("@")[0]
                if local == "silent":
                    continue
                if local == "noaction":
                    conn.sendall(b"foo=bar\n\n")
                    continue
                action = ACTIONS.get(local, "DUNNO")
                conn.sendall(("action=%s\n\n" % action).encode())

    def close(self):
        self.stop = True
        self.listener.close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def policy():
    server = PolicyServer()
    refused = free_port()
    main_cf = """\
smtpd_restriction_classes = strict
strict = reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks,
    check_policy_service {{inet:127.0.0.1:{port}, timeout=1s, try_limit=1,
        {{default_action = DEFER policy timeout}}}},
    check_policy_service inet:127.0.0.1:{refused}, reject_unauth_destination
smtpd_policy_service_try_limit = 1
smtpd_policy_service_default_action = DUNNO
smtpd_policy_service_policy_context = pyfix-test
""".format(port=server.port, refused=refused)
    with CheckOracle(main_cf) as oracle:
        oracle.server = server
        yield oracle
    server.close()


def assert_same(oracle, client, commands):
    pf_replies, py_replies, pf_log, py_log = compare(oracle, client, commands)
    assert py_replies == pf_replies
    assert py_log == pf_log
    return pf_replies


@pytest.mark.parametrize("local", sorted(ACTIONS) + ["unlisted", "noaction", "silent"])
def test_policy_actions(policy, local):
    assert_same(policy, Client(helo="helo.example.net"),
                ["MAIL FROM:<alice@example.org>", "RCPT TO:<%s@elsewhere.example>" % local,
                 "RCPT TO:<%s@mx.example.com>" % local])


def test_policy_request_attributes(policy):
    """Postfix's request and pyfix's are the same attributes in the same order."""
    policy.server.requests.clear()
    commands = ["MAIL FROM:<alice@example.org> SIZE=1000", "RCPT TO:<ok@mx.example.com>"]
    compare(policy, Client(helo="helo.example.net"), commands)
    # A loaded machine can answer the session (1s policy timeout) before the server
    # thread has filed the request it read.
    assert wait_until(lambda: len(policy.server.requests) >= 2, 10)
    assert len(policy.server.requests) == 2
    postfix, pyfix = policy.server.requests
    varying = ("client_port", "instance", "server_port", "server_address", "queue_id",
               "size")
    assert list(postfix) == list(pyfix)
    assert {k: v for k, v in postfix.items() if k not in varying} == \
        {k: v for k, v in pyfix.items() if k not in varying}


@pytest.fixture(scope="module")
def unix_policy():
    main_cf = """\
smtpd_relay_restrictions = permit_mynetworks, check_policy_service unix:private/policy-test,
    reject_unauth_destination
"""
    with CheckOracle(main_cf) as oracle:
        path = os.path.join(oracle.postfix.spool, "private", "policy-test")
        server = PolicyServer(path)
        os.chmod(path, 0o666)       # Postfix's smtpd runs as mail_owner
        yield oracle
        server.close()


@pytest.mark.parametrize("local", ["ok", "text", "code", "dunno", "hold"])
def test_policy_on_unix_socket(unix_policy, local):
    """`unix:private/...` names a socket under the queue directory."""
    assert_same(unix_policy, Client(helo="helo.example.net"),
                ["MAIL FROM:<alice@example.org>", "RCPT TO:<%s@elsewhere.example>" % local])

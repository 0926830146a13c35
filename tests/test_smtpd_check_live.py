"""The access policy end to end: the sessions of test_smtpd_check.py played over TCP
against Debian's Postfix and against pyfix's own master running pyfix's smtpd
(daemons/smtpd with daemons/smtpd/check) and trivial-rewrite, with the same main.cf
(tests/smtp_oracle.py SmtpPair). Replies and the access-decision log lines must match.
"""

import os
import re
import shutil
import tempfile

import pytest

import test_smtpd_check as sessions
from smtp_oracle import SmtpPair, postfix_available

pytestmark = pytest.mark.skipif(not postfix_available(),
                                reason="needs root and Debian's Postfix")

BASE = """\
smtpd_authorized_xclient_hosts = 127.0.0.1
mynetworks = 10.0.0.0/8
smtpd_client_event_limit_exceptions = 127.0.0.0/8
"""
_DECISION = re.compile(r"^smtpd: (QUEUEID|NOQUEUE): (reject|reject_warning|warn|info|hold|"
                       r"discard|filter|redirect|bcc|permit): |^smtpd: warning: ")


def _pair(main_cf, tables=None):
    directory = tempfile.mkdtemp(prefix="pyfix-check-tables-", dir="/tmp")
    os.chmod(directory, 0o755)
    for name, body in (tables or {}).items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(body)
    pair = SmtpPair(BASE + main_cf.replace("{etc}", directory))
    pair.tables = directory
    return pair


@pytest.fixture(scope="module")
def stock():
    pair = _pair("")
    try:
        pair.start()
        yield pair
    finally:
        pair.cleanup()
        shutil.rmtree(pair.tables, ignore_errors=True)


@pytest.fixture(scope="module")
def access():
    tables = {"clients": sessions.CLIENTS, "helos": sessions.HELOS,
              "senders": sessions.SENDERS, "recipients": sessions.RECIPIENTS,
              "local": "bob x\n"}
    pair = _pair(sessions.ACCESS_MAIN_CF + "local_recipient_maps = texthash:{etc}/local\n",
                 tables)
    try:
        pair.start()
        yield pair
    finally:
        pair.cleanup()
        shutil.rmtree(pair.tables, ignore_errors=True)


def script(client, commands):
    return ["EHLO oracle.test", client.xclient()] + list(commands) + ["QUIT"]


def assert_same(pair, client, commands):
    (pf_replies, pf_log), (py_replies, py_log) = pair.both_logged(script(client, commands))
    assert py_replies == pf_replies
    assert [line for line in py_log if _DECISION.match(line)] == \
        [line for line in pf_log if _DECISION.match(line)]
    return pf_replies


@pytest.mark.parametrize("address", sessions.RELAY_FORMS + [
    "a b@elsewhere.example",
    "b@élsewhere.example",
    "<victim@elsewhere.example>",
    "victim@elsewhere.example>", "\\victim@elsewhere.example"])
def test_no_open_relay(stock, address):
    replies = assert_same(stock, sessions.OUTSIDE, sessions.rcpts(address))
    assert not replies[4].startswith("2"), replies


def test_mynetworks_may_relay(stock):
    replies = assert_same(stock, sessions.INSIDE, sessions.rcpts("victim@elsewhere.example"))
    assert replies[4].startswith("250")


@pytest.mark.parametrize("sender", [
    "spammer@example.org", "x@example.com", "", "held@example.org", "dropped@example.org",
    "filtered@example.org", "redirected@example.org", "bcc@example.org",
    "prepended@example.org", "strict@example.org", "friend@example.org", "dip@example.org",
    "dir@example.org", "unknown@example.org", "dsn@example.org",
])
def test_sender_access(access, sender):
    assert_same(access, sessions.OUTSIDE, ["MAIL FROM:<%s>" % sender,
                                           "RCPT TO:<bob@mx.example.com>",
                                           "RCPT TO:<x@elsewhere.example>"])


@pytest.mark.parametrize("name, addr", [("blocked.example.net", "192.0.2.20"),
                                        ("texted.example.net", "192.0.2.22"),
                                        ("warn.example.net", "203.0.113.6")])
def test_client_access(access, name, addr):
    assert_same(access, sessions.Client(name=name, addr=addr),
                sessions.rcpts("bob@mx.example.com", "nobody@mx.example.com"))


@pytest.fixture(scope="module")
def early():
    pair = _pair("smtpd_delay_reject = no\n"
                 "smtpd_client_restrictions = check_client_access inline:{ {127.0.0.1 = "
                 "REJECT go away} }\n")
    try:
        pair.start()
        yield pair
    finally:
        pair.cleanup()
        shutil.rmtree(pair.tables, ignore_errors=True)


def test_client_rejected_at_connect(early):
    """smtpd_delay_reject = no: the real client is rejected at connect time."""
    script = ["EHLO oracle.test", "MAIL FROM:<a@example.org>", "RCPT TO:<b@mx.example.com>",
              "QUIT"]
    (pf_replies, pf_log), (py_replies, py_log) = early.both_logged(script)
    assert py_replies == pf_replies
    assert [line for line in py_log if _DECISION.match(line)] == \
        [line for line in pf_log if _DECISION.match(line)]

"""anvil(8) and smtpd's client limits against Debian's Postfix: the connection count
and rate limits (421), the message and recipient rate limits (450), the exemption of
smtpd_client_event_limit_exceptions; replies and smtpd log lines must match.
"""

import socket

import pytest

from smtp_oracle import SmtpPair, postfix_available

pytestmark = pytest.mark.skipif(not postfix_available(),
                                reason="needs root and Debian's Postfix")

LIMITS = """\
mynetworks = 192.0.2.0/24
smtpd_client_connection_count_limit = 1
smtpd_client_message_rate_limit = 2
smtpd_client_recipient_rate_limit = 3
"""


@pytest.fixture(scope="module")
def pair():
    p = SmtpPair(LIMITS).start()
    yield p
    p.cleanup()


@pytest.fixture(scope="module")
def rate_pair():
    p = SmtpPair("mynetworks = 192.0.2.0/24\nsmtpd_client_connection_rate_limit = 2\n").start()
    yield p
    p.cleanup()


def compare_each(pair, script, hold=False):
    """Play script on both sides; with hold, while another session of the same client
    is open (and idle after its greeting)."""
    results = []
    for side in pair.sides():
        held = None
        if hold:
            held = socket.create_connection(("127.0.0.1", side.port), timeout=10)
            held.recv(1024)
        try:
            results.append(one_side(pair, side, script))
        finally:
            if held is not None:
                held.close()
    (p_replies, p_log), (y_replies, y_log) = results
    assert y_replies == p_replies
    assert y_log == p_log
    return p_replies


def one_side(pair, side, script):
    from smtp_oracle import mask, mask_log, play, wait_disconnect
    start = len(side.log())
    replies = play(side.port, script)
    text = wait_disconnect(side, start)
    return mask(replies), mask_log(text[start:])


def test_connection_count_limit(pair):
    replies = compare_each(pair, ["HELO x", "QUIT"], hold=True)
    assert replies[0].startswith("421 4.7.0 mx.example.com Error: too many connections")


def test_message_rate_limit(pair):
    replies = compare_each(pair, ["HELO x", "MAIL FROM:<a@example.com>", "RSET",
                                  "MAIL FROM:<a@example.com>", "RSET",
                                  "MAIL FROM:<a@example.com>", "QUIT"])
    assert replies[-2] == "450 4.7.1 Error: too much mail from 127.0.0.1"


def test_recipient_rate_limit(pair):
    replies = compare_each(pair, ["HELO x", "VRFY root", "VRFY root", "VRFY root",
                                  "VRFY root", "QUIT"])
    assert replies[-2] == "450 4.7.1 Error: too many recipients from 127.0.0.1"


def test_connection_rate_limit(rate_pair):
    for _ in range(2):
        compare_each(rate_pair, ["QUIT"])
    replies = compare_each(rate_pair, ["QUIT"])
    assert replies[0].startswith("421 4.7.0 mx.example.com Error: too many connections")

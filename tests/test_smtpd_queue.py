"""What smtpd hands to cleanup: the queue file of a message received over SMTP by
Debian's Postfix and by pyfix, as Debian's postcat prints it (envelope records, the
Received: header, the content), must be the same once queue IDs, times, dates and the
client's port are masked.
"""

import re

import pytest

from cleanup_oracle import find_queue_file, normalize_postcat, postcat
from smtp_oracle import SmtpPair, play, postfix_available

pytestmark = pytest.mark.skipif(not postfix_available(),
                                reason="needs root and Debian's Postfix")


@pytest.fixture(scope="module")
def pair():
    p = SmtpPair("smtpd_client_port_logging = no\n").start()
    yield p
    p.cleanup()


def queued(side, script):
    replies = play(side.port, script)
    ids = [m.group(1) for r in replies for m in [re.search(r"queued as (\w+)", r)] if m]
    assert ids, replies
    return ids[-1]


_MASKS = (
    (re.compile(r"^(message_arrival_time|create_time): .*$", re.M), r"\1: TIME"),
    (re.compile(r"\b(log_client_port|client_port|server_port)=\d+"), r"\1=PORT"),
    (re.compile(r"\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(\w+\)"), "DATE"),
    (re.compile(r"^(\*\*\* ENVELOPE RECORDS) .*$", re.M), r"\1"),
    (re.compile(r"/tmp/pyfix-(master|postfix)-\w+/"), "ROOT/"),
)


def queue_file_text(side, queue_id):
    queue, path = find_queue_file(side, queue_id)
    assert path, "no queue file %s" % queue_id
    result = postcat(side, queue_id, ("-q", "-v"))
    text = normalize_postcat(result.stdout, queue_id)
    for regex, repl in _MASKS:
        text = regex.sub(repl, text)
    # postcat -v shows record offsets and lengths, which follow the values masked above.
    return [line for line in text.splitlines() if "offset" not in line]


def compare_queue_files(pair, script):
    texts = [queue_file_text(side, queued(side, script)) for side in pair.sides()]
    assert texts[1] == texts[0]
    return texts[0]


MSG = b"Subject: test\r\nFrom: <alice@example.com>\r\n\r\nbody line\r\n..dot\r\n.\r\n"


def test_esmtp_one_recipient(pair):
    text = compare_queue_files(pair, ["EHLO client.example.com",
                                      "MAIL FROM:<alice@example.com>",
                                      "RCPT TO:<root@mx.example.com>", "DATA", ("data", MSG),
                                      "QUIT"])
    assert "regular_text: Received: from client.example.com (localhost [127.0.0.1])" in text


def test_smtp_two_recipients_dsn(pair):
    compare_queue_files(pair, ["HELO client", "MAIL FROM:<alice@example.com>",
                               "RCPT TO:<root@mx.example.com>",
                               "RCPT TO:<postmaster@mx.example.com>", "DATA", ("data", MSG),
                               "QUIT"])
    compare_queue_files(pair, ["EHLO c", "MAIL FROM:<a@example.com> RET=HDRS ENVID=x+2By "
                               "BODY=8BITMIME", "RCPT TO:<root@mx.example.com> "
                               "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;ROOT+40mx.example.com",
                               "DATA", ("data", MSG), "QUIT"])


def test_bdat_and_long_lines(pair):
    body = b"Subject: chunks\r\n\r\n" + b"x" * 5000 + b"\r\nend\r\n"
    compare_queue_files(pair, ["EHLO c", "MAIL FROM:<>", "RCPT TO:<root@mx.example.com>",
                               ("send", b"BDAT %d\r\n" % 10 + body[:10], 1),
                               ("send", b"BDAT %d LAST\r\n" % (len(body) - 10) + body[10:],
                                1), "QUIT"])
    compare_queue_files(pair, ["EHLO c", "MAIL FROM:<a@example.com>",
                               "RCPT TO:<root@mx.example.com>", "DATA",
                               ("data", b"From someone\r\n  folded start\r\n\r\n"
                                + b"y" * 4500 + b"\r\n.\r\n"), "QUIT"])

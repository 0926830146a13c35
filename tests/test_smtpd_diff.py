"""Differential SMTP sessions: the same script against Debian's Postfix smtpd and
pyfix's smtpd with the same main.cf; the replies (codes, enhanced status codes, texts)
and the smtpd log lines must be the same, queue IDs masked.

The default configuration: the client (127.0.0.1) is in mynetworks, so mail is
accepted; `limits` lowers every limit and moves the client out of mynetworks.
"""

import pytest

from smtp_oracle import SmtpPair, postfix_available

pytestmark = pytest.mark.skipif(not postfix_available(),
                                reason="needs root and Debian's Postfix")

MSG = ("data", b"Subject: test\r\n\r\nbody\r\n.\r\n")
EHLO = "EHLO client.example.com"
FROM = "MAIL FROM:<alice@example.com>"
TO = "RCPT TO:<root@mx.example.com>"


@pytest.fixture(scope="module")
def pair():
    p = SmtpPair().start()
    yield p
    p.cleanup()


LIMITS_CF = """\
message_size_limit = 2000
smtpd_recipient_limit = 2
smtpd_recipient_overshoot_limit = 1
smtpd_hard_error_limit = 4
smtpd_soft_error_limit = 2
smtpd_error_sleep_time = 0
smtpd_junk_command_limit = 3
smtpd_timeout = 2s
line_length_limit = 600
smtpd_discard_ehlo_keywords = dsn, chunking, vrfy
smtpd_forbid_bare_newline = reject
smtpd_forbid_bare_newline_exclusions =
mynetworks = 192.0.2.0/24
disable_vrfy_command = yes
smtpd_helo_required = yes
smtpd_delay_open_until_valid_rcpt = no
"""


@pytest.fixture(scope="module")
def limits():
    p = SmtpPair(LIMITS_CF).start()
    yield p
    p.cleanup()


def compare(pair, script):
    (p_replies, p_log), (y_replies, y_log) = pair.both_logged(script)
    assert y_replies == p_replies
    assert y_log == p_log
    return p_replies


SESSIONS = {
    "esmtp_delivery": [EHLO, FROM, TO, "DATA", MSG, "QUIT"],
    "smtp_delivery": ["HELO client.example.com", FROM, TO, "DATA", MSG, "QUIT"],
    "two_transactions": [EHLO, FROM, TO, "DATA", MSG, FROM, TO, "RCPT TO:<postmaster>",
                         "DATA", MSG, "QUIT"],
    "helo_syntax": ["HELO", "EHLO", "HELO two words here", "EHLO a<b>c", "QUIT"],
    "unknown_and_empty": ["FOO bar", "", "   ", "XYZZY", "QUIT"],
    "mail_without_helo": [FROM, TO, "QUIT"],
    "nested_mail": [EHLO, FROM, FROM, "QUIT"],
    "rcpt_without_mail": [EHLO, TO, "DATA", "QUIT"],
    "data_errors": [EHLO, "DATA", FROM, "DATA", TO, "DATA extra", "QUIT"],
    "mail_syntax": [EHLO, "MAIL", "MAIL FROM", "MAIL TO:<a@b>", "MAIL FROM:<a@b",
                    "MAIL FROM:<a@b> <c@d>", "MAIL FROM:a@b", "QUIT"],
    "rcpt_syntax": [EHLO, FROM, "RCPT", "RCPT TO", "RCPT FROM:<a@b>", "RCPT TO:<>",
                    "RCPT TO:<a@b", "RCPT TO:<a@b> <c@d>", "QUIT"],
    "null_sender": [EHLO, "MAIL FROM:<>", TO, "DATA", MSG, "QUIT"],
    "size_param": [EHLO, "MAIL FROM:<a@example.com> SIZE=abc",
                   "MAIL FROM:<a@example.com> SIZE=99999999999", "RSET",
                   "MAIL FROM:<a@example.com> SIZE=1000", "QUIT"],
    "size_lingers": [EHLO, "MAIL FROM:<a@example.com> SIZE=99999999999",
                     "MAIL FROM:<a@example.com>", "QUIT"],
    "body_params": [EHLO, "MAIL FROM:<a@example.com> BODY=8BITMIME", TO, "RSET",
                    "MAIL FROM:<a@example.com> BODY=7BIT", "RSET",
                    "MAIL FROM:<a@example.com> BODY=BINARYMIME", "QUIT"],
    "unsupported_option": [EHLO, "MAIL FROM:<a@example.com> FOO=bar", "QUIT"],
    "dsn_mail": [EHLO, "MAIL FROM:<a@example.com> RET=HDRS ENVID=abc+2Bdef", TO, "DATA",
                 MSG, "MAIL FROM:<a@example.com> RET=FOO", "MAIL FROM:<a@example.com> "
                 "RET=FULL RET=HDRS", "MAIL FROM:<a@example.com> ENVID=a+zz",
                 "QUIT"],
    "dsn_rcpt": [EHLO, FROM, "RCPT TO:<root@mx.example.com> NOTIFY=SUCCESS,FAILURE,DELAY",
                 "RCPT TO:<root@mx.example.com> NOTIFY=NEVER ORCPT=rfc822;root+40x",
                 "RCPT TO:<root@mx.example.com> NOTIFY=NEVER,SUCCESS",
                 "RCPT TO:<root@mx.example.com> NOTIFY=BOGUS",
                 "RCPT TO:<root@mx.example.com> ORCPT=rfc822",
                 "RCPT TO:<root@mx.example.com> ORCPT=;x",
                 "RCPT TO:<root@mx.example.com> XYZ=1", "QUIT"],
    "two_recipients": [EHLO, FROM, TO, "RCPT TO:<postmaster@mx.example.com>", "DATA",
                       MSG, "QUIT"],
    "unknown_user": [EHLO, FROM, "RCPT TO:<nosuchuser@mx.example.com>", "DATA", "QUIT"],
    "vrfy": [EHLO, "VRFY", "VRFY root", "VRFY <root@mx.example.com>",
             "VRFY nosuchuser@mx.example.com", "VRFY <>", "QUIT"],
    "etrn": [EHLO, "ETRN", "ETRN a b", "ETRN bad..domain", "ETRN example.com",
             "ETRN @example.com", "ETRN [1.2.3.4]", FROM, "ETRN example.com", "QUIT"],
    "rset_noop": ["RSET x", "RSET", "NOOP", "NOOP anything", EHLO, FROM, "RSET", TO,
                  "QUIT"],
    "quit_with_args": ["QUIT now"],
    "pipelining_ehlo": [("send", b"EHLO x\r\nMAIL FROM:<a@example.com>\r\n"
                         b"RCPT TO:<root@mx.example.com>\r\nDATA\r\n", 4), MSG, "QUIT"],
    "pipelining_helo": [("send", b"HELO x\r\nMAIL FROM:<a@example.com>\r\n"
                         b"RCPT TO:<root@mx.example.com>\r\n", 3), "QUIT"],
    "pipelining_after_data": [EHLO, FROM, TO, ("send", b"DATA\r\nSubject: x\r\n\r\nhi\r\n"
                                               b".\r\nQUIT\r\n", 3)],
    "forbidden_http": ["GET / HTTP/1.0"],
    "header_as_command": [EHLO, "Subject: hello"],
    "lowercase_bogus": ["ehlo x", "mail from:<a@example.com>", "rcpt to:<root@mx.example.com>",
                        "data", MSG, "quit"],
    "dot_stuffing": [EHLO, FROM, TO, "DATA",
                     ("data", b"Subject: dots\r\n\r\n..leading\r\n.\r\n"), "QUIT"],
    "from_line": [EHLO, FROM, TO, "DATA",
                  ("data", b"From alice Mon Jan 1\r\nSubject: x\r\n\r\nb\r\n.\r\n"), "QUIT"],
    "long_line_data": [EHLO, FROM, TO, "DATA",
                       ("data", b"Subject: x\r\n\r\n" + b"y" * 5000 + b"\r\n.\r\n"), "QUIT"],
    "long_command": [EHLO, "NOOP " + "z" * 3000, "QUIT"],
    "bdat_single": [EHLO, FROM, TO, ("send", b"BDAT 26 LAST\r\nSubject: x\r\n\r\nbody here\r\n",
                                     1), "QUIT"],
    "bdat_chunks": [EHLO, FROM, TO, ("send", b"BDAT 12\r\nSubject: x\r\n", 1),
                    ("send", b"BDAT 7\r\n\r\nbody\r\n", 1), ("send", b"BDAT 0 LAST\r\n", 1),
                    "QUIT"],
    "bdat_errors": [EHLO, ("send", b"BDAT 5\r\nhello", 1), FROM,
                    ("send", b"BDAT 5 LAST\r\nhello", 1), FROM, TO, "BDAT", "BDAT x",
                    "BDAT 1 NOTLAST", ("send", b"BDAT 0\r\n", 1), "QUIT"],
    "bdat_then_data": [EHLO, FROM, TO, ("send", b"BDAT 3\r\nab\n", 1), "DATA", FROM,
                       "RCPT TO:<x@y>", ("send", b"BDAT 2 LAST\r\nc\n", 1), "QUIT"],
    "xclient_unauthorized": [EHLO, "XCLIENT NAME=spoofed.example", "XCLIENT", "QUIT"],
    "xforward_unauthorized": [EHLO, "XFORWARD ADDR=1.2.3.4", "QUIT"],
    "auth_disabled": [EHLO, "AUTH PLAIN AGFsaWNlAHNlY3JldA==", "QUIT"],
    "starttls_not_offered": [EHLO, "STARTTLS", "QUIT"],
    "bad_utf8": [EHLO, "MAIL FROM:<\udcff@example.com>", "QUIT"],
    "utf8_address": [EHLO, "MAIL FROM:<j\u00f6rg@example.com> SMTPUTF8",
                     "RCPT TO:<root@mx.example.com>", "DATA", MSG, "QUIT"],
    "lost_after_mail": [EHLO, FROM, ("close",)],
    "lost_in_data": [EHLO, FROM, TO, "DATA", ("send", b"Subject: x\r\n\r\npartial", 0),
                     ("close",)],
    "lost_at_greeting": [("close",)],
    "relay_from_mynetworks": [EHLO, FROM, "RCPT TO:<someone@elsewhere.example>", "QUIT"],
}


@pytest.mark.parametrize("name", sorted(SESSIONS))
def test_session(pair, name):
    compare(pair, SESSIONS[name])


LIMIT_SESSIONS = {
    "helo_required": [FROM, "ETRN example.com", "HELO x", FROM, "QUIT"],
    "ehlo_discarded": [EHLO, "MAIL FROM:<a@example.com> RET=FULL", FROM,
                       "RCPT TO:<root@mx.example.com> NOTIFY=NEVER",
                       ("send", b"BDAT 3 LAST\r\nab\n", 1), "QUIT"],
    "vrfy_disabled": ["HELO x", "VRFY root", "QUIT"],
    "too_many_recipients": ["HELO x", FROM, TO, "RCPT TO:<postmaster@mx.example.com>",
                            "RCPT TO:<root@mx.example.com>", "RCPT TO:<root@mx.example.com>",
                            "QUIT"],
    "size_limit_mail": ["HELO x", "MAIL FROM:<a@example.com> SIZE=2001",
                        "MAIL FROM:<a@example.com> SIZE=1999", "QUIT"],
    "size_limit_data": ["HELO x", FROM, TO, "DATA",
                        ("data", b"Subject: x\r\n\r\n" + (b"x" * 90 + b"\r\n") * 30
                         + b".\r\n"), "QUIT"],
    "size_limit_bdat": [EHLO, FROM, TO, ("send", b"BDAT 2500 LAST\r\n" + b"x" * 2500, 1),
                        "QUIT"],
    "error_limit": ["HELO x", "FOO", "BAR", "BAZ", "QUX", "NOOP"],
    "junk_limit": ["HELO x", "NOOP", "NOOP", "NOOP", "NOOP", "NOOP", "NOOP", "NOOP",
                   "QUIT"],
    "long_line_limit": ["HELO x", "NOOP " + "z" * 700, FROM, TO, "DATA",
                        ("data", b"Subject: x\r\n\r\n" + b"q" * 1300 + b"\r\n.\r\n"),
                        "QUIT"],
    "timeout": ["HELO x", ("wait", 1)],
    "timeout_in_data": ["HELO x", FROM, TO, "DATA", ("send", b"Subject: x\r\n", 0),
                        ("wait", 1)],
    "bare_lf_command": [("send", b"HELO x\n", 1)],
    "bare_lf_data": ["HELO x", FROM, TO, "DATA",
                     ("data", b"Subject: x\r\n\r\nbare\nline\r\n.\r\n"), "QUIT"],
    "bare_lf_smuggling": ["HELO x", FROM, TO, "DATA",
                          ("data", b"Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<evil@example.com>"
                           b"\r\n.\r\n"), "QUIT"],
    "relay_denied": ["HELO x", FROM, "RCPT TO:<someone@elsewhere.example>",
                     "RCPT TO:<user%elsewhere.example@mx.example.com>",
                     "RCPT TO:<\"user@elsewhere.example\"@mx.example.com>",
                     "RCPT TO:<@mx.example.com:user@elsewhere.example>",
                     "RCPT TO:<elsewhere.example!user@mx.example.com>",
                     "RCPT TO:<user@[192.0.2.99]>", "QUIT"],
    "local_from_outside": ["HELO x", FROM, TO, "DATA", MSG, "QUIT"],
}


@pytest.mark.parametrize("name", sorted(LIMIT_SESSIONS))
def test_limits_session(limits, name):
    compare(limits, LIMIT_SESSIONS[name])


@pytest.fixture(scope="module")
def xpair():
    p = SmtpPair("smtpd_authorized_xclient_hosts = 127.0.0.0/8\n"
                 "smtpd_authorized_xforward_hosts = 127.0.0.0/8\n").start()
    yield p
    p.cleanup()


X_SESSIONS = {
    "xclient_identity": [EHLO, "XCLIENT NAME=spike.porcupine.org ADDR=168.100.189.2 PORT=4321",
                         "EHLO spike.porcupine.org", FROM, TO,
                         "RCPT TO:<someone@elsewhere.example>", "DATA", MSG, "QUIT"],
    "xclient_unavailable": [EHLO, "XCLIENT NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] "
                            "HELO=[UNAVAILABLE] PROTO=ESMTP", FROM, TO, "QUIT"],
    "xclient_errors": [EHLO, "XCLIENT", "XCLIENT FOO=bar", "XCLIENT NAME", "XCLIENT ADDR=1.2.3",
                       "XCLIENT PROTO=LMTP", "XCLIENT PORT=123456", "XCLIENT NAME=bad..name",
                       FROM, "XCLIENT NAME=x.example", "QUIT"],
    "xclient_ipv6_helo": [EHLO, "XCLIENT ADDR=IPv6:2001:db8::1 HELO=relay.example "
                          "NAME=[TEMPUNAVAIL]", FROM, TO, "DATA", MSG, "QUIT"],
    "xforward_transaction": [EHLO, "XFORWARD NAME=orig.example ADDR=192.0.2.9 PORT=2525",
                             "XFORWARD PROTO=ESMTP HELO=orig-helo IDENT=ABC123 SOURCE=REMOTE",
                             FROM, TO, "DATA", MSG, FROM, TO, "DATA", MSG, "QUIT"],
    "xforward_errors": [EHLO, "XFORWARD", "XFORWARD BOGUS=1", "XFORWARD ADDR=nonsense",
                        "XFORWARD SOURCE=ELSEWHERE", "XFORWARD PORT=x", FROM,
                        "XFORWARD NAME=a.example", "QUIT"],
}


@pytest.mark.parametrize("name", sorted(X_SESSIONS))
def test_xclient_xforward_session(xpair, name):
    compare(xpair, X_SESSIONS[name])


MISC_CF = """\
soft_bounce = yes
smtpd_noop_commands = XNOP
smtpd_banner = $myhostname ESMTP test banner $mail_name
smtpd_client_port_logging = yes
smtputf8_enable = no
strict_rfc821_envelopes = yes
smtpd_forbid_unauth_pipelining = yes
smtpd_discard_ehlo_keyword_address_maps = inline:{ { 127.0.0.1 = pipelining silent-discard } }
smtpd_error_sleep_time = 1s
smtpd_soft_error_limit = 1
smtpd_reject_footer = \\c - see http://$server_name/help\\nclient=$client_address helo=$helo_name
"""


@pytest.fixture(scope="module")
def misc():
    p = SmtpPair(MISC_CF).start()
    yield p
    p.cleanup()


MISC_SESSIONS = {
    "banner_and_ehlo": [EHLO, "HELO x", "XNOP", "xnop args", "QUIT"],
    "soft_bounce": [EHLO, FROM, "RCPT TO:<nosuchuser@mx.example.com>", "FOO", "QUIT"],
    "strict_rfc821": [EHLO, "MAIL FROM:alice@example.com", "MAIL FROM:<alice@example.com> x",
                      "MAIL FROM:<@route:alice@example.com>", FROM,
                      "RCPT TO:root@mx.example.com", "RCPT TO:<root@mx.example.com>", "QUIT"],
    "no_smtputf8": [EHLO, "MAIL FROM:<a@example.com> SMTPUTF8", "VRFY root SMTPUTF8", "QUIT"],
    "forbid_unauth_pipelining": [("send", b"EHLO x\r\nMAIL FROM:<a@example.com>\r\n", 2)],
    "helo_then_ehlo_discarded": ["HELO x", EHLO, "QUIT"],
    "reject_footer": ["HELO x", "FOO", "MAIL FROM:<a@example.com>",
                      "RCPT TO:<nosuchuser@mx.example.com>", "QUIT"],
    "port_logging_delivery": [EHLO, FROM, TO, "DATA", MSG, ("close",)],
}


@pytest.mark.parametrize("name", sorted(MISC_SESSIONS))
def test_misc_session(misc, name):
    compare(misc, MISC_SESSIONS[name])


@pytest.fixture(scope="module")
def bad_map():
    p = SmtpPair("smtpd_discard_ehlo_keyword_address_maps = "
                 "inline:{ 127.0.0.1 = pipelining, silent-discard }\n").start()
    yield p
    p.cleanup()


def test_discard_map_error(bad_map):
    """A lookup error in the EHLO keyword map: 421 Server local data error at EHLO."""
    replies = compare(bad_map, ["HELO x", EHLO, "QUIT"])
    assert replies[2] == "421 4.3.0 mx.example.com Server local data error"


@pytest.fixture(scope="module")
def pipe_pair():
    p = SmtpPair("smtpd_data_restrictions = reject_unauth_pipelining\n").start()
    yield p
    p.cleanup()


PIPE_SESSIONS = {
    "helo_pipelined_data": [("send", b"HELO x\r\nMAIL FROM:<a@example.com>\r\n"
                             b"RCPT TO:<root@mx.example.com>\r\nDATA\r\n", 4), "QUIT"],
    "ehlo_waits_then_pipelines": [EHLO, ("send", b"MAIL FROM:<a@example.com>\r\n"
                                         b"RCPT TO:<root@mx.example.com>\r\nDATA\r\n", 3),
                                  MSG, "QUIT"],
}


@pytest.mark.parametrize("name", sorted(PIPE_SESSIONS))
def test_reject_unauth_pipelining(pipe_pair, name):
    compare(pipe_pair, PIPE_SESSIONS[name])

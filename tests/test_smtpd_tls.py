"""smtpd TLS against Debian's Postfix: STARTTLS at smtpd_tls_security_level may and
encrypt, a missing certificate, wrapper mode (-o smtpd_tls_wrappermode=yes); the same
replies and log lines; the Received: header says ESMTPS; swaks and openssl s_client
talk to pyfix over TLS.
"""

import re
import shutil
import subprocess
import tempfile

import pytest

from smtp_oracle import PyfixSmtp, SmtpPair, play, postfix_available

pytestmark = pytest.mark.skipif(not postfix_available() or not shutil.which("openssl"),
                                reason="needs root, Debian's Postfix and openssl")


@pytest.fixture(scope="module")
def cert():
    directory = tempfile.mkdtemp(prefix="pyfix-tls-", dir="/tmp")
    key, crt = directory + "/key.pem", directory + "/cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=mx.example.com"],
                   check=True, capture_output=True)
    yield crt, key
    shutil.rmtree(directory, ignore_errors=True)


def tls_cf(cert, level):
    return ("smtpd_tls_security_level = %s\nsmtpd_tls_cert_file = %s\n"
            "smtpd_tls_key_file = %s\n" % (level, cert[0], cert[1]))


@pytest.fixture(scope="module")
def may(cert):
    p = SmtpPair(tls_cf(cert, "may")).start()
    yield p
    p.cleanup()


@pytest.fixture(scope="module")
def encrypt_nocert():
    p = SmtpPair("smtpd_tls_security_level = encrypt\n").start()
    yield p
    p.cleanup()


@pytest.fixture(scope="module")
def wrapper(cert):
    p = SmtpPair(tls_cf(cert, "none"), options=" -o smtpd_tls_wrappermode=yes").start()
    yield p
    p.cleanup()


def _mask_openssl(lines):
    """OpenSSL's error queue text (codes, source file and line) is not available to
    Python: compare up to the library problem itself."""
    return [re.sub(r"TLS library problem: .*", "TLS library problem: DETAIL", line)
            for line in lines]


def compare(pair, script, wrapper=False):
    (p_replies, p_log), (y_replies, y_log) = pair.both_logged(script, wrapper=wrapper)
    assert y_replies == p_replies
    assert _mask_openssl(y_log) == _mask_openssl(p_log)
    return p_replies


EHLO = "EHLO client.example.com"
MAIL = ["MAIL FROM:<alice@example.com>", "RCPT TO:<root@mx.example.com>", "DATA",
        ("data", b"Subject: tls\r\n\r\nsecret\r\n.\r\n")]

MAY = {
    "starttls_delivery": [EHLO, "STARTTLS", ("starttls",), EHLO] + MAIL + ["QUIT"],
    "starttls_syntax_twice": [EHLO, "STARTTLS now", "STARTTLS", ("starttls",), "STARTTLS",
                              "MAIL FROM:<a@example.com>", "HELO again", "QUIT"],
    "starttls_resets_transaction": [EHLO, "MAIL FROM:<a@example.com>", "STARTTLS",
                                    ("starttls",), "RCPT TO:<root@mx.example.com>",
                                    "QUIT"],
    "starttls_pipelined_plaintext": [EHLO, ("send", b"STARTTLS\r\nMAIL FROM:<evil@x>\r\n", 1),
                                     ("starttls",), "RCPT TO:<root@mx.example.com>", "QUIT"],
    "plain_delivery": [EHLO] + MAIL + ["QUIT"],
    "handshake_garbage": [EHLO, "STARTTLS", ("send", b"this is not TLS\r\n", 1)],
}


@pytest.mark.parametrize("name", sorted(MAY))
def test_may(may, name):
    compare(may, MAY[name])


ENCRYPT = {
    "must_starttls": [EHLO, "MAIL FROM:<a@example.com>", "VRFY root", "NOOP", "STARTTLS",
                      "QUIT"],
}


@pytest.mark.parametrize("name", sorted(ENCRYPT))
def test_encrypt_without_certificate(encrypt_nocert, name):
    compare(encrypt_nocert, ENCRYPT[name])


def test_wrapper_mode(wrapper):
    compare(wrapper, [EHLO] + MAIL + ["STARTTLS", "QUIT"], wrapper=True)


def test_received_esmtps_and_swaks(cert):
    run = PyfixSmtp(tls_cf(cert, "may") + "smtpd_tls_loglevel = 1\n").start()
    try:
        replies = play(run.port, [EHLO, "STARTTLS", ("starttls",), EHLO] + MAIL + ["QUIT"])
        assert replies[-2].startswith("250 2.0.0 Ok: queued as ")
        queue_id = replies[-2].split()[-1]
        run.wait_log(r"Anonymous TLS connection established from localhost\[127\.0\.0\.1\]: "
                     r"TLSv1\.3 with cipher \S+ \(\d+/\d+ bits\)")
        with open("%s/incoming/%s" % (run.spool, queue_id), "rb") as f:
            assert b"with ESMTPS id " + queue_id.encode() in f.read()
        if shutil.which("swaks"):
            result = subprocess.run(
                ["swaks", "--server", "127.0.0.1", "--port", str(run.port), "--tls",
                 "--from", "alice@example.com", "--to", "root@mx.example.com",
                 "--timeout", "10"], capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stdout
            assert "TLS started" in result.stdout and "queued as" in result.stdout
        result = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % run.port, "-starttls", "smtp",
             "-quiet"], input="EHLO s-client\r\nQUIT\r\n", capture_output=True, text=True,
            timeout=30)
        assert "250-mx.example.com" in result.stdout and "221 2.0.0 Bye" in result.stdout
        assert "STARTTLS" not in result.stdout
    finally:
        run.cleanup()


@pytest.fixture(scope="module")
def tls_rate(cert):
    p = SmtpPair(tls_cf(cert, "may") + "mynetworks = 192.0.2.0/24\n"
                 "smtpd_client_new_tls_session_rate_limit = 1\n").start()
    yield p
    p.cleanup()


def test_new_tls_session_rate_limit(tls_rate):
    """The first TLS session is fine; the second exceeds the rate after its handshake
    (421); the third is refused before (454)."""
    compare(tls_rate, [EHLO, "STARTTLS", ("starttls",), EHLO, "QUIT"])
    second = compare(tls_rate, [EHLO, "STARTTLS", ("starttls",), ("wait", 1)])
    assert second[-1].startswith("421 4.7.0 mx.example.com Error: too many new TLS sessions")
    third = compare(tls_rate, [EHLO, "STARTTLS", "QUIT"])
    assert third[2] == ("454 4.7.0 Error: too many new TLS sessions from "
                        "localhost[127.0.0.1]")

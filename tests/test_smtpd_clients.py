"""pyfix's smtpd with real SMTP clients (Python's smtplib, swaks, Postfix's smtp-source)
and with abusive ones (random bytes, a 1 MB line, many idle connections): mail is
queued, replies are Postfix's, the daemon neither crashes nor grows without bound, and
master keeps the process limit.
"""

import os
import random
import re
import shutil
import smtplib
import socket
import subprocess
import time

import psutil
import pytest

from master_run import wait_until
from smtp_oracle import PyfixSmtp, play

ROOT = os.geteuid() == 0
pytestmark = pytest.mark.skipif(not ROOT, reason="needs root (mail_owner)")


@pytest.fixture(scope="module")
def server():
    run = PyfixSmtp("default_process_limit = 5\n").start()
    yield run
    run.cleanup()


def incoming(run):
    return run.queue_files("incoming")


def test_smtplib_send_message(server):
    before = len(incoming(server))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        code, text = client.ehlo("client.example.com")
        assert code == 250 and b"PIPELINING" in text and b"CHUNKING" in text
        refused = client.sendmail("alice@example.com",
                                  ["root@mx.example.com", "postmaster@mx.example.com",
                                   "nosuchuser@mx.example.com"],
                                  b"Subject: smtplib\r\n\r\nhello\r\n.dot line\r\n")
        assert list(refused) == ["nosuchuser@mx.example.com"]
        assert refused["nosuchuser@mx.example.com"][0] == 550
    assert wait_until(lambda: len(incoming(server)) == before + 1)
    server.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=2/3 "
                    r"data=1 quit=1 commands=6/7")


@pytest.mark.skipif(not shutil.which("swaks"), reason="needs swaks")
def test_swaks_pipelining(server):
    before = len(incoming(server))
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(server.port), "--pipeline",
         "--from", "alice@example.com", "--to", "root@mx.example.com",
         "--helo", "swaks.example.com", "--timeout", "10"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"<\*\* 250 2\.0\.0 Ok: queued as \w+|<~?  250 2\.0\.0 Ok: queued as",
                     result.stdout) or "queued as" in result.stdout
    assert wait_until(lambda: len(incoming(server)) == before + 1)


@pytest.mark.skipif(not os.path.exists("/usr/sbin/smtp-source"), reason="needs smtp-source")
def test_smtp_source_parallel_sessions(server):
    before = len(incoming(server))
    result = subprocess.run(
        ["/usr/sbin/smtp-source", "-s", "4", "-m", "20", "-f", "alice@example.com",
         "-t", "root@mx.example.com", "-c", "127.0.0.1:%d" % server.port],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert wait_until(lambda: len(incoming(server)) == before + 20, 30)


def test_random_bytes(server):
    rng = random.Random(6)
    for _ in range(5):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.recv(1024)
            sock.sendall(junk + b"\r\nQUIT\r\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        for line in data.decode("latin-1").splitlines():
            assert re.match(r"^\d{3}[ -]", line), line
    assert "Traceback" not in server.log() and "Error:" not in server.stderr()
    assert play(server.port, ["QUIT"])[-1] == "221 2.0.0 Bye"


def test_megabyte_line(server):
    replies = play(server.port, [("send", b"NOOP " + b"x" * (1 << 20) + b"\r\n", 1), "QUIT"])
    assert replies[1:] == ["250 2.0.0 Ok", "221 2.0.0 Bye"]
    server.wait_log(r"warning: localhost\[127\.0\.0\.1\]: request longer than 2048: NOOP x+\.\.\.")
    replies = play(server.port, ["EHLO x", "MAIL FROM:<a@example.com>",
                                 "RCPT TO:<root@mx.example.com>", "DATA",
                                 ("data", b"Subject: big\r\n\r\n" + b"y" * (1 << 20)
                                  + b"\r\n.\r\n"), "QUIT"])
    assert replies[-2].startswith("250 2.0.0 Ok: queued as")


def test_idle_connections_process_limit(server):
    """Many idle clients: at most default_process_limit (5) smtpd processes serve them,
    the rest wait in the listen queue (or in SYN retries, as with Postfix's listen
    backlog); master survives; memory per process stays bounded; afterwards the
    service works."""
    socks = []
    try:
        for _ in range(1000):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", server.port))
            socks.append(sock)
        assert wait_until(lambda: len(server.children("smtpd")) == 5, 15)
        time.sleep(1)
        assert len(server.children("smtpd")) == 5
        for proc in server.children("smtpd"):
            assert proc.memory_info().rss < 80 * 1024 * 1024
        assert psutil.pid_exists(server.pid)
    finally:
        for sock in socks:
            sock.close()
    assert wait_until(lambda: play(server.port, ["QUIT"], 5)[-1] == "221 2.0.0 Bye", 60)

"""SMTP AUTH through a real Dovecot (smtpd_sasl_type = dovecot), Debian's Postfix and
pyfix side by side on the same auth socket: the EHLO AUTH keyword, PLAIN and LOGIN
exchanges, failures, aborts, the relay permission that authentication gives, and the
log lines (sasl_method/sasl_username on `client=`, failure warnings).
"""

import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from master_run import wait_until
from smtp_oracle import SmtpPair, postfix_available

DOVECOT = "/usr/sbin/dovecot"
pytestmark = pytest.mark.skipif(not postfix_available() or not os.path.exists(DOVECOT),
                                reason="needs root, Debian's Postfix and dovecot-core")

DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols =
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
service auth {{
  unix_listener {root}/auth {{
    mode = 0666
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


class Dovecot:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="dovecot-", dir="/tmp")
        os.chmod(self.root, 0o755)
        for sub in ("run", "state"):
            os.makedirs(os.path.join(self.root, sub))
        with open(os.path.join(self.root, "passwd"), "w") as f:
            f.write("alice@example.com:{PLAIN}secret:65534:65534::%s::\n" % self.root)
        os.chmod(os.path.join(self.root, "passwd"), 0o644)
        self.conf = os.path.join(self.root, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(DOVECOT_CONF.format(root=self.root))
        self.socket = os.path.join(self.root, "auth")
        self.proc = None

    def start(self):
        with open(os.path.join(self.root, "stderr.log"), "w") as err:
            self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdout=err,
                                         stderr=err, stdin=subprocess.DEVNULL)
        assert wait_until(self._answers, 10), open(os.path.join(self.root, "stderr.log")).read()
        return self

    def _answers(self):
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(self.socket)
                return sock.recv(100).startswith(b"VERSION")
        except OSError:
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def pair():
    dovecot = Dovecot().start()
    p = None
    try:
        p = SmtpPair("smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n"
                     "smtpd_sasl_path = %s\nmynetworks = 192.0.2.0/24\n"
                     "smtpd_client_auth_rate_limit = 20\nsmtpd_soft_error_limit = 30\n"
                     "smtpd_hard_error_limit = 40\n" % dovecot.socket)
        p.start()
        yield p
    finally:
        if p is not None:
            p.cleanup()
        dovecot.stop()


def plain(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def b64(text):
    return base64.b64encode(text.encode()).decode()


def compare(pair, script):
    (p_replies, p_log), (y_replies, y_log) = pair.both_logged(script)
    assert y_replies == p_replies
    assert y_log == p_log
    return p_replies


EHLO = "EHLO client.example.com"
RELAY = ["MAIL FROM:<alice@example.com>", "RCPT TO:<bob@elsewhere.example>", "DATA",
         ("data", b"Subject: auth\r\n\r\nrelayed\r\n.\r\n")]

SESSIONS = {
    "plain_success_relay": [EHLO, "AUTH PLAIN " + plain("alice@example.com", "secret")]
    + RELAY + ["AUTH PLAIN " + plain("alice@example.com", "secret"), "QUIT"],
    "plain_wrong_password": [EHLO, "AUTH PLAIN " + plain("alice@example.com", "wrong"),
                             "MAIL FROM:<a@example.com>", "RCPT TO:<bob@elsewhere.example>",
                             "QUIT"],
    "plain_two_steps": [EHLO, "AUTH PLAIN", plain("alice@example.com", "secret"), "QUIT"],
    "login_exchange": [EHLO, "AUTH LOGIN", b64("alice@example.com"), b64("secret")]
    + RELAY + ["QUIT"],
    "login_abort": [EHLO, "AUTH LOGIN", "*", "QUIT"],
    "bad_mechanism_and_syntax": [EHLO, "AUTH", "AUTH CRAM-MD5", "AUTH PLAIN x y z",
                                 "AUTH PLAIN !!!!", "QUIT"],
    "auth_in_transaction": [EHLO, "MAIL FROM:<a@example.com>",
                            "AUTH PLAIN " + plain("alice@example.com", "secret"), "QUIT"],
    "mail_auth_param": [EHLO, "MAIL FROM:<a@example.com> AUTH=<>", "RSET",
                        "MAIL FROM:<a@example.com> AUTH=alice@example.com",
                        "RCPT TO:<root@mx.example.com>", "RSET",
                        "MAIL FROM:<a@example.com> AUTH=a AUTH=b", "QUIT"],
}


@pytest.mark.parametrize("name", sorted(SESSIONS))
def test_sasl_session(pair, name):
    compare(pair, SESSIONS[name])


def test_swaks_auth(pair):
    if not shutil.which("swaks"):
        pytest.skip("needs swaks")
    for side in pair.sides():
        result = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(side.port), "--auth", "LOGIN",
             "--auth-user", "alice@example.com", "--auth-password", "secret",
             "--from", "alice@example.com", "--to", "bob@elsewhere.example", "--timeout", "10"],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout
        assert "235 2.7.0 Authentication successful" in result.stdout
    time.sleep(0.2)
    assert "secret" not in pair.pyfix.log()


def test_zz_auth_rate_limit(pair):
    """Runs last in this module: more than 20 AUTH commands a minute from one client
    get 450 (anvil's auth rate)."""
    replies = compare(pair, [EHLO] + ["AUTH PLAIN " + plain("alice@example.com", "wrong")]
                      * 25 + ["QUIT"])
    assert replies[-2] == "450 4.7.1 Error: too many AUTH commands from 127.0.0.1"


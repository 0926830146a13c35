"""Peers for the smtp client's TLS and SASL tests (test_smtp_tls.py, test_smtp_sasl.py).

TestCA: a throw-away certificate authority made with the openssl command (a CA, and a
server certificate for mx.test.example signed by it; a self-signed one too).
Relay: Debian's Postfix smtpd as the relay a client submits to (the SES/SendGrid case):
STARTTLS with the test certificate, SMTP AUTH through a real Dovecot, relaying only for
authenticated clients; wrapper=True makes it an SMTPS (smtpd_tls_wrappermode) service.
drive(): pyfix's smtp client pieces (Session, smtp_tls, smtp_sasl) run in this process
against such a server, in the order in which the protocol engine calls them; it returns
the replies and the log lines the pieces wrote (msg outputs).
"""

import base64
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading

from master_run import wait_until
from smtp_oracle import PostfixSmtp, wait_listening
from test_smtpd_sasl import DOVECOT_CONF, Dovecot

from pyfix.common import msg
from pyfix.common.config import Config, MainCf

SERVER_NAME = "mx.test.example"


def _openssl(*args, cwd):
    subprocess.run(("openssl",) + args, cwd=cwd, check=True, capture_output=True)


class TestCA:
    __test__ = False

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="pyfix-ca-", dir="/tmp")
        os.chmod(self.root, 0o755)
        run = self.root
        with open(os.path.join(run, "san.cnf"), "w") as f:
            f.write("subjectAltName = DNS:%s\nbasicConstraints = CA:FALSE\n"
                    "extendedKeyUsage = serverAuth\n" % SERVER_NAME)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                 "-out", "ca.pem", "-days", "30", "-subj", "/O=Pyfix Test/CN=Pyfix Test CA",
                 cwd=run)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
                 "server.csr", "-subj", "/CN=%s" % SERVER_NAME, cwd=run)
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "server.pem", "-days", "30", "-extfile",
                 "san.cnf", cwd=run)
        for name in ("ca.key", "server.key"):
            os.chmod(os.path.join(run, name), 0o644)
        self.cafile = os.path.join(run, "ca.pem")
        self.cert = os.path.join(run, "server.pem")
        self.key = os.path.join(run, "server.key")
        self.fingerprint = self._fingerprint("x509", "-in", "server.pem", "-fingerprint")
        self.pkey_fingerprint = self._pkey_fingerprint()

    def _fingerprint(self, *args):
        out = subprocess.run(("openssl",) + args + ("-sha256", "-noout"), cwd=self.root,
                             check=True, capture_output=True, text=True).stdout
        return out.strip().split("=", 1)[1]

    def _pkey_fingerprint(self):
        import hashlib
        der = subprocess.run(["openssl", "x509", "-in", "server.pem", "-pubkey", "-noout"],
                             cwd=self.root, check=True, capture_output=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=der,
                             check=True, capture_output=True).stdout
        digest = hashlib.sha256(der).hexdigest().upper()
        return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


class CramDovecot(Dovecot):
    """test_smtpd_sasl's Dovecot, with CRAM-MD5 beside PLAIN and LOGIN."""

    def __init__(self, mechanisms="plain login cram-md5"):
        super().__init__()
        with open(self.conf, "w") as f:
            f.write(DOVECOT_CONF.format(root=self.root).replace(
                "auth_mechanisms = plain login", "auth_mechanisms = " + mechanisms))


RELAY_MAIN_CF = """\
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {auth}
smtpd_tls_auth_only = {auth_only}
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions =
"""


class Relay(PostfixSmtp):
    """Debian's smtpd with STARTTLS and Dovecot SASL on a loopback port."""

    def __init__(self, ca, dovecot, wrapper=False, auth_only=True, extra=""):
        main_cf = RELAY_MAIN_CF.format(cert=ca.cert, key=ca.key, auth=dovecot.socket,
                                       auth_only="yes" if auth_only else "no") + extra
        super().__init__(main_cf, " -o smtpd_tls_wrappermode=yes" if wrapper else "")
        self.wrapper = wrapper
        self.ca = ca
        self.dovecot = dovecot

    def start(self):
        super().start()
        if self.wrapper:
            assert wait_until(self._accepts, 15), "nothing listens on port %d" % self.port
        else:
            wait_listening(self)
        return self

    def _accepts(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


class LogCapture:
    """The msg lines written in this process, as Postfix logs them (`warning: ...`)."""

    def __init__(self):
        self.lines = []

    def __call__(self, level, text):
        self.lines.append(msg.SEVERITY_PREFIX[level] + text)

    def __enter__(self):
        msg.add_output(self)
        return self

    def __exit__(self, *exc):
        msg._outputs.remove(self)


def client_config(entries):
    # As in the rigs' main.cf: compatibility_level decides defaults such as
    # smtp_tls_fingerprint_digest (md5 below 3.6).
    entries = dict({"compatibility_level": "3.7"}, **entries)
    return Config(MainCf(entries=entries))


def open_session(config, port, nexthop=None, host="127.0.0.1", sender="alice@example.com",
                 lmtp=False):
    from pyfix.daemons.smtp.session import Session
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    session = Session(config, "lmtp" if lmtp else "smtp", lmtp,
                      nexthop or "[127.0.0.1]:%d" % port, host, "127.0.0.1", port, sock,
                      sender)
    session.helo_name = "client.example"
    session.timeout = 10
    return session


def drive(config, port, rcpt="bob@example.org", **kw):
    """One delivery attempt through the smtp client pieces: connect, (SMTPS handshake),
    greeting, EHLO, STARTTLS + EHLO, AUTH, MAIL, RCPT, DATA, QUIT. Returns (outcome,
    log lines, session): outcome is the end-of-data reply or the SessionFailure."""
    from pyfix.daemons.smtp import smtp_sasl, smtp_tls
    from pyfix.daemons.smtp.session import SessionFailure
    with LogCapture() as log:
        session = open_session(config, port, **kw)
        try:
            policy = smtp_tls.session_policy(session)
            session.sock = smtp_tls.wrap_if_wrappermode(session, policy)
            greeting = session.read_reply()
            assert greeting.code == 220, greeting
            session.where = "performing the EHLO handshake"
            session.ehlo()
            if smtp_tls.starttls_if_needed(session, policy):
                session.where = "performing the EHLO handshake"
                session.ehlo()
            smtp_sasl.authenticate_if_needed(session)
            session.where = "performing the MAIL FROM command"
            reply = session.command("MAIL FROM:<%s>" % session.sender)
            if reply.code == 250:
                reply = session.command("RCPT TO:<%s>" % rcpt)
            if reply.code == 250:
                reply = session.command("DATA")
            if reply.code == 354:
                session.send(b"Subject: tls test\r\n\r\nhello\r\n.\r\n")
                reply = session.read_reply()
            try:
                session.command("QUIT")
            except SessionFailure:
                pass
            outcome = reply
        except SessionFailure as failure:
            outcome = failure
        finally:
            session.close()
    return outcome, log.lines, session


# ---- the oracle: Debian's smtp client on the same case ------------------------------------

STATUS = re.compile(r"dsn=(\d\.\d+\.\d+), status=\w+ \((.*)\)$")


def debian_smtp(port, main_cf_extra, sender="alice@example.com", rcpt="bob@example.org",
                agent="debian"):
    """Deliver one message with Debian's qmgr and Debian's smtp (agent="pyfix": pyfix's
    smtp daemon) to [127.0.0.1]:port, in the qmgr rig plus tlsmgr. Returns (log lines of
    smtp before the status line, (dsn, reason) of the status line), normalized as
    qmgr_rig.normalize() does."""
    return rig_smtp(port, main_cf_extra, sender, rcpt, agent)[:2]


def rig_smtp(port, main_cf_extra, sender="alice@example.com", rcpt="bob@example.org",
             agent="debian"):
    """debian_smtp(), plus the status line itself."""
    from qmgr_rig import DEBIAN_QMGR, Rig, normalize, services
    rig = Rig(qmgr=DEBIAN_QMGR, main_cf_extra=main_cf_extra, port=port)
    master_cf = services(DEBIAN_QMGR) + TLSMGR
    if agent == "pyfix":
        master_cf = master_cf.replace("/usr/lib/postfix/sbin/smtp\n", "smtp\n")
    rig.master.write_master_cf(master_cf)
    try:
        rig.start()
        queue_id = rig.submit(sender=sender, rcpts=(rcpt,))
        rig.wait_log(r"%s: to=.*status=" % queue_id, timeout=30)
        lines = normalize([line for line in rig.log().splitlines() if "/smtp[" in line],
                          [queue_id])
    finally:
        rig.cleanup()
    status = [STATUS.search(line) for line in lines if line.startswith("QID0: to=")][0]
    # Only what the client says about this delivery: the bounce of a bounced test
    # message goes through the same client and would repeat the lines.
    end = next(n for n, line in enumerate(lines) if line.startswith("QID0: to="))
    return lines[:end], (status.group(1), status.group(2)), lines[end]


def pyfix_lines(lines):
    """pyfix's log lines in the same normal form."""
    from qmgr_rig import normalize
    return normalize(lines, [])


def outcome_status(outcome):
    """(dsn, reason) of a drive() outcome as the status line would show it."""
    from pyfix.daemons.smtp.session import SessionFailure
    if isinstance(outcome, SessionFailure):
        return outcome.dsn, outcome.text
    return outcome.dsn, " ".join(outcome.lines)


TLSMGR = "tlsmgr unix - - n 1000? 1 /usr/lib/postfix/sbin/tlsmgr\n"


# ---- a recording server: what a client sends during AUTH ----------------------------------

class AuthRecorder:
    """A minimal SMTP server on a loopback port that announces `AUTH <mechs>`, answers
    LOGIN and CRAM-MD5 with fixed challenges and records every line the client sends."""

    CRAM_CHALLENGE = b"<1896.697170952@postoffice.example.net>"

    def __init__(self, mechs, final="235 2.7.0 Authentication successful"):
        self.mechs = mechs
        self.final = final
        self.lines = []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(5)
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                try:
                    self._session(conn.makefile("rwb", buffering=0))
                except OSError:
                    pass

    def _read(self, f):
        line = f.readline()
        self.lines.append(line.decode().rstrip("\r\n"))
        return line

    def _session(self, f):
        f.write(b"220 recorder.example ESMTP\r\n")
        while True:
            line = self._read(f)
            if not line:
                return
            verb = line.split()[0].upper() if line.split() else b""
            if verb == b"EHLO":
                f.write(b"250-recorder.example\r\n250-AUTH %s\r\n250 8BITMIME\r\n"
                        % self.mechs.encode())
            elif verb == b"AUTH":
                self._auth(f, line.split())
            elif verb == b"DATA":
                f.write(b"354 go ahead\r\n")
                while f.readline() not in (b".\r\n", b""):
                    pass
                f.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                f.write(b"221 2.0.0 Bye\r\n")
                return
            else:
                f.write(b"250 2.1.0 Ok\r\n")

    def _auth(self, f, words):
        mech = words[1].upper()
        if mech == b"LOGIN":
            if len(words) < 3:
                f.write(b"334 VXNlcm5hbWU6\r\n")
                self._read(f)
            f.write(b"334 UGFzc3dvcmQ6\r\n")
            self._read(f)
        elif mech == b"CRAM-MD5":
            f.write(b"334 " + base64.b64encode(self.CRAM_CHALLENGE) + b"\r\n")
            self._read(f)
        elif len(words) < 3:
            f.write(b"334 \r\n")
            self._read(f)
        f.write(self.final.encode() + b"\r\n")

    def auth_lines(self):
        """From AUTH up to the next command."""
        out, inside = [], False
        for line in self.lines:
            if line.upper().startswith("AUTH"):
                inside = True
            elif line.upper().startswith(("MAIL", "QUIT", "RSET", "EHLO")):
                inside = False
            if inside:
                out.append(line)
        return out

    def close(self):
        try:
            self.server.shutdown(socket.SHUT_RDWR)     # wakes the accept() thread
        except OSError:
            pass
        self.server.close()
        self.thread.join(5)

"""The smtp client's SASL (daemons/smtp/smtp_sasl.py): the relay case of SES or
SendGrid (relayhost = [relay]:port, STARTTLS required, AUTH with a password from
smtp_sasl_password_maps) against Debian's Postfix smtpd with a real Dovecot behind it;
the mechanism chosen, the password lookup keys, the failure texts and DSNs compared
with Debian's smtp client on the same case, and the bytes of the PLAIN, LOGIN and
CRAM-MD5 exchanges compared with what Debian's client sends (through Cyrus SASL).
"""

import os
import re

import pytest

from cleanup_oracle import postfix_available
from qmgr_rig import rig_available
from smtp_tls_rig import (AuthRecorder, CramDovecot, Relay, TestCA, client_config,
                          debian_smtp, drive, outcome_status, pyfix_lines, rig_smtp)

from pyfix.common import msg
from pyfix.daemons.smtp.session import SessionFailure

pytestmark = pytest.mark.skipif(
    not postfix_available() or not rig_available() or not os.path.exists("/usr/sbin/dovecot"),
    reason="needs root, Debian's Postfix and dovecot-core")

PASSWORD = "secret"


@pytest.fixture(scope="module")
def peers():
    ca = TestCA()
    dovecot = CramDovecot().start()
    relay = None
    try:
        relay = Relay(ca, dovecot).start()
        yield ca, relay
    finally:
        if relay is not None:
            relay.cleanup()
        dovecot.stop()
        ca.cleanup()


def password_file(ca, text):
    # A new file each time: tables stay open (and cached) in this process.
    password_file.count = getattr(password_file, "count", 0) + 1
    path = os.path.join(ca.root, "sasl_passwd.%d" % password_file.count)
    with open(path, "w") as f:
        f.write(text)
    return "texthash:" + path


def relay_settings(ca, relay, password=PASSWORD, key=None, **entries):
    key = key or "[127.0.0.1]:%d" % relay.port
    base = {"smtp_tls_security_level": "encrypt", "smtp_sasl_auth_enable": "yes",
            "smtp_sasl_password_maps": password_file(
                ca, "%s alice@example.com:%s\n" % (key, password)),
            "smtp_sasl_security_options": "noanonymous"}
    base.update(entries)
    return base


def main_cf(entries):
    return "".join("%s = %s\n" % item for item in entries.items())


def sasl_methods(relay, start):
    return re.findall(r"sasl_method=([A-Z0-9-]+)", relay.log()[start:])


@pytest.mark.parametrize("mech_filter, method", [("", "CRAM-MD5"), ("plain", "PLAIN"),
                                                 ("login", "LOGIN")])
def test_relay_with_starttls_and_auth(peers, mech_filter, method):
    """The SES/SendGrid case: delivered through the relay, with the mechanism Debian's
    client chooses too."""
    ca, relay = peers
    entries = relay_settings(ca, relay, smtp_sasl_mechanism_filter=mech_filter)
    start = len(relay.log())
    outcome, lines, session = drive(client_config(entries), relay.port)
    assert outcome.code == 250, outcome
    assert session.tls is not None and lines == []
    assert sasl_methods(relay, start) == [method]
    start = len(relay.log())
    expected_lines, status = debian_smtp(relay.port, main_cf(entries))
    assert status[0] == "2.0.0" and pyfix_lines(lines) == expected_lines
    assert sasl_methods(relay, start) == [method]


@pytest.mark.parametrize("soft_bounce", ["yes", "no"])
def test_wrong_password_like_debian(peers, soft_bounce):
    ca, relay = peers
    entries = relay_settings(ca, relay, password="wrong", smtp_sasl_mechanism_filter="plain",
                             smtp_sasl_auth_soft_bounce=soft_bounce)
    outcome, lines, _ = drive(client_config(entries), relay.port)
    expected_lines, status = debian_smtp(relay.port, main_cf(entries))
    assert isinstance(outcome, SessionFailure)
    assert outcome_status(outcome) == status
    assert status[0] == ("4.7.8" if soft_bounce == "yes" else "5.7.8")
    assert status[1].startswith("SASL authentication failed; server 127.0.0.1[127.0.0.1] "
                                "said: 535 5.7.8 ")
    assert outcome.soft == (soft_bounce == "yes")
    assert pyfix_lines(lines) == expected_lines


@pytest.mark.parametrize("entries", [
    # The defaults (noplaintext) with only plaintext mechanisms left.
    {"smtp_sasl_security_options": "noplaintext, noanonymous",
     "smtp_sasl_mechanism_filter": "plain, login"},
    # Nothing the filter lets through.
    {"smtp_sasl_mechanism_filter": "digest-md5"},
], ids=["no-worthy-mechs", "filtered-out"])
def test_no_usable_mechanism_like_debian(peers, entries):
    ca, relay = peers
    entries = relay_settings(ca, relay, **entries)
    outcome, lines, _ = drive(client_config(entries), relay.port)
    expected_lines, status = debian_smtp(relay.port, main_cf(entries))
    assert outcome_status(outcome) == status
    assert status[0] == "4.7.0"
    assert pyfix_lines(lines) == expected_lines != []


@pytest.fixture(scope="module")
def plain_auth_relay(peers):
    """A relay that offers AUTH before STARTTLS too."""
    _, relay = peers
    server = Relay(relay.ca, relay.dovecot, auth_only=False)
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.mark.parametrize("level", ["none", "encrypt"])
def test_auth_offered_before_starttls_like_debian(plain_auth_relay, level):
    """Warnings about the AUTH list come once per EHLO reply, as in Postfix."""
    entries = {"smtp_tls_security_level": level, "smtp_sasl_auth_enable": "yes",
               "smtp_sasl_password_maps": password_file(
                   plain_auth_relay.ca, "[127.0.0.1]:%d alice@example.com:%s\n"
                   % (plain_auth_relay.port, PASSWORD)),
               "smtp_sasl_mechanism_filter": "digest-md5"}
    outcome, lines, _ = drive(client_config(entries), plain_auth_relay.port)
    expected_lines, status = debian_smtp(plain_auth_relay.port, main_cf(entries))
    assert outcome_status(outcome) == status
    assert pyfix_lines(lines) == expected_lines
    assert len(lines) == (2 if level == "encrypt" else 1)


def test_tls_security_options_apply_after_starttls(peers):
    """PLAIN is refused in plain text (noplaintext) but allowed over TLS."""
    ca, relay = peers
    entries = relay_settings(ca, relay, smtp_sasl_security_options="noplaintext",
                             smtp_sasl_tls_security_options="noanonymous",
                             smtp_sasl_mechanism_filter="plain")
    start = len(relay.log())
    outcome, _, _ = drive(client_config(entries), relay.port)
    assert outcome.code == 250 and sasl_methods(relay, start) == ["PLAIN"]


@pytest.mark.parametrize("key, sender_auth, delivered", [
    ("127.0.0.1", "no", True),                    # the server's host name
    ("[127.0.0.1]:{port}", "no", True),           # the next-hop destination
    ("alice@example.com", "yes", True),           # the sender
    ("alice@example.com", "no", False),           # sender keys only when enabled
    ("[127.0.0.1]", "no", False),                 # not the next-hop as written
])
def test_password_lookup_keys(peers, key, sender_auth, delivered):
    ca, relay = peers
    entries = relay_settings(ca, relay, key=key.format(port=relay.port),
                             smtp_sender_dependent_authentication=sender_auth)
    outcome, _, _ = drive(client_config(entries), relay.port)
    # Without a password there is no AUTH, and the relay refuses to relay.
    assert getattr(outcome, "code", None) == (250 if delivered else 554), outcome


@pytest.mark.parametrize("mechs, mech_filter", [("PLAIN LOGIN", ""), ("LOGIN PLAIN", ""),
                                                ("LOGIN", ""), ("CRAM-MD5 PLAIN", ""),
                                                ("CRAM-MD5 PLAIN", "plain")])
def test_exchange_bytes_like_debian(peers, mechs, mech_filter):
    """What goes over the wire after AUTH is what Debian's client sends via Cyrus."""
    ca, _ = peers
    seen = []
    for side in ("pyfix", "debian"):
        recorder = AuthRecorder(mechs)
        try:
            entries = {"smtp_sasl_auth_enable": "yes", "smtp_sasl_security_options":
                       "noanonymous", "smtp_sasl_mechanism_filter": mech_filter,
                       "smtp_sasl_password_maps": password_file(
                           ca, "[127.0.0.1]:%d joe:s3cret\n" % recorder.port)}
            if side == "pyfix":
                outcome, _, _ = drive(client_config(entries), recorder.port)
                assert outcome.code == 250
            else:
                _, status = debian_smtp(recorder.port, main_cf(entries))
                assert status[0] == "2.0.0"
            seen.append(recorder.auth_lines())
        finally:
            recorder.close()
    assert seen[0] == seen[1] and seen[0][0].startswith("AUTH ")


def test_failure_reply_to_auth_after_challenge(peers):
    ca, _ = peers
    recorder = AuthRecorder("LOGIN", final="454 4.7.0 Temporary authentication failure")
    try:
        entries = {"smtp_sasl_auth_enable": "yes", "smtp_sasl_security_options": "",
                   "smtp_sasl_password_maps": password_file(
                       ca, "[127.0.0.1]:%d joe:s3cret\n" % recorder.port)}
        outcome, _, _ = drive(client_config(entries), recorder.port)
        _, status = debian_smtp(recorder.port, main_cf(entries))
    finally:
        recorder.close()
    assert outcome_status(outcome) == status == (
        "4.7.0", "SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 454 4.7.0 "
                 "Temporary authentication failure")


def test_passwords_are_never_logged(peers):
    ca, relay = peers
    for mech_filter in ("plain", "login", "cram-md5"):
        entries = relay_settings(ca, relay, smtp_sasl_mechanism_filter=mech_filter)
        saved = msg.verbose
        msg.verbose = 1
        try:
            outcome, lines, _ = drive(client_config(entries), relay.port)
        finally:
            msg.verbose = saved
        assert outcome.code == 250
        text = "\n".join(lines)
        assert "AUTH" in text and PASSWORD not in text
        import base64
        assert base64.b64encode(PASSWORD.encode()).decode()[:6] not in text
        assert base64.b64encode(b"\0alice@example.com\0secret").decode() not in text


@pytest.mark.parametrize("password", [PASSWORD, "wrong"], ids=["sent", "wrong-password"])
def test_smtp_daemon_like_debian(peers, password):
    """pyfix's smtp daemon in a queue rig, beside Debian's: the same log lines, status
    line included; the password file is readable by root only (opened before the
    privilege drop)."""
    ca, relay = peers
    entries = relay_settings(ca, relay, password=password, smtp_tls_CAfile=ca.cafile,
                             smtp_tls_loglevel="1")
    os.chmod(entries["smtp_sasl_password_maps"].split(":", 1)[1], 0o600)
    pyfix = rig_smtp(relay.port, main_cf(entries), agent="pyfix")
    debian = rig_smtp(relay.port, main_cf(entries))
    assert pyfix == debian
    assert debian[1][0] == ("2.0.0" if password == PASSWORD else "4.7.8")


def test_postconf_lists_the_client_type_like_debian():
    """`postconf -A`: pyfix's smtp client answers to Debian's default smtp_sasl_type."""
    import subprocess
    import sys
    pyfix = subprocess.run([os.path.join(os.path.dirname(sys.executable), "postconf"), "-A"],
                           capture_output=True, text=True, check=True).stdout
    debian = subprocess.run(["/usr/sbin/postconf", "-A"], capture_output=True, text=True,
                            check=True).stdout
    assert pyfix == debian == "cyrus\n"


def test_unsupported_client_type_is_fatal(peers):
    ca, relay = peers
    entries = relay_settings(ca, relay, smtp_sasl_type="dovecot")
    with pytest.raises(SystemExit):
        drive(client_config(entries), relay.port)

"""The smtp client's TLS (daemons/smtp/smtp_tls.py): STARTTLS and SMTPS against Debian's
Postfix smtpd with a certificate from a test CA, at the levels none, may, encrypt,
verify, secure, dane and dane-only, with smtp_tls_policy_maps; the `... TLS connection
established to ...` and certificate verification log lines and the failure texts are
compared with those of Debian's own smtp client delivering the same way (the qmgr rig).
"""

import os
import re

import pytest

from cleanup_oracle import postfix_available
from qmgr_rig import Sink, rig_available
from smtp_tls_rig import (CramDovecot, Relay, TestCA, client_config, debian_smtp, drive,
                          outcome_status, pyfix_lines, rig_smtp)

from pyfix.daemons.smtp import smtp_tls
from pyfix.daemons.smtp.session import SessionFailure

pytestmark = pytest.mark.skipif(
    not postfix_available() or not rig_available() or not os.path.exists("/usr/sbin/dovecot"),
    reason="needs root, Debian's Postfix and dovecot-core")


@pytest.fixture(scope="module")
def peers():
    ca = TestCA()
    dovecot = CramDovecot().start()
    relay = wrapper = None
    try:
        relay = Relay(ca, dovecot).start()
        wrapper = Relay(ca, dovecot, wrapper=True).start()
        yield ca, relay, wrapper
    finally:
        for server in (relay, wrapper):
            if server is not None:
                server.cleanup()
        dovecot.stop()
        ca.cleanup()


def tls_lines(lines):
    return [line for line in lines if "TLS" in line or "certificate" in line
            or "dane" in line or "fingerprint" in line]


def settings(**entries):
    return client_config(dict({"smtp_tls_loglevel": "1"}, **entries))


def main_cf(entries):
    return "".join("%s = %s\n" % item for item in dict({"smtp_tls_loglevel": "1"},
                                                         **entries).items())


# Each case: smtp_tls_* settings (the policy table's {port} filled in), and whether the
# message gets through the TLS stage (the relay then refuses the recipient: no AUTH).
DIFFERENTIAL = {
    "encrypt-trusted": {"smtp_tls_security_level": "encrypt", "smtp_tls_CAfile": "{cafile}"},
    "encrypt-untrusted": {"smtp_tls_security_level": "encrypt"},
    "encrypt-log-untrusted": {"smtp_tls_security_level": "encrypt",
                              "smtp_tls_loglevel": "1, untrusted"},
    "verify-match": {"smtp_tls_security_level": "may", "smtp_tls_CAfile": "{cafile}",
                     "smtp_tls_policy_maps":
                         "inline:{{[127.0.0.1]:{port}=verify match=mx.test.example}}"},
    "verify-wrong-name": {"smtp_tls_security_level": "may", "smtp_tls_CAfile": "{cafile}",
                          "smtp_tls_policy_maps":
                              "inline:{{[127.0.0.1]:{port}=verify match=wrong.example}}"},
    "verify-untrusted-issuer": {"smtp_tls_security_level": "verify"},
    "secure-nexthop": {"smtp_tls_security_level": "secure", "smtp_tls_CAfile": "{cafile}"},
    "tls12-only": {"smtp_tls_security_level": "encrypt",
                   "smtp_tls_mandatory_protocols": ">=TLSv1.2, <=TLSv1.2"},
    "dane": {"smtp_tls_security_level": "dane"},
    "dane-only": {"smtp_tls_security_level": "dane-only"},
    "tls12-exclude-aesgcm": {"smtp_tls_security_level": "encrypt",
                             "smtp_tls_mandatory_protocols": "<=TLSv1.2",
                             "smtp_tls_mandatory_exclude_ciphers": "AESGCM"},
    "policy-ciphers-high": {"smtp_tls_policy_maps":
                            "inline:{{[127.0.0.1]:{port}=encrypt ciphers=high "
                            "protocols=TLSv1.2 exclude=ECDHE}}"},
    "note-starttls-offer": {"smtp_tls_security_level": "none",
                            "smtp_tls_note_starttls_offer": "yes"},
    "per-site-host-must-nopeermatch": {"smtp_tls_per_site":
                                       "inline:{{127.0.0.1=MUST_NOPEERMATCH}}"},
    "per-site-must-untrusted": {"smtp_tls_per_site":
                                "inline:{{[127.0.0.1]:{port}=MUST}}"},
    "fingerprint-cert": {"smtp_tls_policy_maps":
                         "inline:{{[127.0.0.1]:{port}=fingerprint match={fpr}}}"},
    "fingerprint-pkey": {"smtp_tls_security_level": "fingerprint",
                         "smtp_tls_fingerprint_cert_match": "{pkey_fpr}"},
    "fingerprint-unusable": {"smtp_tls_security_level": "fingerprint",
                             "smtp_tls_fingerprint_cert_match": "AB:CD"},
    "fingerprint-wrong": {"smtp_tls_security_level": "fingerprint",
                          "smtp_tls_fingerprint_cert_match": "00:" + "11" * 31},
    "fingerprint-malformed": {"smtp_tls_security_level": "fingerprint",
                              "smtp_tls_fingerprint_cert_match": "XY:{fpr} {pkey_fpr}"},
    "policy-level-case": {"smtp_tls_policy_maps": "inline:{{[127.0.0.1]:{port}=MAY}}"},
    "bad-policy-attribute": {"smtp_tls_security_level": "may", "smtp_tls_policy_maps":
                             "inline:{{[127.0.0.1]:{port}=encrypt color=blue}}"},
}


def fill(entries, ca, port):
    return {name: value.format(cafile=ca.cafile, port=port, fpr=ca.fingerprint,
                               pkey_fpr=ca.pkey_fingerprint)
            for name, value in entries.items()}


@pytest.mark.parametrize("case", sorted(DIFFERENTIAL))
def test_like_debian_smtp(peers, case):
    """Same settings, same server: the same TLS log lines and the same outcome as
    Debian's smtp client."""
    ca, relay, _ = peers
    entries = fill(DIFFERENTIAL[case], ca, relay.port)
    outcome, lines, _ = drive(settings(**entries), relay.port)
    expected_lines, expected_status = debian_smtp(relay.port, main_cf(entries))
    assert tls_lines(pyfix_lines(lines)) == tls_lines(expected_lines)
    dsn, text = outcome_status(outcome)
    if expected_status[1].startswith("host "):
        # Through TLS to the RCPT stage: the relay's refusal (no AUTH here).
        assert (dsn, text) == ("5.7.1", "554 5.7.1 <bob@example.org>: Recipient address "
                                        "rejected: Access denied")
        assert "Recipient address rejected" in expected_status[1]
    else:
        assert (dsn, text) == expected_status


def test_levels_in_the_summary_line(peers):
    ca, relay, _ = peers
    cases = [({"smtp_tls_security_level": "none"}, None),
             ({"smtp_tls_security_level": "may"}, "Untrusted"),
             ({"smtp_tls_security_level": "may", "smtp_tls_CAfile": ca.cafile}, "Trusted"),
             ({"smtp_tls_security_level": "verify", "smtp_tls_CAfile": ca.cafile,
               "smtp_tls_verify_cert_match": "mx.test.example"}, "Verified")]
    for entries, trust in cases:
        outcome, lines, session = drive(settings(**entries), relay.port)
        summary = [line for line in lines if "TLS connection established" in line]
        if trust is None:
            assert summary == [] and session.tls is None
        else:
            assert len(summary) == 1 and summary[0].startswith(
                "%s TLS connection established to 127.0.0.1[127.0.0.1]:%d: TLSv1.3 with "
                "cipher TLS_" % (trust, relay.port)), summary
            assert session.tls is not None
        assert outcome.code == 554      # relay denied: TLS went through, no AUTH here


def test_loglevel_zero_logs_nothing(peers):
    ca, relay, _ = peers
    outcome, lines, session = drive(client_config({"smtp_tls_security_level": "encrypt"}),
                                    relay.port)
    assert lines == [] and session.tls is not None and outcome.code == 554


def test_wrappermode_like_debian(peers):
    ca, _, wrapper = peers
    entries = {"smtp_tls_security_level": "encrypt", "smtp_tls_wrappermode": "yes",
               "smtp_tls_CAfile": ca.cafile}
    outcome, lines, session = drive(settings(**entries), wrapper.port)
    expected_lines, expected_status = debian_smtp(wrapper.port, main_cf(entries))
    assert tls_lines(pyfix_lines(lines)) == tls_lines(expected_lines)
    assert session.tls is not None and outcome.code == 554
    assert "Recipient address rejected" in expected_status[1]


def test_wrappermode_needs_encrypt(peers):
    ca, _, wrapper = peers
    outcome, lines, _ = drive(settings(smtp_tls_security_level="may",
                                       smtp_tls_wrappermode="yes"), wrapper.port)
    assert lines == ['warning: smtp_tls_wrappermode requires "smtp_tls_security_level = '
                     'encrypt" (or stronger)']
    assert isinstance(outcome, SessionFailure) and outcome.dsn == "4.7.5"


def test_tls_required_but_not_offered():
    """smtp-sink announces no STARTTLS: Postfix's text, like Debian's client."""
    import tempfile
    import shutil
    from master_run import free_port
    root = tempfile.mkdtemp(prefix="pyfix-sink-", dir="/tmp")
    os.chmod(root, 0o755)
    port = free_port()
    sink = Sink(port, root)
    try:
        entries = {"smtp_tls_security_level": "encrypt"}
        outcome, lines, _ = drive(settings(**entries), port)
        expected_lines, expected_status = debian_smtp(port, main_cf(entries))
        assert outcome_status(outcome) == expected_status == (
            "4.7.4", "TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]")
        assert tls_lines(pyfix_lines(lines)) == tls_lines(expected_lines) == []
        outcome, lines, _ = drive(settings(smtp_tls_security_level="may"), port)
        assert outcome.code == 250 and lines == []
    finally:
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_policy_table_overrides_and_parent_domains(peers):
    ca, relay, _ = peers
    config = settings(smtp_tls_security_level="encrypt", smtp_tls_policy_maps=(
        "inline:{.example.net=none, relay.example.org=verify match=mx.test.example}"))
    cases = {"mx.example.net": "none", "relay.example.org": "verify",
             "other.example": "encrypt"}
    for nexthop, level in cases.items():
        outcome, _, session = drive(config, relay.port, nexthop=nexthop)
        policy = smtp_tls.session_policy(session)
        assert policy.level_name == level
    assert policy.protocols == ">=TLSv1" and "eNULL" in policy.exclusions


def test_invalid_global_level_is_fatal(peers):
    _, relay, _ = peers
    with pytest.raises(SystemExit):
        drive(settings(smtp_tls_security_level="sometimes"), relay.port)


# Not dane-only: Postfix looks the policy up before it connects and logs relay=none;
# pyfix's smtp asks smtp_tls.session_policy() once connected (relay=host[addr]).
@pytest.mark.parametrize("case", ["encrypt-trusted", "verify-wrong-name",
                                  "verify-untrusted-issuer", "secure-nexthop"])
def test_smtp_daemon_like_debian(peers, case):
    """pyfix's smtp daemon in a queue rig, beside Debian's: the same log lines, status
    line included."""
    ca, relay, _ = peers
    entries = main_cf(fill(DIFFERENTIAL[case], ca, relay.port))
    assert rig_smtp(relay.port, entries, agent="pyfix") == rig_smtp(relay.port, entries)


def test_smtp_daemon_wrappermode_like_debian(peers):
    ca, _, wrapper = peers
    entries = main_cf({"smtp_tls_security_level": "encrypt", "smtp_tls_wrappermode": "yes",
                       "smtp_tls_CAfile": ca.cafile})
    assert rig_smtp(wrapper.port, entries, agent="pyfix") == rig_smtp(wrapper.port, entries)


@pytest.fixture(scope="module")
def tls12_relay(peers):
    """A relay that speaks TLS 1.2 at most."""
    _, relay, _ = peers
    old = Relay(relay.ca, relay.dovecot, extra="smtpd_tls_protocols = <=TLSv1.2\n"
                "smtpd_tls_mandatory_protocols = <=TLSv1.2\n")
    try:
        yield old.start()
    finally:
        old.cleanup()


def mask_library_problem(lines):
    """OpenSSL's error queue as Postfix prints it has the packed code and the source
    file and line; Python's ssl module gives the reason only: compare that."""
    out = []
    for line in lines:
        if line.startswith("warning: TLS library problem: "):
            reason = line.split("::", 1)[-1].split(":", 1)[0] if "::" in line \
                else line.rsplit(":", 1)[-1]
            line = "warning: TLS library problem: ...%s..." % reason
        out.append(line)
    return out


@pytest.mark.parametrize("level", ["may", "encrypt"])
def test_handshake_failure_like_debian(tls12_relay, level):
    """No common protocol version: the handshake fails, the message is deferred (fresh
    mail at level may is not retried in plain text)."""
    entries = {"smtp_tls_security_level": level, "smtp_tls_protocols": ">=TLSv1.3",
               "smtp_tls_mandatory_protocols": ">=TLSv1.3"}
    outcome, lines, _ = drive(settings(**entries), tls12_relay.port)
    expected_lines, status = debian_smtp(tls12_relay.port, main_cf(entries))
    assert outcome_status(outcome) == status == ("4.7.5",
                                                 "Cannot start TLS: handshake failure")
    assert outcome.retry_plaintext == (level == "may")
    assert mask_library_problem(pyfix_lines(lines)) == mask_library_problem(expected_lines)
    assert mask_library_problem(expected_lines)[-1] == \
        "warning: TLS library problem: ...tlsv1 alert protocol version..."


@pytest.fixture(scope="module")
def ccert_relay(peers):
    """A relay that asks for client certificates."""
    _, relay, _ = peers
    asking = Relay(relay.ca, relay.dovecot, extra="smtpd_tls_ask_ccert = yes\n"
                   "smtpd_tls_CAfile = %s\n" % relay.ca.cafile)
    try:
        yield asking.start()
    finally:
        asking.cleanup()


def test_client_certificate_like_debian(ccert_relay):
    """smtp_tls_cert_file/key_file: the relay sees the certificate (its log line is no
    longer Anonymous) and the client's summary names its own signature, as Debian's."""
    ca = ccert_relay.ca
    entries = {"smtp_tls_security_level": "encrypt", "smtp_tls_cert_file": ca.cert,
               "smtp_tls_key_file": ca.key, "smtp_tls_CAfile": ca.cafile}
    start = len(ccert_relay.log())
    outcome, lines, _ = drive(settings(**entries), ccert_relay.port)
    pyfix_server_view = re.findall(r"\w+ TLS connection established from .*",
                                   ccert_relay.log()[start:])
    start = len(ccert_relay.log())
    expected_lines, _ = debian_smtp(ccert_relay.port, main_cf(entries))
    debian_server_view = re.findall(r"\w+ TLS connection established from .*",
                                    ccert_relay.log()[start:])
    assert tls_lines(pyfix_lines(lines)) == tls_lines(expected_lines)
    assert "client-signature RSA-PSS (2048 bits) client-digest SHA256" in lines[-1]
    # [0]: Debian's client sends the relay's bounce of the test message too.
    assert pyfix_server_view[0] == debian_server_view[0]
    assert not pyfix_server_view[0].startswith("Anonymous")


def test_capath_and_nexthop_names(peers):
    """smtp_tls_CApath (a hashed directory), and secure's default match of the
    next-hop name (nexthop, dot-nexthop)."""
    import shutil
    import subprocess
    ca, relay, _ = peers
    capath = os.path.join(ca.root, "capath")
    os.makedirs(capath, exist_ok=True)
    shutil.copy(ca.cafile, capath)
    subprocess.run(["openssl", "rehash", capath], check=True, capture_output=True)
    config = settings(smtp_tls_security_level="secure", smtp_tls_CApath=capath)
    for nexthop, trust in (("mx.test.example", "Verified"), ("test.example", "Verified"),
                           ("example", "Verified"), ("other.example", "Untrusted")):
        outcome, lines, session = drive(config, relay.port, nexthop=nexthop)
        summary = [line for line in lines if "TLS connection established" in line]
        assert summary[0].startswith(trust), (nexthop, lines)
        if trust == "Verified":
            assert outcome.code == 554 and session.tls.matched
        else:
            assert outcome_status(outcome) == ("4.7.5", "Server certificate not verified")


def test_lmtp_reads_lmtp_parameters():
    """In LMTP mode the lmtp_tls_* and lmtp_sasl_* parameters count."""
    from pyfix.daemons.smtp import smtp_sasl
    from pyfix.daemons.smtp.session import Session
    config = client_config({"smtp_tls_security_level": "encrypt",
                            "lmtp_tls_security_level": "may",
                            "lmtp_sasl_auth_enable": "yes",
                            "lmtp_sasl_password_maps": "inline:{lmtp.example=u:p}"})
    session = Session(config, "lmtp", True, "lmtp.example", "lmtp.example", "127.0.0.1",
                      24, None)
    assert smtp_tls.session_policy(session).level_name == "may"
    assert smtp_sasl.passwd_lookup(session, smtp_sasl.settings(session)) == ("u", "p")
    session = Session(config, "smtp", False, "lmtp.example", "lmtp.example", "127.0.0.1",
                      25, None)
    assert smtp_tls.session_policy(session).level_name == "encrypt"
    assert not smtp_sasl.has_credentials(session)


@pytest.fixture(scope="module")
def sni_relay(peers):
    """A relay with tls_server_sni_maps: its log names the SNI name the client sent."""
    _, relay, _ = peers
    ca = relay.ca
    chain = os.path.join(ca.root, "sni-chain.pem")
    with open(chain, "w") as out:
        for path in (ca.key, ca.cert):
            with open(path) as f:
                out.write(f.read())
    os.chmod(chain, 0o644)
    sni = Relay(ca, relay.dovecot, extra="tls_server_sni_maps = inline:{{mx.test.example="
                "%s}}\n" % chain)
    try:
        yield sni.start()
    finally:
        sni.cleanup()


@pytest.mark.parametrize("servername, sent", [("", None), ("hostname", None),
                                              ("mx.test.example", "mx.test.example"),
                                              ("nexthop", None)])
def test_servername_like_debian(sni_relay, servername, sent):
    """smtp_tls_servername: the SNI name the relay receives, as with Debian's client."""
    entries = {"smtp_tls_security_level": "encrypt", "smtp_tls_servername": servername}
    start = len(sni_relay.log())
    drive(settings(**entries), sni_relay.port)
    pyfix_view = re.findall(r"TLS connection established from [^:]+: ",
                            sni_relay.log()[start:])
    start = len(sni_relay.log())
    debian_smtp(sni_relay.port, main_cf(entries))
    debian_view = re.findall(r"TLS connection established from [^:]+: ",
                             sni_relay.log()[start:])
    assert pyfix_view[0] == debian_view[0]
    assert pyfix_view[0] == "TLS connection established from localhost[127.0.0.1]%s: " % (
        " to " + sent if sent else "")

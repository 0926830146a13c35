"""The SASL restrictions against Debian's Postfix: permit_sasl_authenticated,
check_sasl_access and reject_*sender_login_mismatch with smtpd_sender_login_maps. The
client logs in with XCLIENT LOGIN= (Postfix's smtpd_sasl_auth_extern), so no SASL
server is needed; Postfix's smtpd runs with smtpd_sasl_auth_enable = yes (Cyrus)."""

import pytest

from smtpd_check_oracle import CheckOracle, Client, compare, postfix_available

pytestmark = pytest.mark.skipif(not postfix_available(),
                                reason="needs root and Debian's Postfix")

MAIN_CF = """\
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sender_login_maps = inline:{ alice@example.org=alice, {shared@example.org=alice bob} }
smtpd_recipient_restrictions = {restriction},
    check_sasl_access inline:{ {mallory=REJECT no mallory here} },
    permit_sasl_authenticated, reject_unauth_destination
"""


@pytest.fixture(scope="module", params=["reject_sender_login_mismatch",
                                        "reject_known_sender_login_mismatch",
                                        "reject_authenticated_sender_login_mismatch",
                                        "reject_unauthenticated_sender_login_mismatch"])
def sasl(request):
    with CheckOracle(MAIN_CF.replace("{restriction}", request.param)) as oracle:
        yield oracle


@pytest.mark.parametrize("login, sender", [
    (None, "alice@example.org"), (None, "nobody@example.org"), ("alice", "alice@example.org"),
    ("bob", "alice@example.org"), ("bob", "shared@example.org"), ("Alice", "alice@example.org"),
    ("bob", "nobody@example.org"), ("mallory", "nobody@example.org"), (None, ""),
])
def test_sasl(sasl, login, sender):
    pf_replies, py_replies, pf_log, py_log = compare(
        sasl, Client(login=login), ["MAIL FROM:<%s>" % sender,
                                    "RCPT TO:<x@elsewhere.example>"])
    assert py_replies == pf_replies
    assert py_log == pf_log

"""The DNS-based restrictions against Debian's Postfix: reject_unknown_helo_hostname,
reject_unknown_sender_domain / recipient_domain (with null MX), reject_rbl_client,
reject_rhsbl_*, permit_dnswl_client, rbl_reply_maps and check_*_mx_access, with both
resolving through one Knot DNS server on loopback (tests/smtpd_check_dns.py)."""

import pytest

import smtpd_check_dns
from smtpd_check_oracle import CheckOracle, Client, compare, postfix_available

pytestmark = pytest.mark.skipif(not (postfix_available() and smtpd_check_dns.available()),
                                reason="needs root, Debian's Postfix and knot")

MAIN_CF = """\
inet_protocols = all
smtpd_relay_restrictions =
smtpd_restriction_classes = lists
lists = reject_rbl_client rbl.test, reject_rhsbl_sender rhsbl.test,
    reject_rhsbl_helo rhsbl.test, reject_rhsbl_client rhsbl.test,
    reject_rhsbl_recipient rhsbl.test
smtpd_recipient_restrictions = reject_unknown_helo_hostname,
    reject_unknown_sender_domain, reject_unknown_recipient_domain,
    permit_dnswl_client wl.test, lists,
    check_sender_mx_access inline:{ {192.0.2.1 = REJECT mx host refused} },
    permit_mynetworks, reject_unauth_destination
"""


@pytest.fixture(scope="module")
def knot():
    with smtpd_check_dns.KnotServer() as server:
        yield server


@pytest.fixture(scope="module")
def dnsx(knot):
    with CheckOracle(MAIN_CF, dns_server=knot.address) as oracle:
        yield oracle


def assert_same(oracle, client, commands):
    pf_replies, py_replies, pf_log, py_log = compare(oracle, client, commands)
    assert py_replies == pf_replies
    assert py_log == pf_log
    return pf_replies


@pytest.mark.parametrize("helo", ["host.test", "mxonly.test", "nohost.test",
                                  "host6.test", "elsewhere.example", "[192.0.2.1]"])
def test_unknown_helo(dnsx, helo):
    assert_same(dnsx, Client(addr="192.0.2.30", helo=helo),
                ["MAIL FROM:<a@host.test>", "RCPT TO:<b@mx.example.com>"])


@pytest.mark.parametrize("sender", ["a@host.test", "a@nohost.test", "a@nullmx.test",
                                    "a@mxonly.test", "a@elsewhere.example", "a@[192.0.2.1]",
                                    "a@mail.test"])
def test_unknown_sender_domain(dnsx, sender):
    assert_same(dnsx, Client(addr="192.0.2.31", helo="host.test"),
                ["MAIL FROM:<%s>" % sender, "RCPT TO:<b@mx.example.com>"])


@pytest.mark.parametrize("recipient", ["b@nohost.test", "b@nullmx.test", "b@host.test"])
def test_unknown_recipient_domain(dnsx, recipient):
    assert_same(dnsx, Client(name="inside.example.net", addr="10.0.0.9", helo="host.test"),
                ["MAIL FROM:<a@host.test>", "RCPT TO:<%s>" % recipient])


@pytest.mark.parametrize("client, sender, recipient", [
    (Client(addr="192.0.2.10", helo="host.test"), "a@host.test", "b@mx.example.com"),
    (Client(name="other.example.net", addr="192.0.2.11", helo="host.test"), "a@host.test",
     "b@mx.example.com"),
    (Client(name="other.example.net", addr="192.0.2.12", helo="host.test"),
     "a@spam.example", "b@mx.example.com"),
    (Client(name="other.example.net", addr="192.0.2.12", helo="blocked.test"),
     "a@host.test", "b@mx.example.com"),
    (Client(name="other.example.net", addr="192.0.2.12", helo="host.test"),
     "a@host.test", "x@blocked.test"),
    (Client(name="v6.example.net", addr="IPv6:2001:db8::10", helo="host.test"),
     "a@host.test", "b@mx.example.com"),
    (Client(name="v6.example.net", addr="IPv6:2001:db8::11", helo="host.test"),
     "a@host.test", "b@mx.example.com"),
])
def test_block_lists(dnsx, client, sender, recipient):
    assert_same(dnsx, client, ["MAIL FROM:<%s>" % sender, "RCPT TO:<%s>" % recipient])


SERVERS_MAIN_CF = """\
smtpd_relay_restrictions =
rbl_reply_maps = inline:{ {rbl.test=$rbl_code 5.7.9 Listed by $rbl_domain: $rbl_reason (client $client_address, helo $helo_name)} }
smtpd_recipient_restrictions = permit_dnswl_client wl.test=127.0.0.2,
    reject_rbl_client rbl.test=127.0.0.[3..5;9],
    check_helo_mx_access inline:{ {192.0.2.1 = REJECT helo mx refused} },
    check_sender_ns_access inline:{ {ns.test = 550 5.7.1 sender name server refused} },
    reject_rbl_client rbl.test,
    permit_mynetworks, reject_unauth_destination
"""


@pytest.fixture(scope="module")
def servers(knot):
    with CheckOracle(SERVERS_MAIN_CF, dns_server=knot.address) as oracle:
        yield oracle


@pytest.mark.parametrize("client, sender", [
    (Client(addr="192.0.2.10", helo="other.test"), "a@elsewhere.example"),
    (Client(addr="192.0.2.11", helo="other.test"), "a@elsewhere.example"),
    (Client(addr="192.0.2.12", helo="mail.test"), "a@elsewhere.example"),
    (Client(addr="192.0.2.12", helo="badmx.test"), "a@elsewhere.example"),
    (Client(addr="192.0.2.12", helo="mxonly.test"), "a@host.test"),
    (Client(addr="192.0.2.12", helo="[192.0.2.1]"), "a@elsewhere.example"),
    (Client(addr="192.0.2.12", helo="other.example"), "a@[192.0.2.1]"),
])
def test_server_access_and_reply_maps(servers, client, sender):
    assert_same(servers, client, ["MAIL FROM:<%s>" % sender, "RCPT TO:<b@elsewhere.example>"])


MX_BACKUP_MAIN_CF = """\
smtpd_relay_restrictions =
smtpd_recipient_restrictions = permit_mx_backup, reject_unauth_destination
smtpd_log_access_permit_actions = static:all
"""


@pytest.fixture(scope="module", params=["", "192.0.2.0/24", "10.0.0.0/8"])
def mxbackup(knot, request):
    main_cf = MX_BACKUP_MAIN_CF + "permit_mx_backup_networks = %s\n" % request.param
    with CheckOracle(main_cf, dns_server=knot.address) as oracle:
        yield oracle


@pytest.mark.parametrize("recipient", ["b@backup.test", "b@primary.test", "b@nobackup.test",
                                       "b@lostmx.test", "b@nohost.test", "b@other.example",
                                       "b@mx.example.com"])
def test_permit_mx_backup(mxbackup, recipient):
    assert_same(mxbackup, Client(addr="192.0.2.40", helo="host.test"),
                ["MAIL FROM:<a@host.test>", "RCPT TO:<%s>" % recipient])

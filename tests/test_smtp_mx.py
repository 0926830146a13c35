"""smtp(8) destinations: MX lookups, preferences, fallback to the next MX host, no MX
(the domain's address), null MX, MX hosts without addresses, the "loops back to
myself" check. Both agents resolve through a real Knot DNS on loopback: pyfix's
through pyfix_dns_servers, Debian's chrooted into its queue directory, where
etc/resolv.conf names the server. The servers are scripted SMTP servers on
127.0.0.x, all on the port that smtp_tcp_port names; the log lines of both agents are
compared after masking.
"""

import os

import pytest

from master_run import free_port
from qmgr_rig import DEBIAN_QMGR, Rig, rig_available
from smtp_script_server import ScriptServer
from smtpd_check_dns import KnotServer, available as knot_available
from test_smtp_client import agent_lines, one_message

pytestmark = pytest.mark.skipif(not rig_available() or not knot_available(),
                                reason="needs root, Debian's Postfix, smtp-sink and knotd")

ZONE = """\
$ORIGIN test.
$TTL 300
@        SOA ns.test. hostmaster.test. 1 3600 600 86400 300
@        NS  ns.test.
ns       A   {address}
up1      A   127.0.0.11
up2      A   127.0.0.12
dead     A   127.0.0.13
me       A   127.0.0.1
one      MX  10 up1.test.
backup   MX  10 dead.test.
backup   MX  20 up2.test.
busy     MX  10 up1.test.
busy     MX  20 up2.test.
arecord  A   127.0.0.12
nullmx   MX  0 .
badmx    MX  10 nowhere.test.
loop     MX  10 me.test.
primary  MX  10 me.test.
primary  MX  20 up1.test.
norelay  MX  10 nowhere.test.
norelay  MX  20 me.test.
"""


@pytest.fixture(scope="module")
def knot():
    server = KnotServer()
    with open(os.path.join(server.root, "zones", "test.zone"), "w") as f:
        f.write(ZONE.format(address=server.address))
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def run(side, knot, domain, servers, main_cf_extra="", tcp_port=None):
    """Deliver one message to bob@<domain> with servers {address: rules} listening
    on one port (smtp_tcp_port); tcp_port: that port instead of a free one."""
    port = tcp_port or free_port()
    scripts = [ScriptServer(rules, host=address, port=port, name=address)
               for address, rules in servers.items()]
    extra = ("transport_maps = inline:{{{domain}=smtp:{domain}}}\n"
             "smtp_tcp_port = {port}\npyfix_dns_servers = {dns}\n"
             "smtp_host_lookup = dns\n"
             .format(domain=domain, port=port, dns=knot.address) + main_cf_extra)
    rig = Rig(qmgr=DEBIAN_QMGR, main_cf_extra=extra, agents="postfix",
              smtp="pyfix" if side == "pyfix" else "postfix-chroot")
    try:
        etc = os.path.join(rig.master.spool, "etc")
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write("nameserver %s\noptions attempts:1 timeout:2\n" % knot.address)
        rig.start()
        queue_ids = one_message(("bob@%s" % domain,))(rig)
        rig.quiet()
        return agent_lines(rig, queue_ids), [len(s.transcripts) for s in scripts]
    finally:
        rig.cleanup()
        for script in scripts:
            script.stop()


def both(knot, domain, servers, main_cf_extra="", tcp_port=None):
    return (run("pyfix", knot, domain, servers, main_cf_extra, tcp_port),
            run("postfix", knot, domain, servers, main_cf_extra, tcp_port))


def test_mx_delivery_like_postfix(knot):
    ours, theirs = both(knot, "one.test", {"127.0.0.11": {}})
    assert ours == theirs
    assert "relay=up1.test[127.0.0.11]:PORT" in ours[0][0]


def test_next_mx_after_refused_connection_like_postfix(knot):
    ours, theirs = both(knot, "backup.test", {"127.0.0.12": {}})
    assert ours == theirs
    assert ours[0][0].startswith("connect to dead.test[127.0.0.13]:")


def test_next_mx_after_4xx_greeting_like_postfix(knot):
    ours, theirs = both(knot, "busy.test", {"127.0.0.11": {"CONNECT": "421 4.3.2 busy"},
                                             "127.0.0.12": {}})
    assert ours == theirs
    assert ours[1] == [1, 1]


def test_next_mx_after_4xx_rcpt_like_postfix(knot):
    ours, theirs = both(knot, "busy.test", {"127.0.0.11": {"RCPT": "450 4.2.0 later"},
                                             "127.0.0.12": {}})
    assert ours == theirs


def test_all_mx_fail_like_postfix(knot):
    ours, theirs = both(knot, "busy.test", {"127.0.0.11": {"CONNECT": "421 4.3.2 busy"},
                                             "127.0.0.12": {"RCPT": "451 4.3.0 no"}})
    assert ours == theirs
    assert "status=deferred" in ours[0][-1]


def test_no_mx_uses_address_like_postfix(knot):
    ours, theirs = both(knot, "arecord.test", {"127.0.0.12": {}})
    assert ours == theirs


@pytest.mark.parametrize("domain", ["nullmx.test", "badmx.test", "nxdomain.test"])
def test_destination_failures_like_postfix(knot, domain):
    ours, theirs = both(knot, domain, {})
    assert ours == theirs
    assert any("to=<bob@%s>" % domain in line and "status=bounced" in line
               for line in ours[0])


@pytest.mark.parametrize("domain,text", [
    ("loop.test", "dsn=5.4.6, status=bounced (mail for loop.test loops back to myself)"),
    ("primary.test", "status=bounced (mail for primary.test loops back to myself)"),
    ("norelay.test", "dsn=4.4.4, status=deferred (unable to find primary relay for "
                     "norelay.test)"),
])
def test_loops_back_to_myself_like_postfix(knot, domain, text):
    """On port 25 an MX list whose best host is this machine is a mail loop; nothing
    is connected to."""
    ours, theirs = both(knot, domain, {}, tcp_port=25)
    assert ours == theirs
    assert text in ours[0][0]


def test_defer_if_no_mx_address_found_like_postfix(knot):
    ours, theirs = both(knot, "badmx.test", {},
                        "smtp_defer_if_no_mx_address_found = yes\n")
    assert ours == theirs
    assert "status=deferred" in ours[0][-1]


def test_mx_address_limit_like_postfix(knot):
    """smtp_mx_address_limit = 1: only the best MX host is tried."""
    ours, theirs = both(knot, "backup.test", {"127.0.0.12": {}},
                        "smtp_mx_address_limit = 1\n")
    assert ours == theirs
    assert "status=deferred (connect to dead.test" in ours[0][-1]

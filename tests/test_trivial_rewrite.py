"""trivial-rewrite(8): pyfix's rewrite and resolve service against Debian's.

Each configuration starts Debian's Postfix master and a pyfix master on the same main.cf
(tests/rewrite_oracle.py), sends the same rewrite, resolve and verify requests over
the attribute protocol to both private/rewrite sockets, and compares the replies
attribute by attribute, then the warnings both trivial-rewrite processes logged. Plus
pyfix's own resolve client against both services, master spawning the daemon from the
stock master.cf line, the restart after a table change, and Debian's smtpd using pyfix's
service (its VRFY replies equal those it gives next to Debian's trivial-rewrite).
"""

import os
import socket

import pytest

from cleanup_oracle import postfix_available
from master_run import free_port, wait_until
from rewrite_oracle import PYFIX_REWRITE_SERVICE, PostfixRewrite, PyfixRewrite, RewritePair, \
    TableDir, rewrite_log
from pyfix.common.config import Config
from pyfix.common.rewrite_clnt import RewriteRules
from pyfix.common.resolve_clnt import CLASS_ALIAS, CLASS_DEFAULT, CLASS_LOCAL, \
    CLASS_RELAY, CLASS_VIRTUAL, FLAG_FAIL, ResolveClient, ResolveReply

pytestmark = pytest.mark.skipif(not postfix_available(),
                                reason="needs root and Debian's Postfix")

REWRITE_ADDRESSES = [
    "user", "user@host", "user@host.sub", "host!user", "a!b!user", "host!user@dom",
    "user%host", "user%a%b", "user%host@dom", "@a,@b:user@c", "@a:user", "", "@", '""',
    "user@", "user@host.", "user@host..", "user@.", "user@[1.2.3.4]", "user@foo[1.2.3.4]",
    "foo bar@example.com", '"a b"@x', '"a@b"@x', '"a%b"', "postmaster",
    "Postmaster@LOCALHOST", "user@localhost", "MAILER-DAEMON", "a.b.c", "user+ext",
    "\u00fcser@ex\u00e4mple.com", "x@y@z", "user@[IPv6:::1]", "@host", "!user", "user!",
    "%host", "user.@host", "user@host.domain.", '"quoted user"', "user@[1.2.3.4].",
]

RESOLVE_ADDRESSES = [
    "user", "user@mx.example.com", "USER@MX.Example.COM", "user@localhost",
    "user@localhost.example.com", "user@example.com", "user@sub.example.com",
    "user@other.org", "user@other.org.", "user@[127.0.0.1]", "user@[127.0.0.2]",
    "user@[IPv6:::1]", "user@[1.2.3]", "user@[foo]", "user@[127.0.0.1]x",
    "user@127.0.0.1", "user@1.2.3.4", "", "@", "postmaster", "MAILER-DAEMON", "user@",
    "a%b@localhost", "a%b", "host!user", "host!user@localhost", "a!b!user@localhost",
    "@a,@b:user@other.org", "@localhost:user@other.org", "a@b@localhost",
    "a b@localhost", "a b@other.org", "user@other.org@localhost",
    "user%other.org@mx.example.com", "user@other.org@mx.example.com", "-x@localhost",
    "-x@other.org", "user@bad_host!", "user@host..", "user@.host", "user@host.",
    "\u00fcser@ex\u00e4mple.com", "user@xn--bcher-kva.example", "user+ext@example.com",
    "user+ext@other.org", "user@alias.test", "user@sub.alias.test", "user@alias2.test",
    "user@vmbox.test",
    "user@relay.test", "user@sub.relay.test", "user@deep.sub.relay.test",
    "user@transport.test", "user@sub.transport.test", "special@other.org",
    "special+x@other.org", "moved@other.org", "user@error.test", "user@retry.test",
    "user@nexthop.test", "user@colon.test", "user@regexp.test", "x@mx.example.com@",
    '"a@b"', "user@[127.0.0.1]@other.org", "user%[127.0.0.1]",
    "user@sub.example.org", "user@example.org", "user@deep.sub.example.org",
    "user@example.net", "user+x@example.net", "user@sub.example.net",
    "user@[192.0.2.1]", "user@192.0.2.1", "user@[IPv6:fe80::1:2:3]", "a\"b@other.org",
]

# Not UTF-8 (0xE9 as a byte). Left out with tables that cannot be opened: Postfix checks
# such a key before its surrogate table fails (not found, no error), pyfix's surrogate
# fails first (maps/dict.py gives surrogates no UTF-8 proxy).
NON_UTF8_ADDRESSES = ["caf\udce9@other.org", "user@caf\udce9.org", "caf\udce9@localhost"]

SENDERS = ["", "alice@example.com", "bob@sub.example.com", "carol@other.org",
           "dave@dunno.test"]


# -- the configurations ----------------------------------------------------------------------

def config_default(tables):
    return ""


def config_relayhost(tables):
    transport = tables.write("transport_parent", "example.org  smtp:[parent.example.net]\n"
                             "user@example.net  :[user-hop.example.net]\n", postmap="hash")
    return ("transport_maps = %s\n"
            "parent_domain_matches_subdomains = transport_maps\n"
            "relayhost = [relay.example.net]:587\n"
            "remote_header_rewrite_domain = remote.example\n"
            "swap_bangpath = no\nallow_percent_hack = no\n"
            "append_dot_mydomain = yes\n"
            "mydestination = $myhostname, localhost, example.com\n"
            "local_transport = local\nempty_address_recipient = postmaster\n"
            "resolve_null_domain = yes\nresolve_numeric_domain = yes\n"
            "allow_min_user = yes\nresolve_dequoted_address = no\n"
            "proxy_interfaces = 192.0.2.1\nsmtputf8_enable = no\n" % transport)


def config_classes(tables):
    transport = tables.write("transport", (
        "transport.test  relay:[gw.example.net]\n"
        ".transport.test  :[sub-gw.example.net]\n"
        "special@other.org  smtp:[special.example.net]:2525\n"
        "error.test  error:5.7.1 go away\n"
        "retry.test  retry\n"
        "nexthop.test  :\n"
        "colon.test  lmtp:unix:/var/run/lmtp\n"
        "relay.test  smtp\n"), postmap="hash")
    regexp = tables.write("transport.re", "/^user@regexp\\.test$/ discard:silently\n")
    virtual = tables.write("virtual", "alias.test  whatever\nalias2.test  x\n"
                           "user@alias.test  bob\n", postmap="hash")
    relocated = tables.write("relocated", "moved@other.org  new@place.example\n",
                             postmap="hash")
    return ("virtual_alias_maps = %s\n"
            "virtual_mailbox_domains = vmbox.test, relay.test\n"
            "virtual_transport = virtual:vhost.example\n"
            "relay_domains = relay.test, .other-relay.test\n"
            "parent_domain_matches_subdomains = relay_domains\n"
            "transport_maps = %s, regexp:%s\n"
            "relocated_maps = %s\n"
            "show_user_unknown_table_name = no\n"
            "mydestination = $myhostname, localhost, alias.test\n"
            "relay_transport = relay:[relay-gw.example.net]\n"
            "recipient_delimiter = +\n"
            "append_dot_mydomain = no\nappend_at_myorigin = no\n"
            % (virtual, transport, regexp, relocated))


def config_senders(tables):
    relay = tables.write("sender_relay", (
        "alice@example.com  [alice-relay.example.net]\n"
        "@sub.example.com  [sub-relay.example.net]:25\n"
        "<>  [null-relay.example.net]\n"
        "dave@dunno.test  DUNNO\n"), postmap="hash")
    default = tables.write("sender_transport", (
        "alice@example.com  alice-smtp:\n"
        "carol@other.org  smtp:[carol.example.net]\n"
        "<>  null-smtp\n"
        "dave@dunno.test  dunno\n"), postmap="hash")
    transport = tables.write("transport_wild", (
        "*  wild:[wild.example.net]\n"
        "other.org  :\n"
        "example.com  smtp:\n"), postmap="hash")
    return ("sender_dependent_relayhost_maps = %s\n"
            "sender_dependent_default_transport_maps = %s\n"
            "relayhost = [global-relay.example.net]\n"
            "relay_domains = relay.test\n"
            "transport_maps = %s\n"
            "address_verify_transport_maps =\n"
            "address_verify_relayhost = [probe-relay.example.net]\n"
            "address_verify_default_transport = probe-smtp\n"
            "address_verify_local_transport = probe-local\n"
            "address_verify_sender_dependent_relayhost_maps =\n"
            "address_verify_sender_dependent_default_transport_maps =\n"
            % (relay, default, transport))


def config_broken(tables):
    missing = os.path.join(tables.root, "missing")
    return ("transport_maps = hash:%s\n"
            "sender_dependent_relayhost_maps = hash:%s-relay\n"
            "relay_domains = relay.test, hash:%s-domains\n"
            "address_verify_transport_maps =\n"
            "address_verify_sender_dependent_relayhost_maps =\n"
            "address_verify_default_transport = :nexthop.example\n"
            % (missing, missing, missing))


def config_broken_classes(tables):
    missing = os.path.join(tables.root, "missing")
    return ("virtual_mailbox_domains = vmbox.test, hash:%s-vmbox\n"
            "relocated_maps = hash:%s-relocated\n"
            "sender_dependent_default_transport_maps = hash:%s-sender\n"
            % (missing, missing, missing))


def config_broken_mydestination(tables):
    missing = os.path.join(tables.root, "missing")
    return ("mydestination = $myhostname, hash:%s-mydestination, localhost\n"
            "virtual_alias_domains = alias.test, hash:%s-alias\n" % (missing, missing))


CONFIGS = {"default": config_default, "relayhost": config_relayhost,
           "classes": config_classes, "senders": config_senders, "broken": config_broken,
           "broken_classes": config_broken_classes,
           "broken_mydestination": config_broken_mydestination}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request):
    tables = TableDir()
    pair = None
    try:
        pair = RewritePair(CONFIGS[request.param](tables))
        pair.start()
        pair.config_name = request.param
        yield pair
    finally:
        if pair is not None:
            pair.stop()
        tables.cleanup()


def resolve_addresses(pair):
    if pair.config_name.startswith("broken"):
        return RESOLVE_ADDRESSES
    return RESOLVE_ADDRESSES + NON_UTF8_ADDRESSES


def differences(pair, method, cases):
    out = []
    for args in cases:
        mine, theirs = pair.ask_both(method, *args)
        if mine != theirs or mine == "EOF":
            out.append("%s%r:\n  pyfix:  %r\n  postfix: %r" % (method, args, mine, theirs))
    return out


# -- the differential tests ------------------------------------------------------------------

def test_rewrite_same_as_postfix(pair):
    cases = [(rule, address) for rule in ("local", "remote") for address in REWRITE_ADDRESSES]
    assert differences(pair, "rewrite", cases) == []


def test_in_process_rules_same_as_service(pair):
    """rewrite_clnt's in-process rules (cleanup's fallback) answer as the service does
    (the empty address is left out: the service would log one more warning than
    Postfix's, which test_same_warnings_as_postfix counts)."""
    rules = RewriteRules(Config.load(pair.pyfix.config_dir))
    client = pair.client(pair.pyfix)
    for rule in ("local", "remote"):
        for address in filter(None, REWRITE_ADDRESSES):
            assert [("flags", "0"), ("address", rules.rewrite_addr(rule, address))] == \
                client.rewrite(rule, address), (rule, address)


def test_resolve_same_as_postfix(pair):
    cases = [(address, sender) for sender in SENDERS for address in resolve_addresses(pair)]
    assert differences(pair, "resolve", cases) == []


def test_verify_same_as_postfix(pair):
    cases = [(address, sender, "verify") for sender in SENDERS[:3]
             for address in resolve_addresses(pair)]
    assert differences(pair, "resolve", cases) == []


def test_same_warnings_as_postfix(pair):
    """After the requests above: what both logged, in order."""
    cases = [(address, sender) for sender in SENDERS[:2] for address in resolve_addresses(pair)]
    differences(pair, "resolve", cases)
    differences(pair, "rewrite", [("local", "")])

    def settled():
        return len(rewrite_log(pair.pyfix)) == len(rewrite_log(pair.postfix))
    wait_until(settled, 20)          # a loaded machine: either log may lag
    assert rewrite_log(pair.pyfix) == rewrite_log(pair.postfix)


def test_bad_requests_same_as_postfix(pair):
    """A bad rule, an unknown request and a missing attribute: the server drops the
    client (EOF) on both sides and logs the same warning."""
    for attrs in ([("request", "rewrite"), ("rule", "bogus"), ("address", "x")],
                  [("request", "frobnicate")],
                  [("request", "resolve"), ("address", "x")]):
        results = []
        for side in (pair.pyfix, pair.postfix):
            client = pair.client(side)
            try:
                results.append(client.ask(attrs))
            except EOFError:
                results.append("EOF")
        pair.reconnect()
        assert results[0] == results[1] == "EOF"


KNOWN = {   # config: (address, sender) -> (transport, nexthop, class or flag bits)
    "default": {("user@other.org", ""): ("smtp", "other.org", CLASS_DEFAULT),
                ("user", ""): ("local", "mx.example.com", CLASS_LOCAL)},
    "relayhost": {("user@other.org", ""): ("smtp", "[relay.example.net]:587", CLASS_DEFAULT),
                  ("user@deep.sub.example.org", ""): ("smtp", "[parent.example.net]",
                                                      CLASS_DEFAULT),
                  ("user@example.net", ""): ("smtp", "[user-hop.example.net]", CLASS_DEFAULT),
                  ("user@[192.0.2.1]", ""): ("local", "[192.0.2.1]", CLASS_LOCAL)},
    "classes": {("special+x@other.org", ""): ("smtp", "[special.example.net]:2525",
                                              CLASS_DEFAULT),
                ("user@deep.sub.relay.test", ""): ("relay", "[relay-gw.example.net]",
                                                   CLASS_RELAY),
                ("user@vmbox.test", ""): ("virtual", "vhost.example", CLASS_VIRTUAL),
                ("user@alias2.test", ""): ("error", "5.1.1 User unknown", CLASS_ALIAS),
                ("moved@other.org", ""): ("error", "5.1.6 User has moved to new@place.example",
                                          CLASS_DEFAULT),
                ("user@regexp.test", ""): ("discard", "silently", CLASS_DEFAULT),
                ("user@error.test", ""): ("error", "5.7.1 go away", CLASS_DEFAULT)},
    "senders": {("user@other.org", ""): ("null-smtp", "[null-relay.example.net]",
                                         CLASS_DEFAULT),
                ("user@nowhere.test", "alice@example.com"): ("wild", "[wild.example.net]",
                                                             CLASS_DEFAULT),
                ("user@example.com", "bob@sub.example.com"): ("smtp", "example.com",
                                                              CLASS_DEFAULT),
                ("user@other.org", "dave@dunno.test"): ("smtp", "[global-relay.example.net]",
                                                       CLASS_DEFAULT)},
    "broken": {("user@other.org", ""): (None, None, FLAG_FAIL)},
    "broken_classes": {("user@other.org", ""): (None, None, FLAG_FAIL)},
    "broken_mydestination": {("user@other.org", ""): (None, None, FLAG_FAIL)},
}


def test_known_answers(pair):
    """A few answers spelled out, so that a reply both sides get wrong would show."""
    for (address, sender), (transport, nexthop, bits) in KNOWN[pair.config_name].items():
        answer = dict(pair.client(pair.pyfix).resolve(address, sender)[1:])
        assert int(answer["flags"]) & bits == bits, (address, answer)
        if transport is not None:
            assert (answer["transport"], answer["nexthop"]) == (transport, nexthop), \
                (address, sender, answer)


# -- pyfix's resolve client ------------------------------------------------------------------

def client_for(side):
    config = Config.load(side.config_dir)
    return ResolveClient(config, os.path.join(side.spool, "private"))


@pytest.mark.parametrize("pair", ["default"], indirect=True)
def test_resolve_client_against_both(pair):
    """pyfix's client gets the same ResolveReply from Debian's service and pyfix's."""
    replies = []
    for side in (pair.pyfix, pair.postfix):
        client = client_for(side)
        replies.append([client.query_from(sender, address, attempts=1)
                        for sender in ("", "alice@example.com")
                        for address in ("user", "user@other.org", "a%b@localhost", "")]
                       + [client.verify_from("", "user@localhost", attempts=1)])
        client.close()
    assert replies[0] == replies[1]
    assert replies[0][0] == ResolveReply("local", "mx.example.com", "user@mx.example.com",
                                         CLASS_LOCAL)


@pytest.mark.parametrize("pair", ["default"], indirect=True)
def test_resolve_client_cache(pair):
    """The one-entry cache answers a repeated question without the service; another
    question needs the service, and without one the client gives up after its attempts."""
    client = client_for(pair.postfix)
    first = client.query_from("", "user@other.org", attempts=1)
    client.close()
    client.path = os.path.join(pair.postfix.spool, "private", "no-such-service")
    assert client.query_from("", "user@other.org", attempts=1) == first
    assert client.query_from("", "user@example.net", attempts=2) is None


# -- master runs it -----------------------------------------------------------------------------

STOCK_SERVICE = "rewrite   unix  -       -       y       -       -       trivial-rewrite\n"


def test_spawned_from_stock_master_cf_line():
    """The stock master.cf line (chroot, unprivileged) gives a working service."""
    with open(os.path.join(os.path.dirname(__file__), "..", "etc", "master.cf")) as f:
        assert STOCK_SERVICE.split() in [line.split() for line in f]
    run = PyfixRewrite("", service=STOCK_SERVICE)
    try:
        run.start()
        assert wait_until(lambda: os.path.exists(run.socket_path()))
        client = client_for(run)
        reply = client.query_from("", "user@other.org", attempts=3)
        assert reply == ResolveReply("smtp", "other.org", "user@other.org", CLASS_DEFAULT)
        procs = run.children("rewrite")
        assert procs and "trivial-rewrite" in " ".join(procs[0].cmdline())
        assert procs[0].uids().real != 0
        client.close()
    finally:
        run.cleanup()


def test_restarts_when_a_table_changes():
    """A changed transport table makes the process exit within ~10 s; master starts a
    new one, which answers from the new table."""
    tables = TableDir()
    run = None
    try:
        transport = tables.write("transport", "other.org  relay:[one.example]\n",
                                 postmap="hash")
        run = PyfixRewrite("transport_maps = %s\n" % transport)
        run.start()
        assert wait_until(lambda: os.path.exists(run.socket_path()))
        client = client_for(run)
        assert client.query_from("", "user@other.org", attempts=3).nexthop == "[one.example]"
        tables.write("transport", "other.org  relay:[two.example]\n", postmap="hash")
        run.wait_log(r"trivial-rewrite\[\d+\]: table \S+ has changed -- restarting", timeout=30)
        client.close()
        client.cache = None
        assert wait_until(lambda: client.query_from("", "user@other.org", attempts=3)
                          .nexthop == "[two.example]", 10)
        client.close()
    finally:
        if run is not None:
            run.cleanup()
        tables.cleanup()


# -- Postfix's own programs as clients ---------------------------------------------------------

SMTPD_SERVICE = "127.0.0.1:%d inet n - n - - %s\n"
SMTPD_MAIN_CF = ("mynetworks = 192.0.2.0/24\nlocal_recipient_maps =\n"
                 "smtpd_client_connection_count_limit = 0\nrelay_domains = relay.test\n"
                 "smtpd_relay_restrictions = reject_unauth_destination\n")
VRFY_SESSION = ["HELO client.example", "VRFY <user@other.org>", "VRFY <user@relay.test>",
                "VRFY <user@sub.relay.test>", "VRFY <user@mx.example.com>",
                "VRFY <a%b@localhost>", "VRFY user", "VRFY <@a,@b:x@other.org>",
                "VRFY <user@[127.0.0.1]>", "VRFY <u@[1.2.3]>", "VRFY <x@localhost@other.org>",
                "QUIT"]


def smtp_session(port, commands):
    """The replies of a session (greeting first), each as its text lines."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rb")

        def reply():
            lines = []
            while True:
                line = stream.readline().decode("utf-8", "replace").rstrip("\r\n")
                lines.append(line)
                if line[3:4] != "-":
                    return "\n".join(lines)
        replies = [reply()]
        for command in commands:
            sock.sendall(command.encode() + b"\r\n")
            replies.append(reply())
        return replies


def test_postfix_smtpd_uses_pyfix_trivial_rewrite():
    """Debian's smtpd, run by pyfix's master next to pyfix's trivial-rewrite, rewrites
    and resolves through it (reject_unauth_destination): its replies are those of
    Debian's smtpd next to Debian's trivial-rewrite."""
    pyfix_port, postfix_port = free_port(), free_port()
    pyfix = PyfixRewrite(SMTPD_MAIN_CF, service=PYFIX_REWRITE_SERVICE + SMTPD_SERVICE
                         % (pyfix_port, "/usr/lib/postfix/sbin/smtpd"))
    postfix = PostfixRewrite(SMTPD_MAIN_CF)
    with open(os.path.join(postfix.etc, "master.cf"), "a") as f:
        f.write(SMTPD_SERVICE % (postfix_port, "smtpd"))
    try:
        postfix.start()
        pyfix.start()
        assert wait_until(lambda: os.path.exists(pyfix.socket_path()))
        mine = smtp_session(pyfix_port, VRFY_SESSION)
        theirs = smtp_session(postfix_port, VRFY_SESSION)
        assert mine == theirs
        assert mine[2] == "554 5.7.1 <user@other.org>: Relay access denied"
        assert mine[3] == "252 2.0.0 <user@relay.test>"
    finally:
        pyfix.cleanup()
        postfix.cleanup()

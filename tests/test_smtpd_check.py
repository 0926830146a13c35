"""pyfix's access policy (daemons/smtpd/check) against Debian's Postfix smtpd.

Each test plays one SMTP session twice (tests/smtpd_check_oracle.py): over TCP against
Debian's smtpd, with XCLIENT setting the client's name, address and HELO, and
in-process through pyfix's SmtpdCheck built from the same main.cf and resolving
through the same trivial-rewrite. The replies (code, enhanced code, text) and the
access-decision log lines (`NOQUEUE: reject: ...`, `warn:`, `hold:`, warnings) must be
the same, byte for byte.
"""

import pytest

from smtpd_check_oracle import CheckOracle, Client, compare, postfix_available

pytestmark = pytest.mark.skipif(not postfix_available(),
                                reason="needs root and Debian's Postfix")

OUTSIDE = Client()
INSIDE = Client(name="inside.example.net", addr="10.1.2.3")
UNKNOWN = Client(name="x", name_status=5, addr="192.0.2.77")
TEMPFAIL = Client(name="x", name_status=4, addr="192.0.2.78")
MAIL = "MAIL FROM:<alice@example.org>"


def assert_same(oracle, client, commands):
    pf_replies, py_replies, pf_log, py_log = compare(oracle, client, commands)
    assert py_replies == pf_replies
    assert py_log == pf_log
    return pf_replies


def rcpts(*addresses):
    return [MAIL] + ["RCPT TO:<%s>" % address for address in addresses]


def _oracle_with_tables(main_cf, tables):
    oracle = CheckOracle(main_cf.replace("{etc}", "/ETC"), {})
    etc = oracle.postfix.etc
    with open(etc + "/main.cf") as f:
        text = f.read().replace("/ETC", etc)
    with open(etc + "/main.cf", "w") as f:
        f.write(text)
    for name, body in tables.items():
        with open("%s/%s" % (etc, name), "w") as f:
            f.write(body)
    return oracle


# -- the stock relay protection -------------------------------------------------------------

@pytest.fixture(scope="module")
def stock():
    with CheckOracle() as oracle:
        yield oracle


RELAY_FORMS = [
    "victim@elsewhere.example",
    "victim%elsewhere.example@mx.example.com",
    '"victim@elsewhere.example"@mx.example.com',
    "@mx.example.com:victim@elsewhere.example",
    "elsewhere.example!victim@mx.example.com",
    "elsewhere.example!victim",
    "victim@elsewhere.example@mx.example.com",
    '"victim%elsewhere.example"@mx.example.com',
    "victim@[192.0.2.99]",
    "victim%elsewhere.example@[127.0.0.1]",
    '"victim@elsewhere.example"',
    "@mx.example.com,@other.example:victim@elsewhere.example",
    "victim@elsewhere.example.",
    "VICTIM@ELSEWHERE.EXAMPLE",
    "victim@mx.example.com@elsewhere.example",
    "vïctim@elsewhere.example",
    '"v i c t i m"@elsewhere.example',
    "x" * 300 + "@elsewhere.example",
]


@pytest.mark.parametrize("address", RELAY_FORMS)
def test_no_open_relay(stock, address):
    replies = assert_same(stock, OUTSIDE, rcpts(address))
    assert not replies[1].startswith("2"), replies


def test_final_destination_is_accepted(stock):
    replies = assert_same(stock, OUTSIDE, rcpts("bob@mx.example.com", "postmaster",
                                                "bob@localhost", "Bob@LOCALHOST.example.com"))
    assert all(reply.startswith("250") for reply in replies)


def test_mynetworks_may_relay(stock):
    replies = assert_same(stock, INSIDE, rcpts("victim@elsewhere.example"))
    assert replies[1].startswith("250")


@pytest.fixture(scope="module")
def networks():
    main_cf = ("inet_protocols = all\n"
               "mynetworks = 192.0.2.0/28, [2001:db8:1::]/48, !10.9.9.9, 10.0.0.0/8, "
               ".trusted.example, [192.0.2.77], inline:{ {198.51.100.5 = x} }\n")
    with CheckOracle(main_cf) as oracle:
        yield oracle


@pytest.mark.parametrize("client", [
    Client(addr="192.0.2.5"), Client(addr="192.0.2.17"), Client(addr="IPv6:2001:db8:1::5"),
    Client(addr="IPv6:2001:db8:2::5"), Client(addr="10.9.9.9"), Client(addr="10.9.9.8"),
    Client(name="host.trusted.example", addr="203.0.113.1"), Client(addr="192.0.2.77"),
    Client(addr="198.51.100.5"),
])
def test_mynetworks_patterns(networks, client):
    assert_same(networks, client, rcpts("victim@elsewhere.example"))


def test_null_sender_and_data(stock):
    assert_same(stock, OUTSIDE, ["MAIL FROM:<>", "RCPT TO:<bob@mx.example.com>",
                                 "RCPT TO:<x@elsewhere.example>", "DATA"])


# -- a full set of restrictions and access(5) actions --------------------------------------

ACCESS_MAIN_CF = """\
smtpd_restriction_classes = friendly, strict
friendly = permit
strict = reject_non_fqdn_sender, reject_unauth_destination
smtpd_client_restrictions = check_client_access texthash:{etc}/clients
smtpd_helo_restrictions = check_helo_access texthash:{etc}/helos
smtpd_sender_restrictions = check_sender_access texthash:{etc}/senders
smtpd_recipient_restrictions = check_recipient_access texthash:{etc}/recipients,
    permit_mynetworks, reject_unauth_destination
smtpd_data_restrictions = reject_multi_recipient_bounce
"""

CLIENTS = """\
blocked.example.net REJECT
deferred.example.net DEFER Come back later
texted.example.net 550 5.7.0 Go away
192.0.2.200 REJECT by address
192.0.2 DUNNO
198.51.100 554 Whole network
.sub.example.net REJECT subdomain
warn.example.net WARN watch this one
info.example.net INFO just so you know
"""
HELOS = """\
bad.helo REJECT bad helo
friend.helo OK
"""
SENDERS = """\
spammer@example.org REJECT
example.com 450 4.1.8 Sender domain tempfail
@bounce.example REJECT no bounces
user@ DUNNO
<> REJECT null sender refused
held@example.org HOLD
held2@example.org HOLD on purpose
dropped@example.org DISCARD
dropped2@example.org DISCARD silently
filtered@example.org FILTER smtp:[192.0.2.1]:25
badfilter@example.org FILTER nocolon
redirected@example.org REDIRECT trap@example.org
badredirect@example.org REDIRECT nowhere
bcc@example.org BCC copy@example.org
prepended@example.org PREPEND X-Tag: yes
badprepend@example.org PREPEND not a header
strict@example.org strict
friend@example.org friendly
dip@example.org DEFER_IF_PERMIT maybe later
dir@example.org DEFER_IF_REJECT 4.7.9 maybe
numeric@example.org 12345
relay@example.org RELAY
uppercase@example.org reject UPPER
lookup@example.org hash:/etc/postfix/nothing
unknown@example.org no_such_restriction
code@example.org 599 bad code
dsn@example.org 550 5.1.1 mailbox dsn
"""
RECIPIENTS = """\
blocked@mx.example.com REJECT recipient blocked
ok@elsewhere.example OK
dunno@elsewhere.example DUNNO
mx.example.com DUNNO
"""


@pytest.fixture(scope="module")
def access():
    tables = {"clients": CLIENTS, "helos": HELOS, "senders": SENDERS,
              "recipients": RECIPIENTS}
    with _oracle_with_tables(ACCESS_MAIN_CF, tables) as oracle:
        yield oracle


@pytest.mark.parametrize("name, addr", [
    ("blocked.example.net", "192.0.2.20"), ("deferred.example.net", "192.0.2.21"),
    ("texted.example.net", "192.0.2.22"), ("other.example.net", "192.0.2.200"),
    ("other.example.net", "198.51.100.7"), ("a.sub.example.net", "203.0.113.5"),
    ("warn.example.net", "203.0.113.6"), ("info.example.net", "203.0.113.7"),
])
def test_client_access(access, name, addr):
    assert_same(access, Client(name=name, addr=addr), rcpts("bob@mx.example.com"))


@pytest.mark.parametrize("helo", ["bad.helo", "friend.helo", "other.helo"])
def test_helo_access(access, helo):
    assert_same(access, Client(helo=helo), rcpts("bob@mx.example.com",
                                                 "x@elsewhere.example"))


@pytest.mark.parametrize("sender", [
    "spammer@example.org", "x@example.com", "x@sub.example.com", "x@bounce.example", "",
    "held@example.org", "held2@example.org", "dropped@example.org", "dropped2@example.org",
    "filtered@example.org", "badfilter@example.org", "redirected@example.org",
    "badredirect@example.org", "bcc@example.org", "prepended@example.org",
    "badprepend@example.org", "strict@example.org", "friend@example.org",
    "dip@example.org", "dir@example.org", "numeric@example.org", "relay@example.org",
    "uppercase@example.org", "lookup@example.org", "unknown@example.org",
    "code@example.org", "dsn@example.org", "user@example.net", "SPAMMER@EXAMPLE.ORG",
])
def test_sender_access(access, sender):
    assert_same(access, OUTSIDE, ["MAIL FROM:<%s>" % sender, "RCPT TO:<bob@mx.example.com>",
                                  "RCPT TO:<x@elsewhere.example>"])


@pytest.mark.parametrize("recipient", [
    "blocked@mx.example.com", "ok@elsewhere.example", "dunno@elsewhere.example",
    "bob@mx.example.com",
])
def test_recipient_access(access, recipient):
    assert_same(access, OUTSIDE, rcpts(recipient))


def test_multi_recipient_bounce(access):
    assert_same(access, INSIDE, ["MAIL FROM:<>", "RCPT TO:<a@mx.example.com>",
                                 "RCPT TO:<b@mx.example.com>", "DATA"])


def test_data_after_discard(access):
    assert_same(access, OUTSIDE, ["MAIL FROM:<dropped@example.org>",
                                  "RCPT TO:<a@mx.example.com>", "DATA"])


# -- host name, address and domain syntax ---------------------------------------------------

SYNTAX_MAIN_CF = """\
smtpd_helo_required = no
smtpd_recipient_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname,
    reject_non_fqdn_sender, reject_non_fqdn_recipient, reject_unknown_client_hostname,
    reject_unknown_reverse_client_hostname, permit_mynetworks, reject_unauth_destination
"""


@pytest.fixture(scope="module")
def syntax():
    with CheckOracle(SYNTAX_MAIN_CF) as oracle:
        yield oracle


@pytest.mark.parametrize("helo", [
    "good.example.net", "nodots", "bad_under.example", "[192.0.2.1]", "[999.1.1.1]",
    "192.0.2.1", "trailing.dot.", "double..dot", "-leading.example", "[IPv6:::1]",
    "a" * 70 + ".example",
])
def test_helo_syntax(syntax, helo):
    assert_same(syntax, Client(helo=helo), rcpts("bob@mx.example.com"))


@pytest.mark.parametrize("sender, recipient", [
    ("alice", "bob@mx.example.com"), ("alice@example", "bob@mx.example.com"),
    ("alice@example.org", "bob"), ("alice@example.org", "bob@localhost"),
    ("alice@[192.0.2.1]", "bob@mx.example.com"), ("alice@example.org.", "bob@mx.example.com"),
])
def test_fqdn_addresses(syntax, sender, recipient):
    assert_same(syntax, Client(helo="good.example.net"),
                ["MAIL FROM:<%s>" % sender, "RCPT TO:<%s>" % recipient])


@pytest.mark.parametrize("client", [UNKNOWN, TEMPFAIL,
                                    Client(name="fine.example.net", reverse_status=5),
                                    Client(name="fine.example.net", reverse_status=4)])
def test_unknown_client(syntax, client):
    client.helo = "good.example.net"
    assert_same(syntax, client, rcpts("bob@mx.example.com"))


# -- warn_if_reject, defer_if_permit, defer_if_reject ----------------------------------------

SOFT_MAIN_CF = """\
smtpd_recipient_restrictions = warn_if_reject reject_non_fqdn_sender,
    warn_if_reject reject_unauth_destination, defer_if_reject,
    reject_non_fqdn_recipient, defer_if_permit, permit_mynetworks,
    reject_unauth_destination
"""


@pytest.fixture(scope="module")
def soft():
    with CheckOracle(SOFT_MAIN_CF) as oracle:
        yield oracle


@pytest.mark.parametrize("client, sender, recipient", [
    (OUTSIDE, "alice", "bob@mx.example.com"),
    (OUTSIDE, "alice@example.org", "bob"),
    (OUTSIDE, "alice@example.org", "x@elsewhere.example"),
    (INSIDE, "alice@example.org", "x@elsewhere.example"),
    (OUTSIDE, "alice@example.org", "bob@mx.example.com"),
])
def test_soft_decisions(soft, client, sender, recipient):
    assert_same(soft, client, ["MAIL FROM:<%s>" % sender, "RCPT TO:<%s>" % recipient])


# -- recipient validation -------------------------------------------------------------------

RCPT_MAIN_CF = """\
local_recipient_maps = texthash:{etc}/local
virtual_alias_domains = alias.example
virtual_alias_maps = texthash:{etc}/virtual
virtual_mailbox_domains = mailbox.example
virtual_mailbox_maps = texthash:{etc}/mailboxes
relay_domains = relay.example
relay_recipient_maps = texthash:{etc}/relayed
smtpd_reject_unlisted_sender = yes
"""
RCPT_TABLES = {
    "local": "bob x\nalice x\n",
    "virtual": "info@alias.example bob@mx.example.com\n@catch.example bob\n",
    "mailboxes": "carol@mailbox.example carol/\n",
    "relayed": "dave@relay.example x\n",
}


@pytest.fixture(scope="module")
def rcptmaps():
    with _oracle_with_tables(RCPT_MAIN_CF, RCPT_TABLES) as oracle:
        yield oracle


@pytest.mark.parametrize("recipient", [
    "bob@mx.example.com", "nobody@mx.example.com", "bob+ext@mx.example.com",
    "postmaster@mx.example.com", "MAILER-DAEMON@mx.example.com", "info@alias.example",
    "other@alias.example", "carol@mailbox.example", "nobody@mailbox.example",
    "dave@relay.example", "eve@relay.example", "nobody@localhost", "Bob@MX.example.com",
])
def test_recipient_validation(rcptmaps, recipient):
    assert_same(rcptmaps, OUTSIDE, rcpts(recipient))


@pytest.mark.parametrize("sender", ["bob@mx.example.com", "nobody@mx.example.com",
                                    "x@elsewhere.example", "nobody@mailbox.example"])
def test_unlisted_sender(rcptmaps, sender):
    assert_same(rcptmaps, OUTSIDE, ["MAIL FROM:<%s>" % sender, "RCPT TO:<bob@mx.example.com>"])


def test_vrfy(rcptmaps):
    assert_same(rcptmaps, OUTSIDE, ["VRFY nobody@mx.example.com", "VRFY x@elsewhere.example"])


# -- smtpd_delay_reject = no, ETRN, codes ----------------------------------------------------

EARLY_MAIN_CF = """\
smtpd_delay_reject = no
smtpd_helo_restrictions = reject_non_fqdn_helo_hostname
smtpd_sender_restrictions = reject_non_fqdn_sender
smtpd_etrn_restrictions = reject_non_fqdn_helo_hostname, check_etrn_access inline:{{no.example=REJECT}}
non_fqdn_reject_code = 550
relay_domains_reject_code = 553
message_size_limit = 1000
"""


@pytest.fixture(scope="module")
def early():
    with CheckOracle(EARLY_MAIN_CF.replace("{{", "{").replace("}}", "}")) as oracle:
        yield oracle


def test_message_size_limit(early):
    assert_same(early, Client(helo="h.example"), ["MAIL FROM:<a@example.org> SIZE=5000",
                                                  "MAIL FROM:<a@example.org> SIZE=500"])


def test_early_helo_and_mail(early):
    assert_same(early, Client(helo=None), ["EHLO nodots", "MAIL FROM:<alice>",
                                           "MAIL FROM:<alice@example.org>",
                                           "RCPT TO:<x@elsewhere.example>"])


def test_etrn(early):
    assert_same(early, Client(helo="good.example.net"), ["ETRN no.example"])
    assert_same(early, Client(helo="nodots"), ["ETRN any.example"])


# -- configuration errors ---------------------------------------------------------------------

@pytest.mark.parametrize("main_cf", [
    "smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit_mynetworks\n",
    "smtpd_relay_restrictions = permit, reject_unauth_destination\n"
    "smtpd_recipient_restrictions = check_sender_access inline:{x=OK}\n",
    "smtpd_restriction_classes = undefined_class\n",
    "unknown_helo_hostname_tempfail_action = bounce\n",
])
def test_configuration_errors(main_cf):
    """Postfix's smtpd refuses to run (fatal) where pyfix's SmtpdCheck does, with the
    same warnings and fatal message."""
    from pyfix.common import msg
    from pyfix.daemons.smtpd.check import SmtpdCheck
    from cleanup_oracle import log_lines, settle_log
    from master_run import wait_until

    # Starting the oracle connects once: that smtpd dies before its greeting.
    with CheckOracle(main_cf) as oracle:
        assert wait_until(lambda: "fatal: " in oracle.postfix.log(), 10)
        text = settle_log(oracle.postfix)
        postfix = [line[len("smtpd: "):] for line in log_lines(text, 0, ("smtpd",))
                   if "warning: " in line or "fatal: " in line]
        logged = []

        def capture(level, line):
            logged.append(msg.SEVERITY_PREFIX[level] + line)
        msg.add_output(capture)
        with pytest.raises(SystemExit):
            SmtpdCheck(oracle.config())
        assert logged == postfix
        assert postfix[-1].startswith("fatal: ")


# -- reply codes, soft_bounce, permit logging ------------------------------------------------

CODES_MAIN_CF = """\
access_map_reject_code = 550
access_map_defer_code = 451
relay_domains_reject_code = 553
reject_code = 550
defer_code = 451
unknown_client_reject_code = 550
non_fqdn_reject_code = 550
invalid_hostname_reject_code = 550
smtpd_log_access_permit_actions = static:all
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_sender_access inline:{ {a@example.org = REJECT},
    {b@example.org = DEFER}, {c@example.org = OK}, {d@example.org = reject},
    {e@example.org = defer}, {f@example.org = DISCARD} },
    reject_unknown_client_hostname, reject_invalid_helo_hostname, permit
"""


@pytest.fixture(scope="module", params=["no", "yes"])
def codes(request):
    with CheckOracle(CODES_MAIN_CF + "soft_bounce = %s\n" % request.param) as oracle:
        yield oracle


@pytest.mark.parametrize("client, sender, recipient", [
    (OUTSIDE, "a@example.org", "bob@mx.example.com"),
    (OUTSIDE, "b@example.org", "bob@mx.example.com"),
    (OUTSIDE, "c@example.org", "bob@mx.example.com"),
    (OUTSIDE, "d@example.org", "bob@mx.example.com"),
    (OUTSIDE, "e@example.org", "bob@mx.example.com"),
    (OUTSIDE, "f@example.org", "bob@mx.example.com"),
    (OUTSIDE, "z@example.org", "x@elsewhere.example"),
    (INSIDE, "z@example.org", "x@elsewhere.example"),
    (UNKNOWN, "z@example.org", "bob@mx.example.com"),
    (Client(helo="bad_helo!"), "z@example.org", "bob@mx.example.com"),
    (OUTSIDE, "z@example.org", "bob@mx.example.com"),
])
def test_codes_and_permit_logging(codes, client, sender, recipient):
    assert_same(codes, client, ["MAIL FROM:<%s>" % sender, "RCPT TO:<%s>" % recipient])


# -- odd configurations: order, bad items, reverse names -----------------------------------

MISC_MAIN_CF = """\
smtpd_relay_before_recipient_restrictions = {order}
smtpd_restriction_classes = nested, loop
nested = check_sender_access inline:{ {n@example.org = loop} }
loop = reject_non_fqdn_recipient, check_recipient_access inline:{ {deep@mx.example.com = nested} }
smtpd_relay_restrictions = check_recipient_access inline:{ {relay@mx.example.com = REJECT relay list} },
    permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_reverse_client_hostname_access inline:{
        {rev.example.net = REJECT reverse refused}, {ok.example.net = OK} },
    check_recipient_access inline:{ {bad1@mx.example.com = no_such_thing},
        {bad2@mx.example.com = check_client_access},
        {bad3@mx.example.com = permit reject},
        {bad4@mx.example.com = check_policy_service},
        {deep@mx.example.com = nested},
        {rcpt@mx.example.com = REJECT recipient list},
        {plain@mx.example.com = reject_plaintext_session},
        {auth@mx.example.com = permit_auth_destination},
        {inet@mx.example.com = permit_inet_interfaces reject} },
    check_client_a_access inline:{ {192.0.2.1 = REJECT a refused} },
    nested
"""


@pytest.fixture(scope="module", params=["yes", "no"])
def misc(request):
    with CheckOracle(MISC_MAIN_CF.replace("{order}", request.param)) as oracle:
        yield oracle


@pytest.mark.parametrize("client, sender, recipient", [
    (OUTSIDE, "a@example.org", "relay@mx.example.com"),
    (OUTSIDE, "a@example.org", "rcpt@mx.example.com"),
    (OUTSIDE, "a@example.org", "bad1@mx.example.com"),
    (OUTSIDE, "a@example.org", "bad2@mx.example.com"),
    (OUTSIDE, "a@example.org", "bad3@mx.example.com"),
    (OUTSIDE, "a@example.org", "bad4@mx.example.com"),
    (OUTSIDE, "n@example.org", "deep@mx.example.com"),
    (OUTSIDE, "a@example.org", "plain@mx.example.com"),
    (OUTSIDE, "a@example.org", "auth@mx.example.com"),
    # (permit_inet_interfaces looks at the connection's own address, which XCLIENT does
    # not change: only a client that really is 127.0.0.1 can be compared.)
    (Client(name="localhost", addr="127.0.0.1"), "a@example.org", "inet@mx.example.com"),
    (Client(name="x.example.net", reverse_name="rev.example.net"), "a@example.org",
     "b@mx.example.com"),
    (Client(name="x.example.net", reverse_name="ok.example.net"), "a@example.org",
     "b@mx.example.com"),
    (Client(name="x.example.net", reverse_status=5), "a@example.org", "b@mx.example.com"),
])
def test_misc(misc, client, sender, recipient):
    assert_same(misc, client, ["MAIL FROM:<%s>" % sender, "RCPT TO:<%s>" % recipient])


# -- the open-relay proof across documented configurations ----------------------------------

DOCUMENTED_CONFIGS = {
    # The pre-2.10 documented form: everything in smtpd_recipient_restrictions.
    "classic": "smtpd_relay_restrictions =\n"
               "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n",
    # A backup MX / relay host for some domains, with recipient validation.
    "relay_domains": "relay_domains = relay.example, .sub.relay.example\n"
                     "relay_recipient_maps = inline:{ {x@relay.example = x} }\n",
    # Virtual hosting (VIRTUAL_README).
    "virtual": "virtual_alias_domains = alias.example\n"
               "virtual_alias_maps = inline:{ {x@alias.example = victim@elsewhere.example} }\n"
               "virtual_mailbox_domains = mailbox.example\n"
               "virtual_mailbox_maps = inline:{ {x@mailbox.example = x/} }\n",
    # mynetworks_style = host (only this host is trusted) and allow_untrusted_routing.
    "host_style": "mynetworks =\nmynetworks_style = host\nallow_untrusted_routing = yes\n",
    # SASL submission-style restrictions (STANDARD_CONFIGURATION_README).
    "submission": "smtpd_sasl_auth_enable = yes\n"
                  "smtpd_relay_restrictions = permit_sasl_authenticated, reject\n"
                  "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n",
}
RELAY_FORMS_MORE = RELAY_FORMS + [
    "victim%elsewhere.example@relay.example", "victim@elsewhere.example@alias.example",
    "victim%elsewhere.example@mailbox.example", "elsewhere.example!victim@sub.relay.example",
    '"victim@elsewhere.example"@relay.example', "victim@relay.example.elsewhere.example",
    "victim@elsewhere.example%mx.example.com",
]


@pytest.fixture(scope="module", params=sorted(DOCUMENTED_CONFIGS))
def documented(request):
    with CheckOracle(DOCUMENTED_CONFIGS[request.param]) as oracle:
        yield oracle


def test_no_open_relay_in_documented_configs(documented):
    for address in RELAY_FORMS_MORE:
        replies = assert_same(documented, OUTSIDE, rcpts(address))
        assert not replies[1].startswith("2") or _delivered_here(address), (address, replies)


def _delivered_here(address):
    """Forms that name one of the test's own domains last (final or relay domains) are
    legitimately accepted: their mail stays here or goes to that domain's host."""
    domain = address.rpartition("@")[2]
    return domain in ("mx.example.com", "relay.example", "alias.example", "mailbox.example",
                      "sub.relay.example", "[127.0.0.1]")

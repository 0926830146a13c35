"""ldap: tables against a real OpenLDAP slapd started for the session on 127.0.0.1:
Debian's postmap -q against pyfix on the same client files (query expansions, result
formats, special/terminal/leaf result attributes, limits, binds, errors), and what
happens when the server goes away."""

import os
import shutil
import tempfile

import pytest

from conftest import requires_oracle
from pyfix.maps.dict import ERR_RETRY
from peer_servers import Slapd, free_port, shared, slapd_missing
from table_oracle import RETRY, Capture, compare, write_cf, write_config

pytestmark = requires_oracle("postmap")

BASE = "dc=example,dc=com"
PEOPLE = "ou=people," + BASE
GROUPS = "ou=groups," + BASE


def person(uid, mail, local=(), route=None, host=None):
    lines = ["dn: uid=%s,%s" % (uid.replace("+", "\\+"), PEOPLE), "objectClass: inetOrgPerson",
             "objectClass: inetLocalMailRecipient", "uid: " + uid, "cn: " + uid, "sn: " + uid,
             "mail: " + mail]
    lines += ["mailLocalAddress: " + a for a in local]
    lines += ["mailRoutingAddress: " + route] if route else []
    lines += ["mailHost: " + host] if host else []
    return "\n".join(lines) + "\n"


def group(cn, local, members=(), extra=()):
    lines = ["dn: cn=%s,%s" % (cn, GROUPS), "objectClass: groupOfNames",
             "objectClass: inetLocalMailRecipient", "objectClass: labeledURIObject",
             "objectClass: extensibleObject", "cn: " + cn, "mailLocalAddress: " + local]
    lines += list(extra)
    lines += ["member: " + m for m in members or ["uid=alice,%s" % PEOPLE]]
    return "\n".join(lines) + "\n"


def dn(uid):
    return "uid=%s,%s" % (uid, PEOPLE)


LDIF = "\n".join([
    "dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n" % BASE,
    "dn: %s\nobjectClass: organizationalUnit\nou: people\n" % PEOPLE,
    "dn: %s\nobjectClass: organizationalUnit\nou: groups\n" % GROUPS,
    person("alice", "alice@example.com", ["alice@example.com"], "alice@route.example.com"),
    person("bob", "bob@example.com", ["bob@example.com", "robert@example.com"],
           "bob@route.example.com"),
    person("carol", "carol@example.com",
           ["carol@example.com", "c1@example.com", "c2@example.com", "a*b@example.com",
            "(x)@example.com", "back\\5cslash@example.com"]),
    person("a+b", "plus@example.com"),
    person("dave", "dave@example.com", ["dave@example.com"], host="relay.example.com"),
    group("staff", "staff@example.com", [dn("alice"), dn("bob")],
          ["mail: staff-owner@example.com", "mailRoutingAddress: staff-list@example.com"]),
    group("terminal", "term@example.com", [dn("alice")],
          ["mailHost: host.example.com", "mailRoutingAddress: term-route@example.com"]),
    group("dyn", "dyn@example.com", [dn("alice")],
          ["labeledURI: ldap:///%s??one?(mail=b*)" % PEOPLE,
           "labeledURI: ldap:///%s?mail?sub?(uid=carol)" % PEOPLE,
           "labeledURI: ldap:///%s?description?sub" % PEOPLE]),
    group("badurl", "badurl@example.com", [dn("bob")], ["labeledURI: ldap:///x?y?bogus"]),
    group("loop", "loop@example.com", ["cn=loop," + GROUPS]),
    group("ghost", "ghost@example.com", [dn("nobody"), dn("bob")]),
    group("ghost2", "ghost2@example.com", [dn("bob"), dn("nobody")]),
    group("nested", "nested@example.com", ["cn=staff," + GROUPS, "cn=terminal," + GROUPS]),
])

KEYS = ["alice@example.com", "Alice@Example.COM", "staff@example.com", "term@example.com",
        "dyn@example.com", "badurl@example.com", "ghost@example.com", "ghost2@example.com",
        "nested@example.com", "dave@example.com", "a*b@example.com", "(x)@example.com",
        "back\\slash@example.com", "robert@example.com", "nobody@example.com", "nodomain",
        "@example.com", "user@"]

SPECIAL = """\
search_base = %s
query_filter = (mailLocalAddress=%%s)
result_attribute = mailRoutingAddress
special_result_attribute = member, labeledURI
terminal_result_attribute = mailHost
leaf_result_attribute = mail
bind = no
""" % BASE


@pytest.fixture(scope="module")
def slapd(request):
    return shared(request, "slapd", lambda: Slapd(BASE, LDIF), slapd_missing)


@pytest.fixture(scope="module")
def site(slapd):
    root = tempfile.mkdtemp(prefix="pyfix-ldap-", dir="/tmp")
    os.chmod(root, 0o755)
    write_config(root, "myldap_server_host = %s\nmyldap_search_base = %s\n"
                       "myldap_query_filter = (mail=%%s)\nmyldap_result_attribute = uid\n"
                       "myldap_bind = no\n" % (slapd.url, BASE))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def table(site, slapd, name, text, server=None):
    head = "server_host = %s\n" % (server if server is not None else slapd.url)
    return "ldap:" + write_cf(os.path.join(site, name + ".cf"), head + text)


def test_special_terminal_and_leaf_result_attributes(site, slapd):
    answers = compare(site, table(site, slapd, "special", SPECIAL), KEYS)
    assert answers["alice@example.com"].value == "alice@example.com,alice@route.example.com"
    assert answers["staff@example.com"].value == (
        "staff-list@example.com,alice@example.com,alice@route.example.com,"
        "bob@example.com,bob@route.example.com")
    assert answers["term@example.com"].value == "host.example.com"
    assert answers["dave@example.com"].value == "relay.example.com"
    assert answers["ghost@example.com"].warnings[0].endswith("not found, skipping ")


def test_recursion_limit(site, slapd):
    text = SPECIAL + "recursion_limit = 3\n"
    answers = compare(site, table(site, slapd, "recursion", text),
                      ["loop@example.com", "nested@example.com", "staff@example.com"])
    assert answers["loop@example.com"].error == RETRY
    assert answers["nested@example.com"].value


def test_default_recursion_limit(site, slapd):
    answers = compare(site, table(site, slapd, "deep", SPECIAL), ["loop@example.com"])
    assert "dict_ldap_get_values[1000]" in answers["loop@example.com"].warnings[0]


def test_query_and_result_expansions(site, slapd):
    text = ("search_base = %s\nbind = no\nresult_attribute = mail, uid\n"
            "query_filter = (|(mail=%%s)(mailLocalAddress=%%u@%%d)(uid=%%U)(cn=%%1.%%2)"
            "(description=%%D %%S))\nresult_format = <%%s|%%u|%%d|%%S|%%U|%%D>\n" % BASE)
    answers = compare(site, table(site, slapd, "echo", text), KEYS)
    assert answers["robert@example.com"].value == (
        "<bob@example.com|bob|example.com|robert@example.com|robert|example.com>")


def test_dynamic_search_base_and_dn_quoting(site, slapd):
    text = "search_base = uid=%%u,%s\nscope = base\nquery_filter = (mail=*)\n" \
           "result_attribute = mail\nbind = no\n" % PEOPLE
    answers = compare(site, table(site, slapd, "dynbase", text),
                      ["alice@example.com", "a+b@example.com", "nobody@example.com",
                       "x y#z;<>@example.com", "nodomain"])
    assert answers["a+b@example.com"].value == "plus@example.com"
    assert answers["nobody@example.com"].value is None
    assert not answers["nobody@example.com"].error


def test_static_search_base_not_found(site, slapd):
    text = "search_base = ou=nothere,%s\nquery_filter = (mail=%%s)\nbind = no\n" % BASE
    answers = compare(site, table(site, slapd, "nobase", text), ["alice@example.com"])
    assert answers["alice@example.com"].error == RETRY


@pytest.mark.parametrize("scope", ["sub", "one", "base", "bogus"])
def test_scopes(site, slapd, scope):
    text = "search_base = %s\nscope = %s\nquery_filter = (mail=%%s)\nresult_attribute = uid\n" \
           "bind = no\n" % (PEOPLE, scope)
    compare(site, table(site, slapd, "scope", text), ["alice@example.com", "staff@example.com"])


@pytest.mark.parametrize("extra", [
    "size_limit = 1\nquery_filter = (mail=*@%d)\n",
    "expansion_limit = 2\nquery_filter = (uid=%u)\nresult_attribute = mailLocalAddress\n",
    "expansion_limit = 10\nquery_filter = (uid=%u)\nresult_attribute = mailLocalAddress\n",
    "domain = example.org, example.com\nquery_filter = (mail=%s)\n",
    "domain = example.org\nquery_filter = (mail=%s)\n",
    "query_filter = (objectClass=inetOrgPerson)\n",
    "query_filter = mail=%s\nresult_filter = [%s]\n",
    "query_filter = (mail=%s)\ncache = yes\ncache_expiry = 10\ncache_size = 100\n",
    "query_filter = (mail=%s)\ndereference = 7\nchase_referrals = yes\n",
    "query_filter = (mail=%s)\nresult_attribute =\n",
    "query_filter = (mail=%s\n",
])
def test_limits_and_options(site, slapd, extra):
    text = "search_base = %s\nbind = no\nresult_attribute = mail\n%s" % (BASE, extra)
    compare(site, table(site, slapd, "opts", text),
            ["alice@example.com", "carol@example.com", "a*b@example.com"])


@pytest.mark.parametrize("bind", [
    "bind = yes\n",
    "bind = simple\nbind_dn = cn=admin,%s\nbind_pw = secret\n" % BASE,
    "bind = yes\nbind_dn = cn=admin,%s\nbind_pw = wrong\n" % BASE,
    "bind = maybe\n",
    "version = 2\n",
    "version = 4\nbind = no\n",
    "start_tls = yes\nbind = no\n",
])
def test_binds_and_versions(site, slapd, bind):
    text = "search_base = %s\nquery_filter = (mail=%%s)\nresult_attribute = uid\n%s" % (
        BASE, bind)
    compare(site, table(site, slapd, "bind", text), ["alice@example.com"])


def test_server_host_forms(site, slapd):
    text = "search_base = %s\nquery_filter = (mail=%%s)\nresult_attribute = uid\nbind = no\n" \
           % BASE
    port = slapd.port
    for name, hosts in (("hp", "127.0.0.1:%d" % port),
                        ("hport", "127.0.0.1\nserver_port = %d" % port),
                        ("url", "ldap://127.0.0.1:%d/" % port),
                        ("list", "ldap://127.0.0.1:%d, 127.0.0.1:%d" % (free_port(), port)),
                        ("badurl", "ldap://[::1 127.0.0.1:%d" % port)):
        compare(site, table(site, slapd, name, text, hosts), ["alice@example.com"])


def test_server_down(site, slapd):
    text = "search_base = %s\nquery_filter = (mail=%%s)\n" % BASE
    dead = "127.0.0.1:%d" % free_port()
    for name, extra in (("downbind", ""), ("downnobind", "bind = no\n")):
        answers = compare(site, table(site, slapd, name, text + extra, dead),
                          ["alice@example.com"])
        assert answers["alice@example.com"].error == RETRY


def test_main_cf_style_parameters(site, slapd):
    answers = compare(site, "ldap:myldap", ["alice@example.com", "nobody@example.com"])
    assert answers["alice@example.com"].value == "alice"


# -- connections (pyfix only) ------------------------------------------------------------------

def open_table(site, slapd, name, text):
    from pyfix.common.config import Config
    from pyfix.maps import cfg_parser
    from pyfix.maps.dict import dict_open
    cfg_parser.use_config(Config.load(site))
    return dict_open(table(site, slapd, name, text), os.O_RDONLY, 0)


def test_reconnect_after_server_restart_and_retry_while_down(site, slapd):
    text = "search_base = %s\nquery_filter = (mail=%%s)\nresult_attribute = uid\n" % BASE
    t = open_table(site, slapd, "restart", text)
    try:
        assert t.lookup("alice@example.com") == "alice"
        slapd.pause()
        slapd.start()
        with Capture() as capture:          # the old connection is gone: reconnect once
            assert t.lookup("alice@example.com") == "alice" and t.error == 0
        assert capture.lines == []
        slapd.pause()
        with Capture() as capture:
            assert t.lookup("alice@example.com") is None
            assert t.error == ERR_RETRY
        assert capture.lines == [
            "warning: dict_ldap_connect: Unable to bind to server %s with dn empty or "
            "implicit: -1 (Can't contact LDAP server)" % slapd.url]
    finally:
        t.close()
        if slapd.proc.poll() is not None:
            slapd.start()


def test_tables_with_the_same_server_share_a_connection(site, slapd):
    text = "search_base = %s\nquery_filter = (mail=%%s)\nresult_attribute = uid\n" % BASE
    first = open_table(site, slapd, "share1", text)
    second = open_table(site, slapd, "share2", text + "result_format = <%s>\n")
    try:
        assert first.conn is second.conn
        assert first.lookup("bob@example.com") == "bob"
        assert second.lookup("bob@example.com") == "<bob>"
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("tls", [
    "start_tls = yes\n",
    "start_tls = yes\ntls_require_cert = yes\ntls_ca_cert_file = {cert}\n",
    "start_tls = yes\ntls_require_cert = yes\n",
    "server_host = ldaps://127.0.0.1:{ssl_port}\n",
    "server_host = ldaps://127.0.0.1:{ssl_port}\ntls_require_cert = yes\n"
    "tls_ca_cert_file = {cert}\n",
    "server_host = ldaps://127.0.0.1:{ssl_port}\ntls_require_cert = yes\n",
])
def test_start_tls_and_ldaps(site, slapd, tls):
    text = "search_base = %s\nquery_filter = (mail=%%s)\nresult_attribute = uid\n%s" % (
        BASE, tls.format(cert=slapd.cert, ssl_port=slapd.ssl_port))
    compare(site, table(site, slapd, "tls", text), ["alice@example.com"])

"""pgsql: tables against a real PostgreSQL server started for the session (initdb +
postgres on 127.0.0.1 and a Unix socket, as the postgres user): Debian's postmap -q
against pyfix on the same client files, and what happens when servers go away."""

import os
import shutil
import tempfile

import pytest

from conftest import requires_oracle
from peer_servers import Postgres, free_port, postgres_missing, shared
from table_oracle import RETRY, assert_same, candidate, compare, oracle, write_cf, \
    write_config

pytestmark = requires_oracle("postmap")

KEYS = ["alice@example.com", "Alice@Example.COM", "bob@example.com", "@example.com",
        "user@", "nodomain", "u@a.b.example.com", "u@com", "u@a..com", "o'brien@example.com",
        "back\\slash@example.com", "u@x@example.com", "100%@example.com",
        "empty@example.com", "null@example.com", "nobody@example.org", "carol@example.net"]

SCHEMA = """
CREATE TABLE aliases (alias text, target text);
INSERT INTO aliases VALUES
  ('alice@example.com', 'alice@mail.example.com'),
  ('alice@example.com', 'alice@backup.example.com'),
  ('bob@example.com', 'bob@mail.example.com'),
  ('o''brien@example.com', 'ob@mail.example.com'),
  ('back\\slash@example.com', 'bs@mail.example.com'),
  ('100%@example.com', 'percent@mail.example.com'),
  ('empty@example.com', ''),
  ('null@example.com', NULL),
  ('carol@example.net', 'carol@mail.example.net'),
  ('utf8@example.com', 'jörg@example.org');
CREATE TABLE users (local text, domain text, dest text);
INSERT INTO users VALUES ('u', 'b.example.com', 'u-dest'), ('alice', 'example.com', 'a-dest');
CREATE FUNCTION lookup_alias(text) RETURNS SETOF text LANGUAGE sql
  AS $$ SELECT target FROM aliases WHERE alias = $1 $$;
"""

ECHO = "SELECT '%%|%s|%u|%d|%1|%2|%S|%U|%D'"
BASIC = "SELECT target FROM aliases WHERE alias = '%s'"


@pytest.fixture(scope="module")
def pg(request):
    server = shared(request, "postgres", Postgres, postgres_missing)
    server.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    server.execute(SCHEMA)
    return server


@pytest.fixture(scope="module")
def site(pg):
    root = tempfile.mkdtemp(prefix="pyfix-pgsql-", dir="/tmp")
    os.chmod(root, 0o755)
    write_config(root, "mypg_hosts = 127.0.0.1:%d\nmypg_user = postgres\n"
                       "mypg_dbname = postgres\nmypg_query = %s\n" % (pg.port, BASIC))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def table(site, pg, name, text, hosts=None, login=True):
    """A pgsql: spec for a client file with text (hosts default: the server over TCP)."""
    head = "hosts = %s\n" % (hosts if hosts is not None else "127.0.0.1:%d" % pg.port)
    if login:
        head += "user = postgres\ndbname = postgres\n"
    return "pgsql:" + write_cf(os.path.join(site, name + ".cf"), head + text)


def test_lookups_over_tcp(site, pg):
    answers = compare(site, table(site, pg, "basic", "query = %s\n" % BASIC), KEYS)
    assert answers["alice@example.com"].value == \
        "alice@mail.example.com,alice@backup.example.com"
    assert answers["o'brien@example.com"].value == "ob@mail.example.com"
    assert answers["back\\slash@example.com"].value == "bs@mail.example.com"
    assert answers["null@example.com"].warnings     # NULL is an empty value to Postfix


def test_every_query_and_result_expansion(site, pg):
    text = "query = %s\nresult_format = <%%s> <%%u> <%%d> <%%S> <%%U> <%%D>\n" % ECHO
    answers = compare(site, table(site, pg, "echo", text), KEYS)
    assert answers["u@a.b.example.com"].value.startswith(
        "<%|u@a.b.example.com|u|a.b.example.com|com|example|")
    assert answers["nodomain"].value is None


def test_query_with_local_part_domain_and_labels(site, pg):
    text = "query = SELECT dest FROM users WHERE local = '%u' AND domain = '%3.%2.%1'\n"
    answers = compare(site, table(site, pg, "parts", text), KEYS)
    assert answers["u@a.b.example.com"].value == "u-dest"


def test_every_column_of_every_row_is_a_result(site, pg):
    text = "query = SELECT alias, target FROM aliases WHERE alias = '%s'\n"
    answers = compare(site, table(site, pg, "columns", text), ["alice@example.com"])
    assert answers["alice@example.com"].value.count(",") == 3


@pytest.mark.parametrize("extra", [
    "domain = example.com\n",
    "domain = example.net\nresult_format = smtp:[%s]\n",
    "expansion_limit = 1\n",
    "result_format = %u at %d\n",
])
def test_domain_limit_and_formats(site, pg, extra):
    compare(site, table(site, pg, "opts", "query = %s\n%s" % (BASIC, extra)), KEYS)


def test_legacy_parameters_and_select_function(site, pg):
    legacy = "table = aliases\nselect_field = target\nwhere_field = alias\n" \
             "additional_conditions = AND target <> ''\n"
    compare(site, table(site, pg, "legacy", legacy), KEYS[:4])
    compare(site, table(site, pg, "function", "select_function = lookup_alias\n"), KEYS[:4])


def test_unix_socket_directory_and_uri_hosts(site, pg):
    env = {"PGPORT": str(pg.port)}
    query = "query = %s\n" % BASIC
    for name, hosts in (("unix", "unix:" + pg.socket_dir), ("path", pg.socket_dir)):
        compare(site, table(site, pg, name, query, hosts), KEYS[:3], env=env)
    uri = "postgresql://postgres@127.0.0.1:%d/postgres" % pg.port
    compare(site, table(site, pg, "uri", query + "dbname = unused\n", uri, login=False),
            KEYS[:3])
    uri = "postgresql:///postgres?host=%s&port=%d&user=postgres" % (pg.socket_dir, pg.port)
    compare(site, table(site, pg, "uri2", query + "dbname = unused\n", uri, login=False),
            KEYS[:3])


def test_main_cf_style_parameters(site, pg):
    compare(site, "pgsql:mypg", KEYS[:3])


def test_sql_error_is_a_temporary_failure(site, pg):
    text = "query = SELECT nosuch FROM aliases WHERE alias = '%s'\n"
    answers = compare(site, table(site, pg, "badsql", text), ["alice@example.com"])
    assert answers["alice@example.com"].error == RETRY
    assert "pgsql query failed: fatal error from host" in answers["alice@example.com"].warnings[0]


def test_all_servers_down_is_a_temporary_failure(site, pg):
    hosts = "127.0.0.1:%d, inet:127.0.0.1:%d" % (free_port(), free_port())
    spec = table(site, pg, "down", "query = %s\n" % BASIC, hosts)
    answers = compare(site, spec, ["alice@example.com"], warnings_as_set=True)
    answer = answers["alice@example.com"]
    assert answer.error == RETRY
    assert len(answer.warnings) == 2 and all("Connection refused" in w for w in answer.warnings)


def test_failover_to_a_working_host(site, pg):
    dead = "127.0.0.1:%d" % free_port()
    spec = table(site, pg, "failover", "query = %s\n" % BASIC, "%s %s:%d" % (
        dead, "127.0.0.1", pg.port))
    for _ in range(4):          # the first host is picked at random
        expected = oracle(site, spec, "alice@example.com")
        actual = candidate(site, spec, "alice@example.com")
        assert actual.value == expected.value == \
            "alice@mail.example.com,alice@backup.example.com"
        assert not actual.error
        assert all("connect to pgsql server %s" % dead in w for w in actual.warnings)


def test_latin1_connection_returns_bytes_unchanged(site, pg):
    """Debian's Postfix talks LATIN1 to the server: `ö` comes back as the byte 0xf6,
    which Postfix's UTF-8 layer then rejects; pyfix's table returns that byte too."""
    spec = table(site, pg, "latin1", "query = %s\n" % BASIC)
    expected = oracle(site, spec, "utf8@example.com")
    assert expected.error == RETRY and "non-UTF-8 value" in expected.warnings[0]
    assert candidate(site, spec, "utf8@example.com").value == "j\udcf6rg@example.org"


# -- connection management (pyfix only: timing that postmap's one lookup cannot show) ------

def open_table(site, pg, name, text, hosts=None):
    from pyfix.common.config import Config
    from pyfix.maps import cfg_parser
    from pyfix.maps.dict import dict_open
    cfg_parser.use_config(Config.load(site))
    return dict_open(table(site, pg, name, text, hosts), os.O_RDONLY, 0)


def test_server_restart_retry_interval_and_recovery(site, pg, monkeypatch):
    from pyfix.maps import dict_pgsql
    from table_oracle import Capture
    t = open_table(site, pg, "restart", "query = %s\n" % BASIC)
    try:
        assert t.lookup("bob@example.com") == "bob@mail.example.com"
        pg.pause()
        with Capture() as capture:
            assert t.lookup("bob@example.com") is None and t.error == dict_pgsql.ERR_RETRY
            assert t.lookup("bob@example.com") is None and t.error == dict_pgsql.ERR_RETRY
        # The query failed on the open connection; the host is then left alone for
        # RETRY_CONN_INTV, so the second lookup fails at once, without a new warning.
        assert len(capture.lines) == 1
        assert capture.lines[0].startswith(
            "warning: pgsql query failed: fatal error from host 127.0.0.1:%d: " % pg.port)
        pg.start()
        assert t.lookup("bob@example.com") is None and t.error == dict_pgsql.ERR_RETRY
        monkeypatch.setattr(dict_pgsql, "RETRY_CONN_INTV", -10)
        t.hosts[0].down()
        assert t.lookup("bob@example.com") == "bob@mail.example.com" and t.error == 0
    finally:
        t.close()
        if pg.proc.poll() is not None:
            pg.start()


def test_idle_connection_is_closed_and_reopened(site, pg, monkeypatch):
    from pyfix.maps import dict_pgsql
    t = open_table(site, pg, "idle", "query = SELECT pg_backend_pid()::text || '%s'\n")
    try:
        first = t.lookup("x")
        assert t.lookup("x") == first                  # the same connection
        monkeypatch.setattr(dict_pgsql, "IDLE_CONN_INTV", 0)
        assert t.lookup("x") != first                  # closed when idle, reopened
    finally:
        t.close()


def test_open_for_writing_is_refused(site, pg, monkeypatch):
    from pyfix.maps.dict import dict_open
    from table_oracle import Capture
    monkeypatch.setattr("pyfix.maps.dict.allow_surrogate", True)
    with Capture():
        t = dict_open(table(site, pg, "rw", "query = %s\n" % BASIC), os.O_RDWR, 0)
    assert t.reason.endswith("map requires O_RDONLY access mode")


def test_fatal_configuration_errors(site, pg):
    for name, text in (("nodb", "hosts = x\nquery = SELECT 1\n"),
                       ("badtpl", "dbname = d\nquery = SELECT '%9x'\nresult_format = %q\n")):
        spec = "pgsql:" + write_cf(os.path.join(site, name + ".cf"), text)
        expected = oracle(site, spec, "a@b.c")
        assert expected.error.startswith("fatal: ")
        assert_same(expected, candidate(site, spec, "a@b.c"))

"""sqlite: tables and the query expansions of db_common: Debian's postmap -q against
pyfix on the same SQLite files and client files."""

import os
import shutil
import sqlite3
import tempfile

import pytest

from conftest import requires_oracle
from table_oracle import RETRY, candidate, compare, oracle, write_cf, write_config

pytestmark = requires_oracle("postmap")

KEYS = ["alice@example.com", "Alice@Example.COM", "bob@example.com", "@example.com",
        "user@", "nodomain", "u@a.b.example.com", "u@com", "u@a..com", "o'brien@example.com",
        "u@x@example.com", "100%@example.com", "empty@example.com", "null@example.com",
        "nobody@example.org", "carol@example.net"]

ROWS = [("alice@example.com", "alice@mail.example.com"),
        ("alice@example.com", "alice@backup.example.com"),
        ("bob@example.com", "bob@mail.example.com"),
        ("o'brien@example.com", "ob@mail.example.com"),
        ("100%@example.com", "percent@mail.example.com"),
        ("empty@example.com", ""),
        ("null@example.com", None),
        ("carol@example.net", "carol@mail.example.net")]

ECHO = "SELECT '%%|%s|%u|%d|%1|%2|%S|%U|%D'"
BASIC = "SELECT target FROM aliases WHERE alias = '%s'"


@pytest.fixture(scope="module")
def site():
    root = tempfile.mkdtemp(prefix="pyfix-sqlite-", dir="/tmp")
    os.chmod(root, 0o755)
    db = os.path.join(root, "mail.sqlite")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE aliases (alias TEXT, target TEXT)")
        conn.executemany("INSERT INTO aliases VALUES (?, ?)", ROWS)
        conn.execute("CREATE TABLE users (local TEXT, domain TEXT, dest TEXT)")
        conn.execute("INSERT INTO users VALUES ('u', 'a.b.example.com', 'u-dest')")
        conn.execute("INSERT INTO users VALUES ('alice', 'example.com', 'alice-dest')")
        conn.execute("CREATE TABLE numbers (k TEXT, v)")
        conn.executemany("INSERT INTO numbers VALUES ('n', ?)",
                         [(42,), (1.5,), (1e20,), (100.0,), (None,), (b"blob\x00tail",),
                          ("text",)])
    with open(os.path.join(root, "domains"), "w") as f:
        f.write("example.net\n")
    write_config(root, "mysqlite_dbpath = %s\nmysqlite_query = %s\n"
                       "mysqlite_result_format = <$myhostname_part%%s>\n"
                       "myhostname_part = at-\n" % (db, BASIC))
    yield root, db
    shutil.rmtree(root, ignore_errors=True)


def cf(site, name, text):
    root, db = site
    return write_cf(os.path.join(root, name + ".cf"), "dbpath = %s\n%s" % (db, text))


def spec(site, name, text):
    return "sqlite:" + cf(site, name, text)


def test_basic_lookups_rows_joined_with_commas(site):
    answers = compare(site[0], spec(site, "basic", "query = %s\n" % BASIC), KEYS)
    assert answers["alice@example.com"].value == \
        "alice@mail.example.com,alice@backup.example.com"
    assert answers["nobody@example.org"].value is None
    assert answers["empty@example.com"].warnings      # empty value: Postfix's warning


def test_every_query_and_result_expansion(site):
    text = "query = %s\nresult_format = <%%s> <%%u> <%%d> <%%S> <%%U> <%%D>\n" % ECHO
    answers = compare(site[0], spec(site, "echo", text), KEYS)
    assert answers["u@a.b.example.com"].value.startswith(
        "<%|u@a.b.example.com|u|a.b.example.com|com|example|")
    for key in ("@example.com", "user@", "nodomain", "u@com"):
        assert answers[key].value is None, key      # "no query"


def test_three_domain_labels(site):
    compare(site[0], spec(site, "labels", "query = SELECT '%3.%2.%1'\n"), KEYS)


def test_local_part_and_domain_in_query(site):
    text = "query = SELECT dest FROM users WHERE local = '%u' AND domain = '%d'\n"
    answers = compare(site[0], spec(site, "parts", text), KEYS)
    assert answers["u@a.b.example.com"].value == "u-dest"


def test_domain_restriction_list_and_file(site):
    text = "query = %s\ndomain = example.com, %s/domains\n" % (BASIC, site[0])
    answers = compare(site[0], spec(site, "domain", text), KEYS)
    assert answers["carol@example.net"].value == "carol@mail.example.net"


def test_expansion_limit_is_a_temporary_failure(site):
    text = "query = %s\nexpansion_limit = 1\n" % BASIC
    answers = compare(site[0], spec(site, "limit", text),
                      ["alice@example.com", "bob@example.com"])
    assert answers["alice@example.com"].error == RETRY
    assert answers["bob@example.com"].value == "bob@mail.example.com"


def test_legacy_query_parameters(site):
    text = ("table = aliases\nselect_field = target\nwhere_field = alias\n"
            "additional_conditions = AND target != 'alice@backup.example.com'\n")
    compare(site[0], spec(site, "legacy", text), KEYS)


@pytest.mark.parametrize("fmt", ["smtp:[%s]", "%u at %d", "%%%s%%", "%U/%D"])
def test_result_formats(site, fmt):
    text = "query = %s\nresult_format = %s\n" % (BASIC, fmt)
    compare(site[0], spec(site, "fmt", text), KEYS[:6])


def test_numbers_nulls_and_blobs_as_sqlite_prints_them(site):
    text = "query = SELECT v FROM numbers WHERE k = '%s'\n"
    answers = compare(site[0], spec(site, "numbers", text), ["n"])
    assert answers["n"].value == "42,1.5,1.0e+20,100.0,blob,text"


def test_text_after_the_first_statement_is_ignored(site):
    text = "query = %s; DELETE FROM aliases\n" % BASIC
    compare(site[0], spec(site, "two", text), ["alice@example.com"])
    with sqlite3.connect(site[1]) as conn:
        assert conn.execute("SELECT count(*) FROM aliases").fetchone()[0] == len(ROWS)


def test_main_cf_style_parameters(site):
    compare(site[0], "sqlite:mysqlite", ["alice@example.com", "nobody@example.org"])


@pytest.mark.parametrize("name,text", [
    ("badtemplate", "query = SELECT '%x'\n"),
    ("badresult", "query = SELECT 1\nresult_format = %z\n"),
    ("badsql", "query = SELECT target FROM nosuch WHERE alias = '%s'\n"),
    ("nodbpath", None),
    ("noquery", "result_format = %s\n"),
    ("badlimit", "query = SELECT 1\nexpansion_limit = lots\n"),
])
def test_configuration_errors_are_postfix_fatal_errors(site, name, text):
    if text is None:
        path = write_cf(os.path.join(site[0], name + ".cf"), "query = SELECT 1\n")
    else:
        path = cf(site, name, text)
    answers = compare(site[0], "sqlite:" + path, ["alice@example.com"])
    assert answers["alice@example.com"].error.startswith("fatal: ")


def test_main_cf_style_missing_parameter(site):
    answers = compare(site[0], "sqlite:nosuchprefix", ["alice@example.com"])
    assert answers["alice@example.com"].error == \
        "fatal: bad string length 0 < 1: nosuchprefix_dbpath = "


def test_missing_client_file_is_a_surrogate_with_postfix_reason(site, monkeypatch):
    path = os.path.join(site[0], "missing.cf")
    expected = oracle(site[0], "sqlite:" + path, "x")
    assert candidate(site[0], "sqlite:" + path, "x").error == expected.error   # as postmap
    monkeypatch.setattr("pyfix.maps.dict.allow_surrogate", True)              # as a daemon
    actual = candidate(site[0], "sqlite:" + path, "x")
    # Postfix's postmap refuses surrogate tables (fatal); a daemon gets the surrogate,
    # which fails each lookup with the same reason, as a temporary error.
    reason = "open %s: No such file or directory" % path
    assert expected.error == "fatal: " + reason
    assert actual.warnings == ["error: " + reason,
                               "warning: sqlite:%s is unavailable. %s" % (path, reason)]
    assert actual.error == RETRY


def test_write_access_is_refused(site, monkeypatch):
    from pyfix.maps.dict import dict_open
    from table_oracle import Capture
    monkeypatch.setattr("pyfix.maps.dict.allow_surrogate", True)
    with Capture():
        table = dict_open("sqlite:" + cf(site, "rw", "query = %s\n" % BASIC), os.O_RDWR, 0)
    assert table.reason == "sqlite:%s map requires O_RDONLY access mode" % table.name

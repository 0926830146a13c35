"""inline:, static:, fail:, environ:, randmap:, unionmap:, pipemap:, unix:, internal:, tcp:
and socketmap: tables against Debian's postmap (maps/dict_inline.py ... dict_sockmap.py).

Each differential case runs Debian's postmap and tests/bin/dict_query.py (pyfix's tables
behind a postmap-like front, tests/maps_oracle.py) with the same arguments. tcp: and
socketmap: are asked of real servers (tests/bin/table_server.py) on loopback and on a
UNIX socket, started here on free ports and stopped by pid at the end.
"""

import os
import pwd
import grp
import signal
import subprocess
import sys

import pytest

from conftest import requires_oracle
from maps_oracle import TABLE_SERVER, check, check_keys, check_many, make_conf, write
from pyfix.common import msg
from pyfix.maps import dict_tcp
from pyfix.maps.dict import (ERR_CONFIG, ERR_NONE, ERR_RETRY, FLAG_FIXED, FLAG_FOLD_FIX,
                             FLAG_PATTERN, STAT_FAIL, STAT_SUCCESS, SurrogateDict,
                             dict_open)

oracle = requires_oracle("postmap")


@pytest.fixture
def conf(tmp_path):
    return make_conf(tmp_path)


@pytest.fixture(autouse=True)
def diagnostics_to_stderr():
    """pyfix's warnings go to this test's stderr (pytest swaps the stream per test)."""
    msg.init_stderr("test")


SPEC_CASES = [
    ("a", "inline:{a=1, b=2}"), ("A", "inline:{a=1, b=2}"), ("b", "inline:{a=1, { b = two words }, c=}"),
    ("c", "inline:{a=1, { b = two words }, c=}"), ('"x y"', 'inline:{{"x y" = q}}'),
    ("a", "inline:{a}"), ("a", "inline:{}"), ("a", "inline:{ }"), ("a", "inline:{a=1}x"),
    ("a", "inline:{a=1"), ("a", "inline:{{a=1}x}"), ("a", 'inline:{"a=1}'), ("a", "inline:{=1}"),
    ("a", "inline:a=1"), ("a", "inline:{a=1,a=2}"), ("a", "inline:{a=b=c}"),
    ("a\\", "inline:{a\\ =x}"), ("k", "inline:{k=  spaced value  }"),
    ("x", "static:{ text with spaces }"), ("x", "static:{ text"), ("x", "static:{a}b"),
    ("x", "static:hello"), ("x", "static:{}"), ("x", "static:{ a { b } }"),
    ("x", "randmap:{}"), ("x", "randmap:{ , }"), ("x", "randmap:x"), ("x", "randmap:{only}"),
    ("x", "randmap:{{a b}}"), ("x", "randmap:{a}x"),
    ("x", "unionmap:{static:a, static:b}"), ("x", "unionmap:{inline:{y=1}, static:b}"),
    ("x", "unionmap:{inline:{y=1}, inline:{z=1}}"), ("x", "unionmap:{static:a, nocolon}"),
    ("x", "unionmap:{}"), ("x", "unionmap:x"), ("x", "unionmap:{static:a, fail:b}"),
    ("x", "unionmap:{fail:b, static:a}"), ("x", "unionmap:{static:a,static:a}"),
    ("x", "pipemap:{inline:{x=y}, inline:{y=z}}"), ("x", "pipemap:{inline:{x=y}, inline:{q=z}}"),
    ("x", "pipemap:{inline:{x=y}, fail:z}"), ("x", 'pipemap:{static:{a b}, inline:{{"a b"=ok}}}'),
    ("x", "pipemap:{}"), ("x", "pipemap:{static:y}"),
    ("x", "pipemap:{static:{a b}, inline:{{a b=ok}}}"), ("x", "unionmap:{static:a, randmap:x}"),
    ("x", "fail:x"), ("x", "internal:x"), ("x", "unknowntype:x"),
    ("x", "unix:foo"), ("root", "unix:passwd.byname"), ("ROOT", "unix:passwd.byname"),
    ("root", "unix:group.byname"), ("nosuchuser", "unix:passwd.byname"),
]


@oracle
@pytest.mark.parametrize("key,spec", SPEC_CASES)
def test_query(conf, key, spec):
    check_many(conf, [["-q", key, spec], ["-f", "-q", key, spec], ["-q", "-", spec]],
               stdin=key + "\n")


@oracle
@pytest.mark.parametrize("spec", ["static:x", "fail:x", "randmap:{a}",
                                  "unionmap:{static:a}", "pipemap:{static:a}", "environ:x",
                                  "unix:passwd.byname", "internal:x", "tcp:localhost:1",
                                  "socketmap:inet:localhost:1:x"])
def test_sequence(conf, spec):
    """postmap -s: only inline: (an internal table) lists its entries."""
    check(conf, ["-s", spec])


@oracle
def test_inline_sequence(conf):
    """postmap -s of an inline: table; Postfix's order is random, so compare sorted lines."""
    from maps_oracle import run_candidate, run_oracle
    spec = "inline:{a=1, B=2, {c = three words}, d=}"
    want, got = run_oracle(conf, ["-s", spec]), run_candidate(conf, ["-s", spec])
    assert sorted(want.stdout.splitlines()) == sorted(got.stdout.splitlines())
    assert (want.returncode, want.diagnostics()) == (got.returncode, got.diagnostics())


@oracle
def test_batches(conf):
    keys = ["a", "A", "b", "c", "", "zz"]
    for spec in ("inline:{a=1, B=2, {c = three}}", "static:{ s p }",
                 "unionmap:{inline:{a=1}, inline:{a=2,b=3}}",
                 "pipemap:{inline:{a=b,b=c}, inline:{b=x,c=y}}"):
        check_keys(conf, spec, keys)


@oracle
def test_environ(conf):
    env = dict(os.environ, PYFIX_X="value one", lowercase_only="lc", EMPTY="")
    keys = ("PYFIX_X", "pyfix_x", "lowercase_only", "LOWERCASE_ONLY", "EMPTY", "NOPE")
    check_many(conf, [["-q", key, "environ:x"] for key in keys]
               + [["-f", "-q", key, "environ:x"] for key in keys], env=env)


@oracle
def test_unix_tables_against_the_real_databases(conf):
    users = [entry.pw_name for entry in pwd.getpwall()]
    groups = [entry.gr_name for entry in grp.getgrall()]
    check_keys(conf, "unix:passwd.byname", users + ["no-such-user", "ROOT"],
               single=["root", "nobody"])
    check_keys(conf, "unix:group.byname", groups + ["no-such-group"], single=["root"])


@oracle
def test_values_from_files(tmp_path, conf):
    one = write(tmp_path / "one", "hello file\n")
    two = write(tmp_path / "two", "second")
    check_many(conf, [["-F", "-q", "x", spec] for spec in (
        "static:" + one, "static:{%s %s}" % (one, two), "inline:{x=%s}" % two,
        "inline:{x=/nonexistent}", "randmap:{%s}" % two, "randmap:{/nonexistent}",
        "static:" + str(tmp_path), "inline:{x=}")])


# -- tcp: and socketmap: against real servers -----------------------------------------------

def _start_server(kind, where):
    proc = subprocess.Popen([sys.executable, TABLE_SERVER, kind, where],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        proc.wait()
        pytest.fail("table server %s did not start" % kind)
    return proc, line


def _stop(proc):
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    proc.stdout.close()


@pytest.fixture(scope="module")
def tcp_server():
    proc, port = _start_server("tcp", "inet")
    yield "127.0.0.1:" + port
    _stop(proc)


@pytest.fixture(scope="module")
def sockmap_servers(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sockmap") / "map.sock")
    inet, port = _start_server("socketmap", "inet")
    unix, _ = _start_server("socketmap", "unix:" + path)
    yield "inet:127.0.0.1:%s" % port, "unix:" + path
    _stop(inet)
    _stop(unix)


FAST_RETRY = dict(os.environ, PYFIX_TEST_TCP_RETRY_SLEEP="0")
TCP_KEYS = ["hello", "a b%c", "Mixed", "notfound", "temp", "bad", "status3", "long", "badhex",
            "empty", "close", "partial", "ümlaut\x01"]


@oracle
def test_tcp_table(conf, tcp_server):
    """One process per key (the retry cases take Postfix ten seconds: run in parallel)."""
    check_keys(conf, "tcp:" + tcp_server, ["hello", "a b%c", "notfound", "empty", "Mixed"],
               single=TCP_KEYS, candidate_env=FAST_RETRY)
    check_keys(conf, "tcp:" + tcp_server, ["hello", "temp"], candidate_env=FAST_RETRY)


@oracle
def test_tcp_endpoint_errors(conf):
    check_many(conf, [["-q", "x", spec] for spec in (
        "tcp:127.0.0.1", "tcp:[127.0.0.1", "tcp:nosuchhost.invalid:1", "tcp:127.0.0.1:1")],
        candidate_env=FAST_RETRY)


SOCKMAP_KEYS = ["hello", "a b", "Mixed", "notfound", "temp", "timeout", "perm", "weird",
                "okbare", "big", "badformat", "close"]


@oracle
def test_socketmap_table(conf, sockmap_servers):
    for endpoint in sockmap_servers:
        spec = "socketmap:%s:mymap" % endpoint
        check_keys(conf, spec, ["hello", "a b", "notfound", "okbare", "close", "hello"],
                   single=SOCKMAP_KEYS)


@oracle
def test_socketmap_errors(conf, tmp_path):
    check_many(conf, [["-q", "x", spec] for spec in (
        "socketmap:inet:127.0.0.1:1:x", "socketmap:unix:%s:x" % (tmp_path / "none"),
        "socketmap:foo", "socketmap:foo:bar", "socketmap:tcp:x:y", "socketmap::x",
        "socketmap:inet::x")])


# -- in-process behavior ------------------------------------------------------------------

def test_internal_table():
    table = dict_open("internal:test", os.O_RDWR, FLAG_FOLD_FIX)
    assert table.flags & FLAG_FIXED
    assert table.update("Key", "v1") == STAT_SUCCESS
    assert table.lookup("KEY") == "v1" and table.error == ERR_NONE
    assert table.update("key", "v2") == STAT_SUCCESS
    assert list(table.items()) == [("key", "v2")]
    assert table.delete("KEY") == STAT_SUCCESS
    assert table.delete("key") == STAT_FAIL
    assert table.lookup("key") is None
    exact = dict_open("internal:exact", os.O_RDWR, 0)
    exact.update("Key", "x")
    assert exact.lookup("key") is None and exact.lookup("Key") == "x"


def test_inline_items_and_trust():
    table = dict_open("inline:{b=2, a=1, {c = three words}}", os.O_RDONLY, FLAG_FOLD_FIX)
    assert sorted(table.items()) == [("a", "1"), ("b", "2"), ("c", "three words")]
    assert table.owner_uid == 0 and table.type == "inline"


def test_fail_table():
    table = dict_open("fail:reason", os.O_RDWR, 0)
    assert table.lookup("x") is None and table.error == ERR_RETRY
    assert table.update("x", "y") == -1 and table.error == ERR_RETRY
    assert list(table.items()) == [] and table.error == ERR_RETRY
    assert table.flags & FLAG_PATTERN


def test_environ_update(monkeypatch):
    monkeypatch.delenv("pyfix_test_var", raising=False)
    table = dict_open("environ:x", os.O_RDWR, FLAG_FOLD_FIX)
    table.update("PYFIX_TEST_VAR", "set")
    assert os.environ["pyfix_test_var"] == "set"
    assert table.lookup("Pyfix_Test_Var") == "set"


def test_randmap_picks_every_value():
    table = dict_open("randmap:{a, b, {c d}}")
    seen = {table.lookup("key") for _ in range(300)}
    assert seen == {"a", "b", "{c d}"}
    assert table.flags & FLAG_PATTERN


def test_union_and_pipe_flags_and_errors():
    union = dict_open("unionmap:{inline:{a=1}, static:x}")
    assert union.flags & FLAG_FIXED and not union.flags & FLAG_PATTERN
    assert union.lookup("a") == "1,x"
    pipe = dict_open("pipemap:{fail:x, inline:{a=1}}")
    assert pipe.flags & FLAG_PATTERN
    assert pipe.lookup("a") is None and pipe.error == ERR_RETRY
    union = dict_open("unionmap:{static:a, fail:b}")
    assert union.lookup("q") is None and union.error == ERR_RETRY


def test_tcp_retries_then_fails(monkeypatch, capsys):
    msg.init_stderr("test")
    monkeypatch.setattr(dict_tcp, "RETRY_SLEEP", 0)
    table = dict_open("tcp:127.0.0.1:1")
    assert table.lookup("x") is None and table.error == ERR_RETRY
    err = capsys.readouterr().err
    assert err.count("connect to TCP map 127.0.0.1:1: Connection refused") == 10


def test_tcp_keeps_its_connection(tcp_server):
    table = dict_open("tcp:" + tcp_server, os.O_RDONLY, 0)
    assert table.lookup("one") == "=one"
    first = table.sock
    assert table.lookup("two\tkey") == "=two\tkey"
    assert table.sock is first
    assert table.lookup("temp") is None and table.error == ERR_RETRY
    assert table.sock is None                    # a 4xx reply closes the connection
    assert table.lookup("three") == "=three" and table.error == ERR_NONE


def test_socketmap_shares_one_connection(sockmap_servers):
    endpoint = sockmap_servers[0]
    one = dict_open("socketmap:%s:one" % endpoint)
    two = dict_open("socketmap:%s:two" % endpoint)
    assert one.client is two.client
    assert one.lookup("k") == "one:k" and two.lookup("k") == "two:k"
    assert one.lookup("perm") is None and one.error == ERR_CONFIG
    assert one.lookup("close") is None and one.error == ERR_RETRY
    assert two.lookup("again") == "two:again"
    one.close()
    two.close()


def test_restricted_and_read_write_opens(monkeypatch):
    # As in a daemon: the open error leaves a surrogate table (dict_allow_surrogate).
    monkeypatch.setattr("pyfix.maps.dict.allow_surrogate", True)
    from pyfix.maps.dict import FLAG_NO_UNAUTH
    for spec, flags, open_flags, reason in [
        ("tcp:localhost:1", FLAG_NO_UNAUTH, os.O_RDONLY,
         "tcp:localhost:1 map is not allowed for security sensitive data"),
        ("socketmap:inet:localhost:1:x", FLAG_NO_UNAUTH, os.O_RDONLY,
         "socketmap:inet:localhost:1:x map is not allowed for security-sensitive data"),
        ("inline:{a=b}", 0, os.O_RDWR, "inline:{a=b} map requires O_RDONLY access mode"),
        ("unix:passwd.byname", 0, os.O_RDWR,
         "unix:passwd.byname map requires O_RDONLY access mode"),
        ("randmap:{a}", 0, os.O_RDWR, "randmap:{a} map requires O_RDONLY access mode"),
        ("unionmap:{static:a}", 0, os.O_RDWR,
         "unionmap:{static:a} map requires O_RDONLY access mode"),
    ]:
        table = dict_open(spec, open_flags, flags)
        assert isinstance(table, SurrogateDict) and table.reason == reason

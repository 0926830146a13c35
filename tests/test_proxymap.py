"""proxymap(8) and the proxy: table type, under a real pyfix master.

Protocol compatibility both ways: Debian's postmap (Postfix's own dict_proxy client)
queries pyfix's proxymap, and pyfix's proxy: client queries Debian's proxymap (run by
pyfix's master from /usr/lib/postfix/sbin). Plus the access rules of proxy_read_maps and
proxy_write_maps, temporary failures, and the wire format itself.
"""

import os
import socket
import sqlite3
import subprocess

import pytest
import psutil

from conftest import requires_oracle
from master_run import MasterRun, wait_until
from table_oracle import RETRY, Capture, oracle, write_cf
from pyfix.common import attr
from pyfix.maps import cfg_parser, dict_proxy
from pyfix.maps.dict import ERR_RETRY, FLAG_FOLD_FIX, dict_open

DEBIAN_PROXYMAP = "/usr/lib/postfix/sbin/proxymap"
# One proxymap process: with several, a process whose clients are connected waits for
# the accept lock before it serves them again (multi_server.c works that way too), and
# a test's request could then wait for the next connection of some other client.
MASTER_CF = ("proxymap unix - - n - 1 {command}\n"
             "proxywrite unix - - n - 1 {command}\n")
KEYS = ["alice@example.com", "ALICE@example.com", "bob@example.com", "empty@example.com",
        "nobody@example.com"]


def make_tables(root):
    db = os.path.join(root, "mail.sqlite")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE aliases (alias TEXT, target TEXT)")
        conn.executemany("INSERT INTO aliases VALUES (?, ?)", [
            ("alice@example.com", "alice@mail.example.com"),
            ("alice@example.com", "alice@backup.example.com"),
            ("bob@example.com", "bob@mail.example.com"), ("empty@example.com", "")])
    os.chmod(db, 0o644)
    query = "query = SELECT target FROM aliases WHERE alias = '%s'\n"
    tables = {
        "sqlite": write_cf(os.path.join(root, "aliases.cf"), "dbpath = %s\n%s" % (db, query)),
        "other": write_cf(os.path.join(root, "other.cf"), "dbpath = %s\n%s" % (db, query)),
        "down": write_cf(os.path.join(root, "down.cf"),
                         "hosts = 127.0.0.1:%d\ndbname = x\n%s" % (_dead_port(), query)),
    }
    return tables


def _dead_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_master(command):
    run = MasterRun("")
    tables = make_tables(run.root)
    run.write_master_cf(MASTER_CF.format(command=command))
    run.write_main_cf("proxy_read_maps = proxy:sqlite:%s proxy:pgsql:%s\n"
                      "proxy_write_maps = proxy:sqlite:%s\n"
                      % (tables["sqlite"], tables["down"], tables["sqlite"]))
    for name in ("main.cf", "master.cf"):
        os.utime(os.path.join(run.etc, name), (946684800, 946684800))
    run.start()
    run.tables = tables
    return run


@pytest.fixture(scope="module")
def pyfix_master():
    run = start_master("proxymap")
    yield run
    run.cleanup()


@pytest.fixture
def client(pyfix_master):
    """pyfix's proxy: client, talking to the master's services."""
    cfg_parser.use_config(MasterRunConfig.load(pyfix_master))
    dict_proxy._streams.clear()
    yield pyfix_master
    for stream in dict_proxy._streams.values():
        stream.close()
    dict_proxy._streams.clear()
    cfg_parser.use_config(None)


class MasterRunConfig:
    @staticmethod
    def load(run):
        from pyfix.common.config import Config
        return Config.load(run.etc)


def direct_and_proxied(run, table_spec, keys):
    for key in keys:
        direct = oracle(run.etc, table_spec, key)
        proxied = oracle(run.etc, "proxy:" + table_spec, key, timeout=20)
        yield key, direct, proxied


# -- Postfix's client, pyfix's server ----------------------------------------------------------

@requires_oracle("postmap")
def test_debian_postmap_queries_pyfix_proxymap(pyfix_master):
    spec = "sqlite:" + pyfix_master.tables["sqlite"]
    for key, direct, proxied in direct_and_proxied(pyfix_master, spec, KEYS):
        assert proxied.value == direct.value, key
        assert proxied.error == direct.error, key
    # The empty value's warning is the proxymap process's, in the mail log.
    pyfix_master.wait_log(r'postfix/proxymap\[\d+\]: warning: table "sqlite:.*": '
                          r'empty lookup result for: "empty@example.com" -- ignored')
    assert [p for p in pyfix_master.children("proxymap")]


@requires_oracle("postmap")
def test_debian_postmap_temporary_failure_through_proxy(pyfix_master):
    answer = oracle(pyfix_master.etc, "proxy:pgsql:" + pyfix_master.tables["down"],
                    "alice@example.com", timeout=20)
    assert answer.error == RETRY
    pyfix_master.wait_log(r"proxymap\[\d+\]: warning: connect to pgsql server 127\.0\.0\.1:")


@requires_oracle("postmap")
def test_debian_postmap_unapproved_table(pyfix_master):
    spec = "sqlite:" + pyfix_master.tables["other"]
    answer = oracle(pyfix_master.etc, "proxy:" + spec, "alice@example.com", timeout=20)
    assert answer.error == 'fatal: proxymap service is not configured for table "%s"' % spec
    pyfix_master.wait_log(r'proxymap\[\d+\]: warning: request for unapproved table: "%s"'
                          % spec.replace(".", r"\."))
    pyfix_master.wait_log(r"proxymap\[\d+\]: warning: to approve this table for read-only "
                          r"access, list proxy:%s in main.cf:proxy_read_maps"
                          % spec.replace(".", r"\."))


# -- pyfix's client, pyfix's server -------------------------------------------------------------

def test_pyfix_client_lookups(client):
    spec = "sqlite:" + client.tables["sqlite"]
    table = dict_open("proxy:" + spec, os.O_RDONLY, FLAG_FOLD_FIX)
    direct = dict_open(spec, os.O_RDONLY, FLAG_FOLD_FIX)
    assert table.flags & dict_proxy.FLAG_FIXED          # the server's table flags
    for key in KEYS:
        with Capture():
            expected = direct.lookup(key)
        assert table.lookup(key) == expected and table.error == 0, key
    assert table.lookup("alice@example.com") == \
        "alice@mail.example.com,alice@backup.example.com"


def test_pyfix_client_temporary_failure(client):
    table = dict_open("proxy:pgsql:" + client.tables["down"], os.O_RDONLY, 0)
    assert table.lookup("alice@example.com") is None
    assert table.error == ERR_RETRY


def test_pyfix_client_unapproved_table_is_fatal(client):
    spec = "sqlite:" + client.tables["other"]
    with Capture() as capture, pytest.raises(SystemExit):
        dict_open("proxy:" + spec, os.O_RDONLY, 0)
    assert capture.lines == ['fatal: proxymap service is not configured for table "%s"' % spec]


def test_update_is_refused_by_the_read_only_service(client):
    spec = "sqlite:" + client.tables["sqlite"]
    table = dict_open("proxy:" + spec, os.O_RDONLY, 0)
    with Capture() as capture, pytest.raises(SystemExit):
        table.update("k", "v")
    assert capture.lines == ['fatal: proxymap update access is not configured for table "%s"'
                             % spec]
    client.wait_log(r"proxymap\[\d+\]: warning: refusing %s update request on "
                    r"non-proxywrite service" % spec.replace(".", r"\."))


def test_proxywrite_passes_updates_to_the_table(client):
    """sqlite: tables are read-only: proxywrite opens them for writing and gets a
    surrogate table that says why not; the update is a temporary failure."""
    spec = "sqlite:" + client.tables["sqlite"]
    table = dict_open("proxy:" + spec, os.O_RDWR | os.O_CREAT, 0)
    assert table.update("k", "v") != 0
    assert table.error == ERR_RETRY, client.log()
    # Postfix logs the proxywrite service under its program name, proxymap.
    client.wait_log(r"proxymap\[\d+\]: \S+ sqlite:%s map requires O_RDONLY access mode"
                    % client.tables["sqlite"].replace(".", r"\."))


# -- the wire ---------------------------------------------------------------------------------

def raw_connect(run):
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(os.path.join(run.spool, "private", "proxymap"))
    return attr.AttrStream(sock, "test", 10)


def test_protocol_announcement_and_replies(pyfix_master):
    stream = raw_connect(pyfix_master)
    try:
        count, _ = stream.scan([(attr.STREQ, "protocol", "proxymap_protocol")],
                               attr.FLAG_STRICT)
        assert count == 0 and not stream.eof
        spec = "sqlite:" + pyfix_master.tables["sqlite"]
        stream.write(attr.print0([("request", "lookup"), ("table", spec), ("flags", 0),
                                  ("key", "bob@example.com")]))
        assert stream.get_null() == (b"status", True), pyfix_master.log()
        assert stream.get_null() == (b"0", True)
        assert stream.get_null() == (b"value", True)
        assert stream.get_null() == (b"bob@mail.example.com", True)
        assert stream.get_null() == (b"", True)
        # Two requests in one write are both answered. Like Postfix's, the reply to an
        # unknown request leaves the rest of its attribute list unread: the next scan
        # first meets that list's terminator ("missing attribute request").
        stream.write(attr.print0([("request", "nonsense")]) +
                     attr.print0([("request", "lookup"), ("table", "nocolon"), ("flags", 0),
                                  ("key", "x")]))
        assert stream.scan([(attr.INT, "status")], attr.FLAG_STRICT) == (1, {"status": 3})
        assert stream.scan([(attr.INT, "status"), (attr.STR, "value")], attr.FLAG_STRICT) \
            == (2, {"status": 3, "value": ""})
        stream.write(attr.print0([("request", "open"), ("table", spec), ("flags", 0)]))
        count, values = stream.scan([(attr.INT, "status"), (attr.INT, "flags")],
                                    attr.FLAG_STRICT)
        assert count == 2 and values["status"] == 0 and values["flags"] & 0x10
    finally:
        stream.sock.close()
    pyfix_master.wait_log(r'proxymap\[\d+\]: warning: unrecognized request: "nonsense", ignored')
    pyfix_master.wait_log(r"proxymap\[\d+\]: warning: missing attribute request in input from "
                          r"proxymap socket")


def test_authorization_list_parsing():
    from pyfix.daemons.proxymap import Proxymap
    proxymap = Proxymap()
    with Capture() as capture:
        proxymap.authorize("proxy:hash:/a, unionmap:{proxy:pcre:/b, hash:/c} "
                           "{ proxy:ldap:/d.cf, x=y } pipemap:{proxy:proxy:cidr:/e} "
                           "hash:/f proxy:nocolon {unbalanced")
    assert proxymap.approved == {"hash:/a", "pcre:/b", "ldap:/d.cf", "cidr:/e"}
    assert capture.lines == ["warning: bad proxy_read_maps parameter value: "
                             "missing '}' in \"{unbalanced\""]


def test_attribute_codec():
    data = attr.print0([("n", 4711), ("s", "whoopee"), ("d", b"\x00\xff"),
                        (attr.LONG, "l", 2 ** 40), ("neg", -1), ("h", {"a": "1"})])
    assert data == (b"n\x004711\x00s\x00whoopee\x00d\x00AP8=\x00l\x001099511627776\x00"
                    b"neg\x004294967295\x00{\x00a\x001\x00}\x00\x00")
    left, right = socket.socketpair()
    try:
        left.sendall(data + b"extra\x00x\x00\x00")
        stream = attr.AttrStream(right, "pair", 5)
        count, values = stream.scan([(attr.INT, "n"), (attr.STR, "s"), (attr.DATA, "d"),
                                     (attr.LONG, "l"), (attr.INT, "neg"), (attr.HASH, "h")])
        assert count == 6 and values == {"n": 4711, "s": "whoopee", "d": b"\x00\xff",
                                         "l": 2 ** 40, "neg": 2 ** 32 - 1, "h": {"a": "1"}}
        with Capture() as capture:
            assert stream.scan([(attr.STR, "other")], attr.FLAG_STRICT)[0] == 0
        assert capture.lines == ["warning: unexpected attribute extra from pair "
                                 "(expecting: other)"]
    finally:
        left.close()
        right.close()


# -- pyfix's client, Postfix's server ------------------------------------------------------

@pytest.mark.skipif(not os.access(DEBIAN_PROXYMAP, os.X_OK),
                    reason="Debian's proxymap is not installed (%s)" % DEBIAN_PROXYMAP)
def test_pyfix_client_queries_debian_proxymap():
    run = start_master(DEBIAN_PROXYMAP)
    try:
        cfg_parser.use_config(MasterRunConfig.load(run))
        dict_proxy._streams.clear()
        spec = "sqlite:" + run.tables["sqlite"]
        table = dict_open("proxy:" + spec, os.O_RDONLY, FLAG_FOLD_FIX)
        assert table.flags & dict_proxy.FLAG_FIXED
        assert table.lookup("ALICE@example.com") == \
            "alice@mail.example.com,alice@backup.example.com"
        assert table.lookup("nobody@example.com") is None and table.error == 0
        down = dict_open("proxy:pgsql:" + run.tables["down"], os.O_RDONLY, 0)
        assert down.lookup("x@example.com") is None and down.error == ERR_RETRY
        with Capture() as capture, pytest.raises(SystemExit):
            dict_open("proxy:sqlite:" + run.tables["other"], os.O_RDONLY, 0)
        assert capture.lines[0].startswith("fatal: proxymap service is not configured")
        procs = [p for p in run.children() if "proxymap" in " ".join(p.cmdline())]
        assert procs and all(p.exe() == DEBIAN_PROXYMAP for p in procs
                             if p.status() != psutil.STATUS_ZOMBIE)
    finally:
        for stream in dict_proxy._streams.values():
            stream.close()
        dict_proxy._streams.clear()
        cfg_parser.use_config(None)
        run.cleanup()


def test_debian_postmap_waits_for_a_missing_service_without_crashing(pyfix_master, tmp_path):
    """No proxymap socket: Postfix's client warns and keeps trying (it never gives up
    quickly); pyfix's client does the same. Checked for a few seconds."""
    if not os.access("/usr/sbin/postmap", os.X_OK):
        pytest.skip("Debian's postmap is not installed")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "main.cf").write_text("compatibility_level = 3.7\nqueue_directory = %s\n"
                                 % (tmp_path / "spool"))
    os.utime(etc / "main.cf", (946684800, 946684800))
    proc = subprocess.Popen(["/usr/sbin/postmap", "-c", str(etc), "-q", "k",
                             "proxy:sqlite:/x.cf"], stderr=subprocess.PIPE, text=True)
    try:
        assert not wait_until(lambda: proc.poll() is not None, timeout=3)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert "connect #1 to subsystem" in err and "No such file or directory" in err


# -- indexed files through proxymap and proxywrite (when pyfix has the table types) ------------

def have_table_type(name):
    from pyfix.maps.types import opener
    try:
        return opener(name) is not None
    except ImportError:
        return False


needs_db = pytest.mark.skipif(not (have_table_type("hash") and have_table_type("btree")),
                              reason="pyfix has no hash/btree tables here")


@pytest.fixture(scope="module")
def db_master():
    """A master whose proxymap serves a hash: table built by Debian's postmap and whose
    proxywrite writes a btree: table in a directory that mail_owner may write."""
    run = MasterRun("")
    data = os.path.join(run.root, "data")
    os.makedirs(data)
    if os.geteuid() == 0:
        import shutil
        shutil.chown(data, "postfix")
    source = os.path.join(run.root, "virtual")
    with open(source, "w") as f:
        f.write("alice@example.com alice@mail.example.com\nbob@example.com bob@x\n")
    run.hash = "hash:" + source
    run.btree = "btree:" + os.path.join(data, "cache")
    run.write_master_cf(MASTER_CF.format(command="proxymap"))
    run.write_main_cf("proxy_read_maps = proxy:%s proxy:%s\nproxy_write_maps = proxy:%s\n"
                      % (run.hash, run.btree, run.btree))
    for name in ("main.cf", "master.cf"):
        os.utime(os.path.join(run.etc, name), (946684800, 946684800))
    subprocess.run(["/usr/sbin/postmap", "-c", run.etc, run.hash], check=True)
    run.start()
    yield run
    run.cleanup()


@needs_db
@requires_oracle("postmap")
def test_debian_postmap_queries_a_hash_table_through_pyfix_proxymap(db_master):
    for key, expected in (("alice@example.com", "alice@mail.example.com"),
                          ("Bob@Example.com", "bob@x"), ("nobody@example.com", None)):
        answer = oracle(db_master.etc, "proxy:" + db_master.hash, key, timeout=20)
        assert answer.value == expected and not answer.error and not answer.warnings


@needs_db
@requires_oracle("postmap")
def test_changed_table_restarts_proxymap(db_master):
    assert oracle(db_master.etc, "proxy:" + db_master.hash, "bob@example.com",
                  timeout=20).value == "bob@x"
    before = {p.pid for p in db_master.children("proxymap")}
    source = db_master.hash.partition(":")[2]
    with open(source, "a") as f:
        f.write("carol@example.com carol@x\n")
    os.utime(source + ".db", None)
    subprocess.run(["/usr/sbin/postmap", "-c", db_master.etc, db_master.hash], check=True)
    # The next client makes the old process notice the change and leave; a new one
    # answers with the new contents.
    assert oracle(db_master.etc, "proxy:" + db_master.hash, "carol@example.com",
                  timeout=30).value == "carol@x"
    db_master.wait_log(r"proxymap\[\d+\]: table %s:\S* has changed -- restarting"
                       % db_master.hash.replace(".", r"\."))
    assert {p.pid for p in db_master.children("proxymap")} != before


@needs_db
@requires_oracle("postmap")
def test_proxywrite_updates_deletes_and_sequence(db_master):
    from pyfix.common.config import Config
    cfg_parser.use_config(Config.load(db_master.etc))
    dict_proxy._streams.clear()
    try:
        table = dict_open("proxy:" + db_master.btree, os.O_RDWR | os.O_CREAT, FLAG_FOLD_FIX)
        assert table.update("k1@example.com", "v1") == 0
        assert table.update("k2@example.com", "v2") == 0
        assert table.delete("k2@example.com") == 0
        assert table.delete("k2@example.com") == 1          # not found
        assert table.lookup("K1@example.com") == "v1"
        # Debian's postmap reads the file that pyfix's proxywrite wrote. (It refuses
        # `postmap -s proxy:...`: "can't sequence maps via the proxy service".)
        assert oracle(db_master.etc, db_master.btree, "k1@example.com").value == "v1"
        reader = dict_open("proxy:" + db_master.btree, os.O_RDONLY, 0)
        assert list(reader.items()) == [("k1@example.com", "v1")]
    finally:
        for stream in dict_proxy._streams.values():
            stream.close()
        dict_proxy._streams.clear()
        cfg_parser.use_config(None)

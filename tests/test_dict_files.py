"""The file-based tables in-process: hash, btree, lmdb, cdb, texthash through the Dict API
(maps/dict_db.py, dict_lmdb.py, dict_cdb.py, dict_thash.py, mkmap.py, dict_utf8.py).

What postmap cannot show from the outside: which NUL convention a table settles on
(TRY1NULL/TRY0NULL), case folding with and without UTF-8, update/delete/items, change
detection, surrogates, and the lmdb bulk restart.
"""

import os
import sys
import time

import pytest

from pyfix.common import msg
from pyfix.common import mime_state as mime
from pyfix.common import tok822
from pyfix.maps import dict as dict_mod
from pyfix.maps import dict_cdb, dict_lmdb, mkmap
from pyfix.maps.dict import (ERR_NONE, FLAG_DUP_IGNORE, FLAG_DUP_REPLACE, FLAG_DUP_WARN,
                             FLAG_FOLD_FIX, FLAG_LOCK, FLAG_TRY0NULL, FLAG_TRY1NULL,
                             FLAG_UTF8_REQUEST, SurrogateDict, dict_open)

BUILD = os.O_RDWR | os.O_CREAT | os.O_TRUNC
TYPES = ["hash", "btree", "lmdb", "cdb"]
ENTRIES = [("alice@example.com", "bob@example.org"), ("Mixed", "Case"),
           ("caf\udce9", "latin-1 \udce9"), ("\u00c9t\u00e9", "utf-8"), ("empty-ish", " ")]


class CurrentStderr:
    """Whatever sys.stderr is when a message is written (pytest swaps it per phase)."""

    def write(self, text):
        sys.stderr.write(text)

    def flush(self):
        sys.stderr.flush()


@pytest.fixture
def diag(capsys):
    """The diagnostics written so far."""
    return lambda: capsys.readouterr().err


@pytest.fixture(autouse=True)
def quiet_state():
    """Each test starts with Postfix's defaults for these process-wide switches."""
    saved = (msg.utf8_enable, dict_mod.allow_surrogate, dict_lmdb.map_size,
             list(msg._outputs))
    msg.utf8_enable = False
    msg._outputs[:] = [msg.StderrOutput("test", CurrentStderr())]
    yield
    msg.utf8_enable, dict_mod.allow_surrogate, dict_lmdb.map_size, outputs = saved
    msg._outputs[:] = outputs
    dict_mod._open_tables.clear()


def build(path, map_type, entries=ENTRIES, dict_flags=FLAG_DUP_WARN | FLAG_FOLD_FIX):
    table = mkmap.mkmap_open(map_type, str(path), BUILD,
                             dict_flags | dict_mod.FLAG_BULK_UPDATE)

    def feed(target):
        for key, value in entries:
            target.append(key, value)
    table.build(feed)


@pytest.mark.parametrize("map_type", TYPES)
def test_nul_conventions(tmp_path, map_type):
    """A table written with the NUL (hash, btree, lmdb) or without (cdb) is found either
    way, and the reader keeps to the convention that worked."""
    build(tmp_path / "t", map_type)
    table = dict_open("%s:%s" % (map_type, tmp_path / "t"), os.O_RDONLY, FLAG_FOLD_FIX)
    assert table.flags & FLAG_TRY0NULL and table.flags & FLAG_TRY1NULL
    assert table.lookup("ALICE@example.com") == "bob@example.org"
    with_nul = map_type != "cdb"
    assert bool(table.flags & FLAG_TRY1NULL) == with_nul
    assert bool(table.flags & FLAG_TRY0NULL) == (not with_nul)
    assert table.lookup("nonexistent") is None and table.error == ERR_NONE
    table.close()


@pytest.mark.parametrize("map_type", TYPES)
@pytest.mark.parametrize("flag", [FLAG_TRY0NULL, FLAG_TRY1NULL], ids=["n", "N"])
def test_explicit_nul_flags(tmp_path, map_type, flag):
    build(tmp_path / "t", map_type, dict_flags=FLAG_DUP_WARN | FLAG_FOLD_FIX | flag)
    other = FLAG_TRY1NULL if flag == FLAG_TRY0NULL else FLAG_TRY0NULL
    spec = "%s:%s" % (map_type, tmp_path / "t")
    assert dict_open(spec, os.O_RDONLY, flag).lookup("mixed") == "Case"
    assert dict_open(spec, os.O_RDONLY, other).lookup("mixed") is None


@pytest.mark.parametrize("map_type", TYPES + ["texthash"])
def test_case_folding_is_ascii_only(tmp_path, map_type):
    if map_type == "texthash":
        (tmp_path / "t").write_text("".join("%s %s\n" % kv for kv in ENTRIES[:4]),
                                    errors="surrogateescape")
        os.utime(tmp_path / "t", (1, 1))
    else:
        build(tmp_path / "t", map_type)
    spec = "%s:%s" % (map_type, tmp_path / "t")
    folding = dict_open(spec, os.O_RDONLY, FLAG_FOLD_FIX)
    assert folding.lookup("MIXED") == "Case"
    assert folding.lookup("\u00c9T\u00c9") is None           # É is not ASCII
    assert folding.lookup("\u00c9t\u00e9") == "utf-8"
    assert folding.lookup("CAF\udce9") == "latin-1 \udce9"
    exact = dict_open(spec, os.O_RDONLY, 0)
    stored = "Mixed" if map_type == "texthash" else "mixed"   # postmap folded the others
    assert exact.lookup("MIXED") is None and exact.lookup(stored) == "Case"


@pytest.mark.parametrize("map_type", ["hash", "lmdb", "texthash"])
def test_utf8_proxy_casefolds(tmp_path, map_type):
    msg.utf8_enable = True
    flags = FLAG_FOLD_FIX | FLAG_UTF8_REQUEST
    if map_type == "texthash":
        (tmp_path / "t").write_text("\u00c9t\u00e9 utf-8\nStra\u00dfe street\n")
        os.utime(tmp_path / "t", (1, 1))
    else:
        build(tmp_path / "t", map_type, [("\u00c9t\u00e9", "utf-8"), ("Stra\u00dfe", "street")],
              FLAG_DUP_WARN | flags)
    table = dict_open("%s:%s" % (map_type, tmp_path / "t"), os.O_RDONLY, flags)
    assert table.lookup("\u00c9T\u00c9") == "utf-8"
    assert table.lookup("STRASSE") == "street"              # full case folding: ß = ss
    assert table.lookup("bad \udcff key") is None


def test_utf8_proxy_refuses_non_utf8(tmp_path, diag):
    msg.utf8_enable = True
    build(tmp_path / "t", "hash", [("k", "caf\udce9")])
    table = dict_open("hash:%s" % (tmp_path / "t"), os.O_RDONLY, FLAG_UTF8_REQUEST)
    assert table.lookup("k") is None and table.error == dict_mod.ERR_CONFIG
    assert table.lookup("caf\udce9") is None and table.error == ERR_NONE
    err = diag()
    assert 'non-UTF-8 value "caf?"' in err and 'non-UTF-8 key "caf?"' in err


@pytest.mark.parametrize("map_type", ["hash", "btree", "lmdb"])
def test_update_delete_items(tmp_path, map_type, diag):
    build(tmp_path / "t", map_type)
    spec = "%s:%s" % (map_type, tmp_path / "t")
    table = dict_open(spec, os.O_RDWR, FLAG_FOLD_FIX | FLAG_LOCK | FLAG_DUP_WARN)
    assert table.update("New", "value") == 0
    assert table.update("new", "other") == 1
    assert 'duplicate entry: "new"' in diag()
    table.flags = (table.flags & ~FLAG_DUP_WARN) | FLAG_DUP_REPLACE
    assert table.update("new", "replaced") == 0
    assert table.lookup("NEW") == "replaced"
    assert table.delete("NEW") == 0 and table.delete("new") == 1
    items = dict(table.items())
    assert items["alice@example.com"] == "bob@example.org"
    assert "new" not in items and len(items) == len(ENTRIES)
    table.close()


def test_texthash_items_and_duplicates(tmp_path, diag):
    (tmp_path / "t").write_text("a 1\nA 2\nb 3\n")
    os.utime(tmp_path / "t", (1, 1))
    spec = "texthash:%s" % (tmp_path / "t")
    table = dict_open(spec, os.O_RDONLY, FLAG_FOLD_FIX | FLAG_DUP_WARN)
    assert dict(table.items()) == {"a": "1", "b": "3"}
    assert 'line 2: duplicate entry: "A"' in diag()
    assert dict_open(spec, os.O_RDONLY, FLAG_FOLD_FIX | FLAG_DUP_REPLACE).lookup("a") == "2"
    assert dict_open(spec, os.O_RDONLY, FLAG_FOLD_FIX | FLAG_DUP_IGNORE).lookup("a") == "1"


def test_cdb_duplicates_and_collisions(tmp_path):
    """Many keys (every hash slot in use), -w keeps both records (the first is found),
    -r cuts the old record out of the file."""
    entries = [("key%d" % i, "value%d" % i) for i in range(5000)] + [("key7", "second")]
    for flags, want in ((FLAG_DUP_IGNORE, "value7"), (FLAG_DUP_REPLACE, "second"),
                        (FLAG_DUP_WARN, "value7")):
        build(tmp_path / "t", "cdb", entries, flags)
        table = dict_open("cdb:%s" % (tmp_path / "t"), os.O_RDONLY, 0)
        assert table.lookup("key7") == want
        assert all(table.lookup("key%d" % i) == "value%d" % i for i in range(0, 5000, 7)
                   if i != 7)
        size = os.path.getsize(tmp_path / "t.cdb")
        records = 5001 if flags == FLAG_DUP_IGNORE else 5000
        assert size == 2048 + sum(8 + len(k) + len(v) for k, v in entries[:records]) \
            - (len("value7") - len("second") if flags == FLAG_DUP_REPLACE else 0) \
            + 16 * records
        table.close()
    assert not os.path.exists(tmp_path / "t.cdb.tmp")


def test_cdb_hash_function():
    assert dict_cdb.cdb_hash(b"") == 5381
    assert dict_cdb.cdb_hash(b"a") == ((5381 << 5) + 5381) ^ ord("a")


def test_change_detection(tmp_path):
    build(tmp_path / "h", "hash")
    build(tmp_path / "c", "cdb")
    (tmp_path / "x").write_text("k v\n")
    os.utime(tmp_path / "x", (1, 1))
    specs = ["hash:%s" % (tmp_path / "h"), "cdb:%s" % (tmp_path / "c"),
             "texthash:%s" % (tmp_path / "x")]
    tables = [dict_mod.open_table(spec, os.O_RDONLY, FLAG_FOLD_FIX) for spec in specs]
    assert dict_mod.open_table(specs[0], os.O_RDONLY, FLAG_FOLD_FIX) is tables[0]
    assert dict_mod.changed_name() is None
    assert tables[2].stat_path is None           # texthash: seen by new processes only
    os.utime(tmp_path / "h.db", (time.time() + 5, time.time() + 5))
    assert dict_mod.changed_name() == specs[0]
    assert tables[1].changed() is False
    build(tmp_path / "c", "cdb", [("k", "v")])  # a new file renamed into place
    os.utime(tmp_path / "c.cdb", (time.time() + 5, time.time() + 5))
    assert tables[1].changed() is True


def test_lmdb_is_multi_writer(tmp_path):
    build(tmp_path / "t", "lmdb")
    table = dict_open("lmdb:%s" % (tmp_path / "t"), os.O_RDONLY, 0)
    assert table.flags & dict_mod.FLAG_MULTI_WRITER
    writer = dict_open("lmdb:%s" % (tmp_path / "t"), os.O_RDWR, 0)
    writer.update("late", "entry")
    assert table.lookup("late") == "entry"       # readers see writers' commits
    assert table.changed() is False


def test_lmdb_bulk_restart(tmp_path, diag):
    """A map too small for the build: the bulk transaction restarts in a bigger map and
    every entry is fed again."""
    dict_lmdb.map_size = 20000
    rounds = []
    table = mkmap.mkmap_open("lmdb", str(tmp_path / "t"), BUILD,
                             FLAG_DUP_WARN | dict_mod.FLAG_BULK_UPDATE)

    def feed(target):
        rounds.append(1)
        for i in range(3000):
            target.append("key%d" % i, "value %d %s" % (i, "x" * 40))
    table.build(feed)
    assert len(rounds) > 1
    reader = dict_open("lmdb:%s" % (tmp_path / "t"), os.O_RDONLY, 0)
    assert reader.lookup("key2999").startswith("value 2999")
    assert len(list(reader.items())) == 3000
    assert "duplicate" not in diag()


def test_zero_length_database_is_removed(tmp_path, diag):
    (tmp_path / "t.db").write_bytes(b"")
    build(tmp_path / "t", "hash")
    assert "removing zero-length database file: %s.db" % (tmp_path / "t") \
        in diag()
    assert os.path.getsize(tmp_path / "t.db") > 0


def test_surrogates(tmp_path, capsys):
    """dict_surrogate.c: in a daemon the open error is an error, then each use warns and
    fails temporarily; in a command it is fatal."""
    dict_mod.allow_surrogate = True
    table = dict_open("hash:%s" % (tmp_path / "missing"), os.O_RDONLY, 0)
    assert isinstance(table, SurrogateDict)
    assert table.lookup("x") is None and table.error == dict_mod.ERR_RETRY
    reason = "open database %s.db: No such file or directory" % (tmp_path / "missing")
    err = capsys.readouterr().err
    assert "error: " + reason in err
    assert "warning: hash:%s is unavailable. %s" % (tmp_path / "missing", reason) in err
    dict_mod.allow_surrogate = False
    for spec in ("hash:%s" % (tmp_path / "missing"), "lmdb:%s" % (tmp_path / "missing"),
                 "cdb:%s" % (tmp_path / "missing"), "texthash:%s" % (tmp_path / "missing"),
                 "nosuchtype:x"):
        with pytest.raises(SystemExit):
            dict_open(spec, os.O_RDONLY, 0)


def test_surrogate_behind_utf8_proxy(tmp_path, capsys):
    """As dict_open3(): a table whose open failed still gets the UTF-8 proxy, so a key
    that is not UTF-8 is "not found" before the surrogate could say "try again"; an
    unknown type gets no proxy."""
    dict_mod.allow_surrogate = True
    msg.utf8_enable = True
    table = dict_open("hash:%s" % (tmp_path / "missing"), os.O_RDONLY, FLAG_UTF8_REQUEST)
    assert table.surrogate
    assert table.lookup("\udcff") is None and table.error == dict_mod.ERR_NONE
    assert table.lookup("x") is None and table.error == dict_mod.ERR_RETRY
    unknown = dict_open("nosuchtype:x", os.O_RDONLY, FLAG_UTF8_REQUEST)
    assert isinstance(unknown, SurrogateDict)
    capsys.readouterr()


def test_mkmap_refuses_other_types(tmp_path):
    for map_type in ("texthash", "nosuchtype"):
        with pytest.raises(SystemExit):
            mkmap.mkmap_open(map_type, str(tmp_path / "t"), BUILD, 0)


# -- the shared parsers ------------------------------------------------------------------------


def test_source_line_split():
    from pyfix.maps.dict_thash import NO_KEY_OR_VALUE, UNBALANCED, split_entry
    assert split_entry('"a b" c d ') == ('"a b"', "c d")
    assert split_entry('"a \\" b"\tv') == ('"a \\" b"', "v")
    assert split_entry("a\\ b v") == ("a\\ b", "v")
    assert split_entry('"open v') == (None, UNBALANCED)
    assert split_entry("key") == (None, NO_KEY_OR_VALUE)
    assert split_entry("key\\") == (None, NO_KEY_OR_VALUE)


def test_tok822_round_trip():
    tokens = tok822.scan('name (comment) : "a b", [1.2.3.4] x\\,y <u@h>')
    assert tok822.internalize(tokens) == 'name (comment):a b, [1.2.3.4] x,y <u@h>'
    assert tok822.externalize(tokens) == 'name (comment):"a b", [1.2.3.4] "x,y" <u@h>'


def test_mime_headers_and_body():
    seen = []
    state = mime.MimeState(
        0, head_out=lambda cls, info, text, off: seen.append(("H%d" % cls, text)),
        body_out=lambda rec, text, off: seen.append(("B", text)))
    for line in ["Subject: a", " b", "Content-Type: multipart/mixed; boundary=xx", "",
                 "pre", "--xx", "X-Part: 1", "", "part", "--xx--", "post"]:
        state.update(mime.REC_TYPE_NORM, line)
    assert state.update(mime.REC_TYPE_END, "") == 0
    assert seen == [("H1", "Subject: a\n b"),
                    ("H1", "Content-Type: multipart/mixed; boundary=xx"),
                    ("B", ""), ("B", "pre"), ("B", "--xx"), ("H2", "X-Part: 1"), ("B", ""),
                    ("B", "part"), ("B", "--xx--"), ("B", "post")]

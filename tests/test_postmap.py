"""postmap(1): pyfix's beside Debian's /usr/sbin/postmap, on tables written here.

Every step runs twice, Debian's program in one copy of the files and pyfix's in another
(tests/table_sides.py), and both must print the same, exit the same, and leave tables
that the other program reads the same way: a table Debian built is queried and listed by
pyfix and one pyfix built by Debian (hash, btree, lmdb, cdb). cdb and lmdb files must be
byte-identical, Berkeley DB files identical but for libdb's unique file id.
"""

import os
import stat

import pytest

from conftest import assert_same, candidate_path, requires_oracle, run_program
from table_sides import Sides

pytestmark = requires_oracle("postmap")

# A source exercising the syntax: comments, blank and whitespace-only lines, continuation
# lines (with a comment inside the entry), quoted keys with \" and \\, duplicates (also by
# case), a `key:` line, a key without value, an unbalanced quote, tabs, 8-bit bytes that
# are not UTF-8, UTF-8, trailing whitespace, and a long value.
SOURCE = (
    b"# a comment\n"
    b"\n"
    b"   \n"
    b"alice@example.com\tbob@example.org\n"
    b"Alice@Example.COM duplicate by case\n"
    b"alice@example.com duplicate\n"
    b"multi first line\n"
    b"  second line\n"
    b"# a comment inside the entry\n"
    b"\tthird line\n"
    b'"quoted key" value of quoted key\n'
    b'"with \\"escaped\\" quote" q1\n'
    b'"back\\\\slash" q2\n'
    b'"unbalanced value\n'
    b"novalue\n"
    b"novalue2   \n"
    b"alias: looks like an alias\n"
    b"latin1-\xe9t\xe9 caf\xe9\n"
    b"utf8-\xc3\xa9t\xc3\xa9 \xc3\x89T\xc3\x89\n"
    b"UPPER@EXAMPLE.COM Mixed Case Value\n"
    b"trailing value with spaces   \t\n"
    b"@example.net catch-all\n"
    b"long " + b"x" * 3000 + b"\n"
    b"last without newline value"
)

KEYS = [
    "alice@example.com", "ALICE@EXAMPLE.COM", "Alice@Example.COM", "multi", "MULTI",
    '"quoted key"', "quoted key", '"with \\"escaped\\" quote"', '"back\\\\slash"',
    "novalue", "alias:", "alias", "latin1-\udce9t\udce9", "LATIN1-\udce9T\udce9",
    "utf8-\u00e9t\u00e9", "UTF8-\u00c9T\u00c9", "upper@example.com", "UPPER@EXAMPLE.COM",
    "trailing", "@example.net", "example.net", "long", "last", "nonexistent", "",
]
STDIN_KEYS = "\n".join(KEYS) + "\n"

INDEXED = ["hash", "btree", "lmdb", "cdb"]
SUFFIX = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb"}


def sides(tmp_path, files=None, main_cf=""):
    return Sides(tmp_path, {"table": SOURCE} if files is None else files, main_cf)


def built(tmp_path, map_type, flags=(), main_cf=""):
    pair = sides(tmp_path, main_cf=main_cf)
    pair.check("postmap", list(flags) + ["%s:table" % map_type])
    return pair


# -- building and querying ---------------------------------------------------------------------


@pytest.mark.parametrize("map_type", INDEXED)
@pytest.mark.parametrize("flags", [(), ("-f",), ("-N",), ("-n",), ("-r",), ("-w",)],
                         ids=["default", "f", "N", "n", "r", "w"])
def test_build_query_list(tmp_path, map_type, flags):
    pair = built(tmp_path, map_type, flags)
    spec = "%s:table" % map_type
    pair.check("postmap", list(flags) + ["-q", "-", spec], stdin=STDIN_KEYS)
    for key in ("alice@example.com", "Multi", "nonexistent", '"quoted key"', ""):
        pair.check("postmap", list(flags) + ["-q", key, spec])
    pair.check("postmap", ["-s", spec], sort_stdout=map_type == "hash")
    problems = pair.cross("postmap", list(flags) + ["-q", "-", spec], stdin=STDIN_KEYS)
    problems += pair.cross("postmap", ["-s", spec]) if map_type != "cdb" else ""
    assert not problems, problems


# Berkeley DB page layout (db_page.h): what libdb leaves uninitialized.
BDB_PAGE_HEADER = 26
P_IBTREE, P_LBTREE, P_HASH = 3, 5, 13
H_OFFPAGE, H_OFFDUP, B_OVERFLOW = 3, 4, 3


def bdb_noise(data):
    """Offsets of the bytes that say nothing about the table: the unique file id of the
    metadata page, the free space inside each page, and the padding of off-page items."""
    noise = set(range(52, 72))
    pagesize = int.from_bytes(data[20:24], "little")
    for start in range(pagesize, len(data), pagesize):
        page = data[start:start + pagesize]
        entries = int.from_bytes(page[20:22], "little")
        hf_offset = int.from_bytes(page[22:24], "little")
        kind = page[25]
        if kind not in (P_IBTREE, P_LBTREE, P_HASH):
            continue
        index_end = BDB_PAGE_HEADER + 2 * entries
        noise.update(range(start + index_end, start + hf_offset))
        for i in range(entries):
            item = int.from_bytes(page[BDB_PAGE_HEADER + 2 * i:BDB_PAGE_HEADER + 2 * i + 2],
                                  "little")
            if kind == P_HASH and page[item] in (H_OFFPAGE, H_OFFDUP):
                noise.update(range(start + item + 1, start + item + 4))
            elif kind == P_LBTREE and page[item + 2] & 0x7F == B_OVERFLOW:
                noise.update((start + item, start + item + 1, start + item + 3))
            elif kind == P_IBTREE:
                noise.add(start + item + 3)
    return noise


@pytest.mark.parametrize("map_type", INDEXED)
def test_files_are_postfix_files(tmp_path, map_type):
    """cdb and lmdb: the same bytes. Berkeley DB: the same bytes except libdb's unique
    file id and the bytes libdb leaves uninitialized (free space in pages and padding in
    off-page items: it copies them from its stack, and they differ between two runs of
    Debian's postmap too)."""
    pair = built(tmp_path, map_type, ("-r",))
    name = "table" + SUFFIX[map_type]
    want = pair.read("o", name)
    got = pair.read("c", name)
    assert len(want) == len(got)
    if map_type in ("hash", "btree"):
        noise = bdb_noise(want)
        assert len(noise) < len(want) // 2
        want = bytes(0 if i in noise else b for i, b in enumerate(want))
        got = bytes(0 if i in noise else b for i, b in enumerate(got))
    assert want == got


@pytest.mark.parametrize("map_type", INDEXED)
def test_table_mode_follows_source(tmp_path, map_type):
    pair = sides(tmp_path)
    for side in "oc":
        os.chmod(pair.path(side, "table"), 0o640)
    pair.check("postmap", ["%s:table" % map_type])
    for side in "oc":
        mode = stat.S_IMODE(os.stat(pair.path(side, "table" + SUFFIX[map_type])).st_mode)
        assert mode == 0o640, (side, oct(mode))
    pair.check("postmap", ["-p", "%s:table" % map_type])
    modes = {stat.S_IMODE(os.stat(pair.path(side, "table" + SUFFIX[map_type])).st_mode)
             for side in "oc"}
    assert len(modes) == 1


def test_default_type_and_several_tables(tmp_path):
    files = {"one": "a 1\nb 2\n", "two": "b 20\nc 30\n"}
    pair = sides(tmp_path, files)
    pair.check("postmap", ["one", "hash:two"])
    pair.check("postmap", ["-q", "b", "two", "one"])
    pair.check("postmap", ["-q", "c", "one", "two"])
    pair.check("postmap", ["-q", "-", "one", "two"], stdin="a\nb\nc\nd\n")
    pair.check("postmap", ["-s", "one", "two"], sort_stdout=True)


def test_texthash(tmp_path):
    pair = sides(tmp_path)
    for flags in ((), ("-f",), ("-r",), ("-w",)):
        pair.check("postmap", list(flags) + ["-q", "-", "texthash:table"], stdin=STDIN_KEYS)
        pair.check("postmap", list(flags) + ["-s", "texthash:table"], sort_stdout=True)
    pair.check("postmap", ["-q", "multi", "texthash:table"])


# -- changing tables ---------------------------------------------------------------------------


@pytest.mark.parametrize("map_type", ["hash", "btree", "lmdb"])
def test_incremental_and_delete(tmp_path, map_type):
    pair = built(tmp_path, map_type)
    spec = "%s:table" % map_type
    pair.check("postmap", ["-i", spec], stdin="new key\nalice@example.com other\n")
    pair.check("postmap", ["-i", "-r", spec], stdin="alice@example.com replaced\n")
    pair.check("postmap", ["-q", "-", spec], stdin="new\nalice@example.com\n")
    pair.check("postmap", ["-d", "new", spec])
    pair.check("postmap", ["-d", "new", spec])
    pair.check("postmap", ["-d", "-", spec], stdin="multi\nnonexistent\n")
    pair.check("postmap", ["-q", "-", spec], stdin=STDIN_KEYS)
    if map_type == "lmdb":
        assert pair.read("o", "table.lmdb") == pair.read("c", "table.lmdb")


def test_cdb_cannot_be_changed(tmp_path):
    pair = built(tmp_path, "cdb")
    pair.check("postmap", ["-d", "multi", "cdb:table"])
    pair.check("postmap", ["-i", "cdb:table"], stdin="k v\n")
    pair.check("postmap", ["-s", "cdb:table"])


def test_lmdb_grows_its_map(tmp_path):
    """A tiny lmdb_map_size: MDB_MAP_FULL restarts the build in a bigger map."""
    lines = "".join("key%04d value %s\n" % (i, "v" * (i % 50)) for i in range(2000))
    pair = sides(tmp_path, {"big": lines}, main_cf="lmdb_map_size = 20000\n")
    pair.check("postmap", ["lmdb:big"])
    assert pair.read("o", "big.lmdb") == pair.read("c", "big.lmdb")
    pair.check("postmap", ["-i", "lmdb:big"], stdin=lines.replace("key", "more"))
    pair.check("postmap", ["-q", "-", "lmdb:big"], stdin="key0001\nmore1999\nnone\n")
    assert pair.read("o", "big.lmdb") == pair.read("c", "big.lmdb")


# -- file values, UTF-8, messages ----------------------------------------------------------------


def test_file_values(tmp_path):
    files = {"table": "k1 f1\nk2 f1, f2\nk3 missing\n", "f1": "first\nfile\n",
             "f2": b"second \xff\n"}
    pair = sides(tmp_path, files)
    pair.check("postmap", ["-F", "hash:table"])
    pair.check("postmap", ["-F", "-q", "-", "hash:table"], stdin="k1\nk2\nk3\n")
    pair.check("postmap", ["-q", "k2", "hash:table"])
    pair.check("postmap", ["-F", "-s", "hash:table"], sort_stdout=True)


def test_utf8_enabled(tmp_path):
    """smtputf8_enable = yes (compatibility_level 3.6): non-UTF-8 input lines are skipped,
    UTF-8 keys are case-folded the Unicode way."""
    main_cf = "compatibility_level = 3.6\n"
    for map_type in ("hash", "texthash"):
        pair = Sides(tmp_path / map_type, {"table": SOURCE}, main_cf)
        if map_type != "texthash":
            pair.check("postmap", ["%s:table" % map_type])
        pair.check("postmap", ["-q", "-", "%s:table" % map_type], stdin=STDIN_KEYS)
        pair.check("postmap", ["-q", "UTF8-\u00c9T\u00c9", "%s:table" % map_type])
        pair.check("postmap", ["-u", "-q", "-", "%s:table" % map_type], stdin=STDIN_KEYS)


MESSAGE = """\
From: Alice <alice@example.org>
To: bob@example.com
Subject: a message
 with a continued subject
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="=-=-="

preamble
--=-=-=
Content-Type: text/plain

body text
--=-=-=
Content-Type: message/rfc822

Subject: nested header
X-Nested: yes

nested body
--=-=-=--
epilogue
"""

REGEXP = "/^Subject: (.*)/ subject=$1\n/^X-Nested/ nested\n/body/ body-line\n/^$/ empty\n"


@pytest.mark.parametrize("flags", [("-h",), ("-b",), ("-h", "-b"), ("-m", "-h"), ("-m", "-b"),
                                   ("-m", "-h", "-b"), ("-m",)],
                         ids=["h", "b", "hb", "mh", "mb", "mhb", "m"])
def test_message_queries(tmp_path, flags):
    pytest.importorskip("pyfix.maps.dict_regexp")
    pair = sides(tmp_path, {"checks": REGEXP})
    pair.check("postmap", list(flags) + ["-q", "-", "regexp:checks"], stdin=MESSAGE)


# -- errors ------------------------------------------------------------------------------------


ERROR_CASES = {
    "missing-db": ["-q", "x", "hash:missing"],
    "missing-btree": ["-s", "btree:missing"],
    "missing-lmdb": ["-q", "x", "lmdb:missing"],
    "missing-cdb": ["-q", "x", "cdb:missing"],
    "missing-texthash": ["-q", "x", "texthash:missing"],
    "missing-source": ["hash:missing"],
    "corrupt-db": ["-q", "x", "hash:corrupt"],
    "corrupt-lmdb": ["-q", "x", "lmdb:corrupt"],
    "short-cdb": ["-q", "x", "cdb:short"],
    "garbage-cdb": ["-q", "x", "cdb:garbage"],
    "empty-db": ["-q", "x", "hash:empty"],
    "unsupported-type": ["-q", "x", "nosuchtype:table"],
    "no-type-name": ["-q", "x", ":table"],
    "build-texthash": ["texthash:table"],
    "build-proxy": ["proxy:hash:table"],
    "directory-texthash": ["-q", "x", "texthash:dir"],
    "usage": [],
    "usage-q": ["-q", "x"],
    "bad-option": ["-Z", "table"],
    "missing-argument": ["-q"],
    "two-modes": ["-s", "-q", "x", "table"],
    "two-modes-2": ["-q", "x", "-s", "table"],
    "two-modes-3": ["-d", "x", "-q", "x", "table"],
    "header-without-query": ["-h", "table"],
    "mime-only": ["-m", "-q", "-", "table"],
    "sequence-cdb": ["-s", "cdb:garbage"],
    "sequence-none": ["-s"],
    "missing-config": ["-c", "/nonexistent", "-q", "x", "table"],
}


@pytest.fixture(scope="module")
def error_sides(tmp_path_factory):
    files = {"table": "a b\n", "corrupt.db": b"garbage" * 100, "corrupt.lmdb": b"x" * 5000,
             "short.cdb": b"x" * 100, "garbage.cdb": bytes(range(256)) * 12,
             "empty.db": b"", "dir/x": "x"}
    return Sides(tmp_path_factory.mktemp("errors"), files)


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors(error_sides, case):
    error_sides.check("postmap", ERROR_CASES[case])


def test_directory_source_and_zero_length_db(tmp_path):
    pair = sides(tmp_path, {"dir/x": "x", "zero.db": b"", "zero": "k v\n"})
    pair.check("postmap", ["hash:dir"])
    pair.check("postmap", ["-s", "hash:dir"])
    pair.check("postmap", ["hash:zero"])
    pair.check("postmap", ["-q", "k", "hash:zero"])


def test_no_traceback_on_bad_stdin_bytes(tmp_path):
    pair = built(tmp_path, "hash")
    want, got = pair.run("postmap", ["-q", "-", "hash:table"],
                         stdin=b"\xff\xfe\x00zz\nalice@example.com\n")
    assert_same(want, got)


def test_empty_key_and_value_warnings(tmp_path):
    """A table with an empty value, written without the NUL by -n."""
    pair = sides(tmp_path, {"table": "k v\n"})
    pair.check("postmap", ["-n", "hash:table"])
    from berkeleydb import db
    for side in "oc":
        env = db.DBEnv()
        env.open(os.path.dirname(pair.path(side, "table.db")),
                 db.DB_INIT_MPOOL | db.DB_CREATE | db.DB_PRIVATE, 0)
        handle = db.DB(env)
        handle.open("table.db", None, db.DB_HASH, 0, 0o644)
        handle.put(b"empty", b"")
        handle.put(b"", b"novalue")
        handle.close()
        env.close()
    pair.check("postmap", ["-s", "hash:table"], sort_stdout=True)
    pair.check("postmap", ["-q", "empty", "hash:table"])
    pair.check("postmap", ["-q", "-", "hash:table"], stdin="empty\nk\n")


def test_run_from_other_directory(tmp_path):
    """Absolute table names in messages, the same from both programs."""
    pair = sides(tmp_path)
    outcome = {}
    for side, program in (("o", "/usr/sbin/postmap"), ("c", candidate_path("postmap"))):
        table = pair.path(side, "table")
        result = run_program([program, "-c", os.path.dirname(table), table], tool="postmap")
        text = result.stderr.replace(os.path.dirname(table), "<DIR>")
        outcome[side] = (result.returncode, sorted(text.splitlines()))
    assert outcome["o"] == outcome["c"]


@pytest.mark.skipif(os.getuid() != 0, reason="needs root")
@pytest.mark.parametrize("flags", [(), ("-o",)], ids=["as-owner", "o"])
def test_builds_as_source_owner(tmp_path, flags):
    """As root, postmap builds as the owner of the source (unless -o)."""
    pair = sides(tmp_path, {"table": "k v\n"})
    for side in "oc":
        os.chmod(os.path.dirname(pair.path(side, "table")), 0o777)
        os.chown(pair.path(side, "table"), 65534, 65534)
    for map_type in ("hash", "lmdb", "cdb"):
        pair.check("postmap", list(flags) + ["%s:table" % map_type])
        owners = {os.stat(pair.path(side, "table" + SUFFIX[map_type])).st_uid
                  for side in "oc"}
        assert owners == {0 if flags else 65534}, (map_type, owners)


def test_incremental_warnings_name_stdin(tmp_path):
    pair = built(tmp_path, "hash")
    pair.check("postmap", ["-i", "hash:table"],
               stdin='bad\n"unbalanced x\nalice@example.com dup\nkey: value\n')

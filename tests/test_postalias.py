"""postalias(1) and newaliases(1): pyfix's beside Debian's, on alias files written here.

Built tables must list (-s) and answer (-q) the same in both programs, each reading the
other's files too; the YP_LAST_MODIFIED stamp (the build time) is the one difference
allowed. newaliases is Debian's sendmail in its -bi mode (/usr/bin/newaliases).
"""

import os
import re

import pytest

from conftest import (age_files, assert_same, candidate_path, compare_results,
                      requires_oracle, run_program)
from table_sides import Sides

pytestmark = requires_oracle("postalias")

ALIASES = (
    b"# aliases\n"
    b"\n"
    b"postmaster: root\n"
    b"root: alice, bob\n"
    b"Root: duplicate by case\n"
    b"MAILER-DAEMON: postmaster\n"
    b'pipe: "|/usr/bin/procmail -a $EXTENSION", /var/mail/archive\n'
    b"include: :include:/etc/mail/list\n"
    b"continued: first,\n"
    b"  second,\n"
    b"# a comment inside the entry\n"
    b"\tthird\n"
    b"comment: (a comment) user <user@example.com>\n"
    b"literal: user@[192.0.2.1], \"quoted local\"@example.com\n"
    b'"quoted name": value\n'
    b'quote\\"d: escaped\n'
    b"spaced\t :\t  value with   spaces  \n"
    b"nocolon value\n"
    b"remote@example.com: not local\n"
    b"percent%host: not local\n"
    b"a, b: comma before colon\n"
    b": no name\n"
    b"noval:\n"
    b"latin1: caf\xe9\n"
    b"utf8-\xc3\xa9: \xc3\xa9t\xc3\xa9\n"
    b"group: :;\n"
    b"tabs:\tx\ty\n"
    b"last: no newline"
)

KEYS = ["postmaster", "root", "ROOT", "pipe", "include", "continued", "comment", "literal",
        "quoted name", '"quoted name"', 'quote"d', "spaced", "nocolon", "remote@example.com",
        "noval", "latin1", "utf8-\u00e9", "group", "tabs", "last", "@", "nonexistent", ""]
STDIN_KEYS = "\n".join(KEYS) + "\n"

STAMP = re.compile(rb"(YP_LAST_MODIFIED:?\t)[0-9]{10}")


def unstamped(result):
    result.stdout = STAMP.sub(rb"\1<TIME>", result.stdout)
    return result


def sorted_lines(result):
    result.stdout = b"".join(sorted(result.stdout.splitlines(True)))
    return result


def check_list(pair, args):
    want, got = pair.run("postalias", args)
    assert_same(sorted_lines(unstamped(want)), sorted_lines(unstamped(got)))


@pytest.fixture
def pair(tmp_path):
    return Sides(tmp_path, {"aliases": ALIASES})


@pytest.mark.parametrize("map_type", ["hash", "btree", "lmdb", "cdb"])
@pytest.mark.parametrize("flags", [(), ("-f",), ("-N",), ("-n",), ("-r",), ("-w",)],
                         ids=["default", "f", "N", "n", "r", "w"])
def test_build_query_list(pair, map_type, flags):
    spec = "%s:aliases" % map_type
    pair.check("postalias", list(flags) + [spec])
    pair.check("postalias", list(flags) + ["-q", "-", spec], stdin=STDIN_KEYS)
    pair.check("postalias", list(flags) + ["-q", "root", spec])
    pair.check("postalias", ["-q", "YP_MASTER_NAME", spec])
    if map_type != "cdb":
        check_list(pair, ["-s", spec])
    problems = pair.cross("postalias", list(flags) + ["-q", "-", spec], stdin=STDIN_KEYS)
    assert not problems, problems


def test_postmap_reads_alias_tables(pair):
    pair.check("postalias", ["aliases"])
    want, got = pair.run("postmap", ["-s", "aliases"])
    assert_same(sorted_lines(unstamped(want)), sorted_lines(unstamped(got)))
    pair.check("postmap", ["-q", "-", "aliases"], stdin=STDIN_KEYS)


def test_incremental_and_delete(pair):
    pair.check("postalias", ["aliases"])
    pair.check("postalias", ["-i", "aliases"], stdin="new: value\nroot: replaced\nbad line\n")
    pair.check("postalias", ["-q", "-", "aliases"], stdin="new\nroot\n@\n")
    pair.check("postalias", ["-d", "new", "aliases"])
    pair.check("postalias", ["-d", "-", "aliases"], stdin="root\nnonexistent\n")
    check_list(pair, ["-s", "aliases"])


def test_utf8_enabled(tmp_path):
    pair = Sides(tmp_path, {"aliases": ALIASES}, "compatibility_level = 3.6\n")
    pair.check("postalias", ["aliases"])
    pair.check("postalias", ["-q", "-", "aliases"], stdin=STDIN_KEYS)
    pair.check("postalias", ["-q", "UTF8-\u00c9", "aliases"])


ERROR_CASES = {
    "missing-db": ["-q", "x", "missing"],
    "missing-source": ["missing"],
    "usage": [],
    "bad-option": ["-b", "aliases"],
    "two-modes": ["-s", "-q", "x", "aliases"],
    "proxy": ["proxy:hash:aliases"],
    "texthash": ["texthash:aliases"],
    "sequence-none": ["-s"],
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors(pair, case):
    pair.check("postalias", ERROR_CASES[case])


# -- newaliases --------------------------------------------------------------------------------

NEWALIASES = "/usr/bin/newaliases"


def newaliases_site(base, alias_database):
    os.makedirs(base)
    with open(os.path.join(base, "aliases"), "wb") as f:
        f.write(ALIASES)
    with open(os.path.join(base, "main.cf"), "w") as f:
        f.write("alias_database = %s\nqueue_directory = %s\n"
                % (alias_database.format(base=base), base))
    age_files(base)


@pytest.mark.skipif(not os.path.exists(NEWALIASES), reason="Debian's newaliases is absent")
@pytest.mark.parametrize("args", [(), ("-oA{base}/aliases",), ("extra",), ("-v",),
                                  ("-oA{base}/missing",)],
                         ids=["plain", "oA", "recipient", "verbose", "missing"])
def test_newaliases(tmp_path, args):
    results = {}
    for side, program in (("o", NEWALIASES), ("c", candidate_path("newaliases"))):
        base = str(tmp_path / side)
        newaliases_site(base, "hash:{base}/aliases, cdb:{base}/aliases")
        argv = [program, "-C", base] + [arg.format(base=base) for arg in args]
        result = run_program(argv, tool="newaliases")
        result.stderr = result.stderr.replace(base, "<DIR>")
        if "-v" in args:          # verbose logging differs; compare the outcome only
            result.stderr = ""
        results[side] = result
        if result.returncode == 0 and "-v" not in args:
            listing = run_program(["/usr/sbin/postalias", "-c", base, "-s", "aliases"],
                                  tool="postalias")
            results[side + "-s"] = sorted_lines(unstamped(listing))
    problems = compare_results(results["o"], results["c"], "newaliases %s" % " ".join(args))
    assert not problems, problems
    if "o-s" in results:
        assert results["o-s"].stdout == results["c-s"].stdout
    for side in "oc":
        assert os.path.exists(str(tmp_path / side / "aliases.cdb")) == \
            os.path.exists(str(tmp_path / "o" / "aliases.cdb"))


@pytest.mark.skipif(not os.path.exists(NEWALIASES), reason="Debian's newaliases is absent")
def test_newaliases_empty_alias_database(tmp_path):
    results = []
    for side, program in (("o", NEWALIASES), ("c", candidate_path("newaliases"))):
        base = str(tmp_path / side)
        newaliases_site(base, "")
        results.append(run_program([program, "-C", base], tool="newaliases"))
    assert_same(*results)
    assert not os.path.exists(str(tmp_path / "c" / "aliases.db"))

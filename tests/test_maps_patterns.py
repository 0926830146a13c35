"""regexp:, pcre: and cidr: tables against Debian's postmap (maps/dict_regexp.py,
dict_pcre.py, dict_cidr.py).

Tables written here exercise every syntax feature and every warning of Postfix's
dict_regexp.c, dict_pcre.c and dict_cidr.c; the corpus tables of ../shared/compat are
queried with the keys its diff_postmap.py generates. Each comparison runs Debian's postmap
and tests/bin/dict_query.py (pyfix's tables behind a postmap-like front) on the same files
and compares output, exit status and warnings (tests/maps_oracle.py).
"""

import os
import sys

import pytest

from conftest import requires_oracle
from maps_oracle import SHARED_COMPAT, check, check_keys, make_conf, write
from pyfix.common import msg
from pyfix.maps.dict import (ERR_NONE, FLAG_FOLD_MUL, FLAG_NO_REGSUB, FLAG_PATTERN,
                             SurrogateDict, dict_open)

pytestmark = requires_oracle("postmap")

REGEXP_FEATURES = r"""# comment line
/^plain$/	plain result
/^(a+)(b*)$/	got $1 and ${2} and $(1)$$ dollar
/^x(y)?z$/	opt[$1]
/^CASE$/	insensitive by default
/^Case2$/i	case sensitive
/^m.n$/m	newline flag
/^(foo)|(bar)$/	alt $2
/^lng(a|ab)(c|bcd)(d*)$/	longest $1-$2-$3
/^[[:digit:]]+$/	digits
/^[[:alpha:]]+[[:space:]][[:upper:]]$/	classes
/^(.)\1$/	backref $1
/^a{2,3}$/	interval
/^a\{2\}$/x	basic $0
/^a\{4\}$/x	basic
/^b(c)\{2\}$/x	basic group $1
/^.$/	one byte
/^..$/	two bytes
/^é(.)$/	accent $1
/^ÄÖ$/	upper accents
/^one/!/two/	one without two
/^three/!!/four/	three and four
/^five$/	$1
/^seven(x)$/	$2
/^eight$/	$a
/^nine$/	${1
/^ten$/	trailing $
/^eleven$/q	bad flag
/^twelve
/^fourteen\
 ^fifteen$/	continued
if /^sub/
/^sub(.)$/	sub $1
/^subzz$/	subzz
endif
if !/^not/
/^no(t?)x$/	inside not
endif
IF /^nest/
if /^nest1/
/./	nest1
/^nest12/	nest12
endif
/^nest2/	nest2
ENDIF
endif
endif extra
if /^q/ junk
/^qa/	qa
endif
if /^ow/	
endif junk
/^emptyrhs$/
/(/	badre
/a**/	stars
/[z-a]/	badrange
!/^negsub(x)$/	neg $1
/^backslash\/x$/	slash delim
|^pipe|x$|	pipe delim
"^quote$"	quote delim
, /^withspace$/	space
fiz	unrecognized
if
if !
!	nothing
/^end\
if /^unterminated/
/^unterminated1/	u1
"""

REGEXP_KEYS = """plain PLAIN aab aaa ab b xz xyz case CASE Case2 case2 foo bar lngabcd lngabcdd
123 12a abc\x20D abc\x20d xx xyxy aa aaa aaaa a{2} bcc a é ab éa éb äö ÄÖ one onetwo
threefour three five seven sevenx eight sub subx subzz subzzz no nox notx notnox
nest nest1 nest12 nest2 nest2x qa qb ow emptyrhs neg negx negsubx backslash/x pipex
quote withspace fiz nothing unterminated1 end zz""".split() + ["", " ", "abc D"]

PCRE_FEATURES = r"""# PCRE2 dialect and flags
/^plain$/	plain result
/^(a+)(b*)$/	got $1 and ${2} and $(1)$$ dollar
/^x(y)?z$/	opt[$1]
/^CASE$/	insensitive by default
/^Case2$/i	case sensitive
/^a.b$/	dotall by default
/^c.d$/s	no dotall
/^e$/m	multiline
/^f $/x	extended
/f$/A	anchored
/^g$/E	dollar endonly
/^(h+)/U	ungreedy $1
/^i(\d+)(?:-(\w+))?$/	lazy $1 $2
/^(?<name>nm)x$/	named $1
/(?=look)l(o+)k/	lookahead $1
/^k/X	obsolete X
/^é(.)$/	accent $1
/^.$/	one byte
/^(?i)MIXED$/	inline flag
/^one$/	$1
/^two$/	$0
/^three$/	$a
/^four$/	${1
/^five$/	tail $
/^six$/q	bad flag
/^seven
/(/	unmatched
/a{2,1}/	bad repeat
/^\p{Lu}$/	property
!/^neg/	not neg
!/^negsub(x)$/	neg $1
if /^sub/
/^sub(.)$/	sub $1
endif
if !/^not/
/^nox$/	nox
endif
if /^nest/
if /^nest1/
/^nest12$/	nest12
endif
/^nest2/	nest2
endif
endif extra
if /^q/ junk
endif junk
/^emptyrhs$/
/^back\/slash$/	slash delim
#^hash$#	hash
, /^withspace$/	space
fiz	unrecognized
if
!	nothing
/^end\
if /^unterminated/
"""

PCRE_KEYS = """plain aab aaa xz xyz case Case2 case2 a-b axb c-d e f f\x20 xf g hhh i12 i12-ab
nmx lookl look loook k é éa éb a ab one two three four five six seven neg negx negsubx
sub subx no nox notx nest nest12 nest2 nest3 q qa emptyrhs back/slash hash withspace
fiz nothing end unterminated MIXED mixed zz""".split() + ["", " ", "f "]

CIDR_FEATURES = """# networks
192.168.0.0/16		private
10.1.2.3		single
[10.9.0.0]/16		bracket before mask
[10.8.0.0/16]		bracket around mask
[10.7.0.1]		bracket address
!172.16.0.0/12		not private-172
2001:db8::/32		documentation v6
[2001:db9::]/32		bracket v6
[2001:dba::/32]		bracket v6 whole
::1		loopback v6
::ffff:1.2.3.4		mapped
0.0.0.0/0		v4 anything
10.10.10.10/24		host bits
10.11.0.0/33		too long
10.12.0.0/x		bad mask
10.12.0.0/		empty mask
10.13.0.0/-1		negative mask
10.14.0.0/288		mask wraps
10.300.0.0/16		bad net
10.300.0.1		bad address
1.2.3.4
[10.15.0.0		missing bracket
[10.16.0.0]x		garbage
2001:db8::1/129		v6 too long
2001:db8::1/64		v6 host bits
if 100.64.0.0/10
100.64.1.1		cgnat host
if !100.64.1.0/24
100.64.0.0/10		cgnat other
endif
endif
if!100.65.0.0/16
100.66.1.1		not-100.65
endif
if::1
::1		quirk
endif
endif
endif trailing
if 300.0.0.0/8
1.1.1.1	inside bad if
endif
if
ENDIF
if 9.9.9.0/24
9.9.9.9		unterminated
"""

CIDR_KEYS = """192.168.1.1 192.169.0.1 10.1.2.3 10.1.2.4 10.9.1.1 10.8.1.1 10.7.0.1 172.16.0.1
172.15.0.1 2001:db8::5 2001:db9:1::1 2001:dba::1 ::1 ::2 ::ffff:1.2.3.4 1.2.3.4 8.8.8.8
10.10.10.1 10.14.0.1 100.64.1.1 100.64.2.2 100.64.1.2 100.66.1.1 100.65.1.1 9.9.9.9
[1.2.3.4] 1.2.3 01.2.3.4 1.2.3.4.5 ::ffff:10.1.2.3 fe80::1%eth0 2001:DB8::1 x""".split() + [""]


@pytest.fixture
def conf(tmp_path):
    return make_conf(tmp_path)


@pytest.mark.parametrize("kind,text,keys", [
    ("regexp", REGEXP_FEATURES, REGEXP_KEYS),
    ("pcre", PCRE_FEATURES, PCRE_KEYS),
    ("cidr", CIDR_FEATURES, CIDR_KEYS),
])
def test_feature_tables(tmp_path, conf, kind, text, keys):
    path = write(tmp_path / ("features." + kind), text)
    check_keys(conf, "%s:%s" % (kind, path), keys, single=keys[:12] + ["", "zz"])


@pytest.mark.parametrize("kind", ["regexp", "pcre"])
@pytest.mark.parametrize("key", ["m\nn", "a\nb", "e\nx", "g\n", "x\ny\n", "nest\n1"])
def test_keys_with_newlines(tmp_path, conf, kind, key):
    """Keys that only `-q KEY` can carry: REG_NEWLINE, DOTALL, MULTILINE, DOLLAR_ENDONLY."""
    path = write(tmp_path / "nl", REGEXP_FEATURES if kind == "regexp" else PCRE_FEATURES)
    check(conf, ["-q", key, "%s:%s" % (kind, path)])


INLINE_SPECS = [
    "{ {/a(b)c/ x$1}, {/c/ d} }", "{/c/ d}", "{{/c/ d}x}", "{{/c/ d}}x", "{{/c/ d}",
    "{}", "{ , {/c/ d} , }", "{{#/c/ d}, {/c/ e}}", "{{if /c/}, {/c/ in}, {endif}}",
    "{{/(c/ d}}", "{ { /abc/ spaced } }", "{{/x/ a, b}}",
]


@pytest.mark.parametrize("kind", ["regexp", "pcre"])
@pytest.mark.parametrize("spec", INLINE_SPECS)
def test_inline_rules(conf, kind, spec):
    check_keys(conf, "%s:%s" % (kind, spec), ["abc", "c", "x", "zz"], single=["abc"])


@pytest.mark.parametrize("spec", [
    "{ {1.2.3.0/24 net}, {!1.2.3.4 not} }", "{ {1.2.3.4/24 net} }", "{ 1.2.3.4/24 net }",
    "{{1.2.3.4 x}", "{{if 1.2.0.0/16}, {1.2.3.4 in}, {endif}, {0.0.0.0/0 out}}",
    "{{[::1] v6}, {[1.2.3.4]/32 v4}}",
])
def test_cidr_inline(conf, spec):
    check_keys(conf, "cidr:" + spec, ["1.2.3.4", "1.2.3.5", "1.2.4.5", "::1"],
               single=["1.2.3.4"])


@pytest.mark.parametrize("kind", ["regexp", "pcre", "cidr"])
def test_open_errors_and_no_sequence(tmp_path, conf, kind):
    table = write(tmp_path / "t", "/a/ b\n" if kind != "cidr" else "1.2.3.4 x\n")
    for args in (["-q", "x", kind + ":/nonexistent/file"], ["-q", "x", kind + ":/tmp"],
                 ["-s", "%s:%s" % (kind, table)], ["-q", "-", kind + ":{{x"]):
        check(conf, args, stdin="a\n")


@pytest.mark.parametrize("kind", ["regexp", "pcre", "cidr"])
def test_values_from_files(tmp_path, conf, kind):
    """postmap -F: the result names files whose base64 contents are the value."""
    one = write(tmp_path / "one", "hello file\n")
    two = write(tmp_path / "two", "second")
    if kind == "cidr":
        text = "1.2.3.4 %s\nif 1.2.3.0/24\n1.2.3.5 %s,%s\nendif\n1.2.3.6 /nonexistent\n" \
               % (one, one, two)
        keys = ["1.2.3.4", "1.2.3.5", "1.2.3.6"]
    else:
        text = "/^a/ %s\n/^b/ %s,%s\n/^c/ /nonexistent\n/^d(x)/ $1\n/^e/ %s %s\n" \
               % (one, one, two, two, one)
        keys = ["a", "b", "c", "dx", "e"]
    path = write(tmp_path / "rhs", text)
    check_keys(conf, "%s:%s" % (kind, path), keys, single=keys[:2], extra=["-F"])


# -- the corpus of ../shared/compat --------------------------------------------------------

def _corpus():
    if not os.path.isdir(SHARED_COMPAT):
        return []
    sys.path.insert(0, SHARED_COMPAT)
    import diff_postmap
    rows = []
    for rel, kind in diff_postmap.read_manifest(diff_postmap.MANIFEST):
        if kind in ("regexp", "pcre", "cidr"):
            rows.append(pytest.param(os.path.join(SHARED_COMPAT, rel), kind,
                                     id="%s:%s" % (rel.split("/", 1)[1], kind)))
    return rows


def _corpus_keys(path, kind):
    import diff_postmap
    tests = diff_postmap.get_keys(os.path.splitext(path)[0] + ".in")
    generated = diff_postmap.cidr_keys(path) if kind == "cidr" else diff_postmap.regex_keys(path)
    return diff_postmap.unique(tests + generated)


@pytest.mark.skipif(not os.path.isdir(SHARED_COMPAT), reason="no ../shared/compat corpus")
@pytest.mark.parametrize("path,kind", _corpus())
def test_corpus_table(tmp_path, conf, path, kind):
    """The harness's tables and keys (diff_postmap.py q and qbatch cases)."""
    local = tmp_path / os.path.basename(path)
    with open(path, "rb") as f:
        local.write_bytes(f.read())
    keys = _corpus_keys(path, kind)
    check_keys(conf, "%s:%s" % (kind, local), keys, single=keys[:8])


# -- in-process behavior -------------------------------------------------------------------

def test_pattern_flags_and_folding(tmp_path):
    path = write(tmp_path / "t.re", "/^abc$/ lower\n/^ABC$/i upper\n")
    table = dict_open("regexp:" + path)
    assert table.flags & FLAG_PATTERN
    assert table.lookup("ABC") == "lower"           # i is on by default
    folded = dict_open("regexp:" + path, os.O_RDONLY, FLAG_FOLD_MUL)
    assert folded.lookup("ABC") == "lower"
    plain = dict_open("pcre:" + path, os.O_RDONLY, 0)
    assert plain.lookup("ABC") == "lower" and plain.error == ERR_NONE


def test_read_write_open_is_refused(tmp_path, monkeypatch):
    # As in a daemon: the open error leaves a surrogate table (dict_allow_surrogate).
    monkeypatch.setattr("pyfix.maps.dict.allow_surrogate", True)
    path = write(tmp_path / "t", "/a/ b\n")
    for kind in ("regexp", "pcre", "cidr"):
        table = dict_open("%s:%s" % (kind, path), os.O_RDWR, 0)
        assert isinstance(table, SurrogateDict)
        assert table.reason == "%s:%s map requires O_RDONLY access mode" % (kind, path)


def test_no_regsub_flag(tmp_path, capsys):
    msg.init_stderr("test")
    path = write(tmp_path / "t", "/(a)/ $1\n/b/ b\n")
    for kind in ("regexp", "pcre"):
        table = dict_open("%s:%s" % (kind, path), os.O_RDONLY, FLAG_NO_REGSUB)
        assert table.lookup("a") is None and table.lookup("b") == "b"
        err = capsys.readouterr().err
        assert ("%s map %s, line 1: regular expression substitution is not allowed: "
                "skipping this rule" % (kind, path)) in err


def test_c_locale_matching(tmp_path):
    """Postfix matches bytes in the C locale, whatever the process locale is."""
    import locale
    saved = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
    except locale.Error:
        pytest.skip("no C.UTF-8 locale")
    try:
        path = write(tmp_path / "t", "/^é$/ lower\n/^.$/ one\n/^..$/ two\n")
        table = dict_open("regexp:" + path)
        assert table.lookup("é") == "lower"
        assert table.lookup("É") == "two"             # no case folding beyond ASCII
        assert table.lookup("ä") == "two"             # `.` is one byte
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)


def test_cidr_index_agrees_with_a_rule_by_rule_scan(tmp_path):
    """Long runs of rules are indexed (dict_cidr._Block); the first match must not change."""
    import ipaddress
    import random
    rng = random.Random(7)
    lines = []
    for n in range(400):
        if rng.random() < 0.5:
            bits = rng.choice([8, 12, 16, 20, 24, 28, 32])
            net = ipaddress.ip_network("%d.%d.0.0/%d" % (rng.choice([10, 11]), rng.randrange(4),
                                                         bits), strict=False)
            net = ipaddress.ip_network((int(net.network_address) + (rng.randrange(256) << 8)
                                        & int(net.netmask), bits))
        else:
            bits = rng.choice([16, 32, 48, 64, 128])
            net = ipaddress.ip_network(("2001:db8::%x" % rng.randrange(4096), bits),
                                       strict=False)
        lines.append("%s rule%d" % (net, n))
        if n % 97 == 0:
            lines.append("!10.0.0.0/8 negated%d" % n)
    path = write(tmp_path / "big.cidr", "\n".join(lines) + "\n")
    table = dict_open("cidr:" + path)
    assert table.blocks
    networks = [(ipaddress.ip_network(line.split()[0].lstrip("!")),
                 not line.startswith("!"), line.split()[1]) for line in lines]
    for _ in range(2000):
        if rng.random() < 0.5:
            addr = ipaddress.ip_address("%d.%d.%d.%d" % (rng.choice([10, 11, 12]), rng.randrange(4),
                                                         rng.randrange(256), rng.randrange(256)))
        else:
            addr = ipaddress.ip_address("2001:db8::%x" % rng.randrange(8192))
        expected = next((value for network, positive, value in networks
                         if network.version == addr.version
                         and (addr in network) == positive), None)
        assert table.lookup(str(addr)) == expected, str(addr)

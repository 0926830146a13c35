"""The main.cf engine in common/: expansion, logical lines, typed values, levels.

Where Debian's Postfix shows the behavior, the expected result comes from it at test time
(postconf -xh for expansions and main.cf line numbers, postmap for the fatal messages of
typed parameters); the rest are unit tests with values written here.
"""

import os

import pytest

from conftest import OraclePool, age_files, need_oracle, oracle_path, run_oracle

from pyfix.common import msg
from pyfix.common.compat_level import compat_level_from_string, compat_level_to_string
from pyfix.common.config import Config, MainCf, conv_time
from pyfix.common.macro import FLAG_RECURSE, PARSE_ERROR, PARSE_UNDEF, mac_expand
from pyfix.common.readlline import logical_lines

needs_postconf = pytest.mark.skipif(oracle_path("postconf") is None,
                                    reason="Debian's postconf is not installed")
needs_postmap = pytest.mark.skipif(oracle_path("postmap") is None,
                                   reason="Debian's postmap is not installed")


class Recorder:
    """Collects diagnostics instead of writing them to stderr."""

    def __init__(self):
        self.lines = []

    def __call__(self, level, text):
        self.lines.append(msg.SEVERITY_PREFIX[level] + text)

    def warnings(self):
        return [line[len("warning: "):] for line in self.lines if line.startswith("warning: ")]


@pytest.fixture
def messages(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(msg, "_outputs", [recorder])
    return recorder


def write_main_cf(directory, text):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "main.cf")
    with open(path, "wb") as f:
        f.write(text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text)
    age_files(directory)
    return path


# -- expansion: every form, values from Debian's postconf -xh ---------------------------

SETTINGS = {
    "compatibility_level": "3.7",
    "is_set": "yes",
    "is_empty": "",
    "word": "hello",
    "number": "42",
    "chain_a": "$chain_b-a",
    "chain_b": "${chain_c}-b",
    "chain_c": "$(word)-c",
    "dollars": "$$HOME",
}

EXPRESSIONS = [
    "$word", "${word}", "$(word)", "x$word-y", "x${word}y", "$word$number", "$$", "$$word",
    "a$$$word", "$chain_a", "$undefined_name", "${undefined_name}", "[$dollars]",
    "$word.$number", "$word_$number",
    "${is_set?set}", "${is_empty?set}", "${undefined_name?set}",
    "${is_set:unset}", "${is_empty:unset}", "${undefined_name:unset}",
    "${is_set?{a b}}", "${is_empty:{c d}}", "${is_set?{$word}:{$number}}",
    "${is_empty?{$word}:{$number}}", "${undefined_name?{yes}:{no}}",
    "${is_empty?{yes}:no}", "${ is_set ? { spaced } : { out } }",
    "${is_set?{${is_empty?{in-yes}:{in-no}}}:{out-no}}", "${is_set?$word and $number}",
    "${{1} == {1} ? {t} : {f}}", "${{1} == {2} ? {t} : {f}}",
    "${{1} != {2} ? {t} : {f}}", "${{2} != {2} ? {t} : {f}}",
    "${{9} < {10} ? {t} : {f}}", "${{10} < {9} ? {t} : {f}}",
    "${{10} <= {10} ? {t} : {f}}", "${{11} <= {10} ? {t} : {f}}",
    "${{10} >= {10} ? {t} : {f}}", "${{9} >= {10} ? {t} : {f}}",
    "${{10} > {9} ? {t} : {f}}", "${{9} > {10} ? {t} : {f}}",
    "${{abc} == {abc} ? {t} : {f}}", "${{abc} != {abc} ? {t} : {f}}",
    "${{abc} < {abd} ? {t} : {f}}", "${{abd} < {abc} ? {t} : {f}}",
    "${{abc} <= {abc} ? {t} : {f}}", "${{b} >= {a} ? {t} : {f}}",
    "${{a} > {b} ? {t} : {f}}", "${{9} < {10a} ? {t} : {f}}",
    "${{$number} > {41} ? {t} : {f}}", "${{$word} == {hello} ? {t} : {f}}",
    "${{} == {} ? {t} : {f}}", "${{1} == {1} ? {only-true}}", "${{1} == {2} : {only-false}}",
    "${{$compatibility_level} <level {3.6} ? {t} : {f}}",
    "${{$compatibility_level} <=level {3.7} ? {t} : {f}}",
    "${{$compatibility_level} ==level {3.7} ? {t} : {f}}",
    "${{$compatibility_level} !=level {3.7} ? {t} : {f}}",
    "${{$compatibility_level} >=level {3.10} ? {t} : {f}}",
    "${{$compatibility_level} >level {2} ? {t} : {f}}",
    "${{3.9} <level {3.10} ? {t} : {f}}", "${{3.10} <level {3.9} ? {t} : {f}}",
    "${{0} <level {1} ? {t} : {f}}", "${{3.7.1} >level {3.7} ? {t} : {f}}",
    "${{3.7.0} ==level {3.7} ? {t} : {f}}",
]


def expand_here(text, settings=SETTINGS):
    return mac_expand(text, lambda name, mode: settings.get(name), FLAG_RECURSE)


@pytest.fixture(scope="module")
def oracle_expansions(tmp_path_factory):
    """{expression: Debian's postconf -xh result}."""
    need_oracle("postconf")
    directory = str(tmp_path_factory.mktemp("expand"))
    names = ["e%02d" % i for i in range(len(EXPRESSIONS))]
    lines = ["%s = %s" % item for item in SETTINGS.items()]
    lines.append("smtpd_restriction_classes = " + ", ".join(
        names + [n for n in SETTINGS if n != "compatibility_level"]))
    lines += ["%s = %s" % pair for pair in zip(names, EXPRESSIONS)]
    write_main_cf(directory, "\n".join(lines) + "\n")
    result = run_oracle("postconf", ["-c", directory, "-xh"] + names)
    assert result.returncode == 0, result.stderr
    values = result.stdout.decode("utf-8").split("\n")[:len(names)]
    return dict(zip(EXPRESSIONS, values))


@needs_postconf
@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_expansion_matches_postfix(expression, oracle_expansions, messages):
    value, status = expand_here(expression)
    assert not status & PARSE_ERROR, messages.lines
    # postconf prints words separated by single spaces (pcf_print_line normalizes).
    assert " ".join(value.split()) == oracle_expansions[expression]


def test_expansion_status_bits(messages):
    assert expand_here("$word") == ("hello", 0)
    value, status = expand_here("a${undefined_name}b")
    assert value == "ab" and status & PARSE_UNDEF
    value, status = expand_here("${word")
    assert status & PARSE_ERROR
    assert messages.warnings() == ['truncated macro reference: "${word"']


def test_expansion_without_recursion(messages):
    value, _ = mac_expand("$chain_a", lambda name, mode: SETTINGS.get(name), 0)
    assert value == "$chain_b-a"


# -- expansion errors: Postfix's warning texts -----------------------------------------

BAD_EXPRESSIONS = [
    "${word", "$(word", "${is_set?{a}", "trailing$", "${}", "$()",
    "${{a} =~ {b} ? {x} : {y}}", "${{1} <foo {2} ? {x} : {y}}", "${{1} == ? {x} : {y}}",
    "${{1} == {1} {x} : {y}}", "${is_set?{x}:{y}z}", "${is_set?{x} {y}}", "${my word?x}",
    "${{1} == {1} ? {x} : {y} extra}", "${{3.x} <level {3.6} ? {x} : {y}}",
    "${{3.6} <level {three} ? {x} : {y}}", "${{a} == {b}",
]


@pytest.fixture(scope="module")
def oracle_errors(tmp_path_factory):
    """{expression: set of Debian's warnings for `postconf -xh e` with main.cf e = it}."""
    pool = OraclePool("postconf")
    base = str(tmp_path_factory.mktemp("bad-expand"))
    for i, expression in enumerate(BAD_EXPRESSIONS):
        directory = os.path.join(base, str(i))
        write_main_cf(directory, "is_set = yes\nword = hello\nsmtpd_restriction_classes"
                      " = e, is_set, word\ne = %s\n" % expression)
        open(os.path.join(directory, "master.cf"), "w").close()
        pool.submit(expression, ["-c", directory, "-xh", "e"], cwd=directory)
    result = {}
    for expression in BAD_EXPRESSIONS:
        lines = pool.result(expression).stderr_lines()
        result[expression] = {line[len("warning: "):] for line in lines
                              if line.startswith("warning: ")
                              and "undefined parameter" not in line}
    pool.close()
    return result


@needs_postconf
@pytest.mark.parametrize("expression", BAD_EXPRESSIONS)
def test_expansion_errors_match_postfix(expression, oracle_errors, messages):
    value, status = expand_here(expression, {"is_set": "yes", "word": "hello"})
    assert status & PARSE_ERROR
    assert set(messages.warnings()) == oracle_errors[expression]


def test_nesting_limit(messages):
    loop = {"a": "$b", "b": "$a"}
    _, status = expand_here("$a", loop)
    assert status & PARSE_ERROR
    assert any(w.startswith("unreasonable macro call nesting") for w in messages.warnings())


def test_too_large_number_is_fatal(messages):
    with pytest.raises(msg.Fatal):
        expand_here("${{99999999999999999999} == {1} ? {x} : {y}}")
    assert messages.lines[-1] == \
        "fatal: mac_exp_eval: bad conversion: 99999999999999999999"


# -- logical lines ---------------------------------------------------------------------


def lines_of(text):
    return [(line, first) for line, first, _ in logical_lines(text, "test.cf")]


def test_logical_lines_continuation(messages):
    text = "a = 1\n  b\n\tc\nd = 2\n"
    assert lines_of(text) == [("a = 1  b\tc", 1), ("d = 2", 4)]


def test_logical_lines_comments_and_blanks_inside(messages):
    text = "a = 1\n# comment\n\n   \n  # indented comment\n  b\nc = 2\n"
    assert lines_of(text) == [("a = 1  b", 1), ("c = 2", 7)]
    assert messages.lines == []


def test_logical_lines_whitespace_only_lines(messages):
    text = "   \n\t\na = 1\n \t \nb = 2\n"
    assert lines_of(text) == [("a = 1", 3), ("b = 2", 5)]


def test_logical_lines_no_final_newline(messages):
    assert lines_of("a = 1\n  b") == [("a = 1  b", 1)]
    assert lines_of("a = 1") == [("a = 1", 1)]
    assert lines_of("") == []


def test_logical_lines_no_inline_comments(messages):
    assert lines_of("a = 1 # not a comment\n") == [("a = 1 # not a comment", 1)]


def test_logical_line_starting_with_whitespace(messages):
    text = "  x = 1\n\tmore\ny = 2\n"
    assert lines_of(text) == [("y = 2", 3)]
    assert messages.warnings() == [
        'test.cf: logical line must not start with whitespace: "  x = 1?more"']  # tab: ?


def test_logical_line_starting_with_whitespace_is_cut_at_30(messages):
    lines_of("   " + "x" * 40 + "\n")
    assert messages.warnings() == [
        'test.cf: logical line must not start with whitespace: "   %s..."' % ("x" * 27)]


MAIN_CF_TEXTS = {
    "continued-bad-line": "a = 1\n# c\n\n  b\n   \nbroken\n  more\n#x\n  evenmore\nc = 2\n",
    "duplicates": "a = 1\n# c\n\n  b\n   \na = 2\n  more\n#x\n  evenmore\na = 3\na = 3\n",
    "leading-space": "  a = 1\nb = 2\n c\nb = 3\n",
    "no-equals-after-comments": "# one\n# two\n\nname-only\n",
    "empty-name": "\n\n= value\n",
    "same-value-twice": "a = x\na = x\na =  x \n",
}


@needs_postconf
@pytest.mark.parametrize("case", sorted(MAIN_CF_TEXTS))
def test_main_cf_reading_matches_postfix(case, tmp_path, messages):
    """Line numbers in warnings and fatal errors, as Debian's postconf -n reports them."""
    directory = str(tmp_path / "conf")
    path = write_main_cf(directory, MAIN_CF_TEXTS[case])
    with open(os.path.join(directory, "master.cf"), "w"):
        pass
    age_files(directory)
    oracle = run_oracle("postconf", ["-c", directory, "-n"])
    want = [line for line in oracle.stderr_lines() if "unused parameter" not in line]
    try:
        MainCf.read(path)
    except msg.Fatal:
        pass
    assert sorted(messages.lines) == sorted(want)


# -- typed accessors -------------------------------------------------------------------


def config_with(entries):
    return Config(MainCf("main.cf", dict(entries)))


def test_get_bool(messages):
    config = config_with({"biff": "no", "soft_bounce": "YES", "disable_dns_lookups": "Yes"})
    assert config.get_bool("biff") is False
    assert config.get_bool("soft_bounce") is True
    assert config.get_bool("disable_dns_lookups") is True
    assert config.get_bool("allow_percent_hack") is True          # default yes


def test_get_bool_bad(messages):
    config = config_with({"biff": "maybe"})
    with pytest.raises(msg.Fatal):
        config.get_bool("biff")
    assert messages.lines == ["fatal: bad boolean configuration: biff = maybe"]


def test_get_int_and_long(messages):
    config = config_with({"default_process_limit": "50", "message_size_limit": "20480000",
                          "mailbox_size_limit": "0"})
    assert config.get_int("default_process_limit") == 50
    assert config.get_long("message_size_limit") == 20480000
    assert config.get_long("mailbox_size_limit") == 0
    assert config.get_int("smtpd_recipient_limit") == 1000     # default


def test_get_int_through_expansion(messages):
    config = config_with({"default_process_limit": "$my_limit", "my_limit": "7"})
    assert config.get_int("default_process_limit") == 7


def test_get_int_bad(messages):
    config = config_with({"default_process_limit": "12abc"})
    with pytest.raises(msg.Fatal):
        config.get_int("default_process_limit")
    assert messages.lines == ["fatal: bad numerical configuration: default_process_limit = 12abc"]


def test_get_int_below_minimum(messages):
    config = config_with({"default_process_limit": "0"})
    with pytest.raises(msg.Fatal):
        config.get_int("default_process_limit")
    assert messages.lines == ["fatal: invalid default_process_limit parameter value 0 < 1"]


@pytest.mark.parametrize("name, value, seconds", [
    ("maximal_queue_lifetime", "2", 2 * 86400),       # default 5d: bare number = days
    ("maximal_queue_lifetime", "2h", 7200),
    ("maximal_queue_lifetime", "3w", 3 * 604800),
    ("bounce_queue_lifetime", "1", 86400),
    ("ipc_timeout", "5", 5),                           # default 3600s
    ("ipc_timeout", "5m", 300),
    ("delay_warning_time", "4", 4 * 3600),            # default 0h
    ("minimal_backoff_time", "10", 10),                # default 300s
    ("max_idle", "100", 100),
    ("smtpd_timeout", "2", 2),                         # default ${stress?{10}:{300}}s
])
def test_get_time_default_units(name, value, seconds, messages):
    assert config_with({name: value}).get_time(name) == seconds


def test_get_time_defaults(messages):
    config = config_with({})
    assert config.get_time("maximal_queue_lifetime") == 5 * 86400
    assert config.get_time("ipc_timeout") == 3600
    assert config.get_time("smtpd_timeout") == 300


def test_get_time_bad_unit(messages):
    config = config_with({"ipc_timeout": "2x"})
    with pytest.raises(msg.Fatal):
        config.get_time("ipc_timeout")
    assert messages.lines == ["fatal: parameter ipc_timeout: bad time value or unit: 2x"]


def test_get_time_below_minimum(messages):
    config = config_with({"ipc_timeout": "0"})
    with pytest.raises(msg.Fatal):
        config.get_time("ipc_timeout")
    assert messages.lines == ["fatal: invalid ipc_timeout: 0 (min 1)"]


def test_conv_time():
    assert conv_time("10", "s") == 10
    assert conv_time("10", "d") == 864000
    assert conv_time("1w", "s") == 604800
    assert conv_time("", "s") is None
    assert conv_time("x", "s") is None
    assert conv_time("10y", "s") is None


def test_get_list(messages):
    config = config_with({"mydestination": "$myhostname, localhost.$mydomain,\tlocalhost  x",
                          "myhostname": "h.example", "mydomain": "example"})
    assert config.get_list("mydestination") == ["h.example", "localhost.example",
                                                 "localhost", "x"]
    assert config_with({"relayhost": ""}).get_list("relayhost") == []


# typed parameters that Postfix's mail_params_init() reads in every program: Debian's
# postmap shows the fatal message for a bad value, pyfix's accessor must show the same.
TYPED_CASES = [
    ("get_int", "default_process_limit", "abc"),
    ("get_int", "default_process_limit", "0"),
    ("get_int", "default_process_limit", "99999999999"),
    ("get_int", "default_process_limit", "25"),
    ("get_int", "line_length_limit", "100"),
    ("get_int", "hash_queue_depth", "-1"),
    ("get_time", "ipc_timeout", "2x"),
    ("get_time", "ipc_timeout", "0"),
    ("get_time", "ipc_timeout", "5"),
    ("get_time", "ipc_timeout", "99999999999d"),
    ("get_time", "in_flow_delay", "11"),
    ("get_time", "in_flow_delay", "10s"),
    ("get_time", "max_idle", "1h"),
    ("get_bool", "disable_dns_lookups", "maybe"),
    ("get_bool", "disable_dns_lookups", "YES"),
    ("get_bool", "soft_bounce", "1"),
    ("get_long", "message_size_limit", "1k"),
    ("get_long", "message_size_limit", "-5"),
    ("get_long", "message_size_limit", "99999999999"),
    ("get_long", "lmdb_map_size", "0"),
]


@pytest.fixture(scope="module")
def oracle_typed(tmp_path_factory):
    pool = OraclePool("postmap")
    base = str(tmp_path_factory.mktemp("typed"))
    for case in TYPED_CASES:
        directory = os.path.join(base, "%s-%s" % (case[1], case[2]))
        write_main_cf(directory, "%s = %s\n" % case[1:])
        pool.submit(case, ["-c", directory, "-q", "key", "static:found"], cwd=directory)
    results = {case: pool.result(case) for case in TYPED_CASES}
    pool.close()
    return results


@needs_postmap
@pytest.mark.parametrize("case", TYPED_CASES, ids=["%s=%s" % c[1:] for c in TYPED_CASES])
def test_typed_value_errors_match_postfix(case, oracle_typed, messages):
    accessor, name, value = case
    oracle = oracle_typed[case]
    want = [line for line in oracle.stderr_lines() if line.startswith("fatal: ")]
    config = config_with({name: value})
    try:
        getattr(config, accessor)(name)
    except msg.Fatal:
        pass
    assert messages.lines == want
    if not want:
        assert oracle.stdout == b"found\n"


# -- overrides (master.cf -o, command-line -o) -----------------------------------------


def test_set_takes_effect_through_expansion(messages):
    config = config_with({"myhostname": "a.example", "smtpd_banner": "$myhostname ESMTP",
                          "syslog_name": "postfix"})
    assert config.get("smtpd_banner") == "a.example ESMTP"
    config.set("myhostname", "b.example")
    assert config.get("smtpd_banner") == "b.example ESMTP"
    config.set("syslog_name", "postfix/$service_name")
    config.set("service_name", "submission")
    assert config.get("syslog_name") == "postfix/submission"


def test_set_overrides_main_cf_and_defaults(messages):
    config = config_with({"default_process_limit": "50"})
    config.set("default_process_limit", "5")
    assert config.get_int("default_process_limit") == 5
    config.set("ipc_timeout", "2")
    assert config.get_time("ipc_timeout") == 2
    config.set("new_user_param", "$default_process_limit")
    assert config.get("new_user_param") == "5"


def test_override_all_bad_syntax(messages):
    with pytest.raises(msg.Fatal):
        config_with({}).override_all(["no equals sign"])
    assert messages.lines[-1].startswith("fatal: ")


def test_level_dependent_defaults(messages):
    old = config_with({"compatibility_level": "0", "mydestination": "localhost"})
    assert old.get("relay_domains") == "localhost"
    assert old.get("mynetworks_style") == "subnet"
    assert old.get_bool("append_dot_mydomain") is True
    assert old.get_bool("smtputf8_enable") is False
    new = config_with({"compatibility_level": "3.7", "mydestination": "localhost"})
    assert new.get("relay_domains") == ""
    assert new.get("mynetworks_style") == "host"
    assert new.get_bool("append_dot_mydomain") is False
    assert new.get_bool("smtputf8_enable") is True
    assert new.get("smtpd_tls_fingerprint_digest") == "sha256"
    assert config_with({"compatibility_level": "3.5"}).get(
        "smtpd_tls_fingerprint_digest") == "md5"


def test_load_config_directory(tmp_path, messages):
    write_main_cf(str(tmp_path), "myhostname = loaded.example\n")
    config = Config.load(str(tmp_path))
    assert config.get("myhostname") == "loaded.example"
    assert config.get("config_directory") == str(tmp_path)


def test_load_missing_main_cf(tmp_path, messages):
    with pytest.raises(msg.Fatal):
        Config.load(str(tmp_path))
    assert messages.lines == ["fatal: open %s/main.cf: No such file or directory" % tmp_path]


# -- compatibility levels --------------------------------------------------------------


@pytest.mark.parametrize("lower, higher", [
    ("0", "1"), ("1", "2"), ("2", "3.0"), ("3.6", "3.7"), ("3.9", "3.10"), ("3.10", "3.11"),
    ("3.7", "3.7.1"), ("3.7.9", "3.7.10"), ("3.99", "4"),
])
def test_compat_level_order(lower, higher, messages):
    assert compat_level_from_string(lower, msg.warn) < compat_level_from_string(higher, msg.warn)


@pytest.mark.parametrize("text", ["0", "1", "2", "3.6", "3.10", "3.7.1"])
def test_compat_level_round_trip(text, messages):
    assert compat_level_to_string(compat_level_from_string(text, msg.warn)) == text


def test_compat_level_equal_forms(messages):
    assert compat_level_from_string("3.7", msg.warn) == compat_level_from_string("3.7.0",
                                                                                 msg.warn)


@pytest.mark.parametrize("text", ["", "x", "3.", "3.x", "-1", "3.7.1.2", "3.6 # c", "3,6",
                                  "1.2000"])
def test_compat_level_malformed(text, messages):
    complaints = []
    assert compat_level_from_string(text, complaints.append) == -1
    assert complaints == ['malformed compatibility level syntax: "%s"' % text]


@pytest.mark.parametrize("name, default", [
    ("smtp_destination_recipient_limit", "$default_destination_recipient_limit"),
    ("relay_recipient_limit", "$default_recipient_limit"),
    ("smtp_extra_recipient_limit", "$default_extra_recipient_limit"),
    ("pipe_time_limit", "$command_time_limit"),
    ("recipient_limit", None),
])
def test_per_service_defaults_take_the_longest_suffix(name, default):
    """postconf_service.c: a delivery agent's parameter defaults to the global one of its
    suffix; `_destination_recipient_limit` is not a `_recipient_limit`."""
    from pyfix.common.params import service_parameter_default
    assert service_parameter_default(name) == default

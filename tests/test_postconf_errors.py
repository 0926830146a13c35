"""Bad input: pyfix's postconf fails the way Debian's does.

Broken master.cf fields, broken main.cf lines and expansions, missing or unreadable files,
bad parameter names and bad command lines: the same stdout, the same diagnostics, the
same exit status, and never a Python traceback.
"""

import os
import shutil

import pytest

from conftest import (TRACEBACK, OraclePool, age_files, assert_same, candidate_path,
                      check_same, need_oracle, requires_oracle, run_candidate, run_program)

pytestmark = requires_oracle("postconf")

GOOD_MAIN = "compatibility_level = 3.7\nmyhostname = errors.example.org\n"
GOOD_MASTER = (
    "smtp      inet  n       -       n       -       -       smtpd\n"
    "pickup    unix  n       -       n       60      1       pickup\n"
    "cleanup   unix  n       -       n       -       0       cleanup\n"
)


def make_dir(base, name="conf", main=GOOD_MAIN, master=GOOD_MASTER):
    """A config directory base/name; main/master None = no such file; bytes or text."""
    directory = os.path.join(str(base), name)
    os.makedirs(directory)
    for filename, content in (("main.cf", main), ("master.cf", master)):
        if content is None:
            continue
        if isinstance(content, str):
            content = content.encode("utf-8")
        with open(os.path.join(directory, filename), "wb") as f:
            f.write(content)
    return directory


# Every (group, case, view) below: the directory it runs on and its arguments. The
# oracle runs for all of them are started together (OraclePool) when the module starts.
CASES = {}


def case_ids(group):
    return [pytest.param(key, id="%s:%s" % key[1:]) for key in CASES if key[0] == group]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """{key: (argv tail, cwd)} with every directory made and aged; the oracle pool."""
    base = tmp_path_factory.mktemp("postconf-errors")
    pool = OraclePool("postconf")
    made = {}
    for key, (build, args) in CASES.items():
        group, case, view = key
        workdir = os.path.join(str(base), group, case)
        if (group, case) not in made:
            os.makedirs(workdir)
            made[(group, case)] = build(workdir)
            if os.path.exists(made[(group, case)]):
                age_files(made[(group, case)])
        directory = made[(group, case)]
        argv = args(directory) if callable(args) else ["-c", directory] + list(args)
        made[key] = (argv, workdir)
        pool.submit(key, argv, cwd=workdir)
    yield made, pool
    pool.close()


def check_case(prepared, key):
    made, pool = prepared
    argv, workdir = made[key]
    want = pool.result(key)
    got = run_candidate("postconf", argv, cwd=workdir)
    assert_same(want, got, "%s %s: %s" % key)


# -- master.cf with a bad field --------------------------------------------------------

BAD_MASTER = {
    "bad-type": "smtp      bogus n       -       n       -       -       smtpd\n",
    "bad-type-upper": "smtp      INET  n       -       n       -       -       smtpd\n",
    "bad-private": "smtp      inet  x       -       n       -       -       smtpd\n",
    "bad-unpriv-upper": "smtp      inet  n       Y       n       -       -       smtpd\n",
    "bad-chroot-word": "smtp      inet  n       -       yes     -       -       smtpd\n",
    "bad-wakeup-letter": "pickup    unix  n       -       n       6x0     1       pickup\n",
    "bad-wakeup-leading-q": "pickup    unix  n       -       n       ?60     1       pickup\n",
    "bad-wakeup-double-q": "pickup    unix  n       -       n       60??    1       pickup\n",
    "bad-wakeup-negative": "pickup    unix  n       -       n       -60     1       pickup\n",
    "bad-maxproc-negative": "pickup    unix  n       -       n       60      -1      pickup\n",
    "bad-maxproc-q": "pickup    unix  n       -       n       60      1?      pickup\n",
    "bad-maxproc-word": "pickup    unix  n       -       n       60      many    pickup\n",
    "too-few-fields-7": "smtp      inet  n       -       n       -       -\n",
    "too-few-fields-1": "smtp\n",
    "too-few-continued": "smtp      inet  n       -\n    n       -\n",
    "second-entry-bad": GOOD_MASTER + "relay     unix  -       -       n       -       x       smtp\n",
    "inet-private-y": "smtp      inet  y       -       n       -       -       smtpd\n",
    "option-without-value": "smtp      inet  n       -       n       -       -       smtpd -o\n",
    "option-without-equals": "smtp      inet  n       -       n       -       -       smtpd\n"
                             "  -o smtpd_tls_security_level\n",
    "option-unbalanced-brace": "smtp      inet  n       -       n       -       -       smtpd\n"
                               "  -o { smtpd_tls_security_level = may\n",
    "argument-unbalanced-brace": "filter    unix  -       n       n       -       -       pipe\n"
                                 "  argv=/bin/cat { -u\n",
    "option-brace-no-equals": "smtp      inet  n       -       n       -       -       smtpd\n"
                              "  -o { smtpd_tls_security_level }\n",
}

MASTER_VIEWS = {"n": ["-n"], "all": [], "M": ["-M"], "F": ["-F"], "P": ["-P"]}

for _case, _text in BAD_MASTER.items():
    for _view, _args in MASTER_VIEWS.items():
        CASES["master", _case, _view] = (
            lambda base, text=_text: make_dir(base, master=text), _args)


@pytest.mark.parametrize("key", case_ids("master"))
def test_bad_master_cf(key, prepared):
    check_case(prepared, key)


# -- main.cf with bad lines or bad expansions ------------------------------------------

BAD_MAIN = {
    "unbalanced-curly": "myorigin = ${mydomain\n",
    "unbalanced-curly-user": "smtpd_restriction_classes = c1\nc1 = ${other\nother = x\n",
    "unbalanced-paren": "myorigin = $(mydomain\n",
    "unbalanced-nested": "smtpd_banner = ${myhostname?{ESMTP ${mail_name}\n",
    "unbalanced-relop": "smtpd_banner = ${{a} == {b} ? {x} : {y}\n",
    "unbalanced-relop-operand": "smtpd_banner = ${{a == {b} ? {x} : {y}}\n",
    "unbalanced-continued": "myorigin = ${mydomain\n    more text\n",
    "no-equals": "this line has no equals sign\n",
    "no-equals-name-only": "myhostname\n",
    "no-equals-later": GOOD_MAIN + "relayhost = [relay]\nbroken line\n",
    "empty-name": "= value without a name\n",
    "bad-name-hyphen": "my-param = x\n",
    "bad-name-dot": "bad.name = 1\n",
    "bad-name-space": "bad name = 1\n",
    "bad-name-slash": "smtpd/banner = x\n",
    "bad-name-referenced": "my-param = x\nsmtpd_banner = $my-param\n",
    "trailing-dollar": "smtpd_banner = costs 5$\n",
    "empty-macro-name": "smtpd_banner = ${}\n",
    "bad-operator": "smtpd_banner = ${{a} =~ {b} ? {x} : {y}}\n",
    "bad-operator-suffix": "smtpd_banner = ${{1} <foo {2} ? {x} : {y}}\n",
    "missing-right-operand": "smtpd_banner = ${{1} == ? {x} : {y}}\n",
    "missing-question": "smtpd_banner = ${{1} == {1} {x} : {y}}\n",
    "unexpected-input": "smtpd_banner = ${myhostname?{x}:{y}z}\n",
    "colon-expected": "smtpd_banner = ${myhostname?{x} {y}}\n",
    "name-syntax": "smtpd_banner = ${my host?x}\n",
    "bad-number": "smtpd_banner = ${{99999999999999999999} == {1} ? {x} : {y}}\n",
    "malformed-level": "smtpd_banner = ${{3.x} <level {3.6} ? {x} : {y}}\n",
    "malformed-compat-level": "compatibility_level = 3.7 # the current level\n",
    "compat-level-word": "compatibility_level = latest\n",
    "recursion-loop": "smtpd_restriction_classes = loop_a\nloop_a = $loop_b\n"
                      "loop_b = $loop_a\nsmtpd_banner = $loop_a\n",
    "self-reference": "myhostname = $myhostname.example\n",
}

MAIN_VIEWS = {
    "n": ["-n"],
    "all": [],
    "x": ["-x"],
    "nx": ["-nx"],
    "h": ["-h", "myorigin", "smtpd_banner", "compatibility_level", "relay_domains"],
    "xh": ["-xh", "myorigin", "smtpd_banner", "compatibility_level", "relay_domains",
           "myhostname"],
    "M": ["-M"],
}


for _case, _text in BAD_MAIN.items():
    for _view, _args in MAIN_VIEWS.items():
        CASES["main", _case, _view] = (lambda base, text=_text: make_dir(base, main=text),
                                       _args)


@pytest.mark.parametrize("key", case_ids("main"))
def test_bad_main_cf(key, prepared):
    check_case(prepared, key)


# -- missing, unreadable and wrong-kind files ------------------------------------------

# (-m is left out: pyfix lists only the table types it implements, see README.md.)
FILE_VIEWS = {"n": ["-n"], "all": [], "d": ["-d", "mail_version"], "M": ["-M"],
              "F": ["-F"], "h": ["-h", "myhostname"], "l": ["-l"]}


def _missing_main(base):
    return make_dir(base, main=None)


def _main_is_directory(base):
    directory = make_dir(base, main=None)
    os.mkdir(os.path.join(directory, "main.cf"))
    return directory


def _master_is_directory(base):
    directory = make_dir(base, master=None)
    os.mkdir(os.path.join(directory, "master.cf"))
    return directory


def _missing_master(base):
    return make_dir(base, master=None)


def _missing_directory(base):
    return os.path.join(str(base), "no-such-directory")


def _main_is_dangling_symlink(base):
    directory = make_dir(base, main=None)
    os.symlink(os.path.join(directory, "nowhere.cf"), os.path.join(directory, "main.cf"))
    return directory


FILE_CASES = {
    "missing-main-cf": _missing_main,
    "main-cf-is-directory": _main_is_directory,
    "main-cf-dangling-symlink": _main_is_dangling_symlink,
    "missing-master-cf": _missing_master,
    "master-cf-is-directory": _master_is_directory,
    "missing-config-directory": _missing_directory,
}


for _case, _build in FILE_CASES.items():
    for _view, _args in FILE_VIEWS.items():
        CASES["files", _case, _view] = (_build, _args)


@pytest.mark.parametrize("key", case_ids("files"))
def test_bad_files(key, prepared):
    check_case(prepared, key)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file anyway")
@pytest.mark.parametrize("filename", ["main.cf", "master.cf"])
@pytest.mark.parametrize("view", sorted(FILE_VIEWS))
def test_unreadable_file(filename, view, tmp_path):
    need_oracle("postconf")
    directory = make_dir(tmp_path)
    path = os.path.join(directory, filename)
    age_files(directory)
    os.chmod(path, 0)
    try:
        check_same("postconf", ["-c", directory] + FILE_VIEWS[view], cwd=str(tmp_path),
                   label="unreadable %s: %s" % (filename, view))
    finally:
        os.chmod(path, 0o644)


# -- bad command lines -----------------------------------------------------------------

BAD_USAGE = {
    "unknown-option": ["-z"],
    "unknown-option-combined": ["-nz"],
    "c-without-argument": ["-c"],
    "d-and-n": ["-d", "-n"],
    "d-and-n-combined": ["-dn"],
    "e-without-argument": ["-e"],
    "X-without-argument": ["-X"],
    "comment-out-without-argument": ["-#"],
    "M-and-n": ["-M", "-n"],
    "M-and-F": ["-M", "-F"],
    "h-and-H": ["-h", "-H", "myhostname"],
    "x-and-e": ["-x", "-e", "myhostname=a"],
    "d-and-o": ["-d", "-o", "myhostname=a", "myhostname"],
    "o-without-equals": ["-o", "myhostname", "myhostname"],
    "o-without-argument": ["-o"],
    "b-and-t": ["-b", "-t"],
    "bad-C": ["-C", "bogus"],
    "C-with-M": ["-C", "user", "-M"],
    "two-T": ["-T", "run-version", "-T", "compile-version"],
    "a-with-n": ["-a", "-n"],
    "double-dash-name": ["--", "-n"],
    "name-with-bad-chars": ["-h", "bad-name", "my.name", "myhostname"],
}


for _case, _args in BAD_USAGE.items():
    # "-c" alone must stay alone; every other case gets "-c DIR" first.
    CASES["usage", _case, "-"] = (
        make_dir, (lambda directory, args=_args: args) if _case == "c-without-argument"
        else _args)


@pytest.mark.parametrize("key", case_ids("usage"))
def test_bad_usage(key, prepared):
    check_case(prepared, key)


# -- edits with bad parameter names: same messages, same files afterwards ----------------

BAD_EDITS = {
    "e-bad-name": ["-e", "bad-name=x"],
    "e-bad-name-dot": ["-e", "my.name = x"],
    "e-empty-name": ["-e", "=x"],
    "e-no-equals": ["-e", "myhostname"],
    "e-space-in-name": ["-e", "my name=x"],
    "X-bad-name": ["-X", "bad-name"],
    "comment-bad-name": ["-#", "bad-name"],
    "P-bad-name": ["-P", "smtp/inet/bad-name=x"],
    "P-no-service": ["-P", "nosuch/unix/smtpd_banner=x"],
    "F-bad-field": ["-F", "smtp/inet/nosuchfield=x"],
    "M-bad-entry": ["-M", "smtp/inet=smtp inet x - n - - smtpd"],
    "M-too-few": ["-M", "smtp/inet=smtp inet n"],
}


def _edit_side(tmp_path, side, program, args):
    """Run program in its own copy (tmp/side/conf) with the relative `-c conf`, so the
    two sides print the same paths; return the Result and main.cf/master.cf afterwards.
    (Postfix leaves an empty master.cf.tmp behind after some fatal -M edits; stray
    temporary files are not compared.)"""
    base = tmp_path / side
    base.mkdir()
    directory = make_dir(base)
    age_files(directory)
    result = run_program([program, "-c", "conf"] + args, cwd=str(base), tool="postconf")
    files = {}
    for name in ("main.cf", "master.cf"):
        with open(os.path.join(directory, name), "rb") as f:
            files[name] = f.read()
    shutil.rmtree(directory)
    return result, files


@pytest.mark.parametrize("case", sorted(BAD_EDITS))
def test_bad_edit(case, tmp_path):
    oracle = need_oracle("postconf")
    want, want_files = _edit_side(tmp_path, "oracle", oracle, BAD_EDITS[case])
    got, got_files = _edit_side(tmp_path, "pyfix", candidate_path("postconf"),
                                BAD_EDITS[case])
    assert_same(want, got, "edit " + case)
    assert got_files == want_files, "files after %s differ" % case


def test_no_traceback_on_closed_stdout(tmp_path):
    """`postconf | head -1`: a closed pipe ends the program quietly."""
    import subprocess
    directory = make_dir(tmp_path)
    proc = subprocess.Popen([candidate_path("postconf"), "-c", directory, "-d"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode("utf-8", "replace")
    proc.wait(timeout=60)
    assert TRACEBACK not in err

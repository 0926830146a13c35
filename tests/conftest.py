"""Shared test helpers: where the programs are, and running pyfix beside Debian's Postfix.

Differential tests run one of Debian's Postfix programs (the oracle, /usr/sbin/<tool>) and
pyfix's program of the same name (the candidate, installed next to the Python running the
tests: os.path.dirname(sys.executable)) with the same arguments on the same files, and
compare what they print. Programs are never looked up by bare name on PATH: both Postfix
and pyfix install a `postconf`.

What "the same" means (assert_same):
  - stdout byte for byte, except where a line differs only by the pid of each process
    (shown by `process_id` and by `$process_id` expansions);
  - stderr as the sorted set of its lines, with the program path replaced by the tool's
    name and the leading `tool: ` removed (Postfix prefixes diagnostics with argv[0] as
    invoked, and the two programs live in different directories);
  - the exit status;
  - and never a Python traceback from pyfix.

The helpers take a tool name, so tests of postmap, postalias, postqueue ... reuse them.
"""

import difflib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
CONFIGS = os.path.join(TESTS, "configs")
ORACLE_DIR = "/usr/sbin"
CANDIDATE_DIR = os.path.dirname(sys.executable)

# Postfix's load_file() re-reads a main.cf whose mtime is not yet in the past, sleeping
# 300 ms per try (up to ~2 s for a freshly written file). Every file an oracle reads gets
# this old timestamp first (2000-01-01 00:00:00 UTC).
OLD_MTIME = 946684800

# Environment variables that change what a Postfix program reads or prints.
_POSTFIX_ENV = ("MAIL_CONFIG", "MAIL_VERBOSE", "MAIL_DEBUG", "MAIL_LOGTAG")

TRACEBACK = "Traceback (most recent call last)"


# -- where the programs are ------------------------------------------------------------


def oracle_path(tool):
    """Debian's program, or None when it is not installed."""
    path = os.path.join(ORACLE_DIR, tool)
    return path if os.access(path, os.X_OK) else None


def candidate_path(tool):
    """pyfix's program: the console script beside the running interpreter."""
    return os.path.join(CANDIDATE_DIR, tool)


def need_oracle(tool):
    """Debian's program, or skip the calling test when it is absent."""
    path = oracle_path(tool)
    if path is None:
        pytest.skip("Debian's %s is not installed (%s)" % (tool, os.path.join(ORACLE_DIR, tool)))
    return path


def requires_oracle(tool):
    """Mark: skip a test or module when Debian's program is absent."""
    return pytest.mark.skipif(oracle_path(tool) is None,
                              reason="Debian's %s is not installed" % tool)


@pytest.fixture
def oracle_postconf():
    return need_oracle("postconf")


@pytest.fixture
def candidate_postconf():
    path = candidate_path("postconf")
    assert os.access(path, os.X_OK), "pyfix's postconf is not installed at %s" % path
    return path


# -- files -----------------------------------------------------------------------------


def age_files(*paths):
    """Set the mtime of every file and directory under paths to OLD_MTIME."""
    for top in paths:
        if os.path.isfile(top) or os.path.islink(top):
            os.utime(top, (OLD_MTIME, OLD_MTIME), follow_symlinks=False)
            continue
        for folder, dirs, files in os.walk(top):
            for name in dirs + files:
                os.utime(os.path.join(folder, name), (OLD_MTIME, OLD_MTIME),
                         follow_symlinks=False)
            os.utime(folder, (OLD_MTIME, OLD_MTIME))


def copy_config(src, dst):
    """Copy a config directory (e.g. tests/configs/NAME) to dst and age it; return dst."""
    shutil.copytree(src, dst, symlinks=True)
    age_files(dst)
    return dst


def config_dir_names():
    """The names of the config directories under tests/configs, sorted."""
    return sorted(name for name in os.listdir(CONFIGS)
                  if os.path.isdir(os.path.join(CONFIGS, name)))


# -- running ---------------------------------------------------------------------------


def clean_env(extra=None):
    """The environment for both programs: ours without Postfix's MAIL_* variables."""
    env = {k: v for k, v in os.environ.items() if k not in _POSTFIX_ENV}
    env.update(extra or {})
    return env


@dataclass
class Result:
    argv: list
    returncode: int
    stdout: bytes
    stderr: str
    pid: int = 0
    tool: str = ""

    def without_pid(self, data):
        """data with this process's pid (as a whole number) replaced by <PID>."""
        if not self.pid:
            return data
        pid = re.compile(rb"(?<![0-9])%d(?![0-9])" % self.pid)
        return pid.sub(b"<PID>", data)

    def stderr_lines(self):
        """stderr lines with the program path as the tool's name and `tool: ` removed."""
        text = self.stderr
        program = self.argv[0]
        if os.sep in program:
            text = text.replace(program, self.tool)
        prefix = self.tool + ": "
        return [line[len(prefix):] if line.startswith(prefix) else line
                for line in text.splitlines()]

    def diagnostics(self):
        """The sorted set of stderr lines (Postfix writes some in hash-table order)."""
        return sorted(set(self.stderr_lines()))


def run_program(argv, stdin=None, cwd=None, env=None, timeout=120, tool=None):
    """Run argv; stdin is bytes or text. The child's pid is kept for normalization."""
    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8", "surrogateescape")
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd,
                            env=clean_env() if env is None else env)
    try:
        out, err = proc.communicate(stdin or b"", timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return Result(list(argv), proc.returncode, out, err.decode("utf-8", "surrogateescape"),
                  proc.pid, tool or os.path.basename(argv[0]))


def _text(data):
    return data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data


def _diff(expected, actual, limit=60):
    lines = list(difflib.unified_diff(_text(expected).splitlines(),
                                      _text(actual).splitlines(),
                                      "oracle", "pyfix", lineterm="", n=1))
    if len(lines) > limit:
        lines = lines[:limit] + ["... (%d more diff lines)" % (len(lines) - limit)]
    return "\n".join(lines)


def same_stdout(oracle, candidate):
    """Byte-equal stdout, where a line may differ only by each side's own pid in the
    same places (pids are small numbers; replacing them everywhere would also hide
    `reject_code = 554` when a pid happens to be 554)."""
    if oracle.stdout == candidate.stdout:
        return True
    want, got = oracle.stdout.split(b"\n"), candidate.stdout.split(b"\n")
    if len(want) != len(got):
        return False
    return all(a == b or oracle.without_pid(a) == candidate.without_pid(b)
               for a, b in zip(want, got))


def compare_results(oracle, candidate, label=""):
    """The differences between two Results as text; empty when they agree."""
    problems = []
    if TRACEBACK in candidate.stderr:
        problems.append("pyfix wrote a Python traceback:\n" + candidate.stderr[-3000:])
    if oracle.returncode != candidate.returncode:
        problems.append("exit status: oracle %d, pyfix %d"
                        % (oracle.returncode, candidate.returncode))
    expected, actual = oracle.stdout, candidate.stdout
    if not same_stdout(oracle, candidate):
        diff = _diff(expected, actual)
        if not diff:                    # same lines, different bytes (final newline, ...)
            diff = "oracle %r\npyfix  %r" % (expected[-200:], actual[-200:])
        problems.append("stdout differs:\n" + diff)
    want, got = oracle.diagnostics(), candidate.diagnostics()
    if want != got:
        only_oracle = [line for line in want if line not in got]
        only_pyfix = [line for line in got if line not in want]
        problems.append("stderr differs:\n" + "\n".join(
            ["  only oracle: " + line for line in only_oracle]
            + ["  only pyfix:  " + line for line in only_pyfix]))
    if not problems:
        return ""
    head = "%s\n  oracle: %s\n  pyfix:  %s" % (label, " ".join(oracle.argv),
                                               " ".join(candidate.argv))
    return head + "\n" + "\n".join(problems)


def assert_same(oracle, candidate, label=""):
    problems = compare_results(oracle, candidate, label)
    if problems:
        pytest.fail(problems, pytrace=False)


def run_both(tool, args, age=(), stdin=None, cwd=None, env=None, timeout=120):
    """Run Debian's and pyfix's tool with the same args; return (oracle, candidate).

    age: files or directories whose mtimes are set to the past first (config dirs).
    Skips the test when Debian's tool is absent.
    """
    oracle = need_oracle(tool)
    age_files(*age)
    want = run_program([oracle] + list(args), stdin, cwd, env, timeout, tool)
    got = run_program([candidate_path(tool)] + list(args), stdin, cwd, env, timeout, tool)
    return want, got


def check_same(tool, args, age=(), stdin=None, cwd=None, env=None, label="", timeout=120):
    """run_both() and assert_same(); returns (oracle, candidate) for further checks."""
    want, got = run_both(tool, args, age, stdin, cwd, env, timeout)
    assert_same(want, got, label or "%s %s" % (tool, " ".join(args)))
    return want, got


@dataclass
class Differential:
    """A fixture-friendly bundle: run_both/check_same bound to one tool."""
    tool: str
    cwd: str = None
    env: dict = field(default=None)

    def run(self, *args, age=(), stdin=None):
        return run_both(self.tool, args, age, stdin, self.cwd, self.env)

    def check(self, *args, age=(), stdin=None, label=""):
        return check_same(self.tool, args, age, stdin, self.cwd, self.env, label)


@pytest.fixture
def postconf_diff(tmp_path):
    need_oracle("postconf")
    return Differential("postconf", cwd=str(tmp_path))


def run_candidate(tool, args, stdin=None, cwd=None, env=None, timeout=120):
    """pyfix's tool alone (for tests that check files or need no oracle)."""
    return run_program([candidate_path(tool)] + list(args), stdin, cwd, env, timeout, tool)


def run_oracle(tool, args, stdin=None, cwd=None, env=None, timeout=120):
    return run_program([need_oracle(tool)] + list(args), stdin, cwd, env, timeout, tool)


class OraclePool:
    """Run many oracle command lines at once and hand out their results by key.

    Postfix sleeps one second before every fatal exit, so a module of error-path cases
    would take minutes one after the other; the oracle runs are started together on
    prepared directories (threads only wait for child processes), while each test still
    runs pyfix itself and is reported on its own.
    """

    def __init__(self, tool, jobs=32):
        from concurrent.futures import ThreadPoolExecutor
        self.tool = tool
        self.program = need_oracle(tool)
        self._executor = ThreadPoolExecutor(max_workers=jobs)
        self._futures = {}

    def submit(self, key, args, cwd=None, stdin=None, env=None):
        self._futures[key] = self._executor.submit(
            run_program, [self.program] + list(args), stdin, cwd, env, 120, self.tool)

    def result(self, key):
        return self._futures[key].result()

    def close(self):
        self._executor.shutdown(wait=True)


def main_cf_names(path):
    """The parameter names a main.cf sets, in file order (a small independent parser:
    logical lines start in column 1 with neither `#` nor whitespace)."""
    names = []
    with open(path, "rb") as f:
        for raw in f.read().decode("utf-8", "surrogateescape").split("\n"):
            if not raw or raw[0] in " \t#\r" or "=" not in raw:
                continue
            name = raw.split("=", 1)[0].strip(" \t")
            if name and name not in names:
                names.append(name)
    return names

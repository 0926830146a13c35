"""Differential lookups: Debian's `postmap -q` against pyfix's tables, same files.

oracle(cfgdir, spec, key) runs Debian's postmap (-c cfgdir, so that it reads the test's
main.cf); candidate(cfgdir, spec, key) opens the table in this process through
pyfix.maps.dict with postmap's flags and records the value, the dictionary error and
the diagnostics (as `warning: ...` lines, like postmap's stderr without `postmap: `).
Both become an Answer; assert_same() compares them:

  - found: the same value; not found: both nothing;
  - a temporary failure: Postfix's postmap says `fatal: table ...: query error` (its
    errno text is whatever errno happened to hold), pyfix's table has ERR_RETRY;
  - a fatal configuration error: the same `fatal:` line;
  - the same warnings, in order (or as a set, for tables that pick servers at random).
"""

import os
import re
import subprocess
from dataclasses import dataclass, field

from conftest import OLD_MTIME, candidate_path, clean_env

ORACLE = "/usr/sbin/postmap"
RETRY = "retry"
CONFIG = "config"
_QUERY_ERROR = re.compile(r"^fatal: table (\S+): query error(: .*)?$")

MAIN_CF = """\
compatibility_level = 3.7
queue_directory = {root}/spool
data_directory = {root}/lib
"""


@dataclass
class Answer:
    value: str = None
    error: str = None               # None, RETRY, CONFIG, or the fatal text
    warnings: list = field(default_factory=list)


def write_config(root, extra=""):
    """A config directory for postmap -c: main.cf (aged, see conftest.OLD_MTIME)."""
    os.makedirs(os.path.join(root, "spool"), exist_ok=True)
    path = os.path.join(root, "main.cf")
    with open(path, "w") as f:
        f.write(MAIN_CF.format(root=root) + extra)
    age(path)
    return root


def write_cf(path, text):
    """A table's client file, aged so that Postfix does not wait for it to cool down."""
    with open(path, "w") as f:
        f.write(text)
    age(path)
    return path


def age(path):
    os.utime(path, (OLD_MTIME, OLD_MTIME))


def _parse_postmap(returncode, stdout, stderr, tool="postmap"):
    answer = Answer()
    for line in stderr.splitlines():
        prefix = tool + ": "
        line = line[len(prefix):] if line.startswith(prefix) else line
        if line.startswith("warning: "):
            answer.warnings.append(line)
        elif _QUERY_ERROR.match(line):
            answer.error = RETRY
        elif line.startswith("fatal: "):
            answer.error = line
        elif line:
            answer.warnings.append(line)
    if returncode == 0:
        answer.value = stdout.rstrip("\n")
    return answer


def oracle(cfgdir, spec, key, env=None, timeout=60):
    proc = subprocess.run([ORACLE, "-c", cfgdir, "-q", key, spec], capture_output=True,
                          timeout=timeout, env=clean_env(env),
                          encoding="utf-8", errors="surrogateescape")
    return _parse_postmap(proc.returncode, proc.stdout, proc.stderr)


def candidate_postmap():
    """pyfix's postmap, when it is installed beside the running Python."""
    path = candidate_path("postmap")
    return path if os.access(path, os.X_OK) else None


def candidate_command(cfgdir, spec, key, env=None, timeout=60):
    """The same query through pyfix's postmap command."""
    proc = subprocess.run([candidate_postmap(), "-c", cfgdir, "-q", key, spec],
                          capture_output=True, timeout=timeout, env=clean_env(env),
                          encoding="utf-8", errors="surrogateescape")
    assert "Traceback" not in proc.stderr, proc.stderr
    return _parse_postmap(proc.returncode, proc.stdout, proc.stderr)


class Capture:
    """Diagnostics of this process, as `severity: text` lines. msg's error count (13
    errors end a Postfix program) is restored afterwards: the tests share one process."""

    def __init__(self):
        from pyfix.common import msg
        self.msg = msg
        self.lines = []

    def __call__(self, level, text):
        self.lines.append(self.msg.SEVERITY_PREFIX[level] + text)

    def __enter__(self):
        self.saved = list(self.msg._outputs)
        self.saved_errors = self.msg._error_count
        self.msg._outputs[:] = [self]
        return self

    def __exit__(self, *exc):
        self.msg._outputs[:] = self.saved
        self.msg._error_count = self.saved_errors
        return False


def candidate(cfgdir, spec, key, env=None):
    """The lookup through pyfix's Dict API, with postmap -q's dictionary flags."""
    from pyfix.common.config import Config
    from pyfix.maps import cfg_parser
    from pyfix.maps.dict import ERR_RETRY, FLAG_DUP_WARN, FLAG_FOLD_FIX, FLAG_LOCK, dict_open
    saved_env = dict(os.environ)
    os.environ.update(env or {})
    answer = Answer()
    try:
        with Capture() as capture:
            try:
                cfg_parser.use_config(Config.load(cfgdir))
                table = dict_open(spec, os.O_RDONLY, FLAG_DUP_WARN | FLAG_FOLD_FIX | FLAG_LOCK)
                try:
                    answer.value = table.lookup(key)
                    if table.error:
                        answer.error = RETRY if table.error == ERR_RETRY else CONFIG
                finally:
                    table.close()
            except SystemExit:
                pass
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        cfg_parser.use_config(None)
    for line in capture.lines:
        if line.startswith("fatal: "):
            answer.error = line
        else:
            answer.warnings.append(line)
    return answer


def assert_same(expected, actual, label="", warnings_as_set=False):
    """expected from Debian's postmap, actual from pyfix."""
    where = " [%s]" % label if label else ""
    if expected.error == RETRY:
        assert actual.error == RETRY, "%s: expected a temporary failure, got %r" % (where, actual)
    else:
        assert actual.error == expected.error, "%s: %r != %r" % (where, actual, expected)
        assert actual.value == expected.value, "%s: %r != %r" % (where, actual, expected)
    if warnings_as_set:
        assert sorted(set(actual.warnings)) == sorted(set(expected.warnings)), where
    else:
        assert actual.warnings == expected.warnings, "%s:\n%s\n!=\n%s" % (
            where, "\n".join(actual.warnings), "\n".join(expected.warnings))


def compare(cfgdir, spec, keys, env=None, warnings_as_set=False):
    """Every key through Debian's postmap, pyfix's Dict and (if installed) pyfix's
    postmap; returns {key: Debian's answer}."""
    answers = {}
    for key in keys:
        expected = oracle(cfgdir, spec, key, env)
        assert_same(expected, candidate(cfgdir, spec, key, env), "%s %r" % (spec, key),
                    warnings_as_set)
        if candidate_postmap():
            assert_same(expected, candidate_command(cfgdir, spec, key, env),
                        "pyfix postmap %s %r" % (spec, key), warnings_as_set)
        answers[key] = expected
    return answers

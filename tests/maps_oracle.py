"""Helpers for the table-type tests: Debian's `postmap -q` beside pyfix's Dict API.

The candidate is tests/bin/dict_query.py, a stand-in for `postmap -q` that opens tables
with pyfix's dict_open3 and prints what postmap prints (values, `key<TAB>value` lines,
exit status, postmap's fatal errors). Both programs get `-c CONF` with an empty main.cf. With PYFIX_MAPS_CANDIDATE=postmap in
the environment, pyfix's postmap command is the candidate instead.
Results compare as conftest.compare_results() does (stdout bytes, exit status, the set of
diagnostics), except for the text after `query error: `, which in Postfix is whatever
errno was left by an unrelated system call.
"""

import concurrent.futures
import os
import re
import sys

import pytest

from conftest import TESTS, candidate_path, compare_results, need_oracle, run_program

DICT_QUERY = os.path.join(TESTS, "bin", "dict_query.py")
TABLE_SERVER = os.path.join(TESTS, "bin", "table_server.py")
SHARED_COMPAT = os.path.join(os.path.dirname(os.path.dirname(TESTS)), "shared", "compat")

_QUERY_ERROR = re.compile(r"(query error|sequence error): .*")


def make_conf(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "main.cf").write_text("")
    os.utime(conf / "main.cf", (946684800, 946684800))
    return str(conf)


def write(path, text):
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _normalize(result):
    result.stderr = _QUERY_ERROR.sub(r"\1: <errno>", result.stderr)
    return result


def run_oracle(conf, args, stdin=None, cwd=None, env=None):
    return _normalize(run_program([need_oracle("postmap"), "-c", conf] + list(args),
                                  stdin, cwd, env, tool="postmap"))


def run_candidate(conf, args, stdin=None, cwd=None, env=None):
    # PYFIX_MAPS_CANDIDATE=postmap runs pyfix's own postmap instead of the stand-in.
    if os.environ.get("PYFIX_MAPS_CANDIDATE") == "postmap":
        front = [candidate_path("postmap")]
    else:
        front = [sys.executable, DICT_QUERY]
    return _normalize(run_program(front + ["-c", conf] + list(args),
                                  stdin, cwd, env, tool="postmap"))


def differences(conf, args, stdin=None, cwd=None, env=None, candidate_env=None):
    """Run both; the differences as text ('' when they agree) and the oracle's Result."""
    want = run_oracle(conf, args, stdin, cwd, env)
    got = run_candidate(conf, args, stdin, cwd, candidate_env or env)
    return compare_results(want, got, "postmap " + " ".join(args)), want


def check(conf, args, stdin=None, cwd=None, env=None, candidate_env=None):
    problems, want = differences(conf, args, stdin, cwd, env, candidate_env)
    if problems:
        pytest.fail(problems, pytrace=False)
    return want


def check_many(conf, arg_lists, stdin=None, env=None, candidate_env=None):
    """check() for several command lines at once (Postfix sleeps a second before a fatal
    exit, and a tcp: table retries for ten: run them in parallel)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(
            lambda args: differences(conf, args, stdin, env=env,
                                     candidate_env=candidate_env), arg_lists))
    problems = [text for text, _ in results if text]
    if problems:
        pytest.fail("\n\n".join(problems[:10]), pytrace=False)
    return [want for _, want in results]


def check_keys(conf, spec, keys, single=(), env=None, candidate_env=None, extra=()):
    """`-q -` with every key on stdin, and `-q KEY` for each key in single (in parallel).

    Returns the oracle's batch Result."""
    jobs = [(list(extra) + ["-q", "-", spec], "\n".join(keys) + "\n")]
    jobs += [(list(extra) + ["-q", key, spec], None) for key in single]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(
            lambda job: differences(conf, job[0], job[1], env=env,
                                    candidate_env=candidate_env), jobs))
    problems = [text for text, _ in results if text]
    if problems:
        pytest.fail("\n\n".join(problems[:10]), pytrace=False)
    return results[0][1]

"""The differential helpers of conftest.py, checked on their own.

The oracle compared with itself must agree (no false alarms from pids, paths or the
order of warnings), and a real difference must be reported.
"""

import os

import pytest

from conftest import (OLD_MTIME, Result, age_files, compare_results, requires_oracle,
                      run_oracle, same_stdout)


def result(stdout=b"", stderr="", rc=0, pid=0, program="/usr/sbin/postconf"):
    return Result([program], rc, stdout, stderr, pid, "postconf")


def test_pid_lines_are_equal():
    a = result(b"a = 1\nprocess_id = 1234\nx\n", pid=1234)
    b = result(b"a = 1\nprocess_id = 99\nx\n", pid=99)
    assert same_stdout(a, b)


def test_pid_that_collides_with_a_value_hides_nothing():
    a = result(b"reject_code = 554\nprocess_id = 554\n", pid=554)
    b = result(b"reject_code = 501\nprocess_id = 777\n", pid=777)
    assert not same_stdout(a, b)
    a = result(b"reject_code = 554\nprocess_id = 554\n", pid=554)
    b = result(b"reject_code = 554\nprocess_id = 777\n", pid=777)
    assert same_stdout(a, b)


def test_stderr_prefix_and_order():
    a = result(stderr="/usr/sbin/postconf: warning: b\n/usr/sbin/postconf: warning: a\n"
               "usage: /usr/sbin/postconf [-a]\n")
    b = result(stderr="/venv/bin/postconf: warning: a\n/venv/bin/postconf: warning: b\n"
               "usage: /venv/bin/postconf [-a]\n", program="/venv/bin/postconf")
    assert a.diagnostics() == ["usage: postconf [-a]", "warning: a", "warning: b"]
    assert compare_results(a, b) == ""


def test_differences_are_reported():
    a = result(b"x = 1\n", "postconf: warning: w\n", 0)
    b = result(b"x = 2\n", "postconf: warning: v\n", 1)
    text = compare_results(a, b, "label")
    assert "exit status: oracle 0, pyfix 1" in text
    assert "-x = 1" in text and "+x = 2" in text
    assert "only oracle: warning: w" in text and "only pyfix:  warning: v" in text


def test_traceback_is_reported():
    a = result(b"", "", 1)
    b = result(b"", "Traceback (most recent call last):\n  File ...\n", 1)
    assert "traceback" in compare_results(a, b)


def test_final_newline_difference_is_reported():
    assert compare_results(result(b"x\n"), result(b"x"))


def test_age_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "main.cf").write_text("x = 1\n")
    age_files(str(tmp_path))
    assert os.stat(tmp_path / "sub" / "main.cf").st_mtime == OLD_MTIME


@requires_oracle("postconf")
@pytest.mark.parametrize("args", [["-n"], ["-x"], ["-d"], ["-h", "process_id"], ["-z"]])
def test_oracle_agrees_with_itself(args, tmp_path):
    (tmp_path / "main.cf").write_text("myhostname = self.example\nunused_one = 1\n"
                                      "unused_two = 2\n")
    (tmp_path / "master.cf").write_text("smtp inet n - n - - smtpd\n")
    age_files(str(tmp_path))
    first = run_oracle("postconf", ["-c", str(tmp_path)] + args)
    second = run_oracle("postconf", ["-c", str(tmp_path)] + args)
    assert first.pid != second.pid
    assert compare_results(first, second) == ""

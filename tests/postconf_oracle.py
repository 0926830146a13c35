"""Config-directory scaffolding for test_postconf_master.py and test_postconf_edit.py.

Builds on conftest.py's runners: every command gets `-c DIR` with a directory the test
writes. An edit runs once per program on a fresh copy at the same path (so that messages
naming the directory compare equal); the files each program leaves are then compared,
and Debian's postconf reads both results back for the round trip.
"""

import os
import shutil

from conftest import age_files, assert_same, candidate_path, need_oracle, run_program

FILES = ("main.cf", "master.cf")


def write_config(directory, files):
    """(Re)create directory with files {name: text or bytes}; returns its path."""
    directory = str(directory)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    # Debian's postconf re-reads (sleeping) a main.cf whose mtime is not in the past.
    age_files(directory)
    return directory


def run_postconf(program, directory, args):
    return run_program([program, "-c", directory] + list(args), tool="postconf")


def compare_show(tmp_path, files, args):
    """Both programs on one config directory; returns the oracle's Result."""
    directory = write_config(tmp_path / "conf", files)
    want = run_postconf(need_oracle("postconf"), directory, args)
    got = run_postconf(candidate_path("postconf"), directory, args)
    assert_same(want, got, "postconf %s" % " ".join(args))
    return want


def snapshot(directory):
    """The edited files (None when absent) and the other names left in the directory."""
    contents = {}
    for name in FILES:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                contents[name] = f.read()
    # Postfix leaves its empty .tmp file behind after some fatal errors; pyfix does not.
    others = sorted(n for n in os.listdir(directory)
                    if n not in FILES and not n.endswith(".tmp"))
    return contents, others


def sort_appended(data, appended):
    """Sort the last `appended` lines: Postfix appends new main.cf parameters in hash order."""
    if data is None or appended < 2:
        return data
    head, _, _ = data.rpartition(b"\n")          # data ends with an appended line's newline
    lines = head.split(b"\n")
    tail = sorted(lines[-appended:])
    return b"\n".join(lines[:-appended] + tail) + b"\n"


class EditOutcome:
    def __init__(self, directory, oracle_files, pyfix_files):
        self.directory = directory
        self.oracle_files = oracle_files
        self.pyfix_files = pyfix_files


def compare_edit(tmp_path, files, args, appended=0):
    """Edit a fresh copy with each program; compare output, then the files they leave."""
    directory = str(tmp_path / "conf")
    label = "postconf %s" % " ".join(args)
    write_config(directory, files)
    want = run_postconf(need_oracle("postconf"), directory, args)
    oracle_files, oracle_others = snapshot(directory)
    write_config(directory, files)
    got = run_postconf(candidate_path("postconf"), directory, args)
    pyfix_files, pyfix_others = snapshot(directory)
    assert_same(want, got, label)
    for name in FILES:
        expected = sort_appended(oracle_files.get(name), appended)
        actual = sort_appended(pyfix_files.get(name), appended)
        assert actual == expected, "%s: %s differs\npyfix  %r\noracle %r" % (
            label, name, actual, expected)
    assert pyfix_others == oracle_others
    return EditOutcome(directory, oracle_files, pyfix_files)


def assert_round_trip(outcome, views):
    """Debian's postconf reads the files pyfix wrote exactly as the ones it wrote itself."""
    oracle = need_oracle("postconf")
    for args in views:
        label = "round trip: postconf %s" % " ".join(args)
        write_config(outcome.directory, outcome.oracle_files)
        want = run_postconf(oracle, outcome.directory, args)
        write_config(outcome.directory, outcome.pyfix_files)
        got = run_postconf(oracle, outcome.directory, args)
        assert_same(want, got, label)
        # And pyfix reads its own result as Debian does.
        mine = run_postconf(candidate_path("postconf"), outcome.directory, args)
        assert_same(got, mine, label)

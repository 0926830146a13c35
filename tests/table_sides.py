"""Two private copies of the same files, one for Debian's tool and one for pyfix's, so
that tests of postmap and postalias can build, query and edit tables side by side and
compare every step (tests/test_postmap.py, tests/test_postalias.py).

Paths in arguments are relative to each copy (the programs run inside it), so the two
runs print the same text; main.cf is in the copy and given as `-c .`.
"""

import os

from conftest import (age_files, assert_same, candidate_path, compare_results, need_oracle,
                      run_program)


class Sides:
    def __init__(self, tmp_path, files, main_cf=""):
        self.oracle_dir = str(tmp_path / "o")
        self.candidate_dir = str(tmp_path / "c")
        for top in (self.oracle_dir, self.candidate_dir):
            os.makedirs(top)
            self._write(top, "main.cf", main_cf)
            for name, content in files.items():
                self._write(top, name, content)
            age_files(top)

    @staticmethod
    def _write(top, name, content):
        path = os.path.join(top, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        with open(path, "wb") as f:
            f.write(data)

    def write(self, name, content):
        for top in (self.oracle_dir, self.candidate_dir):
            self._write(top, name, content)
            age_files(os.path.join(top, name))

    def path(self, side, name):
        return os.path.join(self.oracle_dir if side == "o" else self.candidate_dir, name)

    def read(self, side, name):
        with open(self.path(side, name), "rb") as f:
            return f.read()

    def run(self, tool, args, stdin=None, oracle_tool=None, candidate_tool=None):
        """Both programs, each in its copy; returns (oracle, candidate) Results."""
        oracle = [oracle_tool or need_oracle(tool), "-c", "."] + list(args)
        candidate = [candidate_tool or candidate_path(tool), "-c", "."] + list(args)
        want = run_program(oracle, stdin, cwd=self.oracle_dir, tool=tool)
        got = run_program(candidate, stdin, cwd=self.candidate_dir, tool=tool)
        return want, got

    def check(self, tool, args, stdin=None, sort_stdout=False, label=""):
        """run() and assert that both said the same (stdout sorted for -s of hash)."""
        want, got = self.run(tool, args, stdin)
        if sort_stdout:
            want.stdout = b"".join(sorted(want.stdout.splitlines(True)))
            got.stdout = b"".join(sorted(got.stdout.splitlines(True)))
        assert_same(want, got, label or "%s %s" % (tool, " ".join(args)))
        return want, got

    def cross(self, tool, args, stdin=None):
        """Each program on the other's files: pyfix reads what Debian's tool wrote and
        the other way round; returns the problems as text (empty when they agree)."""
        oracle = need_oracle(tool)
        want = run_program([oracle, "-c", "."] + list(args), stdin, cwd=self.candidate_dir,
                           tool=tool)
        got = run_program([candidate_path(tool), "-c", "."] + list(args), stdin,
                          cwd=self.oracle_dir, tool=tool)
        return compare_results(want, got, "%s %s (crossed)" % (tool, " ".join(args)))

"""postsuper(1): pyfix's beside Debian's /usr/sbin/postsuper.

postsuper changes the queue, so each comparison runs Debian's on one site and pyfix's on a
twin site built the same way (the same messages in the same queues, written in the same
order). Queue IDs differ between twins (they hold each file's inode number), so before
comparing, each site's IDs are replaced by their position in creation order, and the
names that a structure check gives files (from their new inode numbers) by what the test
computed from the inode numbers beforehand. Compared: stderr line by line in order,
stdout, exit status, the lines written to $maillog_file (postsuper logs there itself when
the postlog service is down), and the resulting queue: every file with its path and mode.
"""

import os
import shutil
import stat
import time

import pytest

from conftest import candidate_path, requires_oracle, run_program
from pyfix.queue.mail_queue import queue_id_ok
from queue_sides import QueueSite, build_message, chown_tree, debian_available, \
    debian_queue, normalize_ids, owner_ids

pytestmark = requires_oracle("postsuper")

MESSAGE_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
SAFE = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"


def b51(value):
    out = ""
    while True:
        out = SAFE[value % 51] + out
        value //= 51
        if not value:
            return out


def unb52(text):
    value = 0
    for ch in text:
        value = value * 52 + SAFE.index(ch)
    return value


def fixed_name(queue_id, inode, long_ids=False):
    """The name postsuper -s gives a message whose name does not match its inode."""
    sep = queue_id.rfind("z")
    if sep < 10:
        return queue_id[:5] + "%X" % inode
    if long_ids:
        return queue_id[:sep] + "z" + b51(inode)
    return "%05X" % unb52(queue_id[sep - 4:sep]) + "%X" % inode


class Twins:
    """Two sites built by the same function; a for Debian's postsuper, b for pyfix's."""

    def __init__(self, build, main_extra=""):
        self.a = QueueSite(main_extra, prefix="psa")
        self.b = QueueSite(main_extra, prefix="psb")
        self.names_a = build(self.a) or {}
        self.names_b = build(self.b) or {}
        self.extra_a = []
        self.extra_b = []

    def expect_rename(self, name, long_ids=False):
        """The message `name` will be renamed to match its inode number."""
        for site, names, extra in ((self.a, self.names_a, self.extra_a),
                                   (self.b, self.names_b, self.extra_b)):
            queue_id = names[name]
            path = self.find(site, queue_id)
            new = fixed_name(queue_id, os.stat(path).st_ino, long_ids)
            extra.append((new, "NEW-" + name))

    @staticmethod
    def find(site, queue_id):
        """The message file (not a logfile of the same name)."""
        for queue in MESSAGE_QUEUES:
            for folder, _, files in os.walk(os.path.join(site.spool, queue)):
                if queue_id in files:
                    return os.path.join(folder, queue_id)
        raise AssertionError("no file %s" % queue_id)

    def run(self, args_of, stdin_of=None, env=None):
        """args_of(site, names) -> argv after -c; returns the normalized results."""
        results = []
        for site, names, tool in ((self.a, self.names_a, "oracle"),
                                  (self.b, self.names_b, "candidate")):
            site.clear_log()
            stdin = stdin_of(site, names) if stdin_of else None
            run = getattr(site, tool)
            results.append(run("postsuper", args_of(site, names), stdin, env))
        return results

    def normal(self, site, text):
        extra = self.extra_a if site is self.a else self.extra_b
        return normalize_ids(text, site.ids, extra)

    def log_lines(self, site):
        lines = []
        for line in site.read_log().splitlines():
            head, sep, text = line.partition("]: ")
            assert sep and "postfix/postsuper[" in head, line
            lines.append(self.normal(site, text))
        return lines

    def tree(self, site):
        """Files (not directories) with modes; hash directories shown as `#` when right."""
        out = []
        layout = site.layout()
        for rel, mode in site.files():
            if stat.S_ISDIR(int(mode, 8)) or rel.startswith(("public", "private")):
                continue
            parts = rel.split("/")
            name = parts[-1]
            plain = name[:-4] if name.endswith("#FIX") else name
            queue = parts[0]
            expected = layout.path(queue, plain) if queue_id_ok(plain) else None
            if expected is not None and "/".join(parts[:-1] + [plain]) == expected:
                parts = [queue] + ["#"] * (len(parts) - 2) + [name]
            out.append(("/".join(self.normal(site, p) for p in parts), mode))
        return sorted(out)

    def compare(self, args_of, stdin_of=None, env=None, label=""):
        want, got = self.run(args_of, stdin_of, env)
        assert "Traceback" not in got.stderr, got.stderr
        problems = []
        if want.returncode != got.returncode:
            problems.append("exit status: debian %d, pyfix %d" % (want.returncode,
                                                                    got.returncode))
        w_err = [self.normal(self.a, line) for line in want.stderr.splitlines()]
        g_err = [self.normal(self.b, line) for line in got.stderr.splitlines()]
        if w_err != g_err:
            problems.append("stderr:\n  debian %s\n  pyfix  %s" % (w_err, g_err))
        if want.stdout != got.stdout:
            problems.append("stdout: %r / %r" % (want.stdout, got.stdout))
        w_log, g_log = self.log_lines(self.a), self.log_lines(self.b)
        if w_log != g_log:
            problems.append("maillog:\n  debian %s\n  pyfix  %s" % (w_log, g_log))
        w_tree, g_tree = self.tree(self.a), self.tree(self.b)
        if w_tree != g_tree:
            only_w = [x for x in w_tree if x not in g_tree]
            only_g = [x for x in g_tree if x not in w_tree]
            problems.append("queue:\n  debian only %s\n  pyfix only  %s" % (only_w, only_g))
        if problems:
            pytest.fail("%s\n%s" % (label, "\n".join(problems)), pytrace=False)
        return w_err, w_tree

    def remove(self):
        self.a.remove()
        self.b.remove()


def standard_queue(site):
    """One or two messages in each queue, logfiles for some, an expired one, maildrop."""
    names = {}
    add = site.add_message
    names["in"] = add("incoming", "a@example.com", ["b@example.net"])
    names["act"] = add("active", "c@example.com", ["d@example.net"])
    names["def1"] = add("deferred", "e@example.com", ["f@example.net"],
                        reasons=[("f@example.net", "try later")])
    names["def2"] = add("deferred", "g@example.com", ["h@example.net"], expired=True)
    names["hold1"] = add("hold", "i@example.com", ["j@example.net"])
    names["hold2"] = add("hold", "k@example.com", ["l@example.net"])
    names["drop"] = site.add_file("maildrop", build_message(
        "m@example.com", ["n@example.net"], with_size=False), mode=0o744)
    names["long"] = add("deferred", "o@example.com", ["p@example.net"], long_ids=True,
                        reasons=[("p@example.net", "long")])
    for log_queue in ("bounce", "trace"):
        site.add_defer_log(names["def1"], [("f@example.net", "x")], queue=log_queue)
    site.fix_owner()
    return names


@pytest.fixture
def twins():
    made = []

    def make(build=standard_queue, main_extra=""):
        pair = Twins(build, main_extra)
        made.append(pair)
        return pair
    yield make
    for pair in made:
        pair.remove()


def ids(*names):
    return lambda site, n: [x for name in names for x in
                            (name if name.startswith("-") or name in QUEUE_ARGS
                             else n.get(name, name),)]


QUEUE_ARGS = ("hold", "incoming", "active", "deferred", "maildrop", "bounce", "defer",
              "flush", "trace", "bogus")

BY_ID = [
    ["-d", "def1"],
    ["-d", "drop"],
    ["-d", "in", "-d", "act", "-d", "hold1", "-d", "long"],
    ["-d", "def1", "hold"],
    ["-d", "def1", "deferred", "hold"],
    ["-h", "in", "-h", "act", "-h", "def1", "-h", "hold1", "-h", "drop", "-h", "long"],
    ["-H", "hold1", "-H", "def1"],
    ["-H", "hold1", "deferred"],
    ["-H", "hold2", "bogus", "hold"],
    ["-r", "def1", "-r", "hold1", "-r", "drop", "-r", "act"],
    ["-e", "def1", "-e", "def2", "-e", "hold1", "-e", "drop"],
    ["-f", "def1", "-f", "hold1", "-f", "hold2"],
    ["-h", "def1", "-H", "def1", "-d", "def1"],
    ["-d", "bad.id", "-h", "all", "-H", "x/y", "-r", "AB%CD"],
    ["-d", "00000AAAA", "-h", "00000AAAA", "-H", "00000AAAA", "-e", "00000AAAA"],
    ["-d", "def1", "bogus"],
    ["-d", "def1", "flush"],
    ["-e", "def2"],
    ["-r", "long", "-d", "long"],
]


@pytest.mark.parametrize("args", BY_ID, ids=lambda a: " ".join(a))
def test_by_queue_id(twins, args):
    pair = twins()
    pair.compare(ids(*args), label=" ".join(args))


ALL = [
    ["-d", "ALL"],
    ["-d", "ALL", "deferred"],
    ["-h", "ALL"],
    ["-h", "ALL", "-H", "ALL"],
    ["-H", "ALL"],
    ["-r", "ALL"],
    ["-r", "ALL", "hold"],
    ["-e", "ALL"],
    ["-f", "ALL"],
    ["-e", "ALL", "-d", "ALL"],
    ["-H", "ALL", "-d", "hold1"],
]


@pytest.mark.parametrize("args", ALL, ids=lambda a: " ".join(a))
def test_all(twins, args):
    pair = twins()
    pair.compare(ids(*args), label=" ".join(args))


@pytest.mark.parametrize("option", ["-d", "-h", "-H", "-r", "-e", "-f"])
def test_stdin(twins, option):
    pair = twins()

    def stdin(site, names):
        listed = [names["def1"], "", "bad id", names["hold1"], names["in"], "nosuchid",
                  names["hold2"]]
        return ("\n".join(listed)).encode()           # no final newline
    pair.compare(lambda site, n: [option, "-"], stdin, label=option + " -")


def test_plural_counts(twins):
    pair = twins()
    w_err, _ = pair.compare(ids("-d", "def1", "-h", "nosuch", "-H", "hold1", "-H", "hold2"))
    assert "postsuper: Deleted: 1 message" in w_err
    assert "postsuper: Placed on hold: 0 messages" in w_err
    assert "postsuper: Released from hold: 2 messages" in w_err


def test_invalid_id_message(twins):
    pair = twins()
    w_err, _ = pair.compare(ids("-d", "bad.id"))
    assert w_err == ["postsuper: warning: invalid mail queue id: bad.id",
                     "postsuper: Deleted: 0 messages"]


# -- repair: purge and structure -------------------------------------------------------------

def messy_queue(site):
    """Stale and young temporary files, non-files, stray directories, a file in the wrong
    hash directory, and logfiles."""
    names = standard_queue(site)
    old = time.time() - 8 * 86400
    names["old_temp"] = site.add_message("incoming", "t@example.com", ["u@example.net"],
                                         mode=0o600, mtime=old)
    names["young_temp"] = site.add_message("incoming", "v@example.com", ["w@example.net"],
                                           mode=0o600)
    names["old_log"] = site.add_message("deferred", "x@example.com", ["y@example.net"],
                                        reasons=[("y@example.net", "old")])
    os.utime(site.path("defer", names["old_log"]), (old, old))
    fifo = os.path.join(site.spool, "active", "somefifo")
    os.mkfifo(fifo)
    os.makedirs(os.path.join(site.spool, "maildrop", "X"))
    os.makedirs(os.path.join(site.spool, "hold", "strange"))
    # A stray hash directory (empty: removed) and a file with a bad name (left alone,
    # with a warning). One warning per directory at most: the order of the entries of a
    # directory depends on their names, which differ between twin sites.
    os.makedirs(os.path.join(site.spool, "incoming", "Q"))
    with open(os.path.join(site.spool, "incoming", "bogus.name"), "w") as f:
        f.write("x")
    names["misplaced"] = site.add_message("deferred", "z@example.com", ["a@example.net"])
    wrong = os.path.join(site.spool, "deferred", "Z", names["misplaced"])
    os.makedirs(os.path.dirname(wrong), exist_ok=True)
    os.rename(site.path("deferred", names["misplaced"]), wrong)
    names["flat_deferred"] = site.add_message("deferred", "b@example.com", ["c@example.net"])
    os.rename(site.path("deferred", names["flat_deferred"]),
              os.path.join(site.spool, "deferred", names["flat_deferred"]))
    site.fix_owner()
    return names


@pytest.mark.parametrize("args", [[], ["-p"], ["-s"], ["-s", "deferred"], ["-p", "incoming"],
                                  ["-sp", "maildrop", "hold"], ["-d", "ALL", "incoming"]],
                         ids=lambda a: " ".join(a) or "default")
def test_repair(twins, args):
    pair = twins(messy_queue)
    pair.expect_rename("long")          # long queue IDs are off: -s makes the name short
    pair.compare(lambda site, n: list(args), label=" ".join(args))


def test_stray_directory_not_empty(twins):
    """A subdirectory that cannot be removed stops the run (postrmdir() is fatal); it is in
    flush/, the last queue, so that what came before does not depend on readdir order."""
    def build(site):
        names = messy_queue(site)
        stray = os.path.join(site.spool, "flush", "Q")
        os.makedirs(stray)
        with open(os.path.join(stray, "bogus.name"), "w") as f:
            f.write("x")
        site.fix_owner()
        return names
    pair = twins(build)
    pair.expect_rename("long")
    w_err, _ = pair.compare(lambda site, n: [], label="default")
    assert "postsuper: fatal: remove directory flush/Q: Directory not empty" in w_err


def test_hash_depth_change(twins):
    pair = twins(standard_queue)
    pair.expect_rename("long")
    for site in (pair.a, pair.b):
        site.write_main_cf("hash_queue_depth = 2\nhash_queue_names = deferred, defer, hold\n")
    _, tree = pair.compare(lambda site, n: ["-s"], label="depth 2")
    assert ("hold/#/#/ID4", "0o100700") in tree
    for site in (pair.a, pair.b):
        site.write_main_cf("")
    _, tree = pair.compare(lambda site, n: ["-s"], label="depth 1")
    assert ("hold/ID4", "0o100700") in tree
    for site in (pair.a, pair.b):
        assert sorted(os.listdir(os.path.join(site.spool, "hold"))) == sorted(
            [site.ids[4], site.ids[5]])


def test_hashed_maildrop_is_fatal(twins):
    pair = twins(standard_queue, "hash_queue_names = maildrop\n")
    pair.compare(lambda site, n: ["-s"])


def inode_queue(site):
    """Messages whose names do not match their inode numbers, with logfiles."""
    names = standard_queue(site)
    data = build_message("r@example.com", ["s@example.net"])
    names["short_bad"] = site.add_file("deferred", data, queue_id="ABCDE1")
    site.add_defer_log(names["short_bad"], [("s@example.net", "renamed with me")])
    site.add_defer_log(names["short_bad"], [("s@example.net", "bounce")], queue="bounce")
    names["hold_bad"] = site.add_file("hold", data, queue_id="12345F")
    names["long_bad"] = site.add_file(
        "deferred", data, queue_id="4jZR06" + "3v0x" + "zJjqX", long_ids=True)
    site.fix_owner()
    return names


def test_inode_mismatch(twins):
    """-s with long queue IDs on: short names that do not match the inode are fixed, long
    names are left alone (only -S checks them)."""
    pair = twins(inode_queue, "enable_long_queue_ids = yes\n")
    pair.expect_rename("short_bad")
    pair.expect_rename("hold_bad")
    w_err, tree = pair.compare(lambda site, n: ["-s"], label="-s")
    assert "postsuper: Renamed to match inode number: 2 messages" in w_err
    assert "postsuper: warning: QUEUE FILE NAMES WERE CHANGED TO MATCH INODE NUMBERS" in w_err
    assert ("defer/#/NEW-short_bad", "0o100600") in tree
    assert ("hold/NEW-hold_bad", "0o100700") in tree


def test_inode_mismatch_redundant(twins):
    pair = twins(inode_queue, "enable_long_queue_ids = yes\n")
    for name in ("short_bad", "hold_bad"):
        pair.expect_rename(name)
    pair.expect_rename("long_bad", long_ids=True)
    pair.compare(lambda site, n: ["-S"], label="-S")


def test_long_names_made_short(twins):
    pair = twins(inode_queue)
    for name in ("short_bad", "hold_bad"):
        pair.expect_rename(name)
    for name in ("long", "long_bad"):
        pair.expect_rename(name, long_ids=False)
    pair.compare(lambda site, n: [], label="default")


def test_rename_blocks_actions_by_id(twins):
    pair = twins(inode_queue, "enable_long_queue_ids = yes\n")
    pair.expect_rename("short_bad")
    pair.expect_rename("hold_bad")
    w_err, _ = pair.compare(ids("-s", "-d", "def1"), label="-s -d")
    assert "postsuper: fatal: CHECK YOUR QUEUE IDS AND RE-ISSUE THE COMMAND" in w_err
    assert "postsuper: warning: OPERATION INCOMPLETE -- RERUN COMMAND TO FIX THE QUEUE FIRST" \
        in w_err


def test_leftover_fix_names(twins):
    """A #FIX name left by an interrupted run is finished by the next one."""
    def build(site):
        names = standard_queue(site)
        data = build_message("r@example.com", ["s@example.net"])
        queue_id = site.add_file("deferred", data, queue_id="ABCDE1")
        path = site.path("deferred", queue_id)
        fixed = "ABCDE%X" % os.stat(path).st_ino
        os.rename(path, site.path("deferred", fixed) + "#FIX")
        site.ids.append(fixed)
        bogus = site.add_file("hold", data, queue_id="BCDEF1")
        os.rename(site.path("hold", bogus), site.path("hold", bogus) + "#FIX")
        site.fix_owner()
        return names
    pair = twins(build)
    pair.expect_rename("long")
    pair.compare(lambda site, n: ["-s"])


# -- the Debian-made queue -------------------------------------------------------------------

@pytest.mark.skipif(not debian_available(), reason="Debian's Postfix is not installed")
def test_debian_made_queue_copies():
    """Copies of a queue that Debian's Postfix made (new inode numbers): the default run
    renames every file, long names included (long IDs are off), with their logfiles; then
    the actions by ID work on the new names."""
    site, info = debian_queue()
    copies = []
    try:
        pair = Twins.__new__(Twins)
        for prefix in ("psa", "psb"):
            copy = QueueSite(site.main_extra, prefix=prefix)
            copies.append(copy)
            shutil.rmtree(copy.spool)
            # Not the sockets and FIFOs of the stopped Postfix: only queue directories.
            shutil.copytree(site.spool, copy.spool, symlinks=True,
                            ignore=lambda folder, entries: [
                                e for e in entries if e in ("public", "private")
                                and folder == site.spool])
            copy._make_dirs()
            uid, gid = owner_ids()
            chown_tree(copy.spool, uid, gid)
            os.chown(copy.spool, 0, 0)
            os.chown(os.path.join(copy.spool, "pid"), 0, 0)
            copy.ids = list(info["ids"])
        pair.a, pair.b = copies
        pair.names_a = {n: n for n in info["ids"]}
        pair.names_b = dict(pair.names_a)
        pair.extra_a, pair.extra_b = [], []
        for queue_id in info["ids"]:
            pair.expect_rename(queue_id)
        w_err, tree = pair.compare(lambda s, n: [], label="default")
        assert "postsuper: Renamed to match inode number: %d messages" % len(info["ids"]) \
            in w_err
        # The same messages under their new names.
        pair.names_a = {label[4:]: new for new, label in pair.extra_a}
        pair.names_b = {label[4:]: new for new, label in pair.extra_b}
        pair.compare(lambda s, n: ["-H", n[info["hold"]], "-d", n[info["active"]],
                                   "-r", n[info["expire"]], "-e", n[info["long"][0]]],
                     label="actions")
    finally:
        site.remove()
        for copy in copies:
            copy.remove()


# -- options and errors ----------------------------------------------------------------------

USAGE_CASES = [["-x"], ["-d"], ["-c", "relative/dir"], ["-c"]]


@pytest.mark.parametrize("args", USAGE_CASES, ids=lambda a: " ".join(a))
def test_usage(args):
    site = QueueSite()
    try:
        want = site.run("/usr/sbin/postsuper", args)
        got = site.run(candidate_path("postsuper"), args)
        assert want.returncode == got.returncode == 1
        assert want.stderr == got.stderr
    finally:
        site.remove()


def test_missing_config_and_queue():
    for args in (["-c", "/nonexistent"], []):
        site = QueueSite()
        try:
            if not args:
                site.write_main_cf("queue_directory = /nonexistent/spool\n")
                args = ["-c", site.etc]
            want = run_program(["/usr/sbin/postsuper"] + args, tool="postsuper")
            got = run_program([candidate_path("postsuper")] + args, tool="postsuper")
            assert want.returncode == got.returncode == 1
            assert want.stderr == got.stderr
        finally:
            site.remove()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_signal_exit_status(twins):
    """Interrupted, postsuper exits with the signal number (and says so when a structure
    repair was under way)."""
    import subprocess
    pair = twins()
    for program, site in (("/usr/sbin/postsuper", pair.a), (candidate_path("postsuper"), pair.b)):
        proc = subprocess.Popen([program, "-c", site.etc, "-d", "-"], stdin=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        time.sleep(1.0)
        proc.send_signal(2)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 2, (program, err)

"""sendmail(1), mailq(1) and postdrop(1): pyfix's beside Debian's, and under a real master.

Differential: Debian's /usr/sbin/sendmail (which runs Debian's set-gid /usr/sbin/postdrop)
and pyfix's sendmail (which runs pyfix's postdrop) submit the same input with the same
options into a queue of their own; the maildrop files are compared record by record,
with only postdrop's arrival time (`T`) masked, together with the exit status, standard
output and the diagnostics. The cases cover what applications do (-t, -i/-oi, -f/-r,
-F, -N/-R/-V/-XV, -B, -G, -bv, -v, the ignored Sendmail options, line endings, long
lines, `.` lines, From_ lines, 8-bit and UTF-8 text) and what goes wrong (bad flags,
conflicting modes, missing values, no recipients, main.cf settings that refuse). postdrop
is also fed hand-made record streams (forbidden records, attributes, truncation,
cancellation, signals).

End to end: `sendmail -t -i < message` under a pyfix master with pickup and cleanup
leaves the message in the incoming queue with its envelope and headers (skipped, with
the reason, while pyfix has no pickup or cleanup daemon).

Unprivileged submission: the set-gid launcher (commands/setgid) built and installed in
a temporary $command_directory lets user `nobody` submit into a Postfix-style maildrop
(postfix:postdrop 1730) that nobody cannot write otherwise.
"""

import grp
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import OLD_MTIME, TRACEBACK, candidate_path, oracle_path

from pyfix.queue import record as rec

ROOT = os.geteuid() == 0
ORACLE_SENDMAIL = oracle_path("sendmail")
ORACLE_POSTDROP = oracle_path("postdrop")
pytestmark = pytest.mark.skipif(ORACLE_SENDMAIL is None or ORACLE_POSTDROP is None,
                                reason="Debian's sendmail/postdrop are not installed")

MAIN_CF = """\
compatibility_level = 3.7
queue_directory = {root}/spool
data_directory = {root}/lib
maillog_file = {root}/maillog
maillog_file_prefixes = /tmp
"""

T_PAYLOAD = re.compile(rb"^[0-9]+ [0-9]{1,6}$")
QUEUE_ID = re.compile(rb"queue_id\0[0-9A-Za-z]+\0")


# -- a queue of one's own ------------------------------------------------------------------

class Spool:
    """A config directory and a queue with maildrop/ and public/ (no pickup socket)."""

    def __init__(self, extra=""):
        self.root = tempfile.mkdtemp(prefix="pyfix-sendmail-", dir="/tmp")
        os.chmod(self.root, 0o755)
        self.etc = os.path.join(self.root, "etc")
        self.spool = os.path.join(self.root, "spool")
        for path in (self.etc, os.path.join(self.spool, "maildrop"),
                     os.path.join(self.spool, "public"), os.path.join(self.root, "lib")):
            os.makedirs(path)
        self.main_cf = os.path.join(self.etc, "main.cf")
        with open(self.main_cf, "w") as f:
            f.write(MAIN_CF.format(root=self.root) + extra.replace("ROOT", self.root))
        open(os.path.join(self.etc, "master.cf"), "w").close()
        for path in (self.main_cf, os.path.join(self.etc, "master.cf"), self.etc):
            os.utime(path, (OLD_MTIME, OLD_MTIME))

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAIL_")}
        env.pop("NAME", None)
        env["MAIL_CONFIG"] = self.etc
        env.update(extra)
        return env

    def maildrop(self):
        return os.path.join(self.spool, "maildrop")

    def take_files(self):
        """The maildrop files as (mode, [(type, payload)]), T masked; they are removed."""
        files = []
        for name in sorted(os.listdir(self.maildrop())):
            path = os.path.join(self.maildrop(), name)
            files.append(read_queue_file(path))
            os.unlink(path)
        return files

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def read_queue_file(path):
    mode = stat.S_IMODE(os.stat(path).st_mode)
    with open(path, "rb") as f:
        records = []
        for rec_type, payload in rec.RecordReader(f):
            if rec_type == rec.TIME:
                assert T_PAYLOAD.match(payload), payload
                payload = b"<time>"
            records.append((rec_type.decode(), payload))
    return oct(mode), records


def run(argv, spool, stdin=b"", env=None, argv0=None, timeout=60):
    if isinstance(stdin, str):
        stdin = stdin.encode()
    proc = subprocess.run(argv if argv0 is None else [argv0] + argv[1:],
                          executable=argv[0], input=stdin, capture_output=True,
                          env=env or spool.env(), timeout=timeout)
    err = proc.stderr.decode("utf-8", "replace")
    return {"status": proc.returncode, "stdout": proc.stdout,
            "stderr": sorted(set(err.replace(spool.root, "ROOT").splitlines())),
            "files": spool.take_files(), "traceback": TRACEBACK in err}


def sendmail_side(program, case, argv0=None):
    name, args, stdin, extra = case
    spool = Spool(extra)
    try:
        args = [arg.replace("ROOT", spool.root) for arg in args]
        return run([program] + args, spool, stdin, argv0=argv0)
    finally:
        spool.cleanup()


def compare(case, oracle, pyfix):
    assert not pyfix["traceback"], "\n".join(pyfix["stderr"])
    problems = []
    for key in ("status", "stdout", "stderr", "files"):
        if oracle[key] != pyfix[key]:
            problems.append("%s:\n  oracle %r\n  pyfix  %r" % (key, oracle[key], pyfix[key]))
    if problems:
        pytest.fail("sendmail %s (%s):\n%s" % (" ".join(case[1]), case[0], "\n".join(problems)),
                    pytrace=False)


# -- the cases --------------------------------------------------------------------------------

def _lines(*lines):
    return "".join(line + "\n" for line in lines)


MESSAGE = _lines("Subject: test", "", "body")
LONG_TO = "To: " + ", ".join("user%d@example.com" % i for i in range(300))

ENQUEUE_CASES = [
    ("plain", ["alice@example.com"], MESSAGE),
    ("address syntax", ["a@b, c@d", "Joe <j@x>", "a b", "<>", "", '"x y"@z', "(c) a@b",
                        "grp: a@b, c@d;", "@r1,@r2:u@d", "<a@b> trailing", "a@b (c) d"],
     MESSAGE),
    ("dot ends input", ["a@b"], _lines("Subject: x", "", "body", ".", "after")),
    ("-i keeps dot", ["-i", "a@b"], _lines("Subject: x", "", "body", ".", "after")),
    ("-oi keeps dot", ["-oi", "a@b"], _lines("Subject: x", "", "body", ".", "after")),
    ("dot CRLF", ["a@b"], "Subject: x\r\n\r\nbody\r\n.\r\nafter\r\n"),
    ("CRLF", ["a@b"], "Subject: x\r\n\r\nbody\r\nline\r\r\nbare\n"),
    ("From_ lines", ["a@b"], _lines("From me Thu", ">From x", "From y", "Subject: x", "",
                                    "From z")),
    ("no final newline", ["a@b"], "Subject: x\n\nlast"),
    ("lone dot at EOF", ["a@b"], "Subject: x\n\n."),
    ("long lines", ["a@b"], "Subject: x\n\n" + "a" * 2047 + "\n" + "b" * 2048 + "\n"
     + "c" * 2049 + "\n" + "d" * 5000 + "\n" + "e" * 4096),
    ("dot after long line", ["a@b"], "Subject: x\n\n" + "a" * 2048 + ".\n.\nmore\n"),
    ("8-bit and UTF-8", ["b\u00e9b@example.com"],
     "Subject: caf\xc3\xa9 \xff\n\nbody \xe9 \xc3\xa9\n".encode("latin-1")),
    ("NUL bytes", ["a@b"], b"Subject: x\n\na\0b\n"),
    ("empty input", ["a@b"], ""),
    ("-t", ["-t"], _lines("To: bob@x, Joe <joe@y>", "Cc: c@x", "Bcc: (hidden) d@x",
                          "Subject: t", "", "body", "To: not@header")),
    ("-t adds to arguments", ["-t", "extra@x"], _lines("To: bob@x", "Subject: t", "", "b")),
    ("-t Resent-", ["-t"], _lines("To: bob@x", "Resent-To: r@x", "Cc: c@x", "Resent-Cc: rc@x",
                                  "Resent-Bcc: rb@x", "Subject: t", "", "body")),
    ("-t folded headers", ["-t", "-i"], _lines("To: bob@x,", "  carol@y", "Subject :  t",
                                               "X-H\t: v", "", "body")),
    ("-t long header", ["-t"], _lines(LONG_TO, "Subject: t", "", "body")),
    ("-t no header", ["-t", "a@b"], _lines("body only", "", "more")),
    ("-t 8-bit", ["-t"], "To: b\xc3\xa9b@x\nSubject: caf\xc3\xa9 \xff\n\nbody \xe9\n"
     .encode("latin-1")),
    ("-t CRLF", ["-t"], "To: a@b\r\nSubject: x\r\n\r\nbody\r\n"),
    ("-t group syntax", ["-t"], _lines("To: list: a@b, c@d;, e@f", "Cc: undisclosed:;", "")),
    ("-t empty", ["-t", "a@b"], ""),
    ("-t dot", ["-t"], _lines("To: a@b", ".", "ignored")),
    ("-F", ["-F", "Full Name", "a@b"], MESSAGE),
    ("-f null", ["-f", "<>", "a@b"], MESSAGE),
    ("-f with name", ["-f", "Name <s@x>", "a@b"], MESSAGE),
    ("-f two addresses", ["-f", "a@x, b@y", "a@b"], MESSAGE),
    ("-r", ["-r", "s@x", "a@b"], MESSAGE),
    ("-N", ["-N", "success,delay", "a@b", "c@d"], MESSAGE),
    ("-N -t", ["-N", "failure", "-t", "x@y"], _lines("To: a@b", "")),
    ("-N never", ["-N", "never", "a@b"], MESSAGE),
    ("-N bogus", ["-N", "bogus", "a@b"], MESSAGE),
    ("-N never,success", ["-N", "never,success", "a@b"], MESSAGE),
    ("-R hdrs", ["-R", "hdrs", "a@b"], MESSAGE),
    ("-R bogus", ["-R", "xx", "a@b"], MESSAGE),
    ("-V envid", ["-V", "env-id-1", "a@b"], MESSAGE),
    ("-V too long", ["-V", "x" * 101, "a@b"], MESSAGE),
    ("-V unprintable", ["-V", "a b\x01", "a@b"], MESSAGE),
    ("-XV", ["-XV", "-f", "o@x", "a@b"], MESSAGE),
    ("-XV-=", ["-XV-=", "-f", "o@x", "a@b"], MESSAGE),
    ("-V += (deprecated)", ["-V", "+=", "-f", "o@x", "a@b"], MESSAGE),
    ("-V+= (deprecated)", ["-V+=", "-f", "o@x", "a@b"], MESSAGE),
    ("-V xy then recipient", ["-V", "ab"], MESSAGE),
    ("-B 8BITMIME", ["-B", "8BITMIME", "a@b"], MESSAGE),
    ("-B 7BIT", ["-B", "7BIT", "a@b"], MESSAGE),
    ("-G", ["-G", "a@b"], MESSAGE),
    ("-bv", ["-bv", "a@b", "c@d"], MESSAGE),
    ("-bv null sender", ["-bv", "-f", "<>", "a@b"], MESSAGE),
    ("-v", ["-v", "a@b"], MESSAGE),
    ("-bm", ["-bp", "-bm", "a@b"], MESSAGE),
    ("ignored options", ["-Am", "-Ac", "-h", "5", "-L", "lab", "-m", "-O", "x=y", "-o7",
                         "-o8", "-om", "-ox", "-U", "-e", "x", "-p", "x", "-c", "-x",
                         "a@b"], MESSAGE),
    ("clustered flags", ["-tiGU", "-fs@x", "-Fname", "a@b"], _lines("To: c@d", "")),
    ("-- ends options", ["--", "-a@b"], MESSAGE),
    ("option after recipient", ["a@b", "-f"], MESSAGE),
    ("-q5m ignored", ["-q5m", "a@b"], ""),
    ("-bh", ["-bh"], ""),
    ("-bH", ["-bH", "x@y"], ""),
    ("-C main.cf", ["-C", "ROOT/etc/main.cf", "a@b"], MESSAGE),
]

ERROR_CASES = [
    ("no recipient", [], MESSAGE),
    ("-t no recipient", ["-t"], _lines("Subject: none", "", "body")),
    ("bad option", ["-z"], ""),
    ("bad option in a cluster", ["-tz", "a@b"], ""),
    ("missing value", ["-f"], ""),
    ("-bz", ["-bz"], ""),
    ("-Xz", ["-Xz"], ""),
    ("-X logfile", ["-X", "/tmp/log", "a@b"], ""),
    ("-XV bad delimiters", ["-XVab", "-f", "o@x", "a@b"], MESSAGE),
    ("-XV null sender", ["-XV", "-f", "<>", "a@b"], MESSAGE),
    ("-B bogus", ["-B", "x", "a@b"], MESSAGE),
    ("-qZ", ["-qZ"], ""),
    ("-qR", ["-qR"], ""),
    ("-qI", ["-qI"], ""),
    ("-n", ["-n", "a@b"], ""),
    ("-oA", ["-oA"], ""),
    ("-t -bp", ["-t", "-bp"], ""),
    ("-qR -bp", ["-qRsite", "-bp"], ""),
    ("-qI -bp", ["-qIid", "-bp"], ""),
    ("-bv -t", ["-bv", "-t"], ""),
    ("-bv -N", ["-bv", "-N", "never", "a@b"], ""),
    ("-bv -R", ["-bv", "-R", "full", "a@b"], ""),
    ("-bv -v", ["-bv", "-v", "a@b"], ""),
    ("-bi recipient", ["-bi", "a@b"], ""),
    ("-I recipient", ["-I", "a@b"], ""),
    ("-bp recipient", ["-bp", "a@b"], ""),
    ("-q recipient", ["-q", "a@b"], ""),
    ("-bd recipient", ["-bd", "a@b"], ""),
    ("-bl recipient", ["-bl", "a@b"], ""),
    ("-bs recipient", ["-bs", "a@b"], ""),
    ("-qR recipient", ["-qRsite", "a@b"], ""),
    ("-qI recipient", ["-qIid", "a@b"], ""),
    ("-q then -bd", ["-q", "-bd", "x"], ""),
    ("-bd then -q", ["-bd", "-q", "x"], ""),
    ("-C missing", ["-C", "/nonexistent", "a@b"], MESSAGE),
]

CONFIG_CASES = [
    ("strict line endings", ["a@b"], "Subject: x\r\n\r\nbody\r\nbare\n",
     "sendmail_fix_line_endings = strict\n"),
    ("strict, first line bare", ["a@b"], "Subject: x\n\r\nbody\r\n",
     "sendmail_fix_line_endings = strict\n"),
    ("never fix line endings", ["a@b"], "Subject: x\r\n\r\nbody\r\n",
     "sendmail_fix_line_endings = never\n"),
    ("bad sendmail_fix_line_endings", ["a@b"], MESSAGE,
     "sendmail_fix_line_endings = Always\n"),
    ("line_length_limit", ["-t"], _lines(LONG_TO[:1500], "", "x" * 1500),
     "line_length_limit = 600\n"),
    ("authorized_submit_users denies", ["a@b"], MESSAGE,
     "authorized_submit_users = !root, static:anyone\n"),
    ("authorized_submit_users allows", ["a@b"], MESSAGE, "authorized_submit_users = root\n"),
    ("queue_directory missing", ["a@b"], MESSAGE, "queue_directory = /nonexistent\n"),
    ("local_login_sender_maps denies", ["a@b"], MESSAGE,
     "local_login_sender_maps = inline:{root=a@b}\n"),
    ("local_login_sender_maps allows", ["-f", "who@example.com", "a@b"], MESSAGE,
     "local_login_sender_maps = inline:{root=@example.com}\n"),
    ("default_verp_delimiters", ["-XV", "-f", "o@x", "a@b"], MESSAGE,
     "default_verp_delimiters = -=\n"),
    ("message_size_limit", ["a@b"], "Subject: x\n\n" + "a" * 500 + "\n",
     "message_size_limit = 100\n"),
    ("import_environment sets NAME", ["a@b"], MESSAGE,
     "import_environment = MAIL_CONFIG NAME=Imported\n"),
]

ALL_CASES = [(name, args, stdin, "") for name, args, stdin in ENQUEUE_CASES + ERROR_CASES] \
    + CONFIG_CASES


@pytest.fixture(scope="module")
def oracle_results():
    """Debian's results for every case, computed in parallel (Postfix sleeps one second
    before each fatal exit)."""
    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = {case[0]: pool.submit(sendmail_side, ORACLE_SENDMAIL, case)
                   for case in ALL_CASES}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", ALL_CASES, ids=[case[0] for case in ALL_CASES])
def test_sendmail_like_debian(case, oracle_results):
    compare(case, oracle_results[case[0]], sendmail_side(candidate_path("sendmail"), case))


def test_usage_error():
    """A bad flag: GNU getopt's complaint (twice: sendmail scans its options once to find
    -C before main.cf and again for real), the usage line, and EX_TEMPFAIL, as Postfix's
    run-time error handler turns every fatal error into status 75."""
    case = ("bad", ["-z", "a@b"], "", "")
    result = sendmail_side(candidate_path("sendmail"), case)
    compare(case, sendmail_side(ORACLE_SENDMAIL, case), result)
    assert result["status"] == 75
    assert result["stderr"] == ["sendmail: fatal: usage: sendmail [options]",
                                "sendmail: invalid option -- 'z'"]


def test_fullname_from_passwd_and_environment():
    spool = Spool()
    try:
        argv = [candidate_path("sendmail"), "a@b"]
        got = run(argv, spool, MESSAGE)["files"]
        want = run([ORACLE_SENDMAIL, "a@b"], spool, MESSAGE)["files"]
        assert got == want
        env = spool.env(NAME="Named & Person")
        got = run(argv, spool, MESSAGE, env=env)["files"]
        want = run([ORACLE_SENDMAIL, "a@b"], spool, MESSAGE, env=env)["files"]
        assert got == want
        assert (b"F", b"Named & Person") in [(t.encode(), p) for t, p in got[0][1]]
    finally:
        spool.cleanup()


def test_maildrop_file_mode_and_time():
    spool = Spool()
    try:
        before = time.time()
        result = run([candidate_path("sendmail"), "a@b"], spool, MESSAGE)
        assert result["status"] == 0
        mode, records = result["files"][0]
        assert mode == "0o744"
        # pickup wakes through public/pickup; there is none here, as for Debian's postdrop
        assert result["stderr"] == [
            "postdrop: warning: unable to look up public/pickup: No such file or directory"]
        assert records[0] == ("T", b"<time>")
        assert before > 0
    finally:
        spool.cleanup()


# -- mailq, -bp, -q, -bi, -bs ------------------------------------------------------------------

QUEUE_COMMAND_CASES = [
    ("-bp", ["-bp"], None),
    ("mailq", [], "mailq"),
    ("-q", ["-q"], None),
    ("-qR", ["-qRexample.com"], None),
    ("-qI", ["-qIABCDEF"], None),
]


@pytest.mark.skipif(importlib.util.find_spec("pyfix.commands.postqueue") is None,
                    reason="pyfix has no postqueue yet")
@pytest.mark.parametrize("name,args,argv0", QUEUE_COMMAND_CASES,
                         ids=[case[0] for case in QUEUE_COMMAND_CASES])
def test_queue_modes_run_postqueue(name, args, argv0):
    """mailq / -bp / -q / -qR / -qI become postqueue -p / -f / -s / -i; with the mail
    system down both report what postqueue reports."""
    case = (name, args, "", "")
    want = sendmail_side(ORACLE_SENDMAIL, case, argv0=argv0)
    # pyfix's mailq is a console script of its own (a script cannot be given another
    # argv[0]); Debian's is sendmail run under the name mailq.
    got = sendmail_side(candidate_path(argv0 or "sendmail"), case)
    compare(case, want, got)


def test_mailq_script_is_sendmail():
    """pyfix's `mailq` console script is sendmail in its -bp mode."""
    spool = Spool()
    try:
        result = run([candidate_path("mailq"), "x@y"], spool)
        assert result["status"] == 75
        assert result["stderr"] == ["mailq: fatal: display queue mode requires no recipient"]
    finally:
        spool.cleanup()


def test_bi_rebuilds_aliases():
    """-bi runs the alias rebuild of newaliases(1): same table as Debian's sendmail -bi."""
    outputs = []
    for program in (ORACLE_SENDMAIL, candidate_path("sendmail")):
        spool = Spool("alias_database = hash:ROOT/etc/aliases\n"
                      "alias_maps = hash:ROOT/etc/aliases\n")
        try:
            with open(os.path.join(spool.etc, "aliases"), "w") as f:
                f.write("postmaster: root\nbob: alice, carol\n")
            result = run([program, "-bi"], spool)
            assert result["status"] == 0, result
            query = subprocess.run(["/usr/sbin/postmap", "-s",
                                    "hash:" + os.path.join(spool.etc, "aliases")],
                                   capture_output=True)
            outputs.append((result["stderr"], sorted(query.stdout.splitlines())))
        finally:
            spool.cleanup()
    assert outputs[0] == outputs[1]


# -- postdrop on its own ----------------------------------------------------------------------

def records(*items):
    return b"".join(rec.encode(t.encode(), p) for t, p in items)


GOOD = [("A", b"rewrite_context=local"), ("S", b"s@x"), ("R", b"r@y"), ("M", b""),
        ("N", b"Subject: x"), ("N", b""), ("N", b"body"), ("X", b""), ("E", b"")]

POSTDROP_CASES = [
    ("good", records(*GOOD)),
    ("all allowed records", records(
        ("A", b"envelope_id=x"), ("A", b"ret_flags=2"), ("A", b"rewrite_context=remote"),
        ("F", b"Full"), ("S", b"s@x"), ("A", b"encoding=8bit"), ("A", b"trace_flags=1024"),
        ("V", b"+="), ("A", b"notify_flags=2"), ("R", b"r@y"), ("i", b"envid"), ("n", b"4"),
        ("M", b""), ("N", b"x"), ("L", b"cont"), ("N", b""), ("X", b""), ("A", b"x=y"),
        ("R", b"z@w"), ("E", b""))),
    ("attributes", records(
        ("A", b"foo=bar"), ("A", b"nonsense"), ("A", b" rewrite_context = remote "),
        ("A", b"rewrite_context=xx"), ("A", b"create_time=5"),
        ("A", b"dsn_orig_rcpt=rfc822;x"), ("A", b"encoding=binary"), ("A", b"encoding="),
        ("A", b"=x"), ("S", b"a"), ("R", b"b"), ("M", b""), ("X", b""), ("E", b""))),
    ("no sender", records(("A", b"rewrite_context=local"), ("M", b""), ("N", b"x"),
                          ("X", b""), ("R", b"bob"), ("E", b""))),
    ("no recipient", records(("S", b"a"), ("M", b""), ("X", b""), ("E", b""))),
    ("cancelled", records(("S", b"a"), ("R", b"b"), ("M", b""), ("N", b"x"))),
    ("empty input", b""),
    ("T from the client", records(("T", b"1 2"), ("S", b"a"))),
    ("C record", records(("S", b"a"), ("C", b"x"))),
    ("pointer record", records(("S", b"a"), ("p", b"0"))),
    ("R in content", records(("S", b"a"), ("M", b""), ("R", b"x"))),
    ("N in envelope", records(("S", b"a"), ("N", b"x"))),
    ("too long", records(("S", b"a" * 3000))),
    ("truncated", records(("S", b"a")) + b"R\x05ab"),
    ("bad length", records(("S", b"a")) + b"R" + b"\xff" * 6),
    ("type byte 0", records(("S", b"a")) + b"\x00\x00"),
    ("records after E", records(*GOOD) + records(("R", b"late"))),
    ("NUL in sender", records(("S", b"a\0b"), ("R", b"b"), ("M", b""), ("X", b""),
                              ("E", b""))),
]


def postdrop_side(program, stdin, extra=""):
    spool = Spool(extra)
    try:
        result = run([program, "-r"], spool, stdin)
        result["stdout"] = QUEUE_ID.sub(b"queue_id\0<ID>\0", result["stdout"])
        return result
    finally:
        spool.cleanup()


@pytest.mark.parametrize("name,stdin", POSTDROP_CASES, ids=[c[0] for c in POSTDROP_CASES])
def test_postdrop_like_debian(name, stdin):
    with ThreadPoolExecutor(max_workers=1) as pool:
        oracle = pool.submit(postdrop_side, ORACLE_POSTDROP, stdin)
        pyfix = postdrop_side(candidate_path("postdrop"), stdin)
        compare((name, ["postdrop", "-r"], stdin, ""), oracle.result(), pyfix)


def test_postdrop_usage_like_debian():
    case = ("usage", ["-x"], b"", "")
    spool = Spool()
    try:
        want = run([ORACLE_POSTDROP, "-x"], spool)
        got = run([candidate_path("postdrop"), "-x"], spool)
        compare(case, want, got)
    finally:
        spool.cleanup()


def test_postdrop_leaves_unfinished_file_when_refused():
    """No sender: status 1 to the client; as in Postfix the embryonic file (0644, not
    complete, so pickup never takes it) stays behind."""
    spool = Spool()
    try:
        proc = subprocess.run([candidate_path("postdrop"), "-r"],
                              input=records(("M", b""), ("X", b""), ("R", b"b"), ("E", b"")),
                              capture_output=True, env=spool.env())
        assert proc.returncode == 1
        names = os.listdir(spool.maildrop())
        assert len(names) == 1
        assert stat.S_IMODE(os.stat(os.path.join(spool.maildrop(), names[0])).st_mode) == 0o644
    finally:
        spool.cleanup()


def _default_signals():
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                    signal.SIGQUIT])
def test_postdrop_signal_removes_file(signum):
    results = []
    for program in (ORACLE_POSTDROP, candidate_path("postdrop")):
        spool = Spool()
        try:
            ours, theirs = socket.socketpair()
            # Both postdrops leave a signal alone that was ignored when they started
            # (under nohup, SIGHUP): start them with the default dispositions.
            proc = subprocess.Popen([program, "-r"], stdin=theirs, stdout=theirs,
                                    stderr=subprocess.PIPE, env=spool.env(),
                                    preexec_fn=_default_signals)
            theirs.close()
            data = b""
            while not data.endswith(b"\0\0"):
                chunk = ours.recv(4096)
                assert chunk, "postdrop closed the connection"
                data += chunk
            queue_id = QUEUE_ID.search(data).group(0)[9:-1].decode()
            path = os.path.join(spool.maildrop(), queue_id)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
            ours.sendall(records(("S", b"a"), ("R", b"b"), ("M", b"")))
            time.sleep(0.2)
            proc.send_signal(signum)
            status = proc.wait(timeout=10)
            proc.stderr.read()
            proc.stderr.close()
            ours.close()
            results.append((status, os.listdir(spool.maildrop())))
        finally:
            spool.cleanup()
    assert results[0] == results[1] == [(signum, [])][0]


# -- end to end under a pyfix master ------------------------------------------------------------

def _daemon_missing():
    missing = [name for name in ("pyfix.daemons.pickup", "pyfix.daemons.cleanup")
               if importlib.util.find_spec(name) is None]
    return ", ".join(missing)


APPLICATION_MESSAGE = _lines("From: Alice <alice@example.com>", "To: Bob <bob@example.com>",
                             "Cc: carol@example.com", "Bcc: dave@example.com",
                             "Subject: sendmail -t -i", "", "first line", ".", "last line")


@pytest.mark.skipif(bool(_daemon_missing()),
                    reason="pyfix has no %s daemon yet" % _daemon_missing())
@pytest.mark.parametrize("sender_args", [[], ["-f", "alice@example.com"]],
                         ids=["login-sender", "-f"])
def test_sendmail_t_i_under_master(sender_args):
    """`sendmail -t -i < message`, as an application runs it: sendmail runs postdrop,
    which leaves the file in maildrop/ and wakes pickup; pickup takes it to cleanup, and
    the message waits complete (mode 0700) in incoming/ with the envelope from the
    command line (or the login name, qualified with $myorigin, without -f) and the
    headers: Bcc: removed, Date: and Message-Id: added, pickup's Received: first."""
    from master_run import MasterRun, wait_until
    master_cf = ("pickup unix n - n 60 1 pickup\n"
                 "cleanup unix n - n - 0 cleanup\n")
    run_ = MasterRun(master_cf, "myhostname = mx.example.com\nmydomain = example.com\n")
    try:
        # The queue as postfix-files makes it (owned by mail_owner when run as root).
        for queue in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt",
                      "bounce", "defer", "trace", "flush", "saved"):
            path = os.path.join(run_.spool, queue)
            os.makedirs(path, mode=0o700)
            if ROOT:
                shutil.chown(path, "postfix", "postdrop" if queue == "maildrop" else None)
        if ROOT:
            os.chmod(os.path.join(run_.spool, "maildrop"), 0o1730)
        run_.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAIL_")}
        env["MAIL_CONFIG"] = run_.etc
        proc = subprocess.run([candidate_path("sendmail"), "-t", "-i"] + sender_args,
                              input=APPLICATION_MESSAGE.encode(), capture_output=True,
                              env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stderr == b""
        incoming = os.path.join(run_.spool, "incoming")

        def complete_files():
            found = []
            for folder, _, names in os.walk(incoming):
                for name in names:
                    path = os.path.join(folder, name)
                    if stat.S_IMODE(os.stat(path).st_mode) & 0o700 == 0o700:
                        found.append(path)
            return found
        files = wait_until(complete_files, timeout=20)
        assert files, "no queue file in incoming/:\n" + run_.log()
        assert len(files) == 1
        assert wait_until(lambda: not os.listdir(os.path.join(run_.spool, "maildrop")))
        _, recs = read_queue_file(files[0])
        queue_id = os.path.basename(files[0])
        login = pwd.getpwuid(os.getuid()).pw_name
        sender = "alice@example.com" if sender_args else login + "@mx.example.com"
        envelope = dict()
        for rec_type, payload in recs:
            envelope.setdefault(rec_type, []).append(payload)
        assert envelope["S"] == [sender.encode()]
        assert sorted(envelope["R"]) == [b"bob@example.com", b"carol@example.com",
                                         b"dave@example.com"]
        assert recs[-1] == ("E", b"")
        content = [p for t, p in recs if t in ("N", "L")]
        assert content[0] == b"Received: by mx.example.com (Postfix, from userid %d)" \
            % os.getuid()
        assert content[1].startswith(b"\tid " + queue_id.encode() + b"; ")
        header_names = [line.split(b":")[0].lower() for line in content[2:content.index(b"")]]
        assert header_names == [b"from", b"to", b"cc", b"subject", b"message-id", b"date"]
        assert b"Subject: sendmail -t -i" in content
        assert b"To: Bob <bob@example.com>" in content
        assert content[content.index(b""):] == [b"", b"first line", b".", b"last line"]
        # pickup logs the sender as the maildrop file has it (cleanup qualifies it).
        logged_sender = "alice@example.com" if sender_args else login
        assert re.search(r"pickup\[\d+\]: %s: uid=%d from=<%s>"
                         % (queue_id, os.getuid(), re.escape(logged_sender)), run_.log()), \
            run_.log()
        assert re.search(r"cleanup\[\d+\]: %s: message-id=<\d{14}\.%s@mx\.example\.com>"
                         % (queue_id, queue_id), run_.log()), run_.log()
        # Debian's postcat reads the file as Postfix's own.
        cat = subprocess.run(["/usr/sbin/postcat", "-c", run_.etc, "-q", queue_id],
                             capture_output=True, text=True)
        assert cat.returncode == 0 and "sender: %s" % sender in cat.stdout, cat.stderr
    finally:
        run_.cleanup()


# -- unprivileged submission through the set-gid launcher -----------------------------------------

def _launcher_unavailable():
    if not ROOT:
        return "needs root (to install a set-gid program)"
    if shutil.which("cc") is None:
        return "no C compiler"
    if not os.access("/usr/bin/python3", os.X_OK):
        return "no /usr/bin/python3 that user nobody can run"
    for group in ("postdrop",):
        try:
            grp.getgrnam(group)
        except KeyError:
            return "no %s group" % group
    for user in ("postfix", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return "no %s user" % user
    return ""


def world_readable_python(root):
    """A Python that user nobody can run, with pyfix (this tree) and psutil: a venv of
    /usr/bin/python3 that reuses the test venv's editable-install finder and psutil (the
    test interpreter itself may live in a directory nobody cannot enter)."""
    venv = os.path.join(root, "venv")
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", venv], check=True)
    site = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    import psutil
    import pyfix.common.config as probe
    here = os.path.dirname(os.path.dirname(psutil.__file__))
    shutil.copytree(os.path.dirname(psutil.__file__), os.path.join(site, "psutil"))
    for name in os.listdir(here):
        if name.startswith("__editable__") and "pyfix" in name:
            shutil.copy(os.path.join(here, name), site)
    assert probe
    return os.path.join(venv, "bin", "python")


@pytest.mark.skipif(bool(_launcher_unavailable()), reason=_launcher_unavailable() or "-")
def test_unprivileged_user_submits_through_setgid_launcher():
    from pyfix.commands import setgid
    nobody = pwd.getpwnam("nobody")
    postfix = pwd.getpwnam("postfix")
    postdrop_gid = grp.getgrnam("postdrop").gr_gid
    spool = Spool()
    try:
        python = world_readable_python(spool.root)
        bindir = os.path.join(spool.root, "bin")
        os.makedirs(bindir, mode=0o755)
        with open(spool.main_cf, "a") as f:
            f.write("command_directory = %s\n" % bindir)
        os.utime(spool.main_cf, (OLD_MTIME, OLD_MTIME))
        maildrop = spool.maildrop()
        os.chown(maildrop, postfix.pw_uid, postdrop_gid)
        os.chmod(maildrop, 0o1730)
        public = os.path.join(spool.spool, "public")
        os.chown(public, postfix.pw_uid, postdrop_gid)
        os.chmod(public, 0o2710)
        sendmail = [python, "-c", "import sys; sys.argv[0] = 'sendmail'; "
                    "from pyfix.commands.sendmail import main; sys.exit(main())"]

        def as_nobody():
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
        env = spool.env()
        env.pop("PYTHONPATH", None)

        # Without a launcher nobody has no way into the maildrop: sendmail runs
        # $command_directory/postdrop as Postfix's does, and there is none.
        proc = subprocess.run(sendmail + ["rcpt@example.com"], input=MESSAGE.encode(),
                              capture_output=True, env=env, preexec_fn=as_nobody, cwd="/",
                              timeout=60)
        assert proc.returncode == 75
        assert "sendmail: fatal: nobody(%d): unable to execute %s/postdrop -r: " \
            "Application error" % (nobody.pw_uid, bindir) in proc.stderr.decode()
        assert os.listdir(maildrop) == []

        setgid.install(bindir, ["postdrop"], "postdrop", spool.etc, python=python)
        st = os.stat(os.path.join(bindir, "postdrop"))
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, postdrop_gid, 0o2755)

        proc = subprocess.run(sendmail + ["-f", "nobody@example.com", "rcpt@example.com"],
                              input=MESSAGE.encode(), capture_output=True, env=env,
                              preexec_fn=as_nobody, cwd="/", timeout=60)
        assert TRACEBACK not in proc.stderr.decode(), proc.stderr.decode()
        assert proc.returncode == 0, proc.stderr.decode()
        names = os.listdir(maildrop)
        assert len(names) == 1
        path = os.path.join(maildrop, names[0])
        st = os.stat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == \
            (nobody.pw_uid, postdrop_gid, 0o744)
        _, recs = read_queue_file(path)
        assert ("S", b"nobody@example.com") in recs and ("R", b"rcpt@example.com") in recs

        os.unlink(path)
        # A non-default configuration directory must be authorized by the default one.
        other = os.path.join(spool.root, "other")
        shutil.copytree(spool.etc, other)
        os.chmod(other, 0o755)
        env2 = dict(env, MAIL_CONFIG=other)
        proc = subprocess.run(sendmail + ["rcpt@example.com"], input=MESSAGE.encode(),
                              capture_output=True, env=env2, preexec_fn=as_nobody, cwd="/",
                              timeout=60)
        assert proc.returncode == 75
        assert "postdrop: error: unauthorized configuration directory name: %s" % other \
            in proc.stderr.decode(), proc.stderr.decode()
        assert os.listdir(maildrop) == []
    finally:
        spool.cleanup()


def test_launcher_refuses_changeable_python(tmp_path):
    from pyfix.commands import setgid
    victim = tmp_path / "bin"
    victim.mkdir()
    os.chmod(victim, 0o777)
    assert setgid.unsafe_paths(str(victim))

"""postcat(1): pyfix's beside Debian's /usr/sbin/postcat, byte for byte.

Both programs read the same files with the same options; compared are stdout (bytes),
stderr (bytes, each side's program path shown as `postcat`), the exit status, and, in a
second run with stdout and stderr on one pipe, the interleaving of the two (postcat
flushes after every record, so that a warning shows up where the damage is).

The files: queue files written with pyfix's record codec (plain, pointers and padding,
DSN attributes and records, long header/body lines split into `L` records, multipart 8-bit
content, every envelope record type, a long queue ID) and damaged ones (truncated, a bad
first byte, a bad record type, too many length bits, a negative and a huge length, bad
size, pointer and attribute records, a pointer loop); and queue files that Debian's own
Postfix made (deferred mail with DSN options, 8-bit multipart content, headers added by
cleanup, a null sender, long queue IDs), read by name, by queue ID (-q) and from standard
input (a pipe, and a seekable file).
"""

import os
import re
import subprocess
import time

import pytest

from conftest import candidate_path, clean_env, requires_oracle
from queue_sides import DebianPostfix, QueueSite, T0, build_message, debian_available, rec

pytestmark = requires_oracle("postcat")

ORACLE = "/usr/sbin/postcat"

# -- running both --------------------------------------------------------------------------


class Outcome:
    def __init__(self, program, args, proc, verbose):
        self.program = program
        self.args = args
        self.verbose = verbose
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = _named(proc.stderr, program, verbose)
        self.merged = None


# With -v, Postfix's configuration library reports what it does while main.cf is read
# (dict_lookup: ..., mac_parse: ..., name_mask: ..., inet_addr_local: ...): that is
# Postfix's internals, not postcat's output, and is left out of the comparison. postcat's
# own diagnostics (warnings, fatal errors) are compared as they are.
_CHATTER = re.compile(rb"^postcat: (?!warning: |fatal: |panic: |error: ).*\n", re.M)


def _named(data, program, verbose):
    """Diagnostics (and the usage text) name the program as invoked; show both as
    `postcat`."""
    data = data.replace(program.encode(), b"postcat")
    return _CHATTER.sub(b"", data) if verbose else data


def _verbose(args):
    for arg in args:
        if arg == "--":
            break
        if arg.startswith("-") and "v" in arg.split("s", 1)[0].split("c", 1)[0]:
            return True
    return False


def _run(argv, stdin, env, merged):
    """stdin: None, bytes (a pipe) or ("file", path) (a seekable file)."""
    output = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT) if merged \
        else dict(capture_output=True)
    if isinstance(stdin, tuple):
        with open(stdin[1], "rb") as f:
            return subprocess.run(argv, stdin=f, env=env, timeout=30, **output)
    return subprocess.run(argv, input=stdin or b"", env=env, timeout=30, **output)


def run_one(program, args, stdin=None, env=None):
    env = env or clean_env({"TZ": "Europe/Amsterdam"})
    argv = [program] + list(args)
    return Outcome(program, args, _run(argv, stdin, env, False), _verbose(args)), \
        (argv, stdin, env)


def add_merged(outcome, how):
    """Run again with stdout and stderr on one pipe: the order of the two."""
    proc = _run(*how, merged=True)
    outcome.merged = _named(proc.stdout, outcome.program, outcome.verbose)


def compare(args, stdin=None, env=None, label=None):
    want, want_how = run_one(ORACLE, args, stdin, env)
    got, got_how = run_one(candidate_path("postcat"), args, stdin, env)
    assert b"Traceback" not in got.stderr, got.stderr.decode(errors="replace")
    parts = ["stdout", "stderr"]
    if want.stderr or got.stderr:       # else the merged output is stdout itself
        add_merged(want, want_how)
        add_merged(got, got_how)
        parts.append("merged")
    problems = []
    if want.returncode != got.returncode:
        problems.append("exit status: debian %d, pyfix %d" % (want.returncode,
                                                                got.returncode))
    for part in parts:
        w, g = getattr(want, part), getattr(got, part)
        if w != g:
            problems.append("%s differs:\n%s" % (part, _first_difference(w, g)))
    if problems:
        pytest.fail("postcat %s\n%s" % (label or " ".join(args), "\n".join(problems)),
                    pytrace=False)
    return want


def _first_difference(want, got):
    w_lines, g_lines = want.split(b"\n"), got.split(b"\n")
    for n, (a, b) in enumerate(zip(w_lines, g_lines)):
        if a != b:
            return "  line %d\n  debian %r\n  pyfix  %r" % (n + 1, a[:300], b[:300])
    return "  debian %d lines, pyfix %d lines; tails:\n  debian %r\n  pyfix  %r" % (
        len(w_lines), len(g_lines), want[-300:], got[-300:])


# -- queue files written by pyfix's record codec -------------------------------------------

def R(rec_type, payload=b""):
    return rec.encode(rec_type, payload if isinstance(payload, bytes) else payload.encode())


MULTIPART = [
    b"From: J\xc3\xb6rg <joerg@example.com>",
    b"Subject: =?UTF-8?Q?gr=C3=BC=C3=9Fe?=",
    b"MIME-Version: 1.0",
    b"Content-Type: multipart/mixed;",
    b"\tboundary=\"==frontier==\"",
    b"Content-Transfer-Encoding: 8bit",
]
MULTIPART_BODY = [
    b"This is a multi-part message in MIME format.", b"", b"--==frontier==",
    b"Content-Type: text/plain; charset=utf-8", b"Content-Transfer-Encoding: 8bit", b"",
    b"Gr\xc3\xbc\xc3\x9fe aus Z\xc3\xbcrich, \xe2\x82\xac 10", b"", b"--==frontier==",
    b"Content-Type: application/octet-stream", b"Content-Transfer-Encoding: base64", b"",
    b"AAECAwQFBgcICQ==", b"--==frontier==--", b"",
]


def split_long(line, width=80):
    """A long text line as cleanup writes it: `L` records for the first pieces, `N`
    for the last."""
    pieces = [line[i:i + width] for i in range(0, len(line), width)] or [b""]
    return [(rec.CONT, p) for p in pieces[:-1]] + [(rec.NORM, pieces[-1])]


def content(headers, body):
    records = []
    for line in headers:
        records += split_long(line)
    records.append((rec.NORM, b""))
    for line in body:
        records += split_long(line)
    return records


def pyfix_files(site):
    """{name: path} of queue files built with the record codec, in site.root/files."""
    folder = os.path.join(site.root, "files")
    os.makedirs(folder, exist_ok=True)
    files = {}

    def put(name, data):
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(data)
        files[name] = path

    put("plain", build_message("alice@example.com", ["bob@example.net", "carol@example.org"]))
    put("null_sender", build_message("", ["postmaster@example.com"]))
    put("pointers", build_message("p@example.com", ["r@example.net"], pointers=True,
                                  padding=True))
    put("dsn", build_message(
        "dsn@example.com", ["x@example.net"],
        envelope=[(rec.ATTR, "envelope_id=ENV-12345"), (rec.ATTR, "ret_flags=2"),
                  (rec.DSN_ENVID, "ENV-REC"), (rec.DSN_RET, "1"),
                  (rec.ATTR, "log_ident=ABCDEF"), (rec.ATTR, "dsn_orig_rcpt=rfc822;x@ex"),
                  (rec.DSN_ORCPT, "rfc822;orig@example.net"), (rec.DSN_NOTIFY, "14")],
        extracted=[(rec.DSN_ORCPT, "rfc822;y@example.net"), (rec.DSN_NOTIFY, "3"),
                   (rec.RCPT, "y@example.net")]))
    put("multipart", build_message(
        "j\xf6rg@example.com", ["z\xfcrich@example.ch"],
        content_records=content(MULTIPART + [b"X-Long: " + b"h" * 300],
                                MULTIPART_BODY + [b"b" * 1000, b" leading space"])))
    put("every_type", build_message(
        "every@example.com", ["r1@example.net"],
        envelope=[(rec.FULL, "Every Type"), (rec.INSP, "smtp:[127.0.0.1]:10025"),
                  (rec.FILT, "filter:dummy"), (rec.VERP, "+="), (rec.FLGS, "1024"),
                  (rec.WARN, "%15d" % (T0 + 3600)), (rec.DONE, "done@example.net"),
                  (rec.DRCP, "canceled@example.net"), (rec.CONT, "envelope L"),
                  (rec.RDR, "redirect@example.net"), (rec.KILL, "killed"),
                  (rec.ATTR, "create_time=%d" % (T0 + 1)),
                  (rec.ATTR, "rewrite_context=remote"), (rec.ATTR, "empty=")],
        extracted=[(rec.RRTO, "receipt@example.com"), (rec.ERTO, "errors@example.com"),
                   (rec.PRIO, "5"), (rec.ATTR, "x=y"), (rec.FILT, "smtp:x"),
                   (rec.ORCP, "o@example.net"), (rec.RCPT, "late@example.net")]))
    put("header_only", build_message("h@example.com", ["r@example.net"],
                                     content_records=[(rec.NORM, b"Subject: no body")]))
    put("body_first", build_message("b@example.com", ["r@example.net"],
                                    content_records=[(rec.NORM, b"no header here"),
                                                     (rec.NORM, b"Subject: x")]))
    put("cont_last", build_message("c@example.com", ["r@example.net"],
                                   content_records=[(rec.NORM, b"Subject: x"),
                                                    (rec.NORM, b""),
                                                    (rec.CONT, b"unterminated")]))
    put("space_first", build_message("s@example.com", ["r@example.net"],
                                     content_records=[(rec.NORM, b" Folded: start"),
                                                      (rec.NORM, b"Subject: x"),
                                                      (rec.NORM, b""),
                                                      (rec.NORM, b"body")]))
    plain = files["plain"]
    with open(plain, "rb") as f:
        good = f.read()
    put("truncated", good[:len(good) * 2 // 3])
    put("truncated_length", good[:good.index(b"M\0")] + b"N\x85")
    put("after_end", good + R(rec.RCPT, "after-end@example.net"))
    put("no_end", good[:-2])
    put("bad_first", b"x" + good[1:])
    put("nul_first", b"\0" + good[1:])
    put("empty", b"")
    put("bad_type_middle", good[:good.index(b"M\0")] + b"\x01\x03abc" + good[good.index(b"M\0"):])
    put("too_many_length_bits", good[:good.index(b"M\0")] + b"N\xff\xff\xff\xff\xff\x01")
    put("negative_length", good[:good.index(b"M\0")] + b"N\x80\x80\x80\x80\x08abc")
    put("huge_length", good[:good.index(b"M\0")] + b"N\x80\x80\x80\x30abc")
    put("bad_size", build_message("x@example.com", ["r@example.net"], size=b"twelve"))
    # Sizes that point backwards would make postcat -e loop for ever (it seeks to
    # data_offset + data_size at the content marker): only forward ones here.
    content_at = good.index(b"M\0") + 2
    put("size_zero", build_message("x@example.com", ["r@example.net"],
                                   size=b"%15d %15d %15d" % (0, content_at + 40, 1)))
    put("size_wrong", build_message("x@example.com", ["r@example.net"],
                                    size=b"%15d %15d %15d %15d" % (7, content_at + 3, 1, 0)))
    put("size_past_end", build_message("x@example.com", ["r@example.net"],
                                       size=b"%15d %15d %15d %15d" % (99999, 88888, 1, 0)))
    put("two_sizes", build_message("x@example.com", ["r@example.net"],
                                   envelope=[(rec.SIZE, b"%15d %15d" % (5, 6))]))
    put("bad_attr", build_message("x@example.com", ["r@example.net"],
                                  envelope=[(rec.ATTR, "noequals"), (rec.ATTR, "=novalue"),
                                            (rec.ATTR, "create_time=garbage"),
                                            (rec.ATTR, " spaced = value ")]))
    put("bad_time", build_message("x@example.com", ["r@example.net"],
                                  envelope=[(rec.TIME, "garbage"), (rec.TIME, "-5 7"),
                                            (rec.WARN, "  +12x")]))
    put("nul_payload", build_message("x\0hidden@example.com", ["r@example.net"],
                                     body=[b"body\0with nul"]))
    put("bad_pointer", build_message("x@example.com", ["r@example.net"],
                                     envelope=[(rec.PTR, "12abc")]))
    put("pointer_past_end", build_message("x@example.com", ["r@example.net"],
                                          envelope=[(rec.PTR, "%15d" % 999999)]))
    loop = R(rec.TIME, "%d 0" % T0)
    loop += R(rec.PTR, "%15d" % len(loop))
    put("pointer_loop", loop)
    put("out_of_order", R(rec.TIME, "%d 0" % T0) + R(rec.XTRA) + R(rec.MESG)
        + R(rec.NORM, "Subject: x") + R(rec.MESG) + R(rec.END) + R(rec.NORM, "late"))
    put("unknown_type", good[:good.index(b"M\0")] + R(b"?", "what") + R(b"\xfe", "high")
        + good[good.index(b"M\0"):])
    # A file with real pointers, as cleanup leaves it after recipients were added: the
    # envelope's pointer jumps to appended records (after padding) that point back.
    head = R(rec.TIME, "%d 0" % T0) + R(rec.FROM, "ptr@example.com")
    resume = len(head) + len(R(rec.PTR, "%15d" % 0))
    body = R(rec.MESG) + R(rec.NORM, "Subject: pointers") + R(rec.NORM, "") \
        + R(rec.NORM, "body") + R(rec.XTRA) + R(rec.END)
    appended_at = resume + len(body)
    head += R(rec.PTR, "%15d" % appended_at)
    appended = R(rec.RCPT, "appended@example.net") + R(rec.DTXT, "0" * 20) \
        + R(rec.PTR, "%15d" % resume)
    assert len(head) == resume
    put("real_pointers", head + body + appended)
    return files


@pytest.fixture(scope="module")
def pyfix_site():
    site = QueueSite(prefix="pc")
    try:
        files = pyfix_files(site)
        ids = {"deferred": site.add_message("deferred", "q@example.com", ["r@example.net"],
                                            body=[b"in deferred"]),
               "hold": site.add_message("hold", "h@example.com", ["r@example.net"]),
               "maildrop": site.add_file("maildrop", build_message(
                   "m@example.com", ["r@example.net"], with_size=False), mode=0o744),
               "long": site.add_message("deferred", "long@example.com", ["r@example.net"],
                                        long_ids=True),
               "saved": site.add_message("saved", "s@example.com", ["r@example.net"])}
        site.fix_owner()
        yield site, files, ids
    finally:
        site.remove()


OPTION_SETS = [[], ["-q"], ["-e"], ["-h"], ["-b"], ["-eh"], ["-hb"], ["-eb"], ["-ehb"],
               ["-v"], ["-vv"], ["-o"], ["-d"], ["-od"], ["-ov"], ["-vd"], ["-r"], ["-vr"],
               ["-vro"], ["-bo"], ["-ho", "-d"], ["-e", "-o", "-d"], ["-bv"], ["-hv"],
               ["-ev"]]

GOOD_FILES = ["plain", "null_sender", "pointers", "dsn", "multipart", "every_type",
              "header_only", "body_first", "cont_last", "space_first", "real_pointers",
              "after_end"]
BAD_FILES = ["truncated", "truncated_length", "no_end", "bad_first", "nul_first", "empty",
             "bad_type_middle", "too_many_length_bits", "negative_length", "huge_length",
             "bad_size", "size_zero", "size_wrong", "size_past_end", "two_sizes",
             "bad_attr", "bad_time", "nul_payload", "bad_pointer", "pointer_past_end",
             "pointer_loop", "out_of_order", "unknown_type"]


def _opt_id(options):
    return "".join(options) or "none"


@pytest.mark.parametrize("options", OPTION_SETS, ids=_opt_id)
def test_pyfix_made_good_files(pyfix_site, options):
    site, files, _ = pyfix_site
    for name in GOOD_FILES:
        if "-q" in options:
            continue
        compare(["-c", site.etc] + options + [files[name]], label="%s %s" % (options, name))


# Fewer for damaged files, and fewer still for those that end in a fatal error: that
# costs Postfix a second (msg_fatal() sleeps).
DAMAGED_OPTION_SETS = [[], ["-e"], ["-hb"], ["-v"], ["-od"], ["-vr"], ["-bo"]]
FATAL_FILES = ["truncated", "truncated_length", "too_many_length_bits", "negative_length",
               "huge_length", "bad_pointer", "pointer_loop"]


@pytest.mark.parametrize("options", DAMAGED_OPTION_SETS, ids=_opt_id)
def test_pyfix_made_damaged_files(pyfix_site, options):
    site, files, _ = pyfix_site
    for name in BAD_FILES:
        if name in FATAL_FILES and options not in ([], ["-v"], ["-od"]):
            continue
        compare(["-c", site.etc] + options + [files[name]], label="%s %s" % (options, name))


def test_several_files_and_a_missing_one(pyfix_site):
    site, files, _ = pyfix_site
    compare(["-c", site.etc, files["plain"], files["truncated"], files["dsn"]])
    compare(["-c", site.etc, files["plain"], "/nonexistent/file", files["dsn"]])
    compare(["-c", site.etc, "-e", files["bad_first"], files["plain"]])
    # A directory opens, but cannot be read: postcat warns when it closes it.
    folder = os.path.dirname(files["plain"])
    compare(["-c", site.etc, folder, files["plain"]])
    compare(["-c", site.etc, "-o", files["plain"], folder])


# (options, file): a pipe cannot seek, so that -o shows offset -1, a pointer cannot be
# followed, and even the move to the end after the `E` record fails (a fatal error after
# the whole file was shown); -s skips bytes by reading them. A file on standard input is
# seekable, as a named file is. Fewer combinations with a pipe: Postfix's fatal errors
# take a second each (msg_fatal() sleeps).
STDIN_CASES = [([], "plain"), (["-o"], "plain"), (["-b"], "plain"), (["-e"], "plain"),
               (["-v"], "plain"), (["-od"], "multipart"), (["-s", "0"], "plain"),
               ([], "pointers"), ([], "real_pointers"), (["-vo"], "real_pointers"),
               ([], "truncated"), ([], "bad_first"), ([], "empty"), (["-e"], "size_wrong"),
               (["-h"], "multipart")]


@pytest.mark.parametrize("options,name", STDIN_CASES,
                         ids=["%s-%s" % (_opt_id(o), n) for o, n in STDIN_CASES])
def test_stdin(pyfix_site, options, name):
    site, files, _ = pyfix_site
    with open(files[name], "rb") as f:
        data = f.read()
    compare(["-c", site.etc] + options, stdin=data, label="%s pipe %s" % (options, name))
    compare(["-c", site.etc] + options, stdin=("file", files[name]),
            label="%s file %s" % (options, name))


def test_start_offset(pyfix_site):
    """-s: a record boundary, the middle of a record, the end and beyond, from a file and
    from a pipe."""
    site, files, _ = pyfix_site
    path = files["plain"]
    with open(path, "rb") as f:
        data = f.read()
    mesg = data.index(b"M\0")
    for offset in (mesg, mesg + 5, len(data) - 2, len(data) + 10):
        args = ["-c", site.etc, "-s", str(offset), "-o"]
        compare(args + [path], label="-s %d -o" % offset)
        compare(args, stdin=data, label="-s %d -o pipe" % offset)
        compare(args, stdin=("file", path), label="-s %d -o stdin file" % offset)
    for options in ([], ["-b"], ["-e"], ["-vd"]):
        compare(["-c", site.etc, "-s", str(mesg + 2)] + options + [path],
                label="-s %d %s" % (mesg + 2, options))
    for bad in ("12x", "-5", "", "+3", " 4", "99999999999999999999"):
        compare(["-c", site.etc, "-s", bad, path], label="-s %r" % bad)


def test_reader_goes_away(pyfix_site):
    """postcat ... | head: killed by SIGPIPE, as Postfix's is."""
    site, files, _ = pyfix_site
    data = build_message("a@example.com", ["b@example.net"], body=[b"x" * 500] * 2000)
    path = os.path.join(site.root, "files", "big")
    with open(path, "wb") as f:
        f.write(data)
    statuses = []
    for program in (ORACLE, candidate_path("postcat")):
        proc = subprocess.Popen([program, "-c", site.etc, path], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=clean_env())
        assert proc.stdout.read(10)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=30)
        proc.stderr.close()
        statuses.append((proc.returncode, _named(err, program, False)))
    assert statuses[0] == statuses[1] == (-13, b"")


def test_queue_ids(pyfix_site):
    """-q: every queue postcat searches (maildrop, incoming, active, deferred, hold,
    saved), a long ID, a missing ID (the second try, then Postfix's message), a bad ID."""
    site, _, ids = pyfix_site
    for name in ("deferred", "hold", "maildrop", "long", "saved"):
        compare(["-c", site.etc, "-q", ids[name]], label="-q %s" % name)
        compare(["-c", site.etc, "-qbo", ids[name]], label="-qbo %s" % name)
    compare(["-c", site.etc, "-q", ids["hold"], ids["deferred"]])
    compare(["-c", site.etc, "-q", ids["hold"], "ABCDEF12345", ids["deferred"]])
    compare(["-c", site.etc, "-q", "bad.id"])
    compare(["-c", site.etc, "-q", ids["hold"], "x/y"])


def test_queue_directory_missing(pyfix_site):
    site, _, ids = pyfix_site
    other = QueueSite(prefix="pc")
    try:
        other.write_main_cf("queue_directory = /nonexistent/spool\n")
        compare(["-c", other.etc, "-q", ids["hold"]])
    finally:
        other.remove()


@pytest.mark.parametrize("args", [["-x"], ["-s"], ["-c"], ["-q"], ["--"], ["-b", "--", "-h"],
                                  ["-c", "/nonexistent"]], ids=lambda a: " ".join(a))
def test_usage_and_errors(pyfix_site, args):
    compare(args, stdin=b"")


def test_tz_and_import_environment(pyfix_site):
    """Times are local time, TZ as import_environment passes it."""
    site, files, _ = pyfix_site
    for tz in ("UTC", "America/New_York", "Asia/Kolkata"):
        compare(["-c", site.etc, "-e", files["every_type"]],
                env=clean_env({"TZ": tz}), label="TZ=%s" % tz)
    site.write_main_cf("import_environment = TZ=Australia/Adelaide\n")
    try:
        compare(["-c", site.etc, "-e", files["every_type"]], label="import_environment")
    finally:
        site.write_main_cf("")


# -- queue files written by Debian's Postfix ----------------------------------------------

def debian_postcat_queue():
    """A QueueSite with mail that Debian's Postfix deferred (a relay that refuses
    connections): DSN options, 8-bit multipart content, headers added by cleanup (-t, a
    missing From:, Date:, Message-ID:), a null sender, several recipients; then, after a
    switch to long queue IDs, one more. Returns (site, [queue IDs])."""
    from queue_sides import DEBIAN_MAIN_EXTRA
    site = QueueSite(DEBIAN_MAIN_EXTRA, prefix="pcd")
    pf = DebianPostfix(site)
    pf.start()
    try:
        pf.sendmail(["-f", "dsn@example.com", "-N", "success,delay", "-R", "hdrs",
                     "-V", "envid-42", "dsnrcpt@example.net"],
                    b"Subject: dsn\n\nwith dsn options\n")
        pf.sendmail(["-f", "mime@example.com", "-B", "8BITMIME", "mime@example.net"],
                    b"\n".join(MULTIPART + [b""] + MULTIPART_BODY) + b"\n")
        pf.sendmail(["-f", "", "-t"],
                    b"To: a@example.net, b@example.org\nCc: c@example.net\n"
                    b"Subject: null sender, headers added\n\n" + b"y" * 3000 + b"\n")
        pf.sendmail(["-f", "many@example.com", "r1@example.net", "r2@example.net",
                     "r3@example.net"], b"Subject: many\n\nrecipients\n")
        pf.wait_deferred(4)
        site.write_main_cf(site.main_extra + "enable_long_queue_ids = yes\n")
        pf.postfix("reload")
        time.sleep(1)
        pf.sendmail(["-f", "long@example.com", "-N", "never", "long@example.net"],
                    b"Subject: long id\n\nlong\n")
        queue = pf.wait_deferred(5)
    finally:
        pf.stop()
    site.write_main_cf(DEBIAN_MAIN_EXTRA)
    os.unlink(os.path.join(site.etc, "master.cf"))
    return site, [m["queue_id"] for m in queue]


@pytest.fixture(scope="module")
def debian_site():
    if not debian_available():
        pytest.skip("Debian's Postfix is not installed")
    site, ids = debian_postcat_queue()
    yield site, ids
    site.remove()


@pytest.mark.parametrize("options", OPTION_SETS, ids=_opt_id)
def test_debian_made_files(debian_site, options):
    site, ids = debian_site
    layout = site.layout()
    for queue_id in ids:
        if "-q" in options:
            compare(["-c", site.etc] + options + [queue_id], label="%s %s" % (options, queue_id))
        else:
            path = os.path.join(site.spool, layout.path("deferred", queue_id))
            compare(["-c", site.etc] + options + [path], label="%s %s" % (options, queue_id))


def test_debian_made_files_stdin(debian_site):
    site, ids = debian_site
    layout = site.layout()
    for queue_id in ids:
        path = os.path.join(site.spool, layout.path("deferred", queue_id))
        with open(path, "rb") as f:
            data = f.read()
        compare(["-c", site.etc, "-o"], stdin=data, label="-o pipe")
        for options in ([], ["-v"], ["-o"], ["-b"]):
            compare(["-c", site.etc] + options, stdin=("file", path), label="%s file" % options)


def test_debian_made_files_offsets(debian_site):
    """-s at every record boundary the -o listing shows."""
    site, ids = debian_site
    layout = site.layout()
    path = os.path.join(site.spool, layout.path("deferred", ids[0]))
    listing = compare(["-c", site.etc, "-vo", path]).stdout
    offsets = sorted({int(line.split()[0]) for line in listing.splitlines()
                      if line[:9].strip().isdigit()})
    assert len(offsets) > 10
    for offset in offsets:
        compare(["-c", site.etc, "-o", "-s", str(offset), path], label="-s %d" % offset)

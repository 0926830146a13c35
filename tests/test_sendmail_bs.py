"""`sendmail -bs`: smtpd's stand-alone mode (`smtpd -S`), pyfix's beside Debian's.

Debian's /usr/sbin/sendmail -bs execs Debian's smtpd -S, pyfix's sendmail execs pyfix's
smtpd -S; each is fed the same SMTP dialog on standard input (a pipe, as a mail client
gives it) with a config directory and queue of its own (test_sendmail.Spool). The
replies on standard output must be identical once the queue ID and date are masked
(both run on this host), as must the exit status, the diagnostics and the maildrop file
that postdrop left: the same records (envelope, Received: header, content), with
postdrop's arrival time masked. The cases: plain transactions, DSN parameters, errors,
ETRN (refused in this mode), aborted transactions (RSET, EOF: no file is left), BDAT,
SMTPUTF8, a large message, and main.cf settings that stand-alone mode ignores
(restrictions, XCLIENT/XFORWARD, STARTTLS, AUTH, bare LF) or honours (SIZE, HELO).

Also: standard input and output as one socket; a client that keeps its input open
until the output ends; end to end under a pyfix master with pickup and cleanup (queue
file and smtpd log lines, Debian's beside pyfix's); and an ordinary user (nobody)
submitting through the set-gid postdrop launcher.
"""
import grp
import importlib.util
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess

import pytest

from conftest import OLD_MTIME, TRACEBACK, candidate_path
from master_run import MasterRun, wait_until
from test_sendmail import (ORACLE_SENDMAIL, ROOT, Spool, _launcher_unavailable, read_queue_file,
                           run, world_readable_python)

pytestmark = pytest.mark.skipif(ORACLE_SENDMAIL is None,
                                reason="Debian's sendmail is not installed")

QUEUE_ID = re.compile(rb"(queued as |\bid )[0-9A-F]{6,12}\b")
DATE = re.compile(rb"[A-Z][a-z]{2}, [ 0-9]?[0-9] [A-Z][a-z]{2} [0-9]{4} "
                  rb"[0-9]{2}:[0-9]{2}:[0-9]{2} [-+][0-9]{4} \([A-Z]+\)")


def mask(data):
    data = QUEUE_ID.sub(rb"\1<QID>", data)
    return DATE.sub(b"<DATE>", data)


def dialog(*lines):
    return "".join(line + "\r\n" for line in lines).encode()


MESSAGE = ("DATA", "Subject: hello", "From: someone@example.com", "", "body", "..dot", ".")

CASES = [
    ("plain", dialog("EHLO client.example", "MAIL FROM:<s@example.com>",
                     "RCPT TO:<r@example.com>", *MESSAGE, "QUIT")),
    ("two recipients and DSN", dialog(
        "EHLO client.example", "MAIL FROM:<s@example.com> RET=HDRS ENVID=abc BODY=8BITMIME",
        "RCPT TO:<r1@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y",
        "RCPT TO:<r2@example.com>", *MESSAGE, "QUIT")),
    ("HELO and null sender", dialog("HELO client", "MAIL FROM:<>", "RCPT TO:<r@example.com>",
                                    *MESSAGE, "QUIT")),
    ("errors", dialog("EHLO", "RCPT TO:<r@x>", "DATA", "MAIL FROM:<a b>", "FOO bar",
                      "MAIL FROM:<s@x>", "MAIL FROM:<s@x>", "RCPT TO:<>", "RCPT TO:<r@x> X=1",
                      "VRFY r@x", "NOOP", "RSET", "QUIT")),
    ("ETRN", dialog("EHLO client", "ETRN example.com", "QUIT")),
    ("RSET drops the file", dialog("EHLO client", "MAIL FROM:<s@x>", "RCPT TO:<r@x>",
                                   "RSET", "QUIT")),
    ("EOF in DATA", dialog("EHLO client", "MAIL FROM:<s@x>", "RCPT TO:<r@x>", "DATA",
                           "Subject: x", "", "unfinished")),
    ("EOF without QUIT", dialog("EHLO client", "MAIL FROM:<s@x>", "RCPT TO:<r@x>",
                                *MESSAGE)),
    ("large message", dialog("EHLO client", "MAIL FROM:<s@x>", "RCPT TO:<r@x>", "DATA",
                             "Subject: big", "", *["%05d " % n + "y" * 70 for n in range(6000)],
                             ".", "QUIT")),
    ("SMTPUTF8 and 8-bit", "EHLO client\r\nMAIL FROM:<s\u00e9@x> SMTPUTF8\r\n"
     "RCPT TO:<r\u00e9@x>\r\nDATA\r\nSubject: caf\u00e9\r\n\r\n\u00e9\r\n.\r\n"
     "MAIL FROM:<t\u00e9@x>\r\nQUIT\r\n".encode()),
    ("unknown recipient domain", dialog("EHLO client", "MAIL FROM:<s@x>",
                                        "RCPT TO:<r@[127.0.0.1]>", *MESSAGE, "QUIT")),
]


# Run as root, Postfix's smtpd -S opens the restriction tables (smtpd_check_init), and
# the default local_recipient_maps would have it wait for a proxymap service that this
# queue doesn't have; stand-alone mode never consults them.
EXTRA = "local_recipient_maps =\n"


def side(program, stdin, extra=""):
    spool = Spool(EXTRA + extra)
    try:
        result = run([program, "-bs"], spool, stdin)
    finally:
        spool.cleanup()
    result["stdout"] = mask(result["stdout"])
    result["files"] = [(mode, [(t, mask(p)) for t, p in records])
                       for mode, records in result["files"]]
    return result


# Settings that change smtpd's answers to a network client but not in stand-alone mode
# (restrictions, XCLIENT/XFORWARD rights, STARTTLS, AUTH, bare-LF rejection), and some
# that apply in both.
CONFIG_CASES = [
    ("restrictions are skipped", dialog("HELO client", "MAIL FROM:<s@x>", "RCPT TO:<r@x>",
                                        *MESSAGE, "QUIT"),
     "smtpd_client_restrictions = reject\nsmtpd_helo_restrictions = reject\n"
     "smtpd_sender_restrictions = reject\nsmtpd_recipient_restrictions = reject\n"
     "smtpd_data_restrictions = reject\nsmtpd_end_of_data_restrictions = reject\n"
     "smtpd_delay_reject = no\n"),
    ("no XCLIENT, XFORWARD, STARTTLS or AUTH",
     dialog("EHLO client", "XCLIENT NAME=x", "XFORWARD NAME=x", "STARTTLS", "AUTH PLAIN",
            "QUIT"),
     "smtpd_authorized_xclient_hosts = 127.0.0.0/8\n"
     "smtpd_authorized_xforward_hosts = 127.0.0.0/8\n"
     "smtpd_tls_security_level = may\nsmtpd_sasl_auth_enable = yes\n"),
    ("bare LF accepted", b"EHLO client\nMAIL FROM:<s@x>\nRCPT TO:<r@x>\nDATA\n"
     b"Subject: x\n\nbody\n.\nQUIT\n", "smtpd_forbid_bare_newline = reject\n"),
    ("helo required", dialog("MAIL FROM:<s@x>", "HELO h", "MAIL FROM:<s@x>", "QUIT"),
     "smtpd_helo_required = yes\n"),
    ("message size limit", dialog("EHLO client", "MAIL FROM:<s@x> SIZE=100000",
                                  "MAIL FROM:<s@x>", "RCPT TO:<r@x>", "DATA",
                                  *["x" * 70] * 40, ".", "QUIT"),
     "message_size_limit = 1000\n"),
    ("BDAT", b"EHLO client\r\nMAIL FROM:<s@x>\r\nRCPT TO:<r@x>\r\n"
     b"BDAT 17\r\nSubject: x\r\n\r\nb\r\nBDAT 6 LAST\r\nmore\r\nQUIT\r\n", ""),
]

ALL_CASES = [(name, stdin, "") for name, stdin in CASES] + CONFIG_CASES


@pytest.mark.parametrize("name,stdin,extra", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_bs_like_postfix(name, stdin, extra):
    oracle = side(ORACLE_SENDMAIL, stdin, extra)
    pyfix = side(candidate_path("sendmail"), stdin, extra)
    assert not pyfix["traceback"], "\n".join(pyfix["stderr"])
    assert pyfix["stdout"].decode() == oracle["stdout"].decode()
    assert pyfix["status"] == oracle["status"]
    assert pyfix["files"] == oracle["files"]
    assert pyfix["stderr"] == oracle["stderr"]


def socket_side(program, stdin):
    """The dialog over one socket that is both standard input and output (as inetd or
    a program with a socket pair runs sendmail -bs)."""
    spool = Spool(EXTRA)
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen([program, "-bs"], stdin=theirs, stdout=theirs,
                                stderr=subprocess.PIPE, env=spool.env())
        theirs.close()
        ours.sendall(stdin)
        ours.shutdown(socket.SHUT_WR)
        ours.settimeout(60)
        out = b""
        while chunk := ours.recv(65536):
            out += chunk
        _, err = proc.communicate(timeout=60)
        return proc.returncode, mask(out), err, spool.take_files()
    finally:
        ours.close()
        spool.cleanup()


def test_bs_on_a_socket_like_postfix():
    stdin = dialog("EHLO client.example", "MAIL FROM:<s@example.com>",
                   "RCPT TO:<r@example.com>", *MESSAGE, "QUIT")
    oracle = socket_side(ORACLE_SENDMAIL, stdin)
    pyfix = socket_side(candidate_path("sendmail"), stdin)
    assert b"Traceback" not in pyfix[2], pyfix[2].decode()
    assert pyfix[1].decode() == oracle[1].decode()
    assert b"250 2.0.0 Ok: queued as <QID>" in pyfix[1]
    assert pyfix[0] == oracle[0]
    assert [(m, [(t, mask(p)) for t, p in r]) for m, r in pyfix[3]] \
        == [(m, [(t, mask(p)) for t, p in r]) for m, r in oracle[3]]


def interactive_side(program):
    """A client that keeps standard input open until the server's output ends."""
    spool = Spool(EXTRA)
    try:
        proc = subprocess.Popen([program, "-bs"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=spool.env())
        try:
            proc.stdin.write(dialog("EHLO client", "QUIT"))
            proc.stdin.flush()
            out = proc.stdout.read()
            return out, proc.wait(timeout=30)
        finally:
            proc.stdin.close()
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        spool.cleanup()


def test_bs_ends_after_quit_while_input_stays_open():
    oracle = interactive_side(ORACLE_SENDMAIL)
    pyfix = interactive_side(candidate_path("sendmail"))
    assert pyfix == oracle
    assert pyfix[0].endswith(b"221 2.0.0 Bye\r\n")


# -- end to end under a pyfix master ------------------------------------------------------------

def _daemon_missing():
    missing = [name for name in ("pyfix.daemons.pickup", "pyfix.daemons.cleanup")
               if importlib.util.find_spec(name) is None]
    return ", ".join(missing)


MSG_ID = re.compile(rb"<[0-9]{14}\.[0-9A-F]{6,12}@|^create_time=[0-9]+$")
LOG_PID = re.compile(r"\[[0-9]+\]")
LOG_QID = re.compile(r"\b[0-9A-F]{6,12}(?=: )")


def _mask_data_offset(payload):
    fields = payload.split()
    if len(fields) > 1:
        fields[1] = b"<OFFSET>"
    return b" ".join(fields)


def _incoming_files(spool):
    incoming = os.path.join(spool, "incoming")
    found = []
    for folder, _, names in os.walk(incoming):
        for name in names:
            path = os.path.join(folder, name)
            if stat.S_IMODE(os.stat(path).st_mode) & 0o700 == 0o700:
                found.append(path)
    return found


def _queued(run_, program, stdin, seen):
    """Submit with `program -bs`; the new complete incoming file's records (masked),
    the replies (masked) and the smtpd log lines of this submission."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAIL_")}
    env["MAIL_CONFIG"] = run_.etc
    log_start = len(run_.log())
    proc = subprocess.run([program, "-bs"], input=stdin, capture_output=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    files = wait_until(lambda: [f for f in _incoming_files(run_.spool) if f not in seen],
                       timeout=20)
    assert len(files) == 1, "no new queue file in incoming/:\n" + run_.log()
    seen.append(files[0])
    _, recs = read_queue_file(files[0])
    recs = [(t, MSG_ID.sub(b"<MASKED>", mask(p))) for t, p in recs]
    # The content's offset moves with what the masks hide (the arrival time's
    # microseconds have no fixed width): mask it in the size record.
    recs = [(t, _mask_data_offset(p) if t == "C" else p) for t, p in recs]
    run_.wait_log(r"smtpd\[[0-9]+\]: disconnect from", count=len(seen))
    smtpd_log = [LOG_QID.sub("<QID>", LOG_PID.sub("[PID]", line.split(" ", 3)[3]))
                 for line in run_.log()[log_start:].splitlines() if "/smtpd[" in line]
    return mask(proc.stdout), recs, smtpd_log


@pytest.mark.skipif(bool(_daemon_missing()),
                    reason="pyfix has no %s daemon yet" % _daemon_missing())
def test_bs_under_master_like_postfix():
    """Debian's and pyfix's `sendmail -bs` submit the same dialog to one pyfix master with
    pickup and cleanup: the same replies, the same smtpd log lines (connect, client=,
    the ETRN warning, disconnect with the command counts), and the same queue
    file in incoming/ (envelope, cleanup's and smtpd's Received: headers, Message-Id:,
    Date:), queue IDs, dates and process IDs masked."""
    master_cf = ("pickup unix n - n 60 1 pickup\n"
                 "cleanup unix n - n - 0 cleanup\n")
    run_ = MasterRun(master_cf, "myhostname = mx.example.com\nmydomain = example.com\n"
                     + EXTRA)
    try:
        for queue in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt",
                      "bounce", "defer", "trace", "flush", "saved"):
            path = os.path.join(run_.spool, queue)
            os.makedirs(path, mode=0o700)
            if ROOT:
                shutil.chown(path, "postfix", "postdrop" if queue == "maildrop" else None)
        if ROOT:
            os.chmod(os.path.join(run_.spool, "maildrop"), 0o1730)
        run_.start()
        stdin = dialog("EHLO client.example", "MAIL FROM:<alice@example.com>",
                       "RCPT TO:<bob@example.com>", "RCPT TO:<carol@example.com>", "DATA",
                       "From: Alice <alice@example.com>", "Subject: -bs", "", "text", ".",
                       "ETRN example.com", "FOO", "QUIT")
        seen = []
        oracle = _queued(run_, ORACLE_SENDMAIL, stdin, seen)
        pyfix = _queued(run_, candidate_path("sendmail"), stdin, seen)
        assert pyfix[0].decode() == oracle[0].decode()
        assert pyfix[2] == oracle[2]
        assert pyfix[1] == oracle[1]
        content = [p for t, p in pyfix[1] if t == "N"]
        assert content[0] == b"Received: by mx.example.com (Postfix, from userid %d)" \
            % os.getuid()
        assert content[2] == b"Received: from client.example (localhost [127.0.0.1])"
    finally:
        run_.cleanup()


# -- an ordinary user ----------------------------------------------------------------------

# What pyfix's smtpd imports beyond what test_sendmail's python for nobody has.
SMTPD_PACKAGES = ("berkeleydb", "lmdb", "dns")


def python_for_nobody(root):
    python = world_readable_python(root)
    site = subprocess.run([python, "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for name in SMTPD_PACKAGES:
        module = importlib.import_module(name)
        shutil.copytree(os.path.dirname(module.__file__), os.path.join(site, name))
    return python


@pytest.mark.skipif(bool(_launcher_unavailable()), reason=_launcher_unavailable() or "-")
def test_bs_as_unprivileged_user():
    """User nobody runs `sendmail -bs` (pyfix's, with a Python nobody can run): smtpd -S
    runs as nobody and submits through $command_directory/postdrop, the set-gid
    launcher, into a Postfix-style maildrop (postfix:postdrop 1730) nobody cannot write
    otherwise; the file has the envelope and smtpd's Received: header."""
    from pyfix.commands import setgid
    nobody = pwd.getpwnam("nobody")
    postfix = pwd.getpwnam("postfix")
    postdrop_gid = grp.getgrnam("postdrop").gr_gid
    spool = Spool(EXTRA)
    try:
        python = python_for_nobody(spool.root)
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
        setgid.install(bindir, ["postdrop"], "postdrop", spool.etc, python=python)
        sendmail = [python, "-c", "import sys; sys.argv[0] = 'sendmail'; "
                    "from pyfix.commands.sendmail import main; sys.exit(main())", "-bs"]

        def as_nobody():
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
        env = spool.env()
        env.pop("PYTHONPATH", None)
        stdin = dialog("EHLO client.example", "MAIL FROM:<nobody@example.com>",
                       "RCPT TO:<rcpt@example.com>", *MESSAGE, "ETRN example.com", "QUIT")
        proc = subprocess.run(sendmail, input=stdin, capture_output=True, env=env,
                              preexec_fn=as_nobody, cwd="/", timeout=60)
        assert TRACEBACK not in proc.stderr.decode(), proc.stderr.decode()
        assert proc.returncode == 0, proc.stderr.decode()
        replies = mask(proc.stdout).decode().splitlines()
        assert replies[-3:] == ["250 2.0.0 Ok: queued as <QID>",
                                "458 Unable to queue messages", "221 2.0.0 Bye"]
        names = os.listdir(maildrop)
        assert len(names) == 1
        path = os.path.join(maildrop, names[0])
        st = os.stat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == \
            (nobody.pw_uid, postdrop_gid, 0o744)
        _, recs = read_queue_file(path)
        assert ("S", b"nobody@example.com") in recs and ("R", b"rcpt@example.com") in recs
        assert ("N", b"Received: from client.example (localhost [127.0.0.1])") in recs
    finally:
        spool.cleanup()

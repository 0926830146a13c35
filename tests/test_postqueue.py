"""postqueue(1) and mailq: pyfix's beside Debian's /usr/sbin/postqueue on the same queue.

The listings (-p, -j, mailq) are compared byte for byte on:
  - a queue written by pyfix's record codec with every case the listing distinguishes
    (active, deferred with reasons, hold, force-expired, null sender, long queue IDs,
    quoted and 8-bit addresses, reasons too long to align, defer logs in the old and the
    new format, files that are no messages), under short and long ID layouts and with
    SMTPUTF8 off;
  - a queue that Debian's own Postfix made (deferred mail with Postfix-written defer logs,
    then Debian's postsuper -h and -e, then long queue IDs);
both with the mail system down (each postqueue runs its showq directly) — the showq
service itself is tested in test_showq.py.
Errors, usage, the flush requests (-f to fake qmgr and pickup sockets, -s and -i to a fake
flush server) and the permission checks are compared too, exit status included.
"""

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from conftest import assert_same, candidate_path, clean_env, requires_oracle, run_program
from queue_sides import QueueSite, compose_queue, debian_available, debian_queue

pytestmark = requires_oracle("postqueue")


@pytest.fixture(scope="module")
def composed():
    site = QueueSite()
    ids = compose_queue(site)
    yield site, ids
    site.remove()


@pytest.fixture(scope="module")
def debian_made():
    if not debian_available():
        pytest.skip("Debian's Postfix is not installed")
    site, info = debian_queue()
    yield site, info
    site.remove()


def both(site, args, stdin=None, env=None):
    want = site.oracle("postqueue", args, stdin, env)
    got = site.candidate("postqueue", args, stdin, env)
    assert_same(want, got, "postqueue %s" % " ".join(args))
    return want, got


# -- listings ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["-p", "-j"])
@pytest.mark.parametrize("setting", ["", "enable_long_queue_ids = yes\n",
                                     "smtputf8_enable = no\n",
                                     "empty_address_recipient = nobody\n",
                                     "duplicate_filter_limit = 1\n"])
def test_composed_queue(composed, mode, setting):
    site, ids = composed
    site.write_main_cf(setting)
    try:
        want, got = both(site, [mode])
    finally:
        site.write_main_cf("")
    assert want.returncode == 0
    text = got.stdout.decode("utf-8", "surrogateescape")
    # The listing has what the test put there, and not what it must skip.
    for name in ("active", "reasons", "hold", "expired", "null", "long", "quoted", "utf8"):
        assert ids[name] in text
    for name in ("embryonic", "no_sender", "misplaced"):
        assert ids[name] not in text
    assert "123456.789" not in text


def test_composed_listing_details(composed):
    site, ids = composed
    got = site.candidate("postqueue", ["-p"])
    lines = got.stdout.decode("utf-8", "surrogateescape").splitlines()
    assert lines[0] == "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
    assert "%s*" % ids["active"] in got.stdout.decode()
    assert "%s!#" % ids["hold_expired"] in got.stdout.decode()
    assert lines[-1].startswith("-- ") and lines[-1].endswith(" Requests.")
    reason = [line for line in lines if line.endswith("(mailbox full)")][0]
    assert len(reason) == 78
    objects = [json.loads(line) for line in
               site.candidate("postqueue", ["-j"]).stdout.decode().splitlines()]
    by_id = {o["queue_id"]: o for o in objects}
    assert by_id[ids["null"]]["sender"] == "MAILER-DAEMON"
    assert by_id[ids["expired"]]["forced_expire"] is True
    assert by_id[ids["reasons"]]["recipients"][0]["delay_reason"].startswith("connect to")
    assert "delay_reason" not in by_id[ids["reasons"]]["recipients"][-1]


def test_empty_queue():
    site = QueueSite()
    try:
        want, got = both(site, ["-p"])
        assert got.stdout == b"Mail queue is empty\n"
        want, got = both(site, ["-j"])
        assert got.stdout == b""
    finally:
        site.remove()


def test_one_request_and_kbytes():
    site = QueueSite()
    try:
        site.add_message("deferred", "a@example.com", ["b@example.net"],
                         body=[b"y" * 999] * 3)
        want, got = both(site, ["-p"])
        assert got.stdout.endswith(b"\n-- 2 Kbytes in 1 Request.\n")
    finally:
        site.remove()


@pytest.mark.parametrize("mode", ["-p", "-j"])
@pytest.mark.parametrize("setting", ["", "enable_long_queue_ids = yes\n"])
def test_debian_made_queue(debian_made, mode, setting):
    site, info = debian_made
    site.write_main_cf(site.main_extra + setting) if setting else None
    try:
        want, got = both(site, [mode])
    finally:
        if setting:
            site.write_main_cf(site.main_extra.replace(setting, ""))
    text = got.stdout.decode()
    for queue_id in info["ids"]:
        assert queue_id in text
    if mode == "-p":
        assert "%s*" % info["active"] in text
        assert "%s!" % info["hold"] in text
        assert "%s#" % info["expire"] in text
        assert "Connection refused)" in text


def test_mailq(composed):
    """mailq is sendmail -bp, which runs `postqueue -c <config_dir> -p`: pyfix's entry
    point for it (commands/postqueue.py mailq()) beside Debian's mailq."""
    site, _ = composed
    env = clean_env({"MAIL_CONFIG": site.etc})
    want = run_program(["/usr/bin/mailq"], env=env, tool="postqueue")
    code = ("import sys; from pyfix.commands.postqueue import mailq; "
            "sys.exit(mailq(%r))" % site.etc)
    got = run_program([sys.executable, "-c", code], env=env, tool="postqueue")
    assert_same(want, got, "mailq")
    mailq = candidate_path("mailq")
    if os.access(mailq, os.X_OK):
        assert_same(want, run_program([mailq], env=env, tool="postqueue"), "pyfix mailq")


def test_output_to_closed_pipe(composed):
    """A reader that goes away (mailq | head -1) ends the listing quietly."""
    site, _ = composed
    for program in ("/usr/sbin/postqueue", candidate_path("postqueue")):
        result = subprocess.run("%s -c %s -p | head -1" % (program, site.etc), shell=True,
                                capture_output=True, env=clean_env())
        assert result.stdout.startswith(b"-Queue ID-")
        assert b"Traceback" not in result.stderr
        assert b"Broken pipe" not in result.stderr


# -- errors and usage ----------------------------------------------------------------------

ERROR_CASES = [
    [],
    ["-x"],
    ["-p", "-j"],
    ["-f", "-p"],
    ["-p", "extra"],
    ["-s"],
    ["-s", "bad..site"],
    ["-s", "[1.2.3.4"],
    ["-s", "[1.2.3.4]x"],
    ["-s", "x" * 120 + ".example.com"],
    ["-s", "example.com"],
    ["-s", "[192.0.2.1]"],
    ["-s", "[ipv6:2001:db8::1]"],
    ["-i", "bad.id"],
    ["-i", "A" * 300],
    ["-i", "ABCDEF12345"],
    ["-f"],
]


@pytest.fixture(scope="module")
def error_site():
    site = QueueSite("fast_flush_domains = example.com, [192.0.2.1]\n")
    yield site
    site.remove()


@pytest.mark.parametrize("args", ERROR_CASES, ids=lambda a: " ".join(a) or "none")
def test_errors(error_site, args):
    want, got = both(error_site, args)
    assert want.returncode in (0, 69)


def test_missing_config():
    for program in ("/usr/sbin/postqueue", candidate_path("postqueue")):
        result = run_program([program, "-c", "/nonexistent", "-p"], tool="postqueue")
        assert result.returncode == 69
        assert "fatal: open /nonexistent/main.cf: No such file or directory" in result.stderr


def test_missing_queue_directory():
    site = QueueSite()
    try:
        site.write_main_cf("queue_directory = /nonexistent/spool\n")
        both(site, ["-p"])
    finally:
        site.remove()


# -- flush requests ------------------------------------------------------------------------

class Recorder:
    """Unix sockets at public/<name> that record what each client sends: a trigger
    (bytes up to the end), or a flush request answered with a given status."""

    def __init__(self, site, flush_status=None):
        self.site = site
        self.flush_status = flush_status
        self.received = {}
        self.socks = []
        self.threads = []

    def listen(self, name, flush=False):
        path = os.path.join(self.site.spool, "public", name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(5)
        self.socks.append(sock)
        self.received[name] = []
        thread = threading.Thread(target=self._serve, args=(sock, name, flush), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _serve(self, sock, name, flush):
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                if flush:
                    conn.sendall(b"protocol\0queue_flush_protocol\0\0")
                data = b""
                try:
                    while True:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                        if (flush and data.endswith(b"\0\0")) or (not flush and b"\0" in data):
                            break
                    if flush:
                        conn.sendall(b"status\0%d\0\0" % self.flush_status)
                except OSError:
                    pass
                self.received[name].append(data)

    def close(self):
        for sock in self.socks:
            sock.close()
        for name in self.received:
            try:
                os.unlink(os.path.join(self.site.spool, "public", name))
            except FileNotFoundError:
                pass


def test_flush_triggers(error_site):
    recorder = Recorder(error_site)
    recorder.listen("qmgr")
    recorder.listen("pickup")
    try:
        both(error_site, ["-f"])
    finally:
        recorder.close()
    assert recorder.received["qmgr"] == [b"FADI\0", b"FADI\0"]
    assert recorder.received["pickup"] == [b"W\0", b"W\0"]


@pytest.mark.parametrize("status", [0, 3, 4, 7])
@pytest.mark.parametrize("args", [["-s", "example.com"], ["-s", "[192.0.2.1]"],
                                  ["-i", "ABCDEF12345"], ["-s", "other.example"]])
def test_flush_service(error_site, status, args):
    recorder = Recorder(error_site, flush_status=status)
    recorder.listen("flush", flush=True)
    try:
        both(error_site, args)
    finally:
        recorder.close()
    requests = recorder.received["flush"]
    if args[1] == "other.example":
        assert requests == []
    else:
        assert len(requests) == 2 and requests[0] == requests[1]
        if args[0] == "-s":
            assert requests[0] == b"request\0send_site\0site\0%s\0\0" % args[1].encode()
        else:
            assert requests[0] == b"request\0send_file\0queue_id\0%s\0\0" % args[1].encode()


# -- who may list and flush ----------------------------------------------------------------

def as_nobody(site, args):
    """pyfix's postqueue as user nobody (Debian's refuses -c from an unprivileged user
    unless /etc/postfix/main.cf allows that directory, so it is not the oracle here)."""
    return run_program(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        candidate_path("postqueue"), "-c", site.etc] + args, tool="postqueue")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_acl_denied():
    site = QueueSite("authorized_mailq_users = root\nauthorized_flush_users = !nobody, static:all\n")
    try:
        result = as_nobody(site, ["-p"])
        assert result.returncode == 69
        assert "postqueue: fatal: User nobody(65534) is not allowed to view the mail queue" \
            in result.stderr
        result = as_nobody(site, ["-f"])
        assert result.returncode == 69
        assert "is not allowed to flush the mail queue" in result.stderr
    finally:
        site.remove()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_unprivileged_user_with_system_down():
    site = QueueSite()
    try:
        os.chmod(os.path.join(site.spool, "public"), 0o755)
        result = as_nobody(site, ["-p"])
        assert result.returncode == 69
        assert ("postqueue: fatal: Queue report unavailable - mail system is down (Connect"
                " to the Postfix showq service: No such file or directory)") in result.stderr
        os.chmod(os.path.join(site.spool, "public"), 0o700)
        result = as_nobody(site, ["-p"])
        assert ("postqueue: fatal: Connect to the Postfix showq service: Permission denied"
                in result.stderr)
    finally:
        site.remove()

"""Address verification (verify(8), common/verify_clnt.py, smtpd's
reject_unverified_recipient) beside Debian's Postfix.

Each side is a whole system (tests/e2e_rig.py) with `verify unix - - n - 1 verify` and
smtpd_recipient_restrictions = reject_unverified_recipient; three domains go to three
destinations: a Debian smtp-sink that accepts everything (ok.example), one that rejects
RCPT with 5xx (bad.example) and a port where nothing listens (dead.example). With
address_verify_poll_count = 1 the first RCPT of each address gets "in progress" at once;
after the probes finished, the second gets the cached result: 250, 550 (bounced, with
unverified_recipient_reject_code = 550) and 450 (deferred). Replies, smtpd's reject
lines, the probes' delivery lines and verify's own lines must match Postfix's, as must
the entries of the btree verify_cache (read with Debian's postmap). After a restart of
the master the cached answers come back without a new probe.

    sudo .venv/bin/python -m pytest tests/test_verify.py
"""

import os
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time

import pytest

from e2e_rig import System, available
from pyfix.common import attr
from master_run import free_port, wait_until
from qmgr_rig import Sink, normalize

pytestmark = pytest.mark.skipif(not available(), reason="needs root, Debian's Postfix "
                                "and smtp-sink")

SIDES = ("postfix", "pyfix")
RCPTS = ("u1@ok.example", "u2@bad.example", "u3@dead.example", "list@ok.example")
PROBE_LINE = re.compile(r"postfix/\w+\[\d+\]: [0-9A-F]+: to=<[^>]*>, relay=.*"
                        r"status=(deliverable|undeliverable)")
NOT_CACHED = r"status=undeliverable-but-not-cached"
ROOT_PATH = re.compile(r"/tmp/pyfix-(master|postfix)-\w+/")
POSTMAP = "/usr/sbin/postmap"
MASTER_CF = "verify unix - - n - 1 verify\n"


def main_cf(ok_port, bad_port, dead_port):
    return """\
smtpd_recipient_restrictions = reject_unverified_recipient, permit_mynetworks,
    reject_unauth_destination
transport_maps = inline:{{ok.example=smtp:[127.0.0.1]:{0}, bad.example=smtp:[127.0.0.1]:{1},
    dead.example=smtp:[127.0.0.1]:{2}}}
virtual_alias_maps = inline:{{list@ok.example={{a@ok.example,b@ok.example}}}}
address_verify_map = btree:$data_directory/verify_cache
address_verify_poll_count = 1
address_verify_sender_ttl = 31d
unverified_recipient_reject_code = 550
smtp_connect_timeout = 5s
""".format(ok_port, bad_port, dead_port)


@pytest.fixture(scope="module")
def sinks():
    root = tempfile.mkdtemp(prefix="pyfix-verify-sinks-", dir="/tmp")
    os.chmod(root, 0o755)
    ok = bad = None
    # The dead port is bound but not listening: connections are refused, and no other
    # test can take the port meanwhile.
    dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        dead.bind(("127.0.0.1", 0))
        ok = Sink(free_port(), os.path.join(root, "ok"))
        bad = Sink(free_port(), os.path.join(root, "bad"), ("-f", "RCPT"))
        yield ok.port, bad.port, dead.getsockname()[1]
    finally:
        for sink in (ok, bad):
            if sink is not None:
                sink.stop()
        dead.close()
        shutil.rmtree(root, ignore_errors=True)


def rcpt_replies(port, rcpts=RCPTS):
    """(code, text) of RCPT TO for each address, in one session."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.example.net")
        client.mail("alice@example.com")
        return [(code, text.decode()) for code, text in
                (client.rcpt(rcpt) for rcpt in rcpts)]


def log_lines(system, start=0):
    """The lines that operators read: smtpd's rejects, the probes (qmgr's from= line and
    the delivery agent's result), verify's lines."""
    out = []
    for line in system.log()[start:].splitlines():
        if ("reject:" in line and "/smtpd[" in line) or PROBE_LINE.search(line) \
                or ("/verify[" in line and "overriding earlier entry" not in line) \
                or "from=<double-bounce" in line:
            out.append(ROOT_PATH.sub("ROOT/", line))
    return sorted(normalize(out, []))


def cache_entries(system):
    """The verify_cache as Debian's postmap reads it, time stamps masked."""
    path = os.path.join(system.master.root, "lib", "verify_cache")
    result = subprocess.run([POSTMAP, "-c", system.master.etc, "-s", "btree:" + path],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    out = []
    for line in result.stdout.splitlines():
        key, _, value = line.partition("\t")
        if key == "_LAST_CACHE_CLEANUP_COMPLETED_":
            out.append((key, "T" if value.isdigit() else value))
            continue
        status, probed, updated, text = value.split(":", 3)
        out.append((key, status, probed != "0", updated != "0", text))
    return sorted(out)


STATUS = [(attr.INT, "status")]
ANSWER = STATUS + [(attr.INT, "recipient_status"), (attr.STR, "reason")]
EXCHANGES = (
    # (request, the answer's attributes): updates that are refused, kept and ignored,
    # and queries of what was kept; none of them needs a probe.
    ([("request", "update"), ("address", "x@example.org"), ("recipient_status", 7),
      ("reason", "seven")], STATUS),
    ([("request", "update"), ("address", "ok2@example.org"), ("recipient_status", 0),
      ("reason", "250 fine")], STATUS),
    ([("request", "update"), ("address", "ok2@example.org"), ("recipient_status", 2),
      ("reason", "550 a failed probe does not clobber OK")], STATUS),
    ([("request", "query"), ("address", "ok2@example.org")], ANSWER),
    ([("request", "update"), ("address", "def@example.org"), ("recipient_status", 1),
      ("reason", "4.4.1 try\x01 later")], STATUS),
    ([("request", "query"), ("address", "def@example.org")], ANSWER),
    ([("request", "update"), ("address", "a:b@example.org"), ("recipient_status", 0),
      ("reason", "ok")], STATUS),
    ([("request", "query"), ("address", "a:b@example.org")], ANSWER),
)


def verify_connection(system):
    path = os.path.join(system.master.spool, "private", "verify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    stream = attr.AttrStream(sock, path, 30)
    count, hello = stream.scan([(attr.STR, "protocol")], attr.FLAG_STRICT)
    return sock, stream, hello


def protocol_exchanges(system):
    """The verify service spoken to directly: its answers, as they arrive."""
    sock, stream, hello = verify_connection(system)
    answers = [hello]
    with sock:
        for request, wanted in EXCHANGES:
            assert stream.send(request)
            answers.append(stream.scan(wanted, attr.FLAG_MISSING))
    # An unknown request leaves its list's end unread (Postfix's ATTR_FLAG_MORE):
    # it goes last, on its own connection.
    sock, stream, _ = verify_connection(system)
    with sock:
        assert stream.send([("request", "frobnicate"), ("address", "x")])
        answers.append(stream.scan(STATUS, attr.FLAG_MISSING))
    return answers


def is_locked(path):
    """Whether someone holds an exclusive lock on the file (verify, while it runs)."""
    import fcntl
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def probes(system):
    return len(PROBE_LINE.findall(system.log()))


def start_again(system):
    system.master.start()
    assert wait_until(system._listening, 30), system.log()[-3000:]


def scenario(system):
    result = {"first": rcpt_replies(system.port)}
    system.wait_log(PROBE_LINE.pattern, timeout=60, count=len(RCPTS))
    result["second"] = rcpt_replies(system.port)
    result["protocol"] = protocol_exchanges(system)
    system.wait_log(r'unrecognized request: "frobnicate"')   # the log is asynchronous
    result["log"] = log_lines(system)
    result["locked"] = is_locked(os.path.join(system.master.root, "lib", "verify_cache.db"))
    before = len(system.log())
    seen = probes(system)
    system.master.stop()
    # verify holds the table's lock (Postfix's DICT_FLAG_OPEN_LOCK) while it runs.
    result["cache"] = cache_entries(system)
    start_again(system)
    result["after_restart"] = rcpt_replies(system.port)
    time.sleep(2)                       # a probe would have been sent and answered by now
    result["new_probes"] = probes(system) - seen
    result["log_after_restart"] = [line for line in log_lines(system, before)
                                   if "reject:" in line]
    return result


def start_system(side, main_cf_extra, master_cf_extra, attempts=3):
    """A started System whose master logged "daemon started": a free port can be taken
    by another test's server between free_port() and the bind (seen on this shared
    machine: a stranger's 220 greeting, then silence), so such a start is retried."""
    for _ in range(attempts):
        system = System(side, main_cf_extra=main_cf_extra,
                        master_cf_extra=master_cf_extra).start()
        if wait_until(lambda: "daemon started" in system.log(), 20):
            return system
        system.cleanup()
    raise AssertionError("%s: the master did not start" % side)


def run_sides(scenario, main_cf_extra, master_cf_extra=MASTER_CF):
    """scenario(system) on a fresh system of each side; {side: its result}."""
    results = {}
    for side in SIDES:
        system = start_system(side, main_cf_extra, master_cf_extra)
        try:
            results[side] = scenario(system)
        except Exception as exc:
            raise AssertionError("%s: %s\n%s" % (side, exc, system.log()[-6000:])) from exc
        finally:
            system.cleanup()
    return results


@pytest.fixture(scope="module")
def results(sinks):
    return run_sides(scenario, main_cf(*sinks))


def test_replies_match_postfix(results):
    for key in ("first", "second", "after_restart"):
        assert results["pyfix"][key] == results["postfix"][key], key


def test_replies_are_the_documented_ones(results):
    first, second = results["pyfix"]["first"], results["pyfix"]["second"]
    assert all(code == 450 and "unverified address: Address verification in progress"
               in text for code, text in first)
    assert second[0][0] == 250
    assert second[1][0] == 550 and "undeliverable address: host 127.0.0.1" in second[1][1]
    assert second[2][0] == 450 and "unverified address: connect to" in second[2][1]
    # A probe that cleanup expands to several recipients is answered by cleanup itself.
    assert second[3] == (250, "2.1.5 Ok")
    assert results["pyfix"]["after_restart"] == second


def test_log_lines_match_postfix(results):
    assert results["pyfix"]["log"] == results["postfix"]["log"]
    assert results["pyfix"]["log_after_restart"] == results["postfix"]["log_after_restart"]
    # The probe sender: address_verify_sender with the address_verify_sender_ttl slot.
    assert any(re.search(r"from=<double-bounce[0-9B-Z]+@example\.com>", line)
               for line in results["pyfix"]["log"])


def test_cache_file_matches_postfix(results):
    assert results["pyfix"]["cache"] == results["postfix"]["cache"]
    assert len(results["pyfix"]["cache"]) >= len(RCPTS) + 4


def test_protocol_matches_postfix(results):
    assert results["pyfix"]["protocol"] == results["postfix"]["protocol"]
    assert results["pyfix"]["protocol"][-1] == (1, {"status": 2 ** 32 - 2})


def test_cache_is_locked_while_verify_runs(results):
    assert results["pyfix"]["locked"] is True
    assert results["postfix"]["locked"] is True


def test_restart_uses_the_cache(results):
    assert results["pyfix"]["new_probes"] == 0
    assert results["postfix"]["new_probes"] == 0



# -- reject_unverified_sender, with verify -v ----------------------------------------------

VERBOSE_LINE = re.compile(r"postfix/verify\[\d+\]: ((GOT|PUT|PROBE|dict_cache_\w+:) .*)")
VERBOSE_ADDRESS = re.compile(r"^(?:GOT|PUT|PROBE) (\S+)|key=([^\s(]\S*)")
SENDER = "u2@bad.example"


def sender_main_cf(sinks):
    return main_cf(*sinks) + """\
smtpd_sender_restrictions = reject_unverified_sender
unverified_sender_reject_reason = Sender address is not deliverable
"""


def mail_replies(port):
    """The RCPT reply (sender restrictions are applied at RCPT time)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.example.net")
        client.mail(SENDER)
        code, text = client.rcpt("u1@ok.example")
        return code, text.decode()


def verbose_lines(system):
    """verify -v's GOT/PUT/PROBE and cache lines, time stamps masked, in their order for
    each address (the probes of different addresses finish in any order)."""
    out = {}
    for match in VERBOSE_LINE.finditer(system.log()):
        line = ROOT_PATH.sub("ROOT/", re.sub(r"([=:])\d{9,}", r"\1T", match.group(1)))
        found = VERBOSE_ADDRESS.search(line)
        address = (found.group(1) or found.group(2)) if found else ""
        out.setdefault(address, []).append(line)
    return out


def sender_scenario(system):
    result = {"first": mail_replies(system.port)}
    system.wait_log(PROBE_LINE.pattern, timeout=60, count=2)
    system.wait_log(r"PUT %s status=2 probed=0" % re.escape(SENDER))
    result["second"] = mail_replies(system.port)
    system.wait_log(r"GOT %s status=2" % re.escape(SENDER))
    system.wait_log(r"reject: RCPT .* Sender address rejected", count=2)
    result["log"] = [line for line in log_lines(system) if "reject:" in line]
    result["verbose"] = verbose_lines(system)
    return result


@pytest.fixture(scope="module")
def sender_results(sinks):
    return run_sides(sender_scenario, sender_main_cf(sinks),
                     MASTER_CF.replace("verify\n", "verify -v\n"))


def test_unverified_sender_matches_postfix(sender_results):
    assert sender_results["pyfix"] == sender_results["postfix"]
    first, second = sender_results["pyfix"]["first"], sender_results["pyfix"]["second"]
    assert first[0] == 450 and "4.1.7 <u2@bad.example>: Sender address rejected: " \
        "unverified address: Sender address is not deliverable" in first[1]
    assert second == first
    verbose = sender_results["pyfix"]["verbose"]
    assert any(line.startswith("PROBE ") for line in verbose[SENDER])



# -- the cache cleanup ------------------------------------------------------------------------

CLEANUP_DROP = r"cache btree:\S+ full cleanup: retained=1 dropped=1 entries"
REDIRECT = re.compile(r"request to update table|redirecting the request")


def cleanup_scenario(system):
    rcpts = (RCPTS[0], RCPTS[2])
    first = rcpt_replies(system.port, rcpts)
    system.wait_log(PROBE_LINE.pattern, timeout=60, count=len(rcpts))
    # The deferred address expires after 1s; a sweep every 2s drops it, keeps the other.
    system.wait_log(CLEANUP_DROP, timeout=30)
    redirect = [ROOT_PATH.sub("ROOT/", line.split(": ", 1)[1])
                for line in system.log().splitlines()
                if "/verify[" in line and REDIRECT.search(line)]
    return {"first": first, "after_cleanup": rcpt_replies(system.port, rcpts),
            "redirect": redirect,
            "file": os.path.exists(os.path.join(system.master.root, "lib",
                                                "verify_cache.db"))}


def test_cache_cleanup_and_redirect_like_postfix(sinks):
    results = run_sides(cleanup_scenario, main_cf(*sinks) + """\
address_verify_cache_cleanup_interval = 2s
address_verify_negative_expire_time = 1s
address_verify_map = btree:$config_directory/verify_cache
""")
    assert results["pyfix"] == results["postfix"]
    # The dropped address is probed anew, the kept one answers from the cache.
    assert results["pyfix"]["after_cleanup"][0][0] == 250
    assert "in progress" in results["pyfix"]["after_cleanup"][1][1]
    # A table in root's config directory goes to data_directory instead.
    assert len(results["pyfix"]["redirect"]) == 2 and results["pyfix"]["file"]


# -- no verify service ------------------------------------------------------------------------

def test_without_verify_service_defers():
    """No verify in master.cf: smtpd says "verify service failure" and defers (where
    Postfix would wait for the service, retrying for minutes, then give up)."""
    system = start_system("pyfix", "smtpd_recipient_restrictions = "
                          "reject_unverified_recipient, permit_mynetworks\n", "")
    try:
        replies = rcpt_replies(system.port, RCPTS[:1])
        system.wait_log(r"reject: RCPT")
        log = system.log()
    finally:
        system.cleanup()
    assert replies == [(450, "4.1.1 <u1@ok.example>: Recipient address rejected: "
                             "address verification problem")]
    assert "warning: verify service failure" in log


# -- address_verify_negative_cache = no ------------------------------------------------------

def no_negative_cache_scenario(system):
    rcpts = (RCPTS[1],)
    first = rcpt_replies(system.port, rcpts)
    system.wait_log(NOT_CACHED)
    second = rcpt_replies(system.port, rcpts)       # nothing cached: in progress again
    system.wait_log(NOT_CACHED, count=2)
    system.wait_log(r"reject: RCPT", count=2)
    return {"replies": first + second, "log": log_lines(system)}


def test_no_negative_cache_like_postfix(sinks):
    results = run_sides(no_negative_cache_scenario, main_cf(*sinks)
                        + "address_verify_negative_cache = no\n")
    assert results["pyfix"] == results["postfix"]
    assert all("in progress" in text for _, text in results["pyfix"]["replies"])


# -- the cache table types ------------------------------------------------------------------

@pytest.mark.parametrize("table_type", ["btree", "hash", "lmdb"])
def test_cache_tables_are_postfix_tables(tmp_path, table_type):
    """The cache written through maps/ is a table Debian's postmap reads: updates, the
    sweep's deletes and its completion stamp."""
    from pyfix.daemons.verify import VerifyCache
    spec = "%s:%s" % (table_type, tmp_path / "verify_cache")
    cache = VerifyCache(spec)
    try:
        cache.update("a@example.org", "0:0:123:250 ok")
        cache.update("b@example.org", "2:0:123:550 no")
        cache.sweep(lambda key, value: key != "b@example.org")
        assert cache.lookup("a@example.org") == "0:0:123:250 ok"
        assert cache.lookup("b@example.org") is None
    finally:
        cache.close()
    (tmp_path / "main.cf").write_text("")
    result = subprocess.run([POSTMAP, "-c", str(tmp_path), "-s", spec],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert lines[0].startswith("_LAST_CACHE_CLEANUP_COMPLETED_\t")
    assert lines[1:] == ["a@example.org\t0:0:123:250 ok"]

"""showq(8): the queue listing service, on the wire.

  - The protocol stream itself, byte for byte: Debian's showq and pyfix's, both run as
    postqueue runs them when the mail system is down (`showq -u -S`, the listing on
    stdout), on a queue written by pyfix's record codec and on one made by Debian's
    Postfix. postfix_exporter and other tools read exactly these bytes.
  - pyfix's showq as a service of a real pyfix master (public/showq): Debian's postqueue
    and pyfix's postqueue, -p and -j, print what Debian's postqueue prints with the
    system down; a raw client reads the same bytes as from Debian's showq; a client that
    hangs up in the middle of the listing does not disturb the next one.
  - Postfix 3.7's showq crashes on a queue file with a recipient before the sender or
    with two senders (its cleanup macro in showq_report() frees the buffers without
    returning); pyfix's warns and skips the rest of that file, as the warning says.
"""

import os
import socket
import subprocess
import sys

import pytest

from conftest import clean_env, requires_oracle
from master_run import MasterRun, wait_until
from queue_sides import QueueSite, compose_queue, debian_available, debian_queue, rec, T0

DEBIAN_SHOWQ = "/usr/lib/postfix/sbin/showq"

pytestmark = [requires_oracle("postqueue"),
              pytest.mark.skipif(not os.access(DEBIAN_SHOWQ, os.X_OK),
                                 reason="Debian's showq is not installed")]

PYFIX_SHOWQ = ("import sys; from pyfix.daemons.showq import main; "
               "sys.argv = ['showq', '-u', '-S']; main(sys.argv)")


def run_showq(site, pyfix):
    argv = [sys.executable, "-c", PYFIX_SHOWQ] if pyfix else [DEBIAN_SHOWQ, "-u", "-S"]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                          env=clean_env({"MAIL_CONFIG": site.etc}))


def split_listing(data):
    """The protocol stream as (announcement, [message attribute lists], end)."""
    assert data.startswith(b"protocol\0mail_queue_list_protocol\0\0")
    body = data[len(b"protocol\0mail_queue_list_protocol\0\0"):]
    messages = []
    pos = 0
    while True:
        if body[pos:pos + 1] == b"\0":
            assert body[pos + 1:] == b""
            return messages
        current = []
        while body[pos:pos + 1] != b"\0":
            name_end = body.index(b"\0", pos)
            value_end = body.index(b"\0", name_end + 1)
            current.append((body[pos:name_end], body[name_end + 1:value_end]))
            pos = value_end + 1
        pos += 1
        messages.append(current)


@pytest.fixture(scope="module")
def composed():
    site = QueueSite()
    ids = compose_queue(site)
    yield site, ids
    site.remove()


def test_protocol_bytes_composed(composed):
    site, ids = composed
    want = run_showq(site, pyfix=False)
    got = run_showq(site, pyfix=True)
    assert want.returncode == 0, want
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout
    messages = split_listing(got.stdout)
    names = [[name for name, _ in m][:6] for m in messages]
    assert all(n == [b"queue_name", b"queue_id", b"time", b"size", b"forced_expire",
                     b"sender"] for n in names)
    listed = {dict(m)[b"queue_id"].decode() for m in messages}
    assert ids["reasons"] in listed and ids["embryonic"] not in listed


def test_protocol_bytes_debian_made():
    if not debian_available():
        pytest.skip("Debian's Postfix is not installed")
    site, info = debian_queue()
    try:
        want = run_showq(site, pyfix=False)
        got = run_showq(site, pyfix=True)
        assert want.returncode == 0 and got.returncode == 0, got.stderr
        assert got.stdout == want.stdout
        messages = split_listing(got.stdout)
        assert len(messages) == len(info["ids"])
        expired = [dict(m) for m in messages if dict(m)[b"queue_id"] == info["expire"].encode()]
        assert expired[0][b"forced_expire"] == b"1"
    finally:
        site.remove()


def test_listing_order_and_flat_maildrop():
    """maildrop is not descended into; the other queues are, in Postfix's order."""
    site = QueueSite()
    try:
        order = [site.add_message(queue, "s@example.com", ["r@example.net"])
                 for queue in ("hold", "deferred", "incoming", "active")]
        drop = site.add_file("maildrop", b"".join([rec.encode(rec.TIME, b"%d 0" % T0),
                                                   rec.encode(rec.FROM, b"d@example.com"),
                                                   rec.encode(rec.RCPT, b"r@example.net"),
                                                   rec.encode(rec.END)]), mode=0o744)
        hidden = os.path.join(site.spool, "maildrop", "X")
        os.makedirs(hidden)
        site.fix_owner()
        want = run_showq(site, pyfix=False)
        got = run_showq(site, pyfix=True)
        assert got.stdout == want.stdout
        listed = [dict(m)[b"queue_id"].decode() for m in split_listing(got.stdout)]
        assert listed == [drop] + order[::-1]
    finally:
        site.remove()


@pytest.mark.parametrize("case", ["recipient_first", "two_senders"])
def test_broken_sender_records(case):
    """Where Debian's showq crashes, pyfix's lists what it read and goes on."""
    site = QueueSite()
    try:
        if case == "recipient_first":
            bad = site.add_file("deferred", b"".join([
                rec.encode(rec.TIME, b"%d 0" % T0), rec.encode(rec.RCPT, b"r@example.net"),
                rec.encode(rec.FROM, b"late@example.com"), rec.encode(rec.END)]))
        else:
            bad = site.add_file("deferred", b"".join([
                rec.encode(rec.TIME, b"%d 0" % T0), rec.encode(rec.FROM, b"one@example.com"),
                rec.encode(rec.RCPT, b"r1@example.net"), rec.encode(rec.FROM, b"two@example.com"),
                rec.encode(rec.RCPT, b"r2@example.net"), rec.encode(rec.END)]))
        good = site.add_message("hold", "good@example.com", ["r@example.net"])
        crashed = run_showq(site, pyfix=False)
        assert crashed.returncode < 0           # a signal: Postfix 3.7's bug
        got = run_showq(site, pyfix=True)
        assert got.returncode == 0, got.stderr
        messages = [dict(m) for m in split_listing(got.stdout)]
        ids = [m[b"queue_id"].decode() for m in messages]
        assert good in ids
        if case == "recipient_first":
            assert bad not in ids
        else:
            listed = split_listing(got.stdout)[ids.index(bad)]
            assert listed[5:] == [(b"sender", b"one@example.com"),
                                  (b"recipient", b"r1@example.net"), (b"reason", b"")]
        warnings = listing_warnings(site)
        if case == "recipient_first":
            assert warnings == ["%s: missing sender address:  -- skipping remainder of "
                                "this file" % bad]
        else:
            assert warnings == ["%s: duplicate sender address: two@example.com -- "
                                "skipping remainder of this file" % bad]
    finally:
        site.remove()


def listing_warnings(site):
    """The warnings of a listing made in this process (pyfix's showq code)."""
    from pyfix.common import msg
    from pyfix.daemons.showq import Output, Showq
    warnings = []

    def output(level, text):
        if level == msg.WARN:
            warnings.append(text)

    cwd = os.getcwd()
    saved = list(msg._outputs)
    msg._outputs[:] = [output]
    try:
        os.chdir(site.spool)
        chunks = []
        Showq(site.config()).listing(Output(chunks.append))
    finally:
        msg._outputs[:] = saved
        os.chdir(cwd)
    return warnings


# -- the service under a pyfix master ------------------------------------------------------

@pytest.fixture(scope="module")
def running():
    master = MasterRun("showq unix n - n - - showq\n")
    site = QueueSite.existing(master.root, master.etc, master.spool, master.log_path)
    ids = compose_queue(site)
    # Debian's postqueue with the system down: the reference listings.
    reference = {mode: site.oracle("postqueue", [mode]) for mode in ("-p", "-j")}
    master.start()
    yield master, site, ids, reference
    master.cleanup()


@pytest.mark.parametrize("client", ["debian", "pyfix"])
@pytest.mark.parametrize("mode", ["-p", "-j"])
def test_service_clients(running, client, mode):
    master, site, ids, reference = running
    result = site.oracle("postqueue", [mode]) if client == "debian" \
        else site.candidate("postqueue", [mode])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""              # no "Mail system is down"
    assert result.stdout == reference[mode].stdout


def read_all(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_service_bytes(running):
    master, site, ids, reference = running
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(os.path.join(site.spool, "public", "showq"))
        data = read_all(sock)
    assert data == run_showq(site, pyfix=False).stdout


def test_client_hangs_up(running):
    master, site, ids, reference = running
    for _ in range(3):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(os.path.join(site.spool, "public", "showq"))
            assert sock.recv(10)
    result = site.oracle("postqueue", ["-p"])
    assert result.stdout == reference["-p"].stdout
    assert not [line for line in master.log().splitlines()
                if "showq" in line and ("fatal:" in line or "panic:" in line)]


def test_service_sees_changes(running):
    master, site, ids, reference = running
    extra = site.add_message("hold", "new@example.com", ["r@example.net"])
    try:
        result = site.candidate("postqueue", ["-p"])
        assert extra in result.stdout.decode()
        assert result.stdout == site.oracle("postqueue", ["-p"]).stdout
    finally:
        os.unlink(site.path("hold", extra))


def test_service_runs_as_mail_owner(running):
    master, site, ids, reference = running
    if os.geteuid() != 0:
        pytest.skip("needs root")
    import psutil
    procs = wait_until(lambda: master.children("showq"), timeout=5)
    assert procs
    assert all(p.username() == "postfix" for p in procs)
    assert psutil.Process(master.pid).username() == "root"

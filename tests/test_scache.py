"""scache(8) and its client: pyfix's connection cache beside Debian's.

The differential test runs Debian's own qmgr and smtp client on a pyfix master with
either Debian's scache or pyfix's, caching every connection to the sink
(smtp_connection_cache_destinations): the second message must reuse the first one's
connection (`conn_use=2`) on both sides, which only happens when Debian's smtp got its
descriptor back through scache's protocol. The `statistics:` lines that scache logs are
compared too. The client tests drive pyfix's scache with pyfix's ScacheClient
(common/scache_clnt.py) and a real socket pair: the descriptor that comes back is the
one that was saved, and time limits, the two cache levels and bad requests behave as
Postfix's.
"""

import os
import re
import socket
import pytest

from master_run import MasterRun
from qmgr_rig import DEBIAN_QMGR, SBIN, Rig, normalize, rig_available, services
from pyfix.common import attr, msg
from pyfix.common.config import Config
from pyfix.common.scache_clnt import ScacheClient

pytestmark = pytest.mark.skipif(not rig_available(),
                                reason="needs root, Debian's Postfix daemons and smtp-sink")

CACHE_CF = """\
smtp_connection_cache_destinations = 127.0.0.1
smtp_connection_cache_time_limit = 60s
connection_cache_ttl_limit = 60s
"""


def _with_scache(text, which):
    """master.cf with `which` scache; it leaves (and logs its statistics) 2s after its
    last client, as the idle limit makes it."""
    program = "scache" if which == "pyfix" else SBIN + "/scache"
    return text.replace("%s/scache\n" % SBIN, program + " -o max_idle=2s\n")


def run_reuse(which):
    """Two messages one after the other through Debian's smtp and `which` scache; the
    normalized smtp and scache log lines."""
    rig = Rig(qmgr=DEBIAN_QMGR)
    rig.master.write_main_cf(rig_main_cf(rig))
    rig.master.write_master_cf(_with_scache(services(DEBIAN_QMGR, "postfix"), which))
    try:
        rig.start_sink()
        rig.start()
        first = rig.submit(rcpts=("bob@example.org",))
        rig.wait_log(r"%s: to=<bob@example.org>.*status=sent" % first)
        second = rig.submit(rcpts=("carol@example.org",))
        rig.wait_log(r"%s: to=<carol@example.org>.*status=sent" % second)
        rig.wait_log(r"scache\[\d+\]: statistics: max simultaneous", timeout=30)
        rig.quiet()
        lines = [line for line in rig.log().splitlines()
                 if re.search(r"postfix/(smtp|scache)\[", line)]
        out = normalize(lines, [first, second])
        return [re.sub(r"start interval .*", "start interval T", line) for line in out]
    finally:
        rig.cleanup()


def rig_main_cf(rig):
    from qmgr_rig import MAIN_CF
    from cleanup_oracle import COMMON_MAIN_CF
    return COMMON_MAIN_CF + MAIN_CF.format(port=rig.port) + CACHE_CF


def test_debian_smtp_reuses_connections_through_pyfix_scache():
    pyfix = run_reuse("pyfix")
    postfix = run_reuse("postfix")
    assert any("conn_use=2" in line for line in pyfix), pyfix
    assert pyfix == postfix


# -- pyfix's client against pyfix's scache ------------------------------------------------

SCACHE_PROGRAMS = {"pyfix": "scache", "postfix": SBIN + "/scache"}


class ScacheRun:
    """A pyfix master with one scache (pyfix's or Debian's) and nothing else; the
    client runs in the queue directory."""

    def __init__(self, main_cf="", program="scache"):
        self.master = MasterRun("scache unix - - n - 1 %s -o max_idle=2s\n" % program,
                                main_cf)
        self.cwd = os.getcwd()

    def __enter__(self):
        self.master.start()
        os.chdir(self.master.spool)
        return self

    def __exit__(self, *exc):
        os.chdir(self.cwd)
        self.master.cleanup()

    def client(self):
        return ScacheClient.from_config(Config.load(self.master.etc))


def _pair():
    left, right = socket.socketpair()
    return left, right


def _same_peer(fd, peer):
    """The descriptor is an end of the pair whose other end is peer: data goes through."""
    sock = socket.socket(fileno=fd)
    try:
        sock.sendall(b"ping")
        peer.settimeout(5)
        return peer.recv(4) == b"ping"
    finally:
        sock.close()


@pytest.mark.parametrize("side", sorted(SCACHE_PROGRAMS))
def test_client_saves_and_finds_endpoint_and_destination(side):
    """pyfix's client with pyfix's scache, and with Debian's (the client's protocol)."""
    with ScacheRun(program=SCACHE_PROGRAMS[side]) as run:
        cache = run.client()
        try:
            assert cache.find_endp("127.0.0.1:25") == (-1, "")
            assert cache.find_dest("example.com") == (-1, "", "")
            mine, peer = _pair()
            cache.save_endp(30, "127.0.0.1:25", "endp-prop", mine.detach())
            cache.save_dest(30, "example.com", "dest-prop", "127.0.0.1:25")
            fd, dest_prop, endp_prop = cache.find_dest("example.com")
            assert (dest_prop, endp_prop) == ("dest-prop", "endp-prop")
            assert _same_peer(fd, peer)
            # Handed out means gone: the session is no longer cached.
            assert cache.find_endp("127.0.0.1:25") == (-1, "")
            other, peer2 = _pair()
            cache.save_endp(30, "127.0.0.1:25", "second", other.detach())
            fd, endp_prop = cache.find_endp("127.0.0.1:25")
            assert endp_prop == "second" and _same_peer(fd, peer2)
            peer.close()
            peer2.close()
        finally:
            cache.close()
        run.master.wait_log(r"scache\[\d+\]: statistics: domain lookup hits=1 miss=1 "
                            r"success=50%")
        log = run.master.log()
        assert "statistics: address lookup hits=1 miss=2 success=33%" in log
        assert "statistics: max simultaneous domains=1 addresses=1 connection=1" in log


@pytest.mark.parametrize("side", sorted(SCACHE_PROGRAMS))
def test_ttl_limit_expires_sessions(side):
    with ScacheRun("connection_cache_ttl_limit = 1s\n", SCACHE_PROGRAMS[side]) as run:
        cache = run.client()
        try:
            mine, peer = _pair()
            cache.save_endp(300, "host:25", "p", mine.detach())
            # The cached end is closed when its (capped) time is up: the peer sees EOF.
            peer.settimeout(20)
            assert peer.recv(1) == b""
            assert cache.find_endp("host:25") == (-1, "")
            peer.close()
        finally:
            cache.close()


@pytest.mark.parametrize("side", sorted(SCACHE_PROGRAMS))
def test_bad_requests_get_postfix_answers(side):
    with ScacheRun(program=SCACHE_PROGRAMS[side]) as run:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect("private/scache")
        stream = attr.AttrStream(sock, "test", 10)
        assert stream.scan([(attr.STR, "protocol")])[1]["protocol"] == \
            "connection_cache_protocol"
        stream.send([("request", "bogus")])
        assert stream.scan([(attr.INT, "status")]) == (1, {"status": 1})
        stream.send([("request", "save_dest"), ("ttl", 0), ("label", "a"),
                     ("property", "b"), ("label", "c")])
        assert stream.scan([(attr.INT, "status")]) == (1, {"status": 1})
        sock.close()
        run.master.wait_log(r'warning: unrecognized request: "bogus", ignored')
        run.master.wait_log(r"warning: scache_save_dest_service: bad or missing request "
                            r"parameter")


def test_client_without_service_disables_caching():
    """No service: two attempts a second apart, then Postfix's warnings and no cache;
    the descriptor handed to save_endp is closed all the same."""
    warnings = []

    def output(level, text):
        warnings.append((level, text))

    with ScacheRun() as run:
        cache = ScacheClient("nonesuch", 5, 5, 1000)
        mine, peer = _pair()
        msg.add_output(output)
        try:
            cache.save_endp(30, "x", "y", mine.detach())
            assert cache.find_endp("x") == (-1, "")
        finally:
            msg._outputs.remove(output)
        assert warnings == [(msg.WARN, "connect to private/nonesuch: No such file or "
                                       "directory")] * 2 \
            + [(msg.WARN, "disabling connection caching")], warnings
        peer.settimeout(5)
        assert peer.recv(1) == b""          # the fd was closed, as Postfix's client does
        peer.close()
        assert run.master.children("scache") == []


def test_client_reconnects_quietly_after_scache_restart():
    """The client keeps its connection; when scache goes away (here: killed) the next
    request opens a new one without a warning, as auto_clnt does."""
    import signal
    warnings = []

    def output(level, text):
        warnings.append((level, text))

    with ScacheRun() as run:
        cache = run.client()
        msg.add_output(output)
        try:
            assert cache.find_endp("a:25") == (-1, "")
            procs = run.master.children("scache")
            assert len(procs) == 1
            os.kill(procs[0].pid, signal.SIGKILL)
            procs[0].wait(10)
            mine, peer = _pair()
            cache.save_endp(30, "a:25", "p", mine.detach())
            fd, prop = cache.find_endp("a:25")
            assert prop == "p" and _same_peer(fd, peer)
            peer.close()
        finally:
            msg._outputs.remove(output)
            cache.close()
        assert warnings == []


@pytest.mark.parametrize("side", sorted(SCACHE_PROGRAMS))
def test_statistics_every_status_update_time(side):
    """connection_cache_status_update_time: the counts are logged (and reset) while
    the process runs, not only when it leaves."""
    with ScacheRun("connection_cache_status_update_time = 1s\n",
                   SCACHE_PROGRAMS[side]) as run:
        cache = run.client()
        try:
            assert cache.find_endp("a:25") == (-1, "")
            run.master.wait_log(r"statistics: address lookup hits=0 miss=1 success=0%")
            assert run.master.children("scache")            # still serving us
            assert "max simultaneous" not in run.master.log()
        finally:
            cache.close()

"""lmtp(8) into a real Dovecot (dovecot-lmtpd) over a unix-domain socket and over TCP:
pyfix's lmtp beside Debian's, same messages, same Dovecot, the lmtp log lines
compared after masking (relay=<myhostname>[<socket path>] for the unix socket), and
the mail found in the Maildir.
"""

import os
import re
import socket

import pytest

from peer_servers import Server, free_port
from qmgr_rig import DEBIAN_QMGR, Rig, rig_available, services
from test_smtp_client import agent_lines, one_message

DOVECOT = "/usr/sbin/dovecot"
pytestmark = pytest.mark.skipif(
    not rig_available() or not os.path.exists(DOVECOT)
    or not os.path.exists("/usr/lib/dovecot/lmtp"),
    reason="needs root, Debian's Postfix, dovecot-core and dovecot-lmtpd")

CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
  unix_listener {root}/lmtp {{
    mode = 0666
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


class DovecotLmtp(Server):
    """Dovecot with only LMTP, one user (testuser@test.example, mail as nobody)."""

    log_name = "stderr.log"

    def __init__(self):
        super().__init__("dovecot-lmtp-")
        self.port = free_port()
        self.socket = os.path.join(self.root, "lmtp")
        for sub in ("run", "state", "mail/testuser"):
            os.makedirs(os.path.join(self.root, sub))
        os.chown(os.path.join(self.root, "mail/testuser"), 65534, 65534)
        with open(os.path.join(self.root, "passwd"), "w") as f:
            f.write("testuser@test.example:{PLAIN}secret:65534:65534::%s/mail/testuser::\n"
                    % self.root)
        os.chmod(os.path.join(self.root, "passwd"), 0o644)
        self.conf = os.path.join(self.root, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(root=self.root, port=self.port))

    def start(self):
        self.spawn([DOVECOT, "-F", "-c", self.conf])
        self.wait_ready(self._greets, 15)
        return self

    def _greets(self):
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(self.socket)
                return sock.recv(100).startswith(b"220")
        except OSError:
            return False

    def delivered(self):
        new = os.path.join(self.root, "mail/testuser/Maildir/new")
        return sorted(os.listdir(new)) if os.path.isdir(new) else []


@pytest.fixture(scope="module")
def dovecot():
    server = DovecotLmtp().start()
    try:
        yield server
    finally:
        server.stop()


def run(side, nexthop, rcpts):
    extra = "transport_maps = inline:{test.example=lmtp:%s}\n" % nexthop
    rig = Rig(qmgr=DEBIAN_QMGR, main_cf_extra=extra, agents="postfix", smtp=side)
    try:
        rig.start_sink()                 # bounces go to the relayhost
        rig.start()
        queue_ids = one_message(rcpts)(rig)
        rig.quiet()
        # Dovecot's session id: `250 2.0.0 <user> +O60Ig1cB2stTQAAg+zDdQ:R2 Saved`
        return [re.sub(r"> \S+ Saved\)", "> SESSION Saved)", line)
                for line in agent_lines(rig, queue_ids)]
    finally:
        rig.cleanup()


RCPTS = ("testuser@test.example", "nosuch@test.example")


@pytest.mark.parametrize("where", ["unix", "inet"])
def test_lmtp_into_dovecot_like_postfix(dovecot, where):
    nexthop = "unix:" + dovecot.socket if where == "unix" \
        else "inet:127.0.0.1:%d" % dovecot.port
    before = len(dovecot.delivered())
    ours = run("pyfix", nexthop, RCPTS)
    delivered = len(dovecot.delivered()) - before
    theirs = run("postfix", nexthop, RCPTS)
    assert ours == theirs
    assert delivered == 1
    sent = [line for line in ours if "to=<testuser@test.example>" in line][0]
    assert "status=sent (250 2.0.0 <testuser@test.example>" in sent
    if where == "unix":
        assert "relay=mx.example.com[%s]" % dovecot.socket in sent
    assert any("to=<nosuch@test.example>" in line and "dsn=5.1.1, status=bounced" in line
               for line in ours)


def test_lmtp_unix_socket_missing_like_postfix():
    nexthop = "unix:/tmp/pyfix-no-such-dir/lmtp"
    ours = run("pyfix", nexthop, RCPTS[:1])
    theirs = run("postfix", nexthop, RCPTS[:1])
    assert ours == theirs
    assert "status=deferred (connect to mx.example.com[/tmp/pyfix-no-such-dir/lmtp]: " \
        "No such file or directory)" in ours[-1]


def run_flags(side, nexthop, rcpts, headers=()):
    """lmtp with master.cf flags=DORX (one recipient per delivery)."""
    extra = ("transport_maps = inline:{test.example=lmtp:%s}\n"
             "lmtp_destination_recipient_limit = 1\n" % nexthop)
    rig = Rig(qmgr=DEBIAN_QMGR, main_cf_extra=extra, agents="postfix", smtp=side)
    text = services(DEBIAN_QMGR, "postfix", side)
    rig.master.write_master_cf(re.sub(r"(?m)^(lmtp unix .*)$", r"\1 flags=DORX", text))
    try:
        rig.start_sink()
        rig.start()
        queue_ids = one_message(rcpts, headers=headers)(rig)
        rig.quiet()
        return [re.sub(r"> \S+ Saved\)", "> SESSION Saved)", line)
                for line in agent_lines(rig, queue_ids)]
    finally:
        rig.cleanup()


def test_lmtp_flags_dorx_like_postfix(dovecot):
    """Return-Path:, X-Original-To:, Delivered-To: prepended; `delivered`, not
    `relayed`, in the delivery status; a Delivered-To: loop is bounced."""
    nexthop = "unix:" + dovecot.socket
    before = dovecot.delivered()
    ours = run_flags("pyfix", nexthop, RCPTS[:1])
    new = [name for name in dovecot.delivered() if name not in before]
    theirs = run_flags("postfix", nexthop, RCPTS[:1])
    assert ours == theirs
    assert len(new) == 1
    with open(os.path.join(dovecot.root, "mail/testuser/Maildir/new", new[0])) as f:
        head = f.read().split("\n\n")[0]
    assert "Delivered-To: testuser@test.example" in head
    assert "X-Original-To: testuser@test.example" in head
    looped = ("Delivered-To: testuser@test.example",)
    ours = run_flags("pyfix", nexthop, RCPTS[:1], looped)
    theirs = run_flags("postfix", nexthop, RCPTS[:1], looped)
    assert ours == theirs
    assert any("status=bounced (mail forwarding loop for testuser@test.example)" in line
               for line in ours)

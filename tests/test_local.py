"""local(8): mail through a real pyfix master, pyfix's qmgr and pyfix's local into
mbox files and Maildirs of real users made for the test."""

import mailbox
import os

import pytest

from test_local_rig import LocalRig, Users, read, rig_available

pytestmark = pytest.mark.skipif(not rig_available(), reason="needs root and Postfix")


@pytest.fixture
def users():
    made = Users("/tmp")
    yield made
    made.remove()


def run(extra=""):
    return LocalRig(main_cf_extra=extra).start()


def test_mbox_delivery(users):
    rig = run()
    try:
        bob = users.add("bob")
        qid = rig.submit(["%s@mx.example.com" % bob.pw_name],
                         headers=["Subject: hello", "From: alice@example.com"],
                         body=["From the start", "line 2"])
        rig.wait_log(r"status=sent \(delivered to mailbox\)")
        path = os.path.join(rig.mail, bob.pw_name)
        st = os.stat(path)
        assert (st.st_uid, st.st_mode & 0o777) == (bob.pw_uid, 0o600)
        box = mailbox.mbox(path)
        messages = list(box)
        assert len(messages) == 1
        assert messages[0]["Subject"] == "hello"
        assert messages[0]["Delivered-To"] == "%s@mx.example.com" % bob.pw_name
        assert messages[0]["Return-Path"] == "<alice@example.com>"
        assert ">From the start" in read(path)
        assert qid in rig.log()
    finally:
        rig.cleanup()


def _forward(entry, text, mode=0o644):
    path = os.path.join(entry.pw_dir, ".forward")
    with open(path, "w") as f:
        f.write(text)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, mode)


@pytest.mark.skipif(not os.path.exists("/usr/lib/dovecot/dovecot-lda"),
                    reason="needs dovecot-lda")
def test_dovecot_lda_as_mailbox_command(users):
    rig = run('mailbox_command = /usr/lib/dovecot/dovecot-lda -f "$SENDER" '
              '-a "$RECIPIENT" -o mail_location=maildir:~/Maildir\n')
    try:
        carol = users.add("carol")
        rig.submit(["%s@mx.example.com" % carol.pw_name], headers=["Subject: lda"])
        rig.wait_log(r"status=sent \(delivered to command: /usr/lib/dovecot/dovecot-lda")
        box = mailbox.Maildir(os.path.join(carol.pw_dir, "Maildir"), create=False)
        messages = list(box)
        assert [m["Subject"] for m in messages] == ["lda"]
        assert messages[0]["Delivered-To"] == "%s@mx.example.com" % carol.pw_name
        for name in os.listdir(os.path.join(carol.pw_dir, "Maildir", "new")):
            st = os.stat(os.path.join(carol.pw_dir, "Maildir", "new", name))
            assert st.st_uid == carol.pw_uid
    finally:
        rig.cleanup()


def test_command_runs_as_recipient_with_postfix_environment(users):
    """A .forward |command runs as the user (never root) in its home directory, with
    Postfix's environment."""
    rig = run("recipient_delimiter = +\ncommand_execution_directory = $home\n")
    try:
        dan = users.add("dan")
        _forward(dan, '"|/bin/sh -c \'id -u > uid.out; env > env.out\'"\n')
        rig.submit(["%s+tag@mx.example.com" % dan.pw_name], sender="ann@example.net")
        rig.wait_log(r"status=sent \(delivered to command: /bin/sh")
        assert read(os.path.join(dan.pw_dir, "uid.out")).split() == [str(dan.pw_uid)]
        env = dict(line.split("=", 1) for line in
                   read(os.path.join(dan.pw_dir, "env.out")).splitlines() if "=" in line)
        assert env["HOME"] == dan.pw_dir
        assert env["USER"] == env["LOGNAME"] == dan.pw_name
        assert env["SHELL"] == "/bin/sh"
        assert env["EXTENSION"] == "tag"
        assert env["DOMAIN"] == "mx.example.com"
        assert env["LOCAL"] == "%s+tag" % dan.pw_name
        assert env["RECIPIENT"] == "%s+tag@mx.example.com" % dan.pw_name
        assert env["SENDER"] == "ann@example.net"
        assert env["ORIGINAL_RECIPIENT"] == "%s+tag@mx.example.com" % dan.pw_name
        assert env["PATH"] == "/usr/bin:/bin"
        assert env["PWD"] == dan.pw_dir
    finally:
        rig.cleanup()


def test_mailbox_transport_fallback_and_luser_relay(users):
    eve = users.add("eve")
    rig = run("fallback_transport_maps = inline:{{nobody1=error:5.1.1 gone away}}\n"
              "luser_relay = %s@mx.example.com\n" % eve.pw_name)
    try:
        rig.submit(["nobody1@mx.example.com", "stray@mx.example.com"])
        rig.wait_log(r"passing <nobody1@mx.example.com> to transport=error")
        rig.wait_log(r"to=<nobody1@mx.example.com>.*status=bounced \(gone away\)")
        rig.wait_log(r"to=<%s@mx.example.com>, orig_to=<stray@mx.example.com>.*"
                     r"delivered to mailbox" % eve.pw_name)
        assert "stray@mx.example.com" in read(os.path.join(rig.mail, eve.pw_name))
    finally:
        rig.cleanup()


def test_biff_notification(users):
    """biff = yes: comsat's datagram `user@offset` (the mailbox size before the
    delivery) goes to localhost's biff/udp port."""
    import socket
    port = socket.getservbyname("biff", "udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as comsat:
        try:
            comsat.bind(("127.0.0.1", port))
        except OSError:
            pytest.skip("biff/udp port busy")
        comsat.settimeout(30)
        rig = run("biff = yes\n")
        try:
            fay = users.add("fay")
            for n in range(2):
                rig.submit(["%s@mx.example.com" % fay.pw_name])
                data = comsat.recv(512)
                size = os.stat(os.path.join(rig.mail, fay.pw_name)).st_size
                if n == 0:
                    assert data == b"%s@0\0" % fay.pw_name.encode()
                else:
                    offset = int(data[:-1].split(b"@")[1])
                    assert 0 < offset < size
        finally:
            rig.cleanup()


def test_user_owned_alias_table_runs_as_its_owner(users):
    """|command and /file deliveries of an alias table that a user owns run with that
    user's rights (a root-owned table: default_privs)."""
    import subprocess
    owner = users.add("own")
    scratch = "/tmp/local1-own-%s" % users.tag
    os.makedirs(scratch)
    try:
        os.chmod(scratch, 0o1777)
        aliases = os.path.join(scratch, "aliases")
        with open(aliases, "w") as f:
            f.write('ucmd: "|/bin/sh -c \'id -u > %s/ucmd.out\'"\nufile: %s/ufile.mbox\n'
                    % (scratch, scratch))
        etc = os.path.join(scratch, "etc")
        os.makedirs(etc)
        with open(os.path.join(etc, "main.cf"), "w") as f:
            f.write("compatibility_level = 3.7\n")
        os.utime(os.path.join(etc, "main.cf"), (946684800, 946684800))
        subprocess.run(["/usr/sbin/postalias", "-c", etc, aliases], check=True)
        for name in (aliases, aliases + ".db"):
            os.chown(name, owner.pw_uid, owner.pw_gid)
        rig = run("alias_maps = hash:%s\n" % aliases)
        try:
            rig.submit(["ucmd@mx.example.com", "ufile@mx.example.com"])
            rig.wait_log(r"status=sent \(delivered to command")
            rig.wait_log(r"status=sent \(delivered to file")
            assert read(os.path.join(scratch, "ucmd.out")).split() == [str(owner.pw_uid)]
            assert os.stat(os.path.join(scratch, "ufile.mbox")).st_uid == owner.pw_uid
        finally:
            rig.cleanup()
    finally:
        import shutil
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.skipif(not os.path.exists("/usr/bin/swaks"), reason="needs swaks")
def test_swaks_through_smtpd_to_mailbox(users):
    """A message from swaks through pyfix's smtpd, cleanup and qmgr into an mbox."""
    import subprocess
    from master_run import free_port
    port = free_port()
    rig = LocalRig(smtpd_port=port).start()
    try:
        gil = users.add("gil")
        result = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(port), "--from",
             "zed@example.net", "--to", "%s@mx.example.com" % gil.pw_name,
             "--header", "Subject: via smtp", "--body", "From the net\n.\n..dots"],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        rig.wait_log(r"to=<%s@mx\.example\.com>.*status=sent \(delivered to mailbox\)"
                     % gil.pw_name)
        (message,) = list(mailbox.mbox(os.path.join(rig.mail, gil.pw_name)))
        assert message["Subject"] == "via smtp"
        assert message["Return-Path"] == "<zed@example.net>"
        assert message.get_payload().startswith(">From the net\n.\n..dots\n")
    finally:
        rig.cleanup()

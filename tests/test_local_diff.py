"""local(8) against Debian's local: the same users, aliases, .forward files and
messages through the same queue rig, once with /usr/lib/postfix/sbin/local and once
with pyfix's; local's log lines (normalized, as a sorted list: qmgr runs two local
processes at a time) and the delivered mailboxes (dates and queue IDs masked, messages
sorted) must be the same."""

import glob
import os
import pwd
import re
import shutil
import subprocess

import pytest

from test_local_rig import (DEBIAN_LOCAL, PYFIX_LOCAL, LocalRig, Users, mask_mbox,
                            normalize, read, rig_available)

pytestmark = pytest.mark.skipif(not rig_available(), reason="needs root and Postfix")


@pytest.fixture
def world():
    """Users with homes under a root-owned directory, and a scratch directory."""
    users = Users(None)
    scratch = "/tmp/local1-diff-%s" % users.tag
    homes = os.path.join(scratch, "home")
    os.makedirs(homes)
    os.chmod(scratch, 0o1777)
    os.chmod(homes, 0o755)
    users.home_root = homes
    yield users, scratch
    users.remove()
    shutil.rmtree(scratch, ignore_errors=True)


def _postalias(scratch, aliases):
    etc = os.path.join(scratch, "etc")
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "main.cf"), "w") as f:
        f.write("compatibility_level = 3.7\n")
    os.utime(os.path.join(etc, "main.cf"), (946684800, 946684800))
    subprocess.run(["/usr/sbin/postalias", "-c", etc, aliases], check=True)


def _messages(text):
    """The messages of an mbox, sorted: two local processes deliver at a time."""
    if text is None or isinstance(text, list):
        return text
    return sorted(part for part in re.split(r"(?m)^(?=From )", text) if part)


def _mbox(path, qids):
    return mask_mbox(read(path), qids) if os.path.exists(path) else None


def _maildir(path, qids):
    return sorted(mask_mbox(read(name), qids) for name in glob.glob(path + "/new/*"))


def _run(local, extra, submissions, waits):
    """One side: the local lines and the rig, still running, for the caller to read."""
    rig = LocalRig(local=local, main_cf_extra=extra).start()
    qids = [rig.submit(rcpts, **kw) for rcpts, kw in submissions]
    for pattern in waits:
        rig.wait_log(pattern.format(*qids), 60)
    assert rig.queue_empty()
    rig.quiet()
    return rig, qids, sorted(normalize(rig.local_lines(), qids))


def _aliases_world(users, scratch):
    bob, carol, dave, eve = (users.add(n) for n in ("bob", "carol", "dave", "eve"))
    include = os.path.join(scratch, "list.inc")
    with open(include, "w") as f:
        f.write("# members\n%s\n%s\n" % (bob.pw_name, carol.pw_name))
    aliases = os.path.join(scratch, "aliases")
    with open(aliases, "w") as f:
        f.write("team: %s, %s\n" % (bob.pw_name, carol.pw_name))
        f.write("incl: :include:%s\n" % include)
        f.write('cmd: "|/bin/sh -c \'id -u >> %s/cmd.out; cat > /dev/null\'"\n' % scratch)
        f.write("tofile: %s/file.mbox\n" % scratch)
        f.write("loopa: loopb\nloopb: loopa\n")
        f.write("owned: %s\nowner-owned: %s\n" % (carol.pw_name, bob.pw_name))
        f.write("ownfail: |/bin/false\nowner-ownfail: %s\n" % bob.pw_name)
        f.write("inclcmd: :include:%s/cmds.inc\n" % scratch)
        f.write("tomaildir: %s/md/\n" % scratch)
        f.write("wwincl: :include:%s/ww.inc\n" % scratch)
    with open(os.path.join(scratch, "ww.inc"), "w") as f:
        f.write("%s\n" % bob.pw_name)
    os.chmod(os.path.join(scratch, "ww.inc"), 0o666)
    with open(os.path.join(scratch, "cmds.inc"), "w") as f:
        f.write("|/bin/true\n%s/never.mbox\n" % scratch)
    _postalias(scratch, aliases)
    forward = os.path.join(dave.pw_dir, ".forward")
    with open(forward, "w") as f:
        f.write("%s\n" % eve.pw_name)
    os.chown(forward, dave.pw_uid, dave.pw_gid)
    return dict(bob=bob, carol=carol, dave=dave, eve=eve), aliases


def test_aliases_forward_include_command_file(world):
    users, scratch = world
    people, aliases = _aliases_world(users, scratch)
    names = {key: entry.pw_name for key, entry in people.items()}
    rcpts = [names.get(r, r) + "@mx.example.com" for r in (
        "bob", "team", "incl", "cmd", "tofile", "loopa", "nosuchuser", "owned", "dave",
        "postmaster", "ownfail", "inclcmd", "tomaildir", "wwincl")] + ["%s+ext@mx.example.com" % names["bob"]]
    submissions = [(rcpts, dict(headers=["Subject: diff", "From: alice@example.com"],
                                body=["From here", "body"]))]
    waits = [r"{0}: removed", r"to=<alice@example\.com>.*status=bounced",
             r"to=<%s@example\.com>, orig_to=<owner-ownfail.*status=sent" % names["bob"]]
    extra = "alias_maps = hash:%s\nrecipient_delimiter = +\n" % aliases
    results = []
    for local in (DEBIAN_LOCAL, PYFIX_LOCAL):
        rig, qids, lines = _run(local, extra, submissions, waits)
        try:
            boxes = {key: _mbox(os.path.join(rig.mail, name), qids)
                     for key, name in names.items()}
            boxes["file"] = mask_mbox(read(os.path.join(scratch, "file.mbox")), qids)
            boxes["cmd"] = read(os.path.join(scratch, "cmd.out"))
            boxes["md"] = _maildir(os.path.join(scratch, "md"), qids)
            md_owner = os.stat(os.path.join(scratch, "md", "new")).st_uid
            shutil.rmtree(os.path.join(scratch, "md"))
            os.unlink(os.path.join(scratch, "file.mbox"))
            os.unlink(os.path.join(scratch, "cmd.out"))
            results.append((lines, boxes))
        finally:
            rig.cleanup()
    (want_lines, want_boxes), (got_lines, got_boxes) = results
    assert got_lines == want_lines
    for key in want_boxes:
        assert _messages(got_boxes[key]) == _messages(want_boxes[key]), key
    # the command of a root-owned alias runs with default_privs, never as root
    assert got_boxes["cmd"].split() == [str(pwd.getpwnam("nobody").pw_uid)]
    assert md_owner == pwd.getpwnam("nobody").pw_uid
    text = "\n".join(got_lines)
    for status in ("alias database loop for loopb", "mail to command is restricted",
                   "mail to file is restricted", "Command died with status 1",
                   "delivered to maildir", "ww.inc is world writable",
                   "dsn=5.3.5, status=bounced (mail system configuration error)"):
        assert status in text
    assert any("MAILER-DAEMON" in m.split("\n")[0] for m in _messages(got_boxes["bob"]))


def test_maildir_loop_home_and_writable_forward(world):
    """Maildir delivery, a Delivered-To: loop, a missing home directory (deferred), a
    world-writable .forward (refused with a warning: the mail goes to the Maildir), a
    group-writable one (accepted, as Postfix does), and ~/.forward+list for the
    address extension `+list`."""
    users, scratch = world
    bob, eve, gw, fred = (users.add(n) for n in ("bob", "eve", "gw", "fred"))
    nohome = users.add("nohome", home=False)
    for owner, mode, target, name in ((eve, 0o666, bob, ".forward"),
                                      (gw, 0o664, fred, ".forward"),
                                      (bob, 0o644, fred, ".forward+list")):
        forward = os.path.join(owner.pw_dir, name)
        with open(forward, "w") as f:
            f.write("%s\n" % target.pw_name)
        os.chown(forward, owner.pw_uid, owner.pw_gid)
        os.chmod(forward, mode)
    extra = ("alias_maps =\nhome_mailbox = Maildir/\nrequire_home_directory = yes\n"
             "recipient_delimiter = +\n")
    at = "@mx.example.com"
    submissions = [
        ([bob.pw_name + at, eve.pw_name + at, nohome.pw_name + at, gw.pw_name + at,
          bob.pw_name + "+list" + at],
         dict(headers=["Subject: maildir"], body=["From me", "x"])),
        ([bob.pw_name + at], dict(headers=["Delivered-To: %s%s" % (bob.pw_name, at),
                                           "Subject: looping"])),
    ]
    waits = [r"{0}: to=<%s.*status=deferred" % nohome.pw_name,
             r"{1}: to=<%s.*status=bounced" % bob.pw_name,
             r"to=<%s@example\.com>, orig_to=<%s" % (fred.pw_name, gw.pw_name),
             r"to=<%s@example\.com>, orig_to=<%s\+list" % (fred.pw_name, bob.pw_name)]
    results = []
    for local in (DEBIAN_LOCAL, PYFIX_LOCAL):
        rig, qids, lines = _run(local, extra, submissions, waits)
        try:
            boxes = {entry.pw_name: _maildir(os.path.join(entry.pw_dir, "Maildir"), qids)
                     for entry in (bob, eve, fred)}
            results.append((lines, boxes))
        finally:
            rig.cleanup()
        for entry in (bob, eve, fred):
            shutil.rmtree(os.path.join(entry.pw_dir, "Maildir"), ignore_errors=True)
    (want_lines, want_boxes), (got_lines, got_boxes) = results
    assert got_lines == want_lines
    assert got_boxes == want_boxes
    text = "\n".join(got_lines)
    assert "is world writable" in text
    assert "mail forwarding loop for %s%s" % (bob.pw_name, at) in text
    assert "cannot access home directory" in text
    assert len(got_boxes[bob.pw_name]) == len(got_boxes[eve.pw_name]) == 1
    assert len(got_boxes[fred.pw_name]) == 2


def test_full_file_system_defers(world):
    """A mail spool on a small tmpfs: the delivery is deferred with Postfix's status,
    the mailbox is truncated back, and the message stays queued."""
    users, scratch = world
    bob = users.add("bob")
    body = ["%05d %s" % (n, "x" * 70) for n in range(400)]        # ~30 KB
    results = []
    for local in (DEBIAN_LOCAL, PYFIX_LOCAL):
        rig = LocalRig(local=local)
        mounted = False
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,mode=1777", "tmpfs",
                            rig.mail], check=True)
            mounted = True
            rig.start()
            qid = rig.submit([bob.pw_name + "@mx.example.com"], body=body)
            rig.wait_log(r"%s: to=<.*status=deferred" % qid, 60)
            rig.quiet()
            box = os.path.join(rig.mail, bob.pw_name)
            size = os.stat(box).st_size if os.path.exists(box) else 0
            lines = [line.replace(rig.root, "ROOT") for line in rig.local_lines()]
            results.append((sorted(normalize(lines, [qid])), size,
                            rig.queue_ids("deferred")))
        finally:
            rig.master.stop()
            if mounted:
                subprocess.run(["umount", rig.mail], check=True)
            rig.cleanup()
    (want_lines, want_size, want_queue), (got_lines, got_size, got_queue) = results
    assert got_lines == want_lines
    assert "No space left on device" in got_lines[-1]
    assert "dsn=4.3.0" in got_lines[-1]
    assert got_size == want_size == 0
    assert len(got_queue) == 1


def test_transports_and_luser_relay(world):
    """fallback_transport_maps and mailbox_transport_maps pass the recipient to another
    agent (`passing <x> to transport=error`), luser_relay (with $user) catches the
    other unknown users, MAILER-DAEMON included."""
    users, scratch = world
    bob = users.add("bob")
    extra = ("fallback_transport_maps = inline:{{ghost=error:5.1.1 gone away}}\n"
             "mailbox_transport_maps = inline:{{held=error:4.2.1 try later}}\n"
             "luser_relay = %s+$user@mx.example.com\nrecipient_delimiter = +\n"
             % bob.pw_name)
    rcpts = [name + "@mx.example.com" for name in ("ghost", "held", "stray", bob.pw_name,
                                                   "MAILER-DAEMON")]
    submissions = [(rcpts, dict(headers=["Subject: transports"]))]
    waits = [r"{0}: removed", r"to=<%s\+alice@.*delivered to mailbox" % bob.pw_name]
    results = []
    for local in (DEBIAN_LOCAL, PYFIX_LOCAL):
        rig, qids, lines = _run(local, extra, submissions, waits)
        try:
            box = _messages(_mbox(os.path.join(rig.mail, bob.pw_name), qids))
            # the non-delivery notice (dated MIME boundaries) is compared by its log
            results.append((lines, [m for m in box if not m.startswith("From MAILER")]))
        finally:
            rig.cleanup()
    assert results[1] == results[0]
    assert len(results[1][1]) == 3
    text = "\n".join(results[1][0])
    assert "passing <ghost@mx.example.com> to transport=error" in text
    assert "passing <held@mx.example.com> to transport=error" in text


@pytest.mark.parametrize("lock", ["dotlock", "fcntl", "flock"])
def test_locked_mailbox_defers(world, lock):
    """A mailbox that someone else holds locked (a `.lock` file, an fcntl() or a
    flock() lock) is deferred with 4.2.0 after deliver_lock_attempts tries."""
    import fcntl
    users, scratch = world
    bob = users.add("bob")
    extra = ("deliver_lock_attempts = 2\ndeliver_lock_delay = 1s\n"
             "mailbox_delivery_lock = %s\n" % ("fcntl, dotlock" if lock != "flock"
                                                else "flock"))
    results = []
    for local in (DEBIAN_LOCAL, PYFIX_LOCAL):
        rig = LocalRig(local=local, main_cf_extra=extra)
        box = os.path.join(rig.mail, bob.pw_name)
        with open(box, "w") as holder:
            os.chown(box, bob.pw_uid, bob.pw_gid)
            if lock == "dotlock":
                open(box + ".lock", "w").close()
            elif lock == "fcntl":
                fcntl.lockf(holder, fcntl.LOCK_EX)
            else:
                fcntl.flock(holder, fcntl.LOCK_EX)
            try:
                rig.start()
                qid = rig.submit([bob.pw_name + "@mx.example.com"])
                rig.wait_log(r"%s: to=<.*status=deferred" % qid, 60)
                rig.quiet()
                lines = [line.replace(rig.root, "ROOT") for line in rig.local_lines()]
                results.append((normalize(lines, [qid]), os.path.getsize(box)))
            finally:
                rig.cleanup()
    assert results[1] == results[0]
    assert "dsn=4.2.0" in results[1][0][-1]


def test_mailbox_size_limit_bounces(world):
    """mailbox_size_limit is the file size limit of local: a mailbox that would grow
    past it is not touched (truncated back) and the recipient bounces with 5.2.2."""
    users, scratch = world
    bob = users.add("bob")
    extra = "message_size_limit = 20000\nmailbox_size_limit = 20000\n"
    body = ["%05d %s" % (n, "y" * 70) for n in range(110)]        # ~8 KB
    results = []
    for local in (DEBIAN_LOCAL, PYFIX_LOCAL):
        rig = LocalRig(local=local, main_cf_extra=extra)
        box = os.path.join(rig.mail, bob.pw_name)
        with open(box, "w") as f:
            f.write("From x  Thu Jan  1 00:00:00 2026\n\n" + "z" * 15000 + "\n\n")
        os.chown(box, bob.pw_uid, bob.pw_gid)
        before = os.path.getsize(box)
        try:
            rig.start()
            qid = rig.submit([bob.pw_name + "@mx.example.com"], body=body)
            rig.wait_log(r"%s: to=<.*status=bounced" % qid, 60)
            rig.quiet()
            lines = [line.replace(rig.root, "ROOT") for line in rig.local_lines()]
            results.append((normalize(lines, [qid]), os.path.getsize(box) - before))
        finally:
            rig.cleanup()
    assert results[1] == results[0]
    assert "dsn=5.2.2" in results[1][0][0] and "File too large" in results[1][0][0]
    assert results[1][1] == 0


def test_mailbox_commands(world):
    """mailbox_command_maps and mailbox_command through local_command_shell: the
    sysexits.h status of a command, an enhanced status code in its output, the time
    limit, and a command that takes the message."""
    users, scratch = world
    bob, carol, dave, eve = (users.add(n) for n in ("bob", "carol", "dave", "eve"))
    extra = ("mailbox_command_maps = inline:{{%s=exit 75}, {%s=echo 5.2.2 mailbox full; "
             "exit 1}, {%s=sleep 10}}\n" % (bob.pw_name, carol.pw_name, dave.pw_name)
             + "mailbox_command = /bin/cat > $HOME/got\nlocal_command_shell = /bin/sh -c\n"
             "command_time_limit = 2s\n")
    rcpts = [entry.pw_name + "@mx.example.com" for entry in (bob, carol, dave, eve)]
    submissions = [(rcpts, dict(headers=["Subject: commands"], body=["From a", "b"]))]
    waits = [r"{0}: to=<%s@.*status=deferred" % bob.pw_name,
             r"{0}: to=<%s@.*status=bounced" % carol.pw_name,
             r"{0}: to=<%s@.*status=bounced" % dave.pw_name,
             r"{0}: to=<%s@.*status=sent" % eve.pw_name]
    results = []
    for local in (DEBIAN_LOCAL, PYFIX_LOCAL):
        rig, qids, lines = _run(local, extra, submissions, waits)
        try:
            got = os.path.join(eve.pw_dir, "got")
            results.append((lines, mask_mbox(read(got), qids), os.stat(got).st_uid))
            os.unlink(got)
        finally:
            rig.cleanup()
    assert results[1] == results[0]
    text = "\n".join(results[1][0])
    for status in ("dsn=4.3.0, status=deferred (temporary failure)",
                   "dsn=5.2.2, status=bounced (mailbox full )",
                   "Command time limit exceeded"):
        assert status in text, text
    assert results[1][2] == eve.pw_uid


def test_address_verification_by_user(world):
    """`sendmail -bv` (the trace_flags of DEL_REQ_FLAG_USR_VRFY): nothing is delivered,
    each leaf of the expansion is reported (`delivers to mailbox`, `delivers to
    command: ...`, `forwards to ...`) in the report that goes to the sender."""
    users, scratch = world
    people, aliases = _aliases_world(users, scratch)
    names = {key: entry.pw_name for key, entry in people.items()}
    rcpts = [names.get(r, r) + "@mx.example.com" for r in (
        "bob", "team", "cmd", "tofile", "incl", "dave", "nosuchuser")]
    sender = names["carol"] + "@mx.example.com"
    submissions = [(rcpts, dict(sender=sender, headers=["Subject: verify"],
                                envelope=[(b"A", b"trace_flags=512")]))]
    waits = [r"{0}: removed", r"to=<%s@mx\.example\.com>.*status=sent" % names["carol"]]
    extra = "alias_maps = hash:%s\n" % aliases
    results = []
    for local in (DEBIAN_LOCAL, PYFIX_LOCAL):
        rig, qids, lines = _run(local, extra, submissions, waits)
        try:
            # the report's paragraphs, sorted: two local processes append at a time
            report = sorted(_mbox(os.path.join(rig.mail, names["carol"]), qids)
                            .split("\n\n"))
            results.append((lines, report, _mbox(os.path.join(rig.mail, names["bob"]), qids),
                            os.path.exists(os.path.join(scratch, "cmd.out"))))
        finally:
            rig.cleanup()
    assert results[1] == results[0]
    lines, report, bob_box, cmd_ran = results[1]
    report = "\n\n".join(report)
    assert bob_box is None and not cmd_ran
    for text in ("delivers to mailbox", "delivers to command", "delivers to file",
                 "forwards to", 'unknown user: "nosuchuser"'):
        assert text in report, report


@pytest.mark.parametrize("setting", ["mailbox_delivery_lock = fcntl, bogus",
                                     "allow_mail_to_files = alias, everything",
                                     "mailbox_delivery_lock = dotlock\n"
                                     "sun_mailtool_compatibility = yes\n"
                                     "prepend_delivered_header = cmd"])
def test_bad_settings_are_fatal_as_in_postfix(world, setting):
    """A bad setting ends local with Postfix's fatal message, not a traceback."""
    users, scratch = world
    results = []
    for local in (DEBIAN_LOCAL, PYFIX_LOCAL):
        rig = LocalRig(local=local, main_cf_extra=setting + "\n").start()
        try:
            rig.submit(["someone@mx.example.com"])
            rig.wait_log(r"postfix/local\[\d+\]: fatal: ", 60)
            lines = [re.sub(r"^.*?postfix/local\[\d+\]: ", "", line).replace(rig.root, "R")
                     for line in rig.local_lines()]
            results.append(lines[:1])
        finally:
            rig.cleanup()
    assert results[1] == results[0]
    assert "Traceback" not in "".join(results[1])


def test_spool_maildir_and_foreign_mailbox(world):
    """mail_spool_directory ending in `/` makes spool Maildirs; a spool mailbox that
    another user owns is deferred (strict_mailbox_ownership) with Postfix's warning."""
    users, scratch = world
    bob, carol = users.add("bob"), users.add("carol")
    results = []
    for local in (DEBIAN_LOCAL, PYFIX_LOCAL):
        rig = LocalRig(local=local)
        try:
            foreign = os.path.join(rig.mail, carol.pw_name)
            open(foreign, "w").close()
            os.chown(foreign, bob.pw_uid, bob.pw_gid)
            os.chmod(foreign, 0o666)        # writable, but not the recipient's
            rig.start()
            qid = rig.submit([carol.pw_name + "@mx.example.com"])
            rig.wait_log(r"%s: to=<.*status=deferred" % qid, 60)
            rig.master.stop()
            rig.write_main_cf("mail_spool_directory = $ROOT/mail/md/\n")
            rig.start()
            rig.wait_log(r"daemon started", count=2)
            qid2 = rig.submit([bob.pw_name + "@mx.example.com"])
            rig.wait_log(r"%s: to=<.*delivered to maildir" % qid2, 60)
            rig.quiet()
            lines = [line.replace(rig.root, "R") for line in rig.local_lines()]
            results.append((normalize(lines, [qid, qid2]),
                            _maildir(os.path.join(rig.mail, "md", bob.pw_name), [qid2]),
                            os.path.getsize(foreign)))
        finally:
            rig.cleanup()
    assert results[1] == results[0]
    assert "is not owned by recipient" in "\n".join(results[1][0])
    assert len(results[1][1]) == 1


def test_dsn_success_notices(world):
    """NOTIFY=SUCCESS: an alias reports `expanded`, a mailing list with an owner-
    alias `delivered`, a .forward `expanded`, a mailbox `delivered`; the sender's
    delivery status notification is the same as Debian's."""
    users, scratch = world
    people, aliases = _aliases_world(users, scratch)
    names = {key: entry.pw_name for key, entry in people.items()}
    sender = names["carol"] + "@mx.example.com"
    envelope = []
    for rcpt in ("team", "owned", "dave", "bob"):
        envelope += [(b"A", b"notify_flags=2"),
                     (b"R", (names.get(rcpt, rcpt) + "@mx.example.com").encode())]
    submissions = [([], dict(sender=sender, headers=["Subject: dsn"], envelope=envelope))]
    waits = [r"{0}: removed",
             r"to=<%s@mx\.example\.com>.*\(delivered to mailbox\)" % names["carol"]]
    extra = "alias_maps = hash:%s\n" % aliases
    results = []
    for local in (DEBIAN_LOCAL, PYFIX_LOCAL):
        rig, qids, lines = _run(local, extra, submissions, waits)
        try:
            box = _mbox(os.path.join(rig.mail, names["carol"]), qids)
            notices = [m for m in _messages(box) if m.startswith("From MAILER-DAEMON")]
            results.append((lines, [sorted(m.split("\n\n")) for m in notices]))
        finally:
            rig.cleanup()
    assert results[1] == results[0]
    text = "\n".join("\n\n".join(m) for m in results[1][1])
    for action in ("Action: expanded", "Action: delivered"):
        assert action in text, (text, results[1][0])

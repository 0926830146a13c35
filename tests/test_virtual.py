"""virtual(8): pyfix's agent beside Debian's /usr/lib/postfix/sbin/virtual.

Each scenario runs twice on tests/agent_rig.py's queue master (pyfix's master, cleanup
and qmgr; Debian's trivial-rewrite puts $virtual_mailbox_domains in the virtual class):
once with pyfix's virtual as the `virtual` service, once with Debian's. The mailboxes
(Maildir and mbox, read back with Python's mailbox module), their owners, and the log
lines of qmgr and the agent (queue IDs, delays and paths masked) must be the same. The
mail is delivered as a user the test creates (useradd; userdel at the end).
"""

import mailbox
import os
import re

import pytest

from pyfix.queue import record as R

from agent_rig import (DEBIAN, PYFIX, AgentRig, MailUser, agents_available, chown_tree,
                       mask_message)

pytestmark = pytest.mark.skipif(not agents_available(),
                                reason="needs root, Debian's Postfix daemons")

SERVICE = "virtual unix - n n - - {agent:virtual}\n"


@pytest.fixture(scope="module")
def user():
    account = MailUser()
    yield account
    account.remove()


def main_cf(user, mailboxes, extra=""):
    entries = ", ".join("%s=%s" % pair for pair in mailboxes)
    return ("virtual_mailbox_domains = virt.example\n"
            "virtual_mailbox_base = {root}/vmail\n"
            "virtual_mailbox_maps = inline:{%s}\n"
            "virtual_uid_maps = static:%d\n"
            "virtual_gid_maps = static:%d\n" % (entries, user.uid, user.gid)) + extra


def run(side, user, config, messages, wait=r"(?i)to=<[^>]*virt\.example>.*status=\w+",
        count=None, prepare=None, chown_after=None, pyfix_rewrite=False):
    """One side: (log lines, mailbox contents by name, file owners)."""
    rig = AgentRig(side, SERVICE, "", pyfix_rewrite=pyfix_rewrite)
    try:
        path = os.path.join(rig.master.etc, "main.cf")
        with open(path, "a") as f:
            f.write(config.replace("{root}", rig.root))
        vmail = rig.path("vmail")
        os.makedirs(vmail)
        if prepare:
            prepare(vmail)
        chown_tree(vmail, user.uid, user.gid)
        if chown_after:
            chown_after(vmail)
        rig.start_sink()
        rig.start()
        queue_ids = [rig.submit(**kw) for kw in messages]
        rig.wait_log(wait, count=count or sum(len(kw["rcpts"]) for kw in messages))
        rig.quiet()
        return rig.agent_lines(queue_ids), read_boxes(vmail, queue_ids), owners(vmail)
    finally:
        rig.cleanup()


def read_boxes(vmail, queue_ids, prefix=""):
    """Mailboxes by path under vmail: a Maildir's messages, an mbox's raw text and
    messages; other directories are searched."""
    boxes = {}
    for name in sorted(os.listdir(vmail)):
        path = os.path.join(vmail, name)
        if os.path.isdir(os.path.join(path, "new")):
            box = mailbox.Maildir(path, create=False)
            boxes[prefix + name] = sorted(mask_message(m.as_string(), queue_ids)
                                          for m in box)
        elif os.path.isdir(path):
            boxes.update(read_boxes(path, queue_ids, prefix + name + "/"))
        else:
            with open(path, "rb") as f:
                raw = f.read().decode("utf-8", "surrogateescape")
            # Raw From_-separated entries (sorted: concurrent deliveries append in
            # either order), and the messages as the mailbox module parses them.
            box = mailbox.mbox(path, create=False)
            entries = [e for e in re.split(r"(?m)^(?=From )", mask_message(raw, queue_ids))
                       if e]
            boxes[prefix + name] = [sorted(entries),
                                    sorted(mask_message(m.as_string(), queue_ids)
                                           for m in box)]
    return boxes


def owners(vmail):
    out = []
    for dirpath, dirnames, filenames in os.walk(vmail):
        for name in sorted(dirnames + filenames):
            st = os.stat(os.path.join(dirpath, name))
            out.append((os.path.relpath(os.path.join(dirpath, name), vmail).split("/")[0],
                        st.st_uid, st.st_gid, oct(st.st_mode)))
    return sorted(set(out))


def both(user, config, messages, **kw):
    return run(PYFIX, user, config, messages, **kw), run(DEBIAN, user, config, messages,
                                                         **kw)


def test_maildir_mbox_and_unknown_like_postfix(user):
    """A Maildir (result ending in /, created on the fly), an mbox (appended twice,
    locked with virtual_mailbox_lock), mixed case, an address extension
    (recipient_delimiter), an unknown recipient."""
    config = main_cf(user, [("bob@virt.example", "bob/"), ("carol@virt.example",
                                                            "carol.mbox")],
                     "recipient_delimiter = +\n")
    messages = [dict(sender="alice@discard.example",
                     rcpts=("bob@virt.example", "Carol@Virt.Example", "nobody@virt.example",
                            "bob+Ext@virt.example"),
                     headers=["Subject: hello"], body=["From me", "line"]),
                dict(sender="", rcpts=("carol@virt.example",), body=["second"])]
    (ours, our_boxes, our_owners), (theirs, their_boxes, their_owners) = both(
        user, config, messages)
    assert ours == theirs
    assert our_boxes == their_boxes
    assert our_owners == their_owners
    text = "\n".join(ours)
    assert "to=<bob@virt.example>, relay=virtual, delay=D, delays=D, dsn=2.0.0, " \
        "status=sent (delivered to maildir)" in text
    assert "status=sent (delivered to mailbox)" in text
    assert 'status=bounced (unknown user: "nobody@virt.example")' in text
    assert len(our_boxes["bob"]) == 2 and len(our_boxes["carol.mbox"][1]) == 2
    assert "Delivered-To: bob+Ext@virt.example" in "".join(our_boxes["bob"])
    assert all(uid == user.uid for _, uid, _, _ in our_owners)


def test_with_pyfix_trivial_rewrite(user):
    """The whole path in pyfix's daemons but bounce: pyfix's trivial-rewrite puts
    $virtual_mailbox_domains in the virtual class, pyfix's qmgr hands the recipients to
    pyfix's virtual; the result is that of Debian's trivial-rewrite and virtual."""
    config = main_cf(user, [("bob@virt.example", "bob/"), ("carol@virt.example",
                                                            "carol.mbox")])
    messages = [dict(sender="alice@discard.example",
                     rcpts=("bob@virt.example", "carol@virt.example", "x@virt.example"))]
    ours = run(PYFIX, user, config, messages, pyfix_rewrite=True)
    theirs = run(DEBIAN, user, config, messages)
    assert ours == theirs
    assert len(ours[1]["bob"]) == 1


def test_uid_gid_refusals_like_postfix(user):
    """virtual_minimum_uid refuses a low uid; a uid or gid missing from its table, or a
    bad gid, defers as a configuration error."""
    config = ("virtual_mailbox_domains = virt.example\n"
              "virtual_mailbox_base = {root}/vmail\n"
              "virtual_mailbox_maps = inline:{low@virt.example=low/, nouid@virt.example=n/,"
              " badgid@virt.example=b/, ok@virt.example=ok/}\n"
              "virtual_uid_maps = inline:{low@virt.example=50, badgid@virt.example=%d, "
              "ok@virt.example=%d}\n"
              "virtual_gid_maps = inline:{low@virt.example=%d, nouid@virt.example=%d, "
              "badgid@virt.example=0, ok@virt.example=%d}\n"
              "virtual_minimum_uid = 100\n"
              % (user.uid, user.uid, user.gid, user.gid, user.gid))
    messages = [dict(sender="alice@discard.example",
                     rcpts=("low@virt.example", "nouid@virt.example", "badgid@virt.example",
                            "ok@virt.example"))]
    (ours, our_boxes, _), (theirs, their_boxes, _) = both(user, config, messages)
    assert ours == theirs
    assert our_boxes == their_boxes
    text = "\n".join(ours)
    assert "warning: recipient low@virt.example: bad uid 50 in virtual_uid_maps" in text
    assert "warning: recipient nouid@virt.example: not found in virtual_uid_maps" in text
    assert "warning: recipient badgid@virt.example: bad gid 0 in virtual_gid_maps" in text
    assert text.count("status=deferred (mail system configuration error)") == 3
    assert list(our_boxes) == ["ok"]


def test_mailbox_limit_like_postfix(user):
    """virtual_mailbox_limit: a message that would make the mbox outgrow it bounces
    (5.2.2, the mbox truncated back); a Maildir file that fits is delivered."""
    config = main_cf(user, [("full@virt.example", "full.mbox"), ("fits@virt.example",
                                                                "fits/")],
                     "message_size_limit = 2000\nvirtual_mailbox_limit = 3000\n")
    existing = b"From x  Thu Jan  1 00:00:00 2026\n" + b"y" * 2799 + b"\n\n"

    def prepare(vmail):
        with open(os.path.join(vmail, "full.mbox"), "wb") as f:
            f.write(existing)

    messages = [dict(sender="alice@discard.example",
                     rcpts=("full@virt.example", "fits@virt.example"))]
    (ours, our_boxes, _), (theirs, their_boxes, _) = both(user, config, messages,
                                                          prepare=prepare)
    assert ours == theirs
    assert our_boxes == their_boxes
    assert any("dsn=5.2.2, status=bounced (delivery failed to mailbox ROOT/vmail/full.mbox:"
               " error writing message: File too large)" in line for line in ours), ours
    assert our_boxes["full.mbox"][0] == [mask_message(existing.decode())]
    assert len(our_boxes["fits"]) == 1


def test_access_problems_like_postfix(user):
    """A Maildir the recipient may not create (deferred, with Postfix's two warnings),
    an mbox owned by someone else (strict_mailbox_ownership: deferred), and an mbox
    delivered with virtual_mailbox_lock = fcntl, dotlock (its .lock removed)."""
    config = main_cf(user, [("locked@virt.example", "closed/Maildir/"),
                            ("other@virt.example", "other.mbox"),
                            ("dot@virt.example", "dot.mbox")],
                     "virtual_mailbox_lock = fcntl, dotlock\n")

    def prepare(vmail):
        os.makedirs(os.path.join(vmail, "closed"))
        with open(os.path.join(vmail, "other.mbox"), "w"):
            pass

    def run_side(side):
        lines, boxes, found = run(side, user, config, messages, prepare=prepare,
                                  chown_after=lambda vmail: (
                                      os.chown(os.path.join(vmail, "closed"), 0, 0),
                                      os.chmod(os.path.join(vmail, "closed"), 0o755),
                                      os.chown(os.path.join(vmail, "other.mbox"), 0, 0),
                                      os.chmod(os.path.join(vmail, "other.mbox"), 0o666)))
        return lines, boxes, found

    messages = [dict(sender="alice@discard.example",
                     rcpts=("locked@virt.example", "other@virt.example", "dot@virt.example"))]
    (ours, our_boxes, our_owners), (theirs, their_boxes, their_owners) = \
        run_side(PYFIX), run_side(DEBIAN)
    assert ours == theirs
    assert our_boxes == their_boxes
    assert our_owners == their_owners
    text = "\n".join(ours)
    assert "warning: perhaps you need to create the maildirs in advance" in text
    assert "status=deferred (maildir delivery failed: create maildir file " \
        "ROOT/vmail/closed/Maildir/tmp/" in text
    assert "status=deferred (delivery failed to mailbox ROOT/vmail/other.mbox: destination " \
        "ROOT/vmail/other.mbox is not owned by recipient)" in text
    assert 'warning: specify "strict_mailbox_ownership = no" to ignore mailbox ownership' \
        ' mismatch' in text
    assert "to=<dot@virt.example>, relay=virtual, delay=D, delays=D, dsn=2.0.0, " \
        "status=sent (delivered to mailbox)" in text
    assert "dot.mbox.lock" not in our_boxes and len(our_boxes["dot.mbox"][1]) == 1


def test_address_verification_only_like_postfix(user):
    """A `sendmail -bv` message (trace_flags with DEL_REQ_FLAG_USR_VRFY): nothing is
    written, the sender gets the report of what would happen."""
    config = main_cf(user, [("bob@virt.example", "bob/"), ("carol@virt.example",
                                                            "carol.mbox")])
    messages = [dict(sender="alice@discard.example",
                     rcpts=("bob@virt.example", "carol@virt.example", "x@virt.example"),
                     envelope=[(R.ATTR, b"trace_flags=512")])]
    (ours, our_boxes, _), (theirs, their_boxes, _) = both(
        user, config, messages, wait=r"delivery status notification", count=1)
    assert ours == theirs
    assert our_boxes == their_boxes == {}


def test_table_error_defers_like_postfix(user):
    """A virtual_mailbox_maps lookup error defers the recipient (4.3.5)."""
    config = ("virtual_mailbox_domains = virt.example\n"
              "virtual_mailbox_base = {root}/vmail\n"
              "virtual_mailbox_maps = fail:broken\n"
              "virtual_uid_maps = static:%d\nvirtual_gid_maps = static:%d\n"
              % (user.uid, user.gid))
    messages = [dict(sender="alice@discard.example", rcpts=("bob@virt.example",))]
    (ours, _, _), (theirs, _, _) = both(user, config, messages)
    assert ours == theirs
    assert "warning: table virtual_mailbox_maps: lookup bob@virt.example: " \
        "Application error" in ours


@pytest.mark.parametrize("limits,error", [
    ("message_size_limit = 2000\nvirtual_mailbox_limit = 1000\n",
     "fatal: configuration error: virtual_mailbox_limit is smaller than message_size_limit"),
    ("message_size_limit = 0\nvirtual_mailbox_limit = 1000\n",
     "fatal: configuration error: virtual_mailbox_limit is limited but message_size_limit"
     " is unlimited"),
    ("virtual_mailbox_base =\n", "fatal: bad string length 0 < 1: virtual_mailbox_base = "),
])
def test_configuration_errors_like_postfix(user, limits, error):
    """A mailbox limit below the message size limit, or with no message size limit, and
    an empty virtual_mailbox_base are fatal when the agent starts; the mail stays."""
    config = main_cf(user, [("bob@virt.example", "bob/")], limits)
    messages = [dict(sender="alice@discard.example", rcpts=("bob@virt.example",))]

    def fatal_lines(side):
        lines, boxes, _ = run(side, user, config, messages, wait="fatal: ")
        return sorted({line for line in lines if "fatal" in line}), boxes

    ours, theirs = fatal_lines(PYFIX), fatal_lines(DEBIAN)
    assert ours == theirs
    assert ours[0] == [error] and ours[1] == {}

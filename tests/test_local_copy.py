"""The shared delivery code under local(8), virtual(8) and pipe(8) on real files:
mail_copy() (flags, end of lines, truncation after a failed write on a full file
system, a damaged queue file), mbox_open() and its locks, dotlock files (held, stale),
maildir_write()."""

import fcntl
import os
import re
import stat
import subprocess
import tempfile

import pytest

from pyfix.common import dot_lockfile, mail_copy as mc
from pyfix.common.dsn_buf import DsnBuf
from pyfix.common.maildir import maildir_write
from pyfix.common.mbox_open import (MBOX_DOT_LOCK, MBOX_FCNTL_LOCK, MBOX_FLOCK_LOCK,
                                    mbox_open, mbox_release)
from pyfix.queue import record as R

ROOT = os.geteuid() == 0


def _queue_file(path, lines, end=True):
    """A queue file's message content: an M record, N/L records, then X (or not)."""
    records = [R.encode(R.MESG, b"0")]
    for line in lines:
        if isinstance(line, tuple):
            records.append(R.encode(R.CONT, line[0]))
        else:
            records.append(R.encode(R.NORM, line))
    if end:
        records += [R.encode(R.XTRA, b""), R.encode(R.END, b"")]
    with open(path, "wb") as f:
        f.write(b"".join(records))
    os.chmod(path, 0o700)
    src = open(path, "r+b")
    src.seek(len(R.encode(R.MESG, b"0")))
    return src


@pytest.fixture
def work():
    path = tempfile.mkdtemp(prefix="local1-copy-", dir="/tmp")
    saved = dict(dot_lockfile._settings), dict(mc._settings)
    yield path
    dot_lockfile._settings.update(saved[0])
    mc._settings.update(saved[1])
    subprocess.run(["rm", "-rf", path])


def test_mbox_format(work):
    src = _queue_file(os.path.join(work, "q"), [b"Subject: x", b"", b"From me",
                                                (b"long ",), b"line", b".dot"])
    why = DsnBuf()
    box = mbox_open(os.path.join(work, "mbox"), os.O_APPEND | os.O_WRONLY | os.O_CREAT,
                    0o600, -1, -1, MBOX_DOT_LOCK | MBOX_FCNTL_LOCK, "5.2.0", why)
    assert box is not None and os.path.exists(os.path.join(work, "mbox.lock"))
    assert mc.mail_copy('a b@example.com', "o@example.com", "d@example.com", src, box.fp,
                        mc.MAIL_COPY_MBOX, "\n", why) == 0
    mbox_release(box)
    assert not os.path.exists(os.path.join(work, "mbox.lock"))
    text = open(os.path.join(work, "mbox")).read()
    first, rest = text.split("\n", 1)
    assert re.fullmatch(r'From "a b"@example\.com  \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}',
                        first)
    assert rest == ('Return-Path: <"a b"@example.com>\nX-Original-To: o@example.com\n'
                    'Delivered-To: d@example.com\nSubject: x\n\n>From me\nlong line\n'
                    '.dot\n\n')


def test_dot_escape_crlf_and_null_sender(work):
    src = _queue_file(os.path.join(work, "q"), [b"S: y", b"", b".x", b"From y"])
    out = os.path.join(work, "out")
    with open(out, "wb") as dst:
        status = mc.mail_copy("", "", "d@example.com", src, dst,
                              mc.MAIL_COPY_FROM | mc.MAIL_COPY_DOT | mc.MAIL_COPY_ORIG_RCPT
                              | mc.MAIL_COPY_RETURN_PATH, "\r\n", DsnBuf())
    assert status == 0
    data = open(out, "rb").read()
    assert data.startswith(b"From MAILER-DAEMON  ")
    # no X-Original-To: without an original recipient; From_ lines not quoted
    assert data.split(b"\r\n", 1)[1] == b"Return-Path: <>\r\nS: y\r\n\r\n..x\r\nFrom y\r\n"


def test_original_recipient_disabled(work):
    mc._settings["enable_original_recipient"] = False
    src = _queue_file(os.path.join(work, "q"), [b"S: y"])
    out = os.path.join(work, "out")
    with open(out, "wb") as dst:
        assert mc.mail_copy("s@x", "o@x", "d@x", src, dst, mc.MAIL_COPY_ORIG_RCPT, "\n",
                            DsnBuf()) == 0
    assert open(out, "rb").read() == b"S: y\n"


def test_damaged_queue_file_is_marked_corrupt(work):
    src = _queue_file(os.path.join(work, "q"), [b"S: y"], end=False)
    out = os.path.join(work, "out")
    with open(out, "wb") as f:
        f.write(b"old\n")
    status = mc.mail_copy("s@x", "", "d@x", src, open(out, "ab"),
                          mc.MAIL_COPY_TOFILE, "\n", DsnBuf())
    assert status == mc.MAIL_COPY_STAT_CORRUPT
    assert open(out, "rb").read() == b"old\n"          # truncated back
    assert not os.stat(os.path.join(work, "q")).st_mode & stat.S_IXUSR


@pytest.mark.skipif(not ROOT, reason="mounts a tmpfs")
def test_full_file_system_truncates_back(work):
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", mnt], check=True)
    try:
        src = _queue_file(os.path.join(work, "q"), [b"x" * 1000] * 40)
        box = os.path.join(mnt, "box")
        with open(box, "wb") as f:
            f.write(b"previous message\n\n")
        why = DsnBuf()
        status = mc.mail_copy("s@x", "", "d@x", src, open(box, "ab"),
                              mc.MAIL_COPY_MBOX, "\n", why)
        assert status == mc.MAIL_COPY_STAT_WRITE
        assert (why.status, why.reason, why.dtype, why.dtext) == (
            "4.3.0", "error writing message: No space left on device", "x-unix",
            "input/output error")
        assert open(box, "rb").read() == b"previous message\n\n"
    finally:
        subprocess.run(["umount", mnt], check=True)


def test_held_dotlock_and_stale_dotlock(work):
    dot_lockfile._settings.update(deliver_lock_attempts=2, deliver_lock_delay=0.05,
                                  stale_lock_time=500)
    path = os.path.join(work, "mbox")
    open(path + ".lock", "w").close()
    why = DsnBuf()
    assert mbox_open(path, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o600, -1, -1,
                     MBOX_DOT_LOCK, "5.2.0", why) is None
    assert (why.status, why.reason) == (
        "4.2.0", "unable to create lock file %s.lock: File exists" % path)
    dot_lockfile._settings["stale_lock_time"] = 0
    dot_lockfile._settings["deliver_lock_attempts"] = 5
    box = mbox_open(path, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o600, -1, -1,
                    MBOX_DOT_LOCK, "5.2.0", why)
    assert box is not None                              # the stale lock was broken
    box.fp.close()
    mbox_release(box)


def _locked_elsewhere(path, style):
    """Fork a process that holds a lock of the style on path; (pid, release)."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(done_w)
            with open(path, "a") as f:
                if style == MBOX_FCNTL_LOCK:
                    fcntl.lockf(f, fcntl.LOCK_EX)
                else:
                    fcntl.flock(f, fcntl.LOCK_EX)
                os.write(ready_w, b"x")
                os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    os.read(ready_r, 1)
    os.close(ready_r)

    def release():
        os.close(done_w)
        os.waitpid(pid, 0)
    return release


@pytest.mark.parametrize("style", [MBOX_FCNTL_LOCK, MBOX_FLOCK_LOCK])
def test_kernel_lock_held_by_another_process(work, style):
    dot_lockfile._settings.update(deliver_lock_attempts=2, deliver_lock_delay=0.05)
    path = os.path.join(work, "mbox")
    release = _locked_elsewhere(path, style)
    try:
        why = DsnBuf()
        assert mbox_open(path, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o600, -1, -1,
                         style, "5.2.0", why) is None
        assert (why.status, why.reason) == (
            "4.2.0", "unable to lock for exclusive access: Resource temporarily "
                     "unavailable")
    finally:
        release()
    box = mbox_open(path, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o600, -1, -1, style,
                    "5.2.0", DsnBuf())
    assert box is not None
    box.fp.close()


@pytest.mark.skipif(not ROOT, reason="changes a symlink's owner")
def test_symlinked_mailbox_is_refused(work):
    """(a symlink that root owns in a directory only root can write is allowed, as
    /dev/null is in Postfix)"""
    target = os.path.join(work, "target")
    open(target, "w").close()
    os.symlink(target, os.path.join(work, "mbox"))
    os.lchown(os.path.join(work, "mbox"), 65534, -1)
    why = DsnBuf()
    assert mbox_open(os.path.join(work, "mbox"), os.O_APPEND | os.O_WRONLY | os.O_CREAT,
                     0o600, -1, -1, MBOX_FCNTL_LOCK, "5.2.0", why) is None
    assert (why.status, why.reason) == ("5.2.0", "file is a symbolic link")


def test_maildir_write(work):
    src = _queue_file(os.path.join(work, "q"), [b"Subject: md", b"", b"From x"])
    why = DsnBuf()
    uid, gid = os.geteuid(), os.getegid()
    status = maildir_write(os.path.join(work, "Maildir") + "/", src, "s@x", "o@x", "d@x",
                           mc.MAIL_COPY_TOFILE | mc.MAIL_COPY_RETURN_PATH
                           | mc.MAIL_COPY_DELIVERED, uid, gid, "5.2.0", why, "host.test")
    assert status == 0
    assert sorted(os.listdir(os.path.join(work, "Maildir"))) == ["cur", "new", "tmp"]
    assert os.listdir(os.path.join(work, "Maildir", "tmp")) == []
    (name,) = os.listdir(os.path.join(work, "Maildir", "new"))
    assert name.endswith(".host.test") and ".V" in name and "I" in name and "M" in name
    assert open(os.path.join(work, "Maildir", "new", name)).read() == \
        "Return-Path: <s@x>\nDelivered-To: d@x\nSubject: md\n\nFrom x\n"

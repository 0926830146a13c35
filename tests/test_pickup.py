"""pickup(8) against Debian's pickup: the same maildrop files, dropped into the maildrop
directory of a pyfix master and of Debian's Postfix 3.7 master (each with its own
pickup and cleanup), and pickup woken with `W`. What happens must be the same: the log
lines of pickup and cleanup (queue IDs masked), whether the maildrop file is removed or
left, and the queue file cleanup made of it, as Debian's postcat prints it.

The cases are what postdrop writes and what it never would: truncated files (at a record
boundary and inside a record), records of the wrong segment, unknown and NUL record
types, oversized records, garbage, empty files, a missing sender, no recipients, files
that are not complete (mode 0600), names that are not queue IDs, things that are not
regular files, old and future-dated files, and files of mail_owner that `postsuper -r`
left (logged with orig_id=). Postfix's pickup removes a malformed
file with `uid=N: unexpected or malformed record type T` (there is no corrupt/ for
maildrop: the file was never the mail system's); it leaves what is not ready or not its
own.

Skipped where Debian's Postfix cannot be run (not root, not installed).
"""

import os
import pwd
import re
import time

import pytest

from cleanup_oracle import (PostfixMaster, QueueMaster, log_lines, normalize_postcat,
                            postcat, postfix_available, settle_log)
from master_run import wait_until
from pyfix.common.trigger import unix_trigger
from pyfix.queue import record as R

pytestmark = pytest.mark.skipif(not postfix_available(),
                                reason="needs root and Debian's Postfix")

NOBODY = pwd.getpwnam("nobody").pw_uid
MAIN_CF = "line_length_limit = 600\n"
PROGRAMS = ("pickup", "cleanup")
QUEUE_ID = re.compile(r"\b[0-9A-F]{6,}\b")
FUTURE_TIMES = re.compile(r"(?<=message_arrival_time: ).*|(?<=; )\w{3}, .*\(\w+\)$", re.M)

# A postdrop file: envelope, content, extracted segments; mtime becomes the arrival time.
ENVELOPE = [(R.TIME, b"1795625618 417441"), (R.ATTR, b"rewrite_context=local"),
            (R.FROM, b"alice@example.com"), (R.RCPT, b"bob@example.org")]
CONTENT = [(R.NORM, b"Subject: test"), (R.NORM, b""), (R.NORM, b"body")]


def encode(records):
    return b"".join(r if isinstance(r, bytes) else R.encode(*r) for r in records)


def maildrop_file(envelope=ENVELOPE, content=CONTENT, extracted=(), end=True):
    records = list(envelope) + [(R.MESG, b"")] + list(content) + [(R.XTRA, b"")] \
        + list(extracted)
    if end:
        records.append((R.END, b""))
    return encode(records)


GOOD = maildrop_file()
CUT_INSIDE_RECORD = GOOD[:GOOD.index(b"Subject") + 4]

CASES = {
    "good": dict(data=GOOD, expect="maildrop file removed"),
    "good, no T record": dict(data=maildrop_file(envelope=ENVELOPE[1:])),
    "content starts with white space": dict(data=maildrop_file(
        content=[(R.NORM, b"  indented"), (R.NORM, b""), (R.NORM, b"body")])),
    "long content line": dict(data=maildrop_file(
        content=[(R.NORM, b"Subject: x"), (R.NORM, b""), (R.CONT, b"a" * 550),
                 (R.NORM, b"b" * 550)])),
    "extracted records": dict(data=maildrop_file(extracted=[
        (R.RCPT, b"extra@example.org"), (R.ERTO, b"errors@example.com"),
        (R.RRTO, b"receipt@example.com"), (R.ATTR, b"header_action=x"),
        (R.ATTR, b"notify_flags=8")])),
    "postsuper -r leftovers": dict(data=maildrop_file(
        envelope=ENVELOPE + [(R.FILT, b"smtp:[127.0.0.1]:10025"), (R.RDR, b"x@y")])),
    "truncated at a record boundary": dict(data=GOOD[:GOOD.index(R.encode(R.XTRA, b""))]),
    "truncated inside a record": dict(data=CUT_INSIDE_RECORD,
                                      expect="unexpected or malformed record type -2"),
    "truncated inside a length": dict(data=GOOD[:-len(R.encode(R.END, b""))] + b"E\x80"),
    "no END record": dict(data=maildrop_file(end=False)),
    "empty file": dict(data=b""),
    "garbage": dict(data=b"\xff\xfe this is not a queue file\n" * 3),
    "unknown record type": dict(data=maildrop_file(envelope=ENVELOPE + [(b"Z", b"x")])),
    "content record in the envelope": dict(data=maildrop_file(
        envelope=ENVELOPE + [(R.NORM, b"early")])),
    "envelope record in the content": dict(data=maildrop_file(
        content=CONTENT + [(R.RCPT, b"late@example.org")])),
    "NUL record type in the content": dict(data=maildrop_file(
        content=CONTENT + [(b"\0", b"nul")])),
    "record longer than line_length_limit": dict(data=maildrop_file(
        content=[(R.NORM, b"Subject: " + b"y" * 700)])),
    "no sender": dict(data=maildrop_file(envelope=[ENVELOPE[0], ENVELOPE[3]])),
    "null sender": dict(data=maildrop_file(envelope=[ENVELOPE[0], (R.FROM, b""),
                                                     ENVELOPE[3]])),
    "no recipients": dict(data=maildrop_file(envelope=ENVELOPE[:3])),
    "not complete (0600)": dict(data=GOOD, mode=0o600, expect="maildrop file left"),
    "not a queue ID": dict(data=GOOD, name="not-a-queue-id"),
    "directory": dict(kind="directory"),
    "symbolic link": dict(kind="symlink"),
    "queued for days": dict(data=GOOD, age=3.5 * 86400),
    "dated into the future": dict(data=GOOD, age=-3 * 3600),
    "requeued by postsuper -r": dict(data=GOOD, owner="postfix", mode=0o700,
                                     expect="orig_id=MAILDROPFILE"),
    "requeued, world-readable": dict(data=GOOD, owner="postfix", mode=0o744),
}


class Side:
    """One master with pickup and cleanup, and the maildrop files it was given."""

    def __init__(self, run):
        self.run = run
        self.maildrop = os.path.join(run.spool, "maildrop")

    def drop(self, name, case, when):
        path = os.path.join(self.maildrop, name)
        kind = case.get("kind", "file")
        if kind == "directory":
            os.mkdir(path)
        elif kind == "symlink":
            os.symlink("/etc/passwd", path)
        else:
            with open(path, "wb") as f:
                f.write(case["data"])
            owner = case.get("owner")
            os.chown(path, pwd.getpwnam(owner).pw_uid if owner else NOBODY, -1)
            os.chmod(path, case.get("mode", 0o744))
            os.utime(path, (when, when))
        return path

    def pickup(self, name, case, when):
        """Drop the file (modified at when), wake pickup, wait until it is done; the
        outcome as text."""
        start = len(self.run.log())
        path = self.drop(name, case, when)
        unix_trigger(os.path.join(self.run.spool, "public", "pickup"), b"W")
        wait_until(lambda: not os.path.lexists(path), timeout=3)
        text = settle_log(self.run)
        left = os.path.lexists(path)
        lines = log_lines(text, start, PROGRAMS)
        ids = sorted(set(QUEUE_ID.findall("\n".join(lines))) - {name})
        made = [queue_id for queue_id in ids
                if os.path.exists(os.path.join(self.run.spool, "incoming", queue_id))]
        outcome = ["maildrop file %s" % ("left" if left else "removed")]
        for queue_id in made:
            cat = postcat(self.run, queue_id)
            text = normalize_postcat(cat.stdout + cat.stderr, queue_id)
            if case.get("age", 0) < 0:
                # pickup replaced the future time with its own clock.
                text = FUTURE_TIMES.sub("TIME", text)
            outcome.append(text)
        if left:
            self.remove(path)
        for line in lines:
            line = QUEUE_ID.sub(lambda m: "MAILDROPFILE" if m.group(0) == name
                                else "QUEUEID", line)
            line = re.sub(r"\b\d{14}\.QUEUEID", "STAMP.QUEUEID", line)
            line = re.sub(r"dated \d+ seconds", "dated N seconds", line)
            outcome.append(line)
        return "\n".join(outcome) + "\n"

    @staticmethod
    def remove(path):
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)


@pytest.fixture(scope="module")
def sides():
    postfix = PostfixMaster(MAIN_CF).start()
    try:
        pyfix = QueueMaster(MAIN_CF).start()
    except BaseException:
        postfix.cleanup()
        raise
    try:
        yield Side(postfix), Side(pyfix)
    finally:
        pyfix.cleanup()
        postfix.cleanup()


@pytest.mark.parametrize("name", list(CASES))
def test_pickup_like_debian(sides, name):
    postfix, pyfix = sides
    case = CASES[name]
    file_name = case.get("name", "ABCDEF%05X" % list(CASES).index(name))
    when = int(time.time()) - 60 - case.get("age", 0)
    expected = postfix.pickup(file_name, case, when)
    got = pyfix.pickup(file_name, case, when)
    assert got == expected
    # The comparison alone would pass if both did nothing: a few cases say what to see.
    assert case.get("expect", "") in got

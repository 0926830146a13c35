"""Queue directories for the tests of showq, postqueue, postsuper and postcat.

QueueSite is a config directory and a queue directory of its own under /tmp (owned by
mail_owner, as Debian's tools drop to it), filled either with queue files written by
pyfix's record codec (add_message(), with any records a test wants: pointers, padding,
long lines, malformed records) or by Debian's own Postfix (debian_queue(): Debian's master
on the site, mail submitted with Debian's sendmail to a relay that refuses connections,
so that everything ends up deferred with reasons in Postfix-written defer logs).

Both Debian's tool and pyfix's run with `-c <site>/etc` on the same site (read-only tools)
or on two sites built the same way (tools that change the queue), and their results are
compared; queue IDs differ between two sites, so results are compared after each site's
IDs are replaced by their position in the order the test created them.
"""

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time

from conftest import age_files, candidate_path, clean_env, run_program

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pyfix.common.config import Config  # noqa: E402
from pyfix.queue import record as rec  # noqa: E402
from pyfix.queue.mail_queue import QueueLayout, make_queue_id  # noqa: E402

MAIL_OWNER = "postfix"
SETGID_GROUP = "postdrop"

BASE_MAIN_CF = """\
compatibility_level = 3.7
queue_directory = {root}/spool
data_directory = {root}/lib
maillog_file = {root}/maillog
maillog_file_prefixes = /tmp
myhostname = mx.example.com
"""

# name: (mode, group)
QUEUE_DIRS = {
    "maildrop": (0o730, SETGID_GROUP), "incoming": (0o700, None), "active": (0o700, None),
    "deferred": (0o700, None), "hold": (0o700, None), "corrupt": (0o700, None),
    "bounce": (0o700, None), "defer": (0o700, None), "trace": (0o700, None),
    "flush": (0o700, None), "saved": (0o700, None), "private": (0o700, None),
    "public": (0o710, SETGID_GROUP),
}

T0 = 1709555696                 # Mon Mar  4 12:34:56 2024 UTC


def owner_ids():
    entry = pwd.getpwnam(MAIL_OWNER)
    return entry.pw_uid, entry.pw_gid


def chown_tree(path, uid, gid):
    os.chown(path, uid, gid)
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(folder, name), uid, gid)


class QueueSite:
    def __init__(self, main_extra="", prefix="pq"):
        self.root = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        os.chmod(self.root, 0o755)
        self.etc = os.path.join(self.root, "etc")
        self.spool = os.path.join(self.root, "spool")
        self.maillog = os.path.join(self.root, "maillog")
        os.makedirs(self.etc)
        os.makedirs(os.path.join(self.root, "lib"))
        self.main_extra = main_extra
        self.write_main_cf()
        uid, gid = owner_ids()
        self._make_dirs()
        os.chown(self.root, uid, gid)
        os.chown(os.path.join(self.root, "lib"), uid, gid)
        self.ids = []               # queue IDs in creation order

    @classmethod
    def existing(cls, root, etc, spool, maillog):
        """The queue directories of a site made by someone else (a MasterRun)."""
        self = cls.__new__(cls)
        self.root, self.etc, self.spool, self.maillog = root, etc, spool, maillog
        self.main_extra = ""
        self.ids = []
        self._make_dirs()
        return self

    def _make_dirs(self):
        uid, gid = owner_ids()
        os.makedirs(os.path.join(self.spool, "pid"), exist_ok=True)
        for name, (mode, group) in QUEUE_DIRS.items():
            path = os.path.join(self.spool, name)
            os.makedirs(path, exist_ok=True)
            os.chown(path, uid, grp.getgrnam(group).gr_gid if group else gid)
            os.chmod(path, mode)

    def write_main_cf(self, extra=None):
        if extra is not None:
            self.main_extra = extra
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(BASE_MAIN_CF.format(root=self.root) + self.main_extra)
        age_files(self.etc)

    def config(self):
        return Config.load(self.etc)

    def layout(self, long_ids=None):
        layout = QueueLayout(self.config())
        if long_ids is not None:
            layout.long_ids = long_ids
        return layout

    def path(self, queue, queue_id):
        return os.path.join(self.spool, self.layout().path(queue, queue_id))

    # -- writing queue files --------------------------------------------------------------

    def add_file(self, queue, data, queue_id=None, mode=0o700, mtime=None, long_ids=False):
        """A queue file with the given bytes; returns its queue ID. Without queue_id the
        file gets a real ID (from its inode number, as Postfix makes them)."""
        layout = self.layout(long_ids)
        cwd = os.getcwd()
        os.chdir(self.spool)
        try:
            if queue_id is None:
                stream, queue_id, _ = layout.enter(queue)
            else:
                path = layout.path(queue, queue_id)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                stream = open(path, "wb")
            with stream:
                stream.write(data)
                stream.truncate()
                os.fchmod(stream.fileno(), mode)
            path = os.path.join(self.spool, layout.path(queue, queue_id))
        finally:
            os.chdir(cwd)
        uid, gid = owner_ids()
        os.chown(path, uid, gid)
        parent = os.path.dirname(path)
        while parent != self.spool and len(parent) > len(self.spool):
            os.chown(parent, uid, gid)
            parent = os.path.dirname(parent)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        self.ids.append(queue_id)
        return queue_id

    def add_message(self, queue="deferred", sender="alice@example.com",
                    recipients=("bob@example.net",), arrival=T0, body=(b"hello",),
                    headers=(b"Subject: test",), reasons=None, expired=False,
                    long_ids=False, mode=None, mtime=None, queue_id=None, **kw):
        """A message as cleanup writes it; reasons = [(recipient, reason)] makes a defer
        logfile. Returns the queue ID."""
        data = build_message(sender, recipients, arrival, headers, body, **kw)
        if mode is None:
            mode = 0o700 | (0o010 if expired else 0)
        queue_id = self.add_file(queue, data, queue_id=queue_id, mode=mode, mtime=mtime,
                                 long_ids=long_ids)
        if reasons:
            self.add_defer_log(queue_id, reasons)
        return queue_id

    def add_defer_log(self, queue_id, entries, queue="defer", raw=None):
        path = self.path(queue, queue_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if raw is None:
            raw = b"".join(defer_entry(rcpt, reason) for rcpt, reason in entries)
        with open(path, "wb") as f:
            f.write(raw)
        os.chmod(path, 0o600)
        uid, gid = owner_ids()
        os.chown(path, uid, gid)
        for parent in (os.path.dirname(path),):
            os.chown(parent, uid, gid)
        return path

    def fix_owner(self):
        uid, gid = owner_ids()
        for name in QUEUE_DIRS:
            path = os.path.join(self.spool, name)
            for folder, dirs, files in os.walk(path):
                for entry in dirs + files:
                    os.lchown(os.path.join(folder, entry), uid, gid)

    # -- running the tools ---------------------------------------------------------------

    def run(self, program, args, stdin=None, env=None, tool=None, timeout=120):
        argv = [program, "-c", self.etc] + list(args)
        return run_program(argv, stdin=stdin, env=env, timeout=timeout,
                           tool=tool or os.path.basename(program))

    def oracle(self, tool, args, stdin=None, env=None):
        return self.run("/usr/sbin/" + tool, args, stdin, env, tool)

    def candidate(self, tool, args, stdin=None, env=None):
        return self.run(candidate_path(tool), args, stdin, env, tool)

    def read_log(self):
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return ""

    def clear_log(self):
        try:
            os.unlink(self.maillog)
        except FileNotFoundError:
            pass

    def files(self):
        """Every file and directory under the queue directories (relative path, mode),
        pid/ and the sockets excluded."""
        out = []
        for name in sorted(QUEUE_DIRS):
            top = os.path.join(self.spool, name)
            for folder, dirs, files in os.walk(top):
                for entry in sorted(dirs + files):
                    full = os.path.join(folder, entry)
                    st = os.lstat(full)
                    out.append((os.path.relpath(full, self.spool), oct(st.st_mode)))
        return sorted(out)

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)


# -- record-level building blocks -------------------------------------------------------

def defer_entry(recipient, reason, status="4.4.1", oldlog=True, offset=None):
    lines = [b""]
    if oldlog:
        lines.append(b"<%s>: %s" % (_b(recipient), _b(reason)))
    lines.append(b"recipient=" + _b(recipient))
    if offset:
        lines.append(b"offset=%d" % offset)
    lines += [b"status=" + _b(status), b"action=delayed", b"reason=" + _b(reason), b""]
    return b"\n".join(lines) + b"\n"


def _b(text):
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def build_message(sender, recipients, arrival=T0, headers=(b"Subject: test",),
                  body=(b"hello",), envelope=(), extracted=(), size=None, original=True,
                  pointers=False, padding=False, with_size=True, with_end=True,
                  content_records=None):
    """The bytes of a queue file laid out like cleanup's: C T A... S (O R)* [p] M content
    [p] X extracted E. `size` replaces the C record's payload (bytes) when given."""
    head = [rec.encode(rec.TIME, b"%d 123456" % arrival),
            rec.encode(rec.ATTR, b"create_time=%d" % arrival),
            rec.encode(rec.ATTR, b"rewrite_context=local")]
    for rec_type, payload in envelope:
        head.append(rec.encode(rec_type, _b(payload)))
    head.append(rec.encode(rec.FROM, _b(sender)))
    for rcpt in recipients:
        if original:
            head.append(rec.encode(rec.ORCP, _b(rcpt)))
        head.append(rec.encode(rec.RCPT, _b(rcpt)))
    if padding:
        head.append(rec.encode(rec.DTXT, b"     "))
    if content_records is None:
        content_records = [(rec.NORM, _b(h)) for h in headers] + [(rec.NORM, b"")] \
            + [(rec.NORM, _b(line)) for line in body]
    content = b"".join(rec.encode(t, p) for t, p in content_records)
    tail = [rec.encode(rec.XTRA)] + [rec.encode(t, _b(p)) for t, p in extracted]
    if with_end:
        tail.append(rec.encode(rec.END))
    size_rec_len = len(rec.encode(rec.SIZE, rec.SIZE_FORMAT % (0, 0, 0, 0, 0, 0)))
    ptr_len = len(rec.encode(rec.PTR, rec.PTR_FORMAT % 0))
    head_bytes = b"".join(head) + (rec.encode(rec.PTR, rec.PTR_FORMAT % 0) if pointers else b"")
    mesg = rec.encode(rec.MESG)
    data_offset = (size_rec_len if with_size else 0) + len(head_bytes) + len(mesg)
    content_size = len(content) + (ptr_len if pointers else 0)
    if size is None:
        size = rec.SIZE_FORMAT % (content_size, data_offset, len(recipients), 0,
                                  content_size, 0)
    out = rec.encode(rec.SIZE, size) if with_size else b""
    out += head_bytes + mesg + content
    if pointers:
        out += rec.encode(rec.PTR, rec.PTR_FORMAT % 0)
    return out + b"".join(tail)


# -- ID normalization ----------------------------------------------------------------------

def normalize_ids(data, ids, extra=()):
    """data with each queue ID of ids (and (text, replacement) pairs of extra) replaced by
    `ID<n>`, n its position in ids; longer IDs first, so that no ID hides in another."""
    pairs = [(qid, "ID%d" % n) for n, qid in enumerate(ids)] + list(extra)
    text = data if isinstance(data, str) else data.decode("utf-8", "surrogateescape")
    for old, new in sorted(pairs, key=lambda p: -len(p[0])):
        text = re.sub(r"(?<![0-9A-Za-z])%s(?![0-9A-Za-z])" % re.escape(old), new, text)
    return text


# -- a queue made by Debian's Postfix ------------------------------------------------------

DEBIAN_MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

DEBIAN_MAIN_EXTRA = """\
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination =
relayhost = [127.0.0.1]:9
alias_maps =
alias_database =
smtp_connect_timeout = 2s
"""


def debian_available():
    return all(os.access(p, os.X_OK) for p in
               ("/usr/sbin/postfix", "/usr/sbin/sendmail", "/usr/lib/postfix/sbin/master"))


class DebianPostfix:
    """Debian's Postfix running on a QueueSite (no smtpd: mail comes from sendmail)."""

    def __init__(self, site):
        self.site = site
        self.env = clean_env({"MAIL_CONFIG": site.etc})
        with open(os.path.join(site.etc, "master.cf"), "w") as f:
            f.write(DEBIAN_MASTER_CF)
        age_files(site.etc)

    def postfix(self, *args):
        return subprocess.run(["/usr/sbin/postfix", "-c", self.site.etc] + list(args),
                              env=self.env, capture_output=True, timeout=60)

    def start(self):
        result = self.postfix("start")
        assert result.returncode == 0, result.stderr.decode() + self.site.read_log()

    def stop(self):
        pid_file = os.path.join(self.site.spool, "pid", "master.pid")
        try:
            with open(pid_file) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        self.postfix("stop")
        deadline = time.monotonic() + 20
        while pid and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)

    def sendmail(self, args, message):
        result = subprocess.run(["/usr/sbin/sendmail"] + list(args), input=message,
                                env=self.env, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr

    def queue(self):
        """The queue as `postqueue -j` shows it: one dict per message."""
        import json
        result = subprocess.run(["/usr/sbin/postqueue", "-j"], env=self.env,
                                capture_output=True, timeout=60)
        return [json.loads(line) for line in result.stdout.decode().splitlines() if line]

    def wait_deferred(self, count, timeout=30):
        """Until `count` messages are deferred, each recipient with a reason."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queue = self.queue()
            done = [m for m in queue if m["queue_name"] == "deferred"
                    and all("delay_reason" in r for r in m["recipients"])]
            if len(done) >= count:
                return queue
            time.sleep(0.2)
        raise AssertionError("messages not deferred: %r\n%s" % (self.queue(),
                                                                self.site.read_log()))


def debian_queue():
    """A QueueSite whose queue Debian's Postfix made: deferred messages with reasons from
    a relay that refuses connections (a null sender, several recipients, a long line, a
    quoted local part, headers added with -t), one put on hold and one force-expired by
    Debian's postsuper, then, after a switch to long queue IDs, two more; Postfix is
    stopped and one deferred message is moved to active/. Returns (site, info)."""
    site = QueueSite(DEBIAN_MAIN_EXTRA, prefix="dq")
    pf = DebianPostfix(site)
    pf.start()
    info = {}
    try:
        pf.sendmail(["-f", "alice@example.com", "bob@example.net", "carol@example.org"],
                    b"Subject: one\nFrom: alice@example.com\n\nbody line\n")
        pf.sendmail(["-f", "", "postmaster@example.com"],
                    b"Subject: bounce\n\nnull sender\n")
        pf.sendmail(["-f", "dave@example.com", "-t"],
                    b'To: "x y"@example.com, eve@example.net\nSubject: long\n\n'
                    + b"x" * 5000 + b"\n\n  indented\n")
        pf.sendmail(["-f", "frank@example.com", "grace@example.net"],
                    b"Subject: to hold\n\nheld\n")
        pf.sendmail(["-f", "heidi@example.com", "ivan@example.net"],
                    b"Subject: to expire\n\nexpired\n")
        queue = pf.wait_deferred(5)
        by_subject = {}
        for message in queue:
            by_subject[message["sender"]] = message["queue_id"]
        info["hold"] = by_subject["frank@example.com"]
        info["expire"] = by_subject["heidi@example.com"]
        env = pf.env
        subprocess.run(["/usr/sbin/postsuper", "-h", info["hold"]], env=env,
                       capture_output=True, check=True)
        subprocess.run(["/usr/sbin/postsuper", "-e", info["expire"]], env=env,
                       capture_output=True, check=True)
        # Long queue IDs from here on.
        site.write_main_cf(site.main_extra + "enable_long_queue_ids = yes\n")
        pf.postfix("reload")
        time.sleep(1)
        pf.sendmail(["-f", "judy@example.com", "mallory@example.net"],
                    b"Subject: long id\n\nlong\n")
        pf.sendmail(["-f", "", "oscar@example.net", "peggy@example.org"],
                    b"Subject: long id bounce\n\nlong\n")
        # Four deferred before (the fifth is on hold), and the two new ones.
        queue = pf.wait_deferred(6)
        info["long"] = [m["queue_id"] for m in queue if "z" in m["queue_id"][10:]]
    finally:
        pf.stop()
    site.write_main_cf(DEBIAN_MAIN_EXTRA)
    os.unlink(os.path.join(site.etc, "master.cf"))
    # One message in the active queue, as if qmgr had it when the system went down.
    queue = [m for m in pf.queue() if m["queue_name"] == "deferred"
             and m["sender"] == "alice@example.com"]
    info["active"] = queue[0]["queue_id"]
    layout = site.layout()
    os.rename(os.path.join(site.spool, layout.path("deferred", info["active"])),
              os.path.join(site.spool, layout.path("active", info["active"])))
    info["ids"] = [m["queue_id"] for m in pf.queue()]
    return site, info


__all__ = ["QueueSite", "DebianPostfix", "debian_queue", "debian_available", "build_message",
           "defer_entry", "normalize_ids", "make_queue_id", "T0", "rec", "owner_ids",
           "chown_tree"]


# -- a queue with every case the listing tools distinguish ---------------------------------

LONG_REASON = ("host mx.example.net[192.0.2.1] said: 450 4.7.1 <bob@example.net>: "
               "Recipient address rejected: greylisted, try again in 300 seconds (in "
               "reply to RCPT TO command)")


def compose_queue(site):
    """Messages written with pyfix's record codec covering what showq and postqueue
    distinguish; returns {name: queue ID}. (Not here: a recipient before the sender, or
    a second sender. Postfix 3.7's showq crashes on those files; see test_showq.py.)"""
    ids = {}
    add = site.add_message
    ids["active"] = add("active", "alice@example.com", ["postmaster@example.com"])
    ids["reasons"] = add("deferred", "carol@example.org",
                         ["a@example.net", "b@example.net", "c@example.net",
                          "d@example.net", "e@example.net"], arrival=T0 + 60,
                         reasons=[("a@example.net", "connect to mx[192.0.2.1]:25: refused"),
                                  ("b@example.net", "connect to mx[192.0.2.1]:25: refused"),
                                  ("d@example.net", LONG_REASON)])
    ids["hold"] = add("hold", "dave@example.com", ["eve@example.net"], arrival=T0 + 120)
    ids["expired"] = add("deferred", "frank@example.com", ["grace@example.net"],
                         expired=True, reasons=[("grace@example.net", "expired reason")])
    ids["hold_expired"] = add("hold", "heidi@example.com", ["ivan@example.net"],
                              expired=True, arrival=T0 + 180)
    ids["null"] = add("deferred", "", ["judy@example.com"], arrival=T0 + 240,
                      reasons=[("judy@example.com", "mailbox full")])
    ids["long"] = add("deferred", "mallory@example.com", ["oscar@example.net"],
                      long_ids=True, arrival=T0 + 300,
                      reasons=[("oscar@example.net", "long id reason")])
    ids["long_active"] = add("active", "", ["peggy@example.org"], long_ids=True,
                             arrival=T0 + 360)
    ids["quoted"] = add("incoming", "odd user@example.com",
                        ['x y@example.com', 'a"b@example.com', "plain@example.com"],
                        arrival=T0 + 420)
    ids["utf8"] = add("deferred", "j\u00f6rg@example.com",
                      ["z\u00fcrich@example.ch", "ctl\x01char@example.com"],
                      arrival=T0 + 480, reasons=[("z\u00fcrich@example.ch",
                                                  "r\u00e9ponse 4.2.2 bo\u00eete pleine")])
    ids["big"] = add("deferred", "big@example.com", ["r@example.net"],
                     body=[b"x" * 998] * 300, arrival=T0 + 540)
    ids["maildrop"] = site.add_file("maildrop", build_message(
        "local@mx.example.com", ["user@example.com"], with_size=False), mode=0o744)
    ids["bad_size"] = add("deferred", "size@example.com", ["r@example.net"],
                          size=b"twelve", arrival=T0 + 600)
    ids["embryonic"] = add("incoming", "half@example.com", ["r@example.net"], mode=0o600)
    ids["no_sender"] = site.add_file("deferred", b"".join(
        [rec.encode(rec.TIME, b"%d 0" % T0), rec.encode(rec.MESG), rec.encode(rec.NORM, b"x"),
         rec.encode(rec.XTRA), rec.encode(rec.END)]))
    ids["no_time"] = site.add_file("deferred", b"".join(
        [rec.encode(rec.FROM, b"notime@example.com"), rec.encode(rec.RCPT, b"r@example.net"),
         rec.encode(rec.END)]), mtime=T0 + 720)
    ids["two_times"] = add("deferred", "twotimes@example.com", ["r@example.net"],
                           envelope=[(rec.TIME, b"%d 0" % (T0 + 99999))], arrival=T0 + 780)
    ids["done"] = add("deferred", "done@example.com", ["r1@example.net", "r2@example.net"],
                      arrival=T0 + 840, envelope=[(rec.DONE, "gone@example.net")])
    ids["pointers"] = add("deferred", "ptr@example.com", ["r@example.net"], pointers=True,
                          padding=True, arrival=T0 + 900)
    ids["log_only"] = add("deferred", "logonly@example.com",
                          ["r1@example.net", "r2@example.net"], arrival=T0 + 960)
    site.add_defer_log(ids["log_only"], None, raw=(
        b"\n<r2@example.net>: old style only\n\n"
        b"\nrecipient=other@example.net\nstatus=4.0.0\n\n"
        b"\n<r1@example.net>: old style first\nrecipient=r1@example.net\n"
        b"reason=new style wins\nfuture_attribute=x\n\n"
        b"\ngarbage line\n\n"))
    ids["after_end"] = add("deferred", "end@example.com", ["r@example.net"],
                           arrival=T0 + 1020, extracted=[])
    with open(site.path("deferred", ids["after_end"]), "ab") as f:
        f.write(rec.encode(rec.RCPT, b"after-end@example.net"))
    # Not messages: a temporary file, a file in the wrong hash directory.
    temp = os.path.join(site.spool, "incoming", "123456.789")
    with open(temp, "wb") as f:
        f.write(build_message("temp@example.com", ["r@example.net"]))
    os.chmod(temp, 0o700)
    wrong = site.add_message("deferred", "wrong@example.com", ["r@example.net"])
    right = site.path("deferred", wrong)
    misplaced = os.path.join(site.spool, "deferred", "Z", wrong)
    os.makedirs(os.path.dirname(misplaced), exist_ok=True)
    os.rename(right, misplaced)
    ids["misplaced"] = wrong
    site.fix_owner()
    return ids

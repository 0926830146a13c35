"""The local(8) delivery rig (no tests here): a queue master with the qmgr rig's
services plus a `local` service that is either pyfix's local or Debian's
/usr/lib/postfix/sbin/local, mail submitted through the cleanup protocol to
<user>@mx.example.com, and real UNIX users made for the test (useradd with a unique
name and a home under the rig's root; userdel at the end).

Both sides get the same main.cf, the same users, aliases and messages: the delivered
mailbox files are compared after masking dates and queue IDs, and local's log lines
after qmgr_rig.normalize().
"""

import os
import pwd
import random
import re
import subprocess
import time

from cleanup_oracle import ROOT, QueueMaster, message, send
from qmgr_rig import SBIN, normalize, services
from master_run import wait_until

DEBIAN_LOCAL = SBIN + "/local"
PYFIX_LOCAL = "local"

MAIN_CF = """\
mydestination = $myhostname, localhost, $mydomain
relayhost = [127.0.0.1]:9
alias_database =
local_recipient_maps =
{extra}
"""


def rig_available():
    return ROOT and all(os.path.exists(p) for p in (
        DEBIAN_LOCAL, SBIN + "/trivial-rewrite", SBIN + "/bounce", "/usr/sbin/useradd"))


class Users:
    """UNIX accounts for one test: name -> pwd entry; removed by remove()."""

    def __init__(self, home_root):
        self.home_root = home_root
        self.tag = "%04x" % random.randrange(0x10000)
        self.names = []

    def add(self, short, home=True):
        name = "l1%s%s" % (self.tag, short)
        homedir = os.path.join(self.home_root, name)
        args = ["useradd", "-M", "-d", homedir, "-s", "/bin/sh", "-U", name]
        subprocess.run(args, check=True, capture_output=True)
        self.names.append(name)
        entry = pwd.getpwnam(name)
        if home:
            os.makedirs(homedir)
            os.chown(homedir, entry.pw_uid, entry.pw_gid)
            os.chmod(homedir, 0o755)
        return entry

    def remove(self):
        for name in self.names:
            subprocess.run(["userdel", name], capture_output=True)
            subprocess.run(["groupdel", name], capture_output=True)
        self.names = []


class LocalRig:
    """One side: a queue master with pyfix's qmgr and the given local."""

    def __init__(self, local=PYFIX_LOCAL, main_cf_extra="", smtpd_port=None):
        """smtpd_port: also run pyfix's smtpd on 127.0.0.1:smtpd_port."""
        self.local = local
        self.extra = main_cf_extra
        text = services() + "local unix - n n - - %s\n" % local
        if smtpd_port:
            text += "127.0.0.1:%d inet n - n - - smtpd\n" % smtpd_port
        self.master = QueueMaster("", services=text)
        self.root = self.master.root
        self.mail = os.path.join(self.root, "mail")
        os.makedirs(self.mail)
        os.chmod(self.mail, 0o1777)
        self.write_main_cf(main_cf_extra)

    def write_main_cf(self, extra):
        """main.cf of the rig; `$ROOT` in extra is the rig's root directory."""
        from cleanup_oracle import COMMON_MAIN_CF
        extra = extra.replace("$ROOT", self.root)
        for name, value in (("alias_maps", ""), ("biff", "no"),
                            ("mail_spool_directory", self.mail)):
            if not re.search(r"(?m)^%s =" % name, extra):
                extra = "%s = %s\n" % (name, value) + extra
        self.master.write_main_cf(COMMON_MAIN_CF + MAIN_CF.format(root=self.root,
                                                                  extra=extra))

    def start(self):
        self.master.start()
        return self

    def submit(self, rcpts, sender="alice@example.com", **kw):
        kw.setdefault("arrival", int(time.time()))
        result = send(self.master.cleanup_socket(), 0x3, message(sender, rcpts, **kw))
        assert result.status == 0, result
        return result.queue_id

    def log(self):
        return self.master.log()

    def wait_log(self, pattern, timeout=30, count=1):
        self.master.wait_log(pattern, timeout, count)

    def local_lines(self):
        return [line for line in self.log().splitlines()
                if re.search(r"postfix/local\[", line)]

    def queue_ids(self, queue):
        out = []
        for _, _, files in os.walk(os.path.join(self.master.spool, queue)):
            out += files
        return sorted(out)

    def queue_empty(self):
        return wait_until(lambda: not any(self.queue_ids(q) for q in
                                          ("incoming", "active")), 30)

    def quiet(self, period=0.7, timeout=20):
        """Wait until the log has not grown for `period` seconds."""
        deadline = time.monotonic() + timeout
        size = -1
        while time.monotonic() < deadline:
            now = len(self.log())
            if now == size:
                return True
            size = now
            time.sleep(period)
        return False

    def cleanup(self):
        self.master.cleanup()


def mask_mbox(text, queue_ids=()):
    """A delivered message with what differs from run to run masked."""
    for n, queue_id in enumerate(queue_ids):
        text = text.replace(queue_id, "QID%d" % n)
    text = re.sub(r"(?m)^From (\S+)  .*$", r"From \1  DATE", text)
    text = re.sub(r"\b[0-9A-F]{10,12}\b", "ID", text)
    text = re.sub(r"(?m)^(\tid \S+; ).*$", r"\1DATE", text)
    text = re.sub(r"(?m)^Date: .*$", "Date: DATE", text)
    text = re.sub(r"<\d{14}\.", "<STAMP.", text)
    text = re.sub(r"\.\d{9,10}/", ".TIME/", text)
    text = re.sub(r"(?m)^Arrival-Date: .*$", "Arrival-Date: DATE", text)
    return text


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


__all__ = ["LocalRig", "Users", "mask_mbox", "normalize", "read", "rig_available",
           "DEBIAN_LOCAL", "PYFIX_LOCAL"]

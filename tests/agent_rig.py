"""A rig for the delivery agents virtual(8) and pipe(8): tests/qmgr_rig.py's queue
master (pyfix's master, cleanup, pickup and qmgr; Debian's trivial-rewrite and bounce)
with extra master.cf services that run either pyfix's agent or Debian's own
(/usr/lib/postfix/sbin/virtual, .../pipe), so that the same messages go through both
and the log lines, the delivered mail and what a command received can be compared.
"""

import glob
import json
import os
import pwd
import re
import shutil
import subprocess
import uuid

from cleanup_oracle import ROOT
from qmgr_rig import SBIN, PYFIX_QMGR, Rig, normalize, rig_available, services, wait_gone

PYFIX = "pyfix"
DEBIAN = "debian"
SIDES = (PYFIX, DEBIAN)


def agents_available():
    return rig_available() and os.path.exists(SBIN + "/virtual") \
        and os.path.exists(SBIN + "/pipe")


def agent_command(side, name):
    """The master.cf command of an agent: pyfix's module or Debian's program."""
    return name if side == PYFIX else "%s/%s" % (SBIN, name)


class AgentRig(Rig):
    """Rig with extra_services (master.cf lines; `{agent:NAME}` becomes the side's
    command for agent NAME) and pyfix's qmgr, discard and error."""

    def __init__(self, side, extra_services, main_cf_extra="", pyfix_rewrite=False):
        """pyfix_rewrite: pyfix's trivial-rewrite instead of Debian's."""
        super().__init__(qmgr=PYFIX_QMGR, main_cf_extra=main_cf_extra, agents="pyfix")
        self.side = side
        self.pyfix_rewrite = pyfix_rewrite
        self.root = self.master.root
        self.master.write_master_cf(self.services(extra_services))

    def services(self, extra_services):
        """master.cf: the rig's services and the extra ones, `{agent:NAME}` resolved."""
        extra = re.sub(r"\{agent:([a-z]+)\}",
                       lambda m: agent_command(self.side, m.group(1)), extra_services)
        text = services(PYFIX_QMGR, "pyfix") + extra
        if self.pyfix_rewrite:
            text = text.replace("%s/trivial-rewrite\n" % SBIN, "trivial-rewrite\n")
        return text

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def agent_lines(self, queue_ids, programs=None):
        """The log lines (masked, sorted) of qmgr and the agents; postlogd's and the
        start-up lines left out."""
        lines = [line for line in self.log().splitlines()
                 if "daemon started" not in line and "postlogd" not in line
                 and "reload" not in line]
        if programs:
            pattern = re.compile(r"postfix/(%s)\[" % "|".join(programs))
            lines = [line for line in lines if pattern.search(line)]
        out = normalize(lines, queue_ids)
        return sorted(mask_paths(out, self.root))


def recorder_program(rig):
    """tests/bin/pipe_recorder.py as an executable in the rig's root, run by the
    system's python3 (the venv's interpreter may be out of reach of other users)."""
    path = rig.path("pipe_recorder")
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin",
                          "pipe_recorder.py")
    with open(path, "w") as f:
        f.write('#!/bin/sh\nexec /usr/bin/python3 %s "$@"\n' % source)
    os.chmod(path, 0o755)
    return path


def mask_paths(lines, root):
    """The rig's root, and the pid in Maildir file names (<time>.P<pid>.<host>)."""
    return [re.sub(r"\.P\d+\.", ".P<pid>.", line.replace(root, "ROOT")) for line in lines]


def mask_message(text, queue_ids=()):
    """Delivered mail with what differs between runs masked: queue IDs, the From_ date,
    the Received: id/date."""
    for n, queue_id in enumerate(queue_ids):
        text = text.replace(queue_id, "QID%d" % n)
    text = re.sub(r"(?m)^From (\S+)  \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}(?=\r?$)",
                  r"From \1  DATE", text)
    text = re.sub(r"\b\d{14}\.QID", "STAMP.QID", text)
    text = re.sub(r"(?m)^Date: [^\r\n]*", "Date: DATE", text)
    return text


def read_records(directory):
    """What the pipe recorder wrote: one dict per command run, in order."""
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path) as f:
            out.append(json.load(f))
    return out


def open_dir(path):
    """A directory every user may write into (commands run as other users)."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o1777)
    return path


class MailUser:
    """A real unprivileged user created for a test (useradd, userdel at the end)."""

    def __init__(self):
        self.name = "vp" + uuid.uuid4().hex[:8]
        subprocess.run(["useradd", "-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin",
                        self.name], check=True, capture_output=True)
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def remove(self):
        subprocess.run(["userdel", self.name], capture_output=True)


def chown_tree(path, uid, gid):
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            os.chown(name, uid, gid)


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


__all__ = ["AgentRig", "recorder_program", "ROOT", "SIDES", "PYFIX", "DEBIAN", "agents_available",
           "mask_message", "read_records", "open_dir", "MailUser", "wait_gone",
           "chown_tree", "remove_tree"]

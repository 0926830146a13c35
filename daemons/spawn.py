"""spawn(8): run an external command for each client connection (Postfix's src/spawn).

A master.cf entry such as
    policy  unix  -  n  n  -  0  spawn  user=nobody argv=/usr/local/bin/policyd
hands each connection to the command on its standard input, output and error, as the
given user, with `<service>_time_limit` (default $command_time_limit) as its time limit.
Used for policy servers and other small helpers that speak over a socket.
"""

import grp
import os
import pwd

from pyfix.common import msg
from pyfix.common.spawn_command import spawn_command

from pyfix.daemons.skeleton.single import single_server_main


class SpawnAttributes:
    """user= and argv= from master.cf, checked once (get_service_attr())."""

    def __init__(self, server):
        self.time_limit = server.config.get_time(server.name + "_time_limit", unit="s")
        self.argv = None
        user = None
        args = list(server.argv)
        for index, arg in enumerate(args):
            lowered = arg.lower()
            if lowered.startswith("user="):
                user = arg[5:]
                self.uid, self.gid = _user_ids(user)
            elif lowered.startswith("argv="):
                self.argv = [arg[5:]] + args[index + 1:]
                break
            else:
                msg.fatal("unknown attribute name: %s" % arg)
        if user is None:
            msg.fatal("missing user= attribute")
        if self.argv is None:
            msg.fatal("missing argv= attribute")
        self._check_ids(server)

    def _check_ids(self, server):
        owner = pwd.getpwnam(server.config.get("mail_owner")) if os.geteuid() == 0 else None
        if self.uid == 0:
            msg.fatal("request to deliver as root")
        if owner is not None and self.uid == owner.pw_uid:
            msg.fatal("request to deliver as mail system owner")
        if self.gid == 0:
            msg.fatal("request to use privileged group id %d" % self.gid)
        if owner is not None and self.gid == owner.pw_gid:
            msg.fatal("request to use mail system owner group id %d" % self.gid)


def _user_ids(spec):
    user, _, group = spec.partition(":")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        msg.fatal("unknown user name: %s" % user)
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            msg.fatal("unknown group name: %s" % group)
    return entry.pw_uid, gid


_attributes = None


def spawn_service(conn, server):
    global _attributes
    if _attributes is None:
        _attributes = SpawnAttributes(server)
    attr = _attributes
    fd = conn.fileno()
    switch_user = os.getuid() == 0
    status = spawn_command(attr.argv, stdin_fd=fd, stdout_fd=fd, stderr_fd=fd,
                           uid=attr.uid if switch_user else None, gid=attr.gid,
                           time_limit=attr.time_limit,
                           export=server.config.get_list("export_environment"))
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
        msg.warn("command %s exit status %d" % (attr.argv[0], os.WEXITSTATUS(status)))
    if os.WIFSIGNALED(status):
        msg.warn("command %s killed by signal %d" % (attr.argv[0], os.WTERMSIG(status)))


def _drop_privileges(server):
    """Wait for clients as mail_owner; spawn_command() regains root to switch users."""
    if os.geteuid() == 0:
        owner = pwd.getpwnam(server.config.get("mail_owner"))
        os.setegid(owner.pw_gid)
        os.seteuid(owner.pw_uid)


def main(argv):
    single_server_main(argv, spawn_service, post_init=_drop_privileges, privileged=True)

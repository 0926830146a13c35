"""unix: tables, the system's user and group databases (Postfix's util/dict_unix.c).

`unix:passwd.byname` answers a user name with its passwd entry,
`name:passwd:uid:gid:gecos:dir:shell`; `unix:group.byname` answers a group name with
`name:passwd:gid:member,member,...`. Both go through the C library (getpwnam/getgrnam, so
NSS sources count). When a name is not found and the database itself cannot be read (no
entry for uid or gid 0), the lookup is a temporary failure, warned once per process.
"""

import grp
import os
import pwd

from pyfix.common import msg
from pyfix.maps.dict import ERR_RETRY, FLAG_FIXED, FLAG_FOLD_FIX, Dict, SurrogateDict
from pyfix.maps.dict_ht import c_string, lowercase

_sanity_checked = {"passwd": False, "group": False}


def _passwd_entry(name):
    try:
        pw = pwd.getpwnam(name)
    except (KeyError, ValueError, UnicodeError):
        return None
    return "%s:%s:%d:%d:%s:%s:%s" % (pw.pw_name, pw.pw_passwd, pw.pw_uid, pw.pw_gid,
                                     pw.pw_gecos, pw.pw_dir, pw.pw_shell)


def _group_entry(name):
    try:
        gr = grp.getgrnam(name)
    except (KeyError, ValueError, UnicodeError):
        return None
    return "%s:%s:%d:%s" % (gr.gr_name, gr.gr_passwd, gr.gr_gid, ",".join(gr.gr_mem))


def _database_works(which):
    try:
        if which == "passwd":
            pwd.getpwuid(0)
        else:
            grp.getgrgid(0)
    except KeyError:
        return False
    return True


class UnixDict(Dict):
    type = "unix"

    def __init__(self, name, open_flags, dict_flags, which):
        super().__init__(name, open_flags, dict_flags | FLAG_FIXED)
        self.which = which

    def _lookup(self, key):
        key = c_string(key)
        if self.flags & FLAG_FOLD_FIX:
            key = lowercase(key)
        value = (_passwd_entry if self.which == "passwd" else _group_entry)(key)
        if value is None:
            if not _sanity_checked[self.which]:
                _sanity_checked[self.which] = True
                if not _database_works(self.which):
                    msg.warn("cannot access UNIX %s database: %s"
                             % ("password" if self.which == "passwd" else "group",
                                os.strerror(0)))
                    self.error = ERR_RETRY
            return None
        _sanity_checked[self.which] = True
        return value


_TABLES = {"passwd.byname": "passwd", "group.byname": "group"}


def open_unix(name, open_flags, dict_flags):
    if open_flags != os.O_RDONLY:
        return SurrogateDict("unix", name, open_flags, dict_flags,
                             "unix:%s map requires O_RDONLY access mode" % name)
    if name not in _TABLES:
        return SurrogateDict("unix", name, open_flags, dict_flags,
                             "unknown table: unix:%s" % name)
    return UnixDict(name, open_flags, dict_flags, _TABLES[name])

"""post-install create-missing / set-permissions / upgrade-permissions, from a postfix-files table.

Postfix's post-install script reads $meta_directory/postfix-files (and the files under
postfix-files.d/), one record a line:

    name:type:owner:group:permission:flags

`name` starts with a `$parameter` (records that do not are skipped, comments included);
`type` is d (directory), f (file), h or l (hard or symbolic link: skipped here); a null
field is `-`; owner, group and flags may be `$parameter` references too. Flags:
  c  create the directory when it is missing (create-missing, run by check and start)
  u  reset owner/group/mode on upgrade-permissions
  r  chown/chgrp recursively; for directories chmod every subdirectory (never files:
     queue-file state lives in their mode bits)
  o  obsolete (listed by upgrade-configuration, never touched)
  1, i  optional outside the default configuration directory (skipped when unreadable)
  p  preserve an existing file (postfix-install only; no effect here)
set-permissions resets owner, group and mode of every record.

pyfix ships its own table (POSTFIX_FILES below) instead of reading Postfix's: Debian's
postfix-files lists Postfix's binaries, shared libraries and manual pages, which pyfix
does not install, and pyfix must work where Postfix is not installed. The table keeps
Postfix's records for what pyfix does use: the configuration directory and its two
files, the data directory, the queue directory and its subdirectories (owners, groups,
modes and flags as in Debian's postfix-files for 3.7.11).

Errors from the file operations are reported in the words of the coreutils programs that
post-install runs (`mkdir: cannot create directory '...': ...`), since that is what an
operator sees from Postfix.
"""

import grp
import os
import pwd
import re
import stat
import sys
from collections import namedtuple

from pyfix.common import msg

POSTFIX_FILES = """\
# pyfix's postfix-files: the records of Postfix 3.7.11's postfix-files that apply to pyfix.
# name:type:owner:group:permission:flags
$config_directory:d:root:-:755:u
$data_directory:d:$mail_owner:-:700:uc
$queue_directory:d:root:-:755:uc
$queue_directory/active:d:$mail_owner:-:700:ucr
$queue_directory/bounce:d:$mail_owner:-:700:ucr
$queue_directory/corrupt:d:$mail_owner:-:700:ucr
$queue_directory/defer:d:$mail_owner:-:700:ucr
$queue_directory/deferred:d:$mail_owner:-:700:ucr
$queue_directory/flush:d:$mail_owner:-:700:ucr
$queue_directory/hold:d:$mail_owner:-:700:ucr
$queue_directory/incoming:d:$mail_owner:-:700:ucr
$queue_directory/private:d:$mail_owner:-:700:uc
$queue_directory/maildrop:d:$mail_owner:$setgid_group:730:uc
$queue_directory/public:d:$mail_owner:$setgid_group:710:uc
$queue_directory/pid:d:root:-:755:uc
$queue_directory/saved:d:$mail_owner:-:700:ucr
$queue_directory/trace:d:$mail_owner:-:700:ucr
$config_directory/main.cf:f:root:-:644:p
$config_directory/master.cf:f:root:-:644:p
"""

# The installation parameters post-install works with (its MOST_PARAMETERS), and those
# that belong to one instance (the rest is shared by all instances of a multi-instance
# installation).
MOST_PARAMETERS = (
    "command_directory", "daemon_directory", "data_directory", "html_directory",
    "mail_owner", "mailq_path", "manpage_directory", "newaliases_path", "queue_directory",
    "readme_directory", "sample_directory", "sendmail_path", "setgid_group",
    "shlib_directory", "meta_directory")
NON_SHARED = ("config_directory", "queue_directory", "data_directory")
MUST_BE_ABSOLUTE = ("daemon_directory", "command_directory", "queue_directory",
                    "sendmail_path", "newaliases_path", "mailq_path", "manpage_directory",
                    "meta_directory")
ABSOLUTE_OR_NO = ("html_directory", "readme_directory", "shlib_directory")

Entry = namedtuple("Entry", "path type owner group mode flags source")

_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def parse(text, source="postfix-files"):
    """The records of a postfix-files text, with the fields as written."""
    entries = []
    for line in text.splitlines():
        fields = line.split(":") + [""] * 6     # fields after the sixth are ignored
        entries.append(Entry(*fields[:6], source))
    return entries


def expand(text, values):
    """One round of shell-style `$name` / `${name}` substitution (unset names: empty)."""
    return _VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), ""), text)


def tool_error(tool, text):
    """A diagnostic in the words of a coreutils program or script (`mkdir: ...`)."""
    msg.StderrOutput(tool)(msg.INFO, text)


def _plain_line(text):
    """A message line of a shell script that carries no program name."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Installer:
    """Applies a postfix-files table the way post-install does.

    values: the installation parameters ($queue_directory, $mail_owner, ...), already
    expanded. privileged: False when run by an ordinary user: then nothing is chowned
    or chgrped (every file belongs to that user), and only the modes are set.
    """

    def __init__(self, values, privileged=True, default_config_dir="/etc/postfix",
                 update_shared_files=True):
        self.values = values
        self.privileged = privileged
        self.default_config_dir = default_config_dir
        self.update_shared_files = update_shared_files
        self.obsolete = []
        self.keep = []

    def run(self, entries, create=True, set_perms=False, upgrade_perms=False):
        """Walk the records; False after the first failed operation (post-install exit 1)."""
        for entry in entries:
            if not self._apply(entry, create, set_perms, upgrade_perms):
                return False
        return True

    def _apply(self, entry, create, set_perms, upgrade_perms):
        if not entry.path.startswith("$"):
            return True
        if not self.update_shared_files and not any(
                entry.path.startswith("$" + name) for name in NON_SHARED):
            return True
        if entry.type in ("h", "l"):
            return True
        if entry.type not in ("d", "f"):
            _plain_line("unknown type %s for %s in %s" % (entry.type, entry.path,
                                                          entry.source))
            return False
        path, owner, group, flags = (self._field(value) for value in
                                     (entry.path, entry.owner, entry.group, entry.flags))
        if path == "no" or path.startswith("no/"):
            return True
        if ("1" in flags or "i" in flags) and not os.access(path, os.R_OK) \
                and self.values.get("config_directory") != self.default_config_dir:
            return True
        if "o" in flags:
            if os.access(path, os.R_OK) and entry.type != "d":
                self.obsolete.append(path)
            return True
        self.keep.append(path)
        if create and entry.type == "d" and "c" in flags and not os.path.isdir(path):
            try:
                os.mkdir(path)
            except OSError as exc:
                tool_error("mkdir", "cannot create directory '%s': %s"
                           % (path, msg.strerror(exc)))
                return False
        elif not set_perms and not (upgrade_perms and "u" in flags):
            return True
        return self._set_permission(path, entry.type, owner, group, entry.mode,
                                    "r" in flags)

    def _field(self, value):
        if value.startswith("$"):
            return expand(value, self.values)
        return "" if value == "-" else value

    # -- chown / chgrp / chmod ---------------------------------------------------------

    def _set_permission(self, path, kind, owner, group, mode_text, recursive):
        if self.privileged:
            if owner and not self._chown(path, owner, recursive):
                return False
            if group and not self._chgrp(path, group, recursive):
                return False
        try:
            mode = int(mode_text, 8)
        except ValueError:
            tool_error("chmod", "invalid mode: '%s'" % mode_text)
            return False
        keep_ids = len(mode_text) < 5       # chmod NNN keeps a directory's set-id bits
        if kind == "d" and recursive:
            for folder in _walk_dirs(path):
                _chmod(folder, mode, keep_ids)
            return True
        return _chmod(path, mode, keep_ids)

    def _chown(self, path, owner, recursive):
        try:
            uid = pwd.getpwnam(owner).pw_uid
        except KeyError:
            tool_error("chown", "invalid user: '%s'" % owner)
            return False
        return _change_ids(path, "chown", "ownership", uid, -1, recursive)

    def _chgrp(self, path, group, recursive):
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            tool_error("chgrp", "invalid group: '%s'" % group)
            return False
        return _change_ids(path, "chgrp", "group", -1, gid, recursive)


def _change_ids(path, tool, what, uid, gid, recursive):
    """chown/chgrp [-R]: -R changes symlinks themselves and does not follow them."""
    try:
        if not recursive:
            os.chown(path, uid, gid)
            return True
        os.lchown(path, uid, gid)
    except OSError as exc:
        _report_access(tool, "changing %s of" % what, path, exc)
        return False
    ok = True
    if not os.path.islink(path) and os.path.isdir(path):
        for folder, dirs, files in os.walk(path, onerror=None):
            for name in dirs + files:
                target = os.path.join(folder, name)
                try:
                    os.lchown(target, uid, gid)
                except OSError as exc:
                    _report_access(tool, "changing %s of" % what, target, exc)
                    ok = False
    return ok


def _chmod(path, mode, keep_ids):
    try:
        st = os.stat(path)
        if keep_ids and stat.S_ISDIR(st.st_mode):
            mode |= st.st_mode & (stat.S_ISUID | stat.S_ISGID)
        os.chmod(path, mode)
    except OSError as exc:
        _report_access("chmod", "changing permissions of", path, exc)
        return False
    return True


def _report_access(tool, doing, path, exc):
    if isinstance(exc, FileNotFoundError):
        tool_error(tool, "cannot access '%s': %s" % (path, msg.strerror(exc)))
    else:
        tool_error(tool, "%s '%s': %s" % (doing, path, msg.strerror(exc)))


def _walk_dirs(top):
    """`find top -type d`: the directories of a tree, top first, symlinks not followed."""
    if os.path.islink(top) or not os.path.isdir(top):
        return []
    found = []
    for folder, dirs, _ in os.walk(top):
        found.append(folder)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
    return found


# -- the post-install command line ---------------------------------------------------------

USAGE = """Usage: {0} [name=value] command
    create-missing          Create missing queue directories.
    upgrade-source          When installing or upgrading from source code.
    upgrade-package         When installing or upgrading from pre-built package.
    first-install-reminder  Remind of mandatory first-time configuration steps.
    name=value              Specify an installation parameter."""

PROGRAM = "post-install"


class Request:
    """What a post-install command line asks for."""

    def __init__(self):
        self.create = self.set_perms = self.upgrade_perms = False
        self.upgrade_conf = self.first_install_reminder = False
        self.assignments = {}


def parse_args(args):
    """post-install's argument loop; returns a Request or None after an error message."""
    request = Request()
    for arg in args:
        if any(ch in arg for ch in " \t"):
            print("%s: Error: argument contains whitespace: '%s'" % (PROGRAM, arg))
            return None
        if "=" in arg:
            name, value = arg.split("=", 1)
            request.assignments[name] = value
        elif arg == "create-missing":
            request.create = True
        elif arg.startswith("set-perm"):
            request.create = request.set_perms = True
        elif arg.startswith("upgrade-perm"):
            request.create = request.upgrade_perms = True
        elif arg.startswith("upgrade-conf"):
            request.upgrade_conf = True
        elif arg == "upgrade-source":
            request.create = request.upgrade_conf = request.upgrade_perms = True
        elif arg == "upgrade-package":
            request.create = request.upgrade_conf = request.set_perms = True
        elif arg.startswith("first-install"):
            request.first_install_reminder = True
        else:
            tool_error(PROGRAM, "Error: " + USAGE.format(PROGRAM))
            return None
    if not (request.create or request.upgrade_conf or request.first_install_reminder):
        tool_error(PROGRAM, "Error: " + USAGE.format(PROGRAM))
        return None
    return request


def check_values(values):
    """post-install's sanity checks of the installation parameters; False after a message."""
    for name, hint in (("manpage_directory", '"%s manpage_directory=/pathname ...".'),
                       ("setgid_group", '"%s setgid_group=groupname ..."')):
        if values.get(name) == "no":
            tool_error(PROGRAM, 'Error: %s no longer accepts "no" values.' % name)
            _plain_line("Try again with " + hint % PROGRAM)
            return False
    for name in MUST_BE_ABSOLUTE:
        value = values.get(name, "")
        if not value.startswith("/"):
            tool_error(PROGRAM, 'Error: "%s" should be an absolute path name.' % value)
            return False
    for name in ABSOLUTE_OR_NO:
        value = values.get(name, "")
        if value != "no" and not value.startswith("/"):
            tool_error(PROGRAM, 'Error: "%s" should be "no" or an absolute path name.'
                       % value)
            return False
    return True


def builtin_entries():
    return parse(POSTFIX_FILES, "pyfix postfix-files")

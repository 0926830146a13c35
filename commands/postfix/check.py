"""`postfix check`: postfix-script's check-fatal and check-warn, in Python.

check-fatal (also run by start, whose failure message is `Postfix integrity check failed!`):
  - post-install create-missing: the missing directories of the postfix-files table,
    with their owners, groups and modes (postfix_files.py);
  - master.cf must exist; when maillog_file is set, master.cf must have a postlog
    unix-dgram service;
  - postsuper's queue structure check, once pyfix has a postsuper command.
check-warn: the ownership and permission warnings of postfix-script, walking the trees
as its find(1) commands do (same paths in the messages: `$queue_directory/.`, `./name`,
directory order as read from the disk).

Run by an ordinary user (pyfix's development mode), every file is expected to belong to
that user: the `root` and `$mail_owner` owner checks name the user instead, and the
`$setgid_group` group checks are skipped.
"""

import glob
import os
import re
import stat

from pyfix.common import msg
from pyfix.common.master_cf import read_master_cf

from pyfix.commands.postfix import postfix_files
from pyfix.commands.postfix.postfix_files import tool_error
from pyfix.commands.postfix.tools import quiet, run_pyfix_command

QUEUE_OWNED = re.compile(r"/(saved|incoming|active|defer|deferred|bounce|hold|trace|corrupt"
                         r"|public|private|flush)$")
CHROOT_DIRS = ("bin", "etc", "lib", "sbin", "usr")
# Debian's /etc/postfix/makedefs.out is a symlink into /usr/share/postfix (Debian's
# postfix-script makes the same exception).
KNOWN_SYMLINK = "/etc/postfix/./makedefs.out"
WRITABLE = stat.S_IWGRP | stat.S_IWOTH


# -- check-fatal ---------------------------------------------------------------------------

def create_missing(ctx, set_perms=False, upgrade_perms=False, values=None):
    """post-install create-missing [set-permissions]; False after an error message."""
    values = dict(ctx.install_values() if values is None else values)
    if not postfix_files.check_values(values):
        return False
    installer = postfix_files.Installer(values, ctx.privileged, ctx.default_config_dir,
                                        ctx.shared_files)
    return installer.run(postfix_files.builtin_entries(), create=True, set_perms=set_perms,
                         upgrade_perms=upgrade_perms)


def has_postlog_service(master_cf):
    """`postconf -M postlog/unix-dgram 2>/dev/null | grep .`: an unreadable or malformed
    master.cf has no such service."""
    try:
        with quiet():
            entries = read_master_cf(master_cf)
    except msg.Fatal:
        return False
    return any(e.service == "postlog" and e.type == "unix-dgram" for e in entries)


def check_fatal(ctx):
    """Raise msg.Fatal (after postfix-script's message) when the system cannot run."""
    if not create_missing(ctx):
        msg.fatal("unable to create missing queue directories")
    master_cf = os.path.join(ctx.config_dir, "master.cf")
    if not os.path.isfile(master_cf):
        msg.fatal("no %s file found" % master_cf)
    if ctx.config.raw("maillog_file") and not has_postlog_service(master_cf):
        msg.fatal("missing 'postlog' service in master.cf - run 'postfix upgrade-configuration'")
    status = run_pyfix_command("postsuper", [], ctx.child_env)
    if status not in (None, 0):
        raise msg.Fatal(1)


# -- find(1) -------------------------------------------------------------------------------

def _find_error(path, exc):
    tool_error("find", "'%s': %s" % (path, msg.strerror(exc)))


def walk(start, follow=False):
    """(path, stat) of a tree in find's order: the start, then each directory's entries
    as the directory lists them, depth first. follow=True is `find -L`."""
    try:
        st = os.stat(start) if follow else os.lstat(start)
    except FileNotFoundError as exc:
        if follow and os.path.lexists(start):
            st = os.lstat(start)
        else:
            _find_error(start, exc)
            return
    except OSError as exc:
        _find_error(start, exc)
        return
    yield from _walk(start, st, follow, set())


def _walk(path, st, follow, ancestors):
    yield path, st
    if not stat.S_ISDIR(st.st_mode):
        return
    key = (st.st_dev, st.st_ino)
    if key in ancestors:
        return
    try:
        with os.scandir(path) as listing:
            names = [entry.name for entry in listing]
    except OSError as exc:
        _find_error(path, exc)
        return
    ancestors = ancestors | {key}
    for name in names:
        child = path + "/" + name
        try:
            child_st = os.stat(child) if follow else os.lstat(child)
        except FileNotFoundError:
            if not os.path.lexists(child):
                continue
            child_st = os.lstat(child)
        except OSError as exc:
            _find_error(child, exc)
            continue
        yield from _walk(child, child_st, follow, ancestors)


def _prune(path):
    """`find path -prune`: the start point alone, not followed if a symlink."""
    try:
        return os.lstat(path)
    except OSError as exc:
        _find_error(path, exc)
        return None


def _same_content(a, b):
    """`cmp -s a b` succeeds."""
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                block_a, block_b = fa.read(65536), fb.read(65536)
                if block_a != block_b:
                    return False
                if not block_a:
                    return True
    except OSError:
        return False


# -- check-warn ----------------------------------------------------------------------------

def check_warn(ctx):
    """postfix-script check-warn: warnings only, never a failure."""
    queue = ctx.queue_dir
    root_name, root_uid = ctx.root_owner()
    owner_name, owner_uid = ctx.mail_owner_id()
    warn = msg.warn

    # The root-owned queue directory and pid directory.
    tops = [queue + "/.", queue + "/pid"]
    for path, st in [(path, _prune(path)) for path in tops]:
        if st is not None and st.st_uid != root_uid:
            warn("not owned by %s: %s" % (root_name, path))
    for path, st in [(path, _prune(path)) for path in tops]:
        if st is not None and st.st_mode & WRITABLE:
            warn("group or other writable: %s" % path)

    # The root-owned configuration (and shared installation) trees.
    todo = sorted(set(ctx.root_trees()), key=lambda p: p.encode("utf-8", "surrogateescape"))
    for top in todo:
        for path, st in walk(top):
            if st.st_uid != root_uid:
                warn("not owned by %s: %s" % (root_name, path))
    for top in todo:
        for path, st in walk(top, follow=True):
            if st.st_mode & WRITABLE:
                warn("group or other writable: %s" % path)
    for top in todo:
        for path, st in walk(top):
            if stat.S_ISLNK(st.st_mode) and path != KNOWN_SYMLINK:
                try:
                    target = os.readlink(path)
                except OSError:
                    continue
                if "/" in target:
                    warn("symlink leaves directory: %s" % path)

    # The mail_owner-owned data directory.
    data = ctx.data_dir + "/."
    for path, st in walk(data):
        if st.st_uid != owner_uid:
            warn("not owned by %s: %s" % (owner_name, path))
    for path, st in walk(data):
        if st.st_mode & WRITABLE:
            warn("group or other writable: %s" % path)

    # The mail_owner-owned queue directories (sockets and fifos excepted).
    listed = sorted(glob.glob(glob.escape(queue) + "/*"),
                    key=lambda p: p.encode("utf-8", "surrogateescape"))
    if not listed:
        tool_error("ls", "cannot access '%s/*': No such file or directory" % queue)
    # find(1) without a start point searches the current directory, the queue directory.
    for top in [p for p in listed if QUEUE_OWNED.search(p)] or ["."]:
        for path, st in walk(top):
            if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                continue
            if st.st_uid != owner_uid:
                warn("not owned by %s: %s" % (owner_name, path))
    st = _prune(queue + "/maildrop")
    if st is not None and st.st_uid != owner_uid:
        warn("not owned by %s: %s/maildrop" % (owner_name, queue))

    # The setgid_group-owned directories (pyfix has no set-gid programs to check).
    if ctx.privileged:
        group_name, group_gid = ctx.setgid_group_id()
        for path in (queue + "/public", queue + "/maildrop"):
            st = _prune(path)
            if st is not None and st.st_gid != group_gid:
                warn("not owned by group %s: %s" % (group_name, path))

    _check_chroot_remnants(queue, root_name, root_uid)

    for path, st in walk("corrupt"):
        if stat.S_ISREG(st.st_mode):
            warn("damaged message: %s" % path)

    # Another MTA's remnants.
    if ctx.shared_files and os.path.isfile("/usr/sbin/sendmail") \
            and os.path.isfile("/usr/lib/sendmail") \
            and not _same_content("/usr/sbin/sendmail", "/usr/lib/sendmail"):
        warn("/usr/lib/sendmail and /usr/sbin/sendmail differ")
        warn("Replace one by a symbolic link to the other")


def _check_chroot_remnants(queue, root_name, root_uid):
    """The copies of system files in a chroot jail (relative to the queue directory,
    the current directory) must belong to root and match the originals."""
    for folder in CHROOT_DIRS:
        if not os.path.isdir(folder):
            continue
        for path, st in walk(folder):
            if st.st_uid != root_uid:
                msg.warn("not owned by %s: %s/%s" % (root_name, queue, path))
        for path, st in walk(folder):
            if stat.S_ISREG(st.st_mode) and os.path.isfile("/" + path) \
                    and not _same_content(path, "/" + path):
                msg.warn("%s/%s and /%s differ" % (queue, path, path))


def run_check(ctx):
    """`postfix check`: check-fatal (exit 1 when it fails), then check-warn."""
    check_fatal(ctx)
    check_warn(ctx)
    return 0

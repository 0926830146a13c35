"""Switching the effective user of local(8) (Postfix's set_eugid(), stat_as(),
open_as()).

local(8) runs with real uid root and, between deliveries, the effective ids of
mail_owner. Files are opened, stat()ed and written with the effective ids of the user
whose rights apply; commands are started by pipe_command() as that user. When the
process is not root (a test run without privileges) nothing is switched.
"""

import contextlib
import os

from pyfix.common.dot_lockfile import set_eugid


def can_switch():
    return os.getuid() == 0


@contextlib.contextmanager
def as_user(uid, gid, settings=None):
    """Run the block with effective ids uid/gid, then back to the previous ones."""
    if not can_switch():
        yield
        return
    saved = os.geteuid(), os.getegid()
    set_eugid(uid, gid)
    try:
        yield
    finally:
        set_eugid(*saved)


def drop_to_owner(settings):
    """set_eugid(var_owner_uid, var_owner_gid): the daemon's resting privileges."""
    if can_switch():
        set_eugid(settings.owner_uid, settings.owner_gid)


def open_as(path, flags, uid, gid):
    """open() as uid/gid; a descriptor or an OSError."""
    with as_user(uid, gid):
        return os.open(path, flags | os.O_CLOEXEC)


def stat_as(path, uid, gid, follow=True):
    with as_user(uid, gid):
        return os.stat(path) if follow else os.lstat(path)

"""The leaves of local(8)'s delivery graph: mailbox, Maildir, file and command
(Postfix's local/mailbox.c, maildir.c, file.c and command.c).

deliver_mailbox() hands the recipient to mailbox_transport(_maps) when set, else, for a
UNIX account, to mailbox_command(_maps), to a Maildir (home_mailbox ending in `/`), or
to an mbox file in mail_spool_directory or under home_mailbox, locked with
mailbox_delivery_lock and written as the recipient. deliver_file() appends to a file
named in an alias or .forward (a name ending in `/` is a Maildir), deliver_command()
runs `|command` through pipe_command() as the user whose rights apply, never as root.
"""

import errno
import os
import pwd
import stat

from pyfix.common import msg
from pyfix.common.dot_lockfile import set_eugid
from pyfix.common.hostinfo import get_hostname
from pyfix.common.mail_copy import (MAIL_COPY_DELIVERED, MAIL_COPY_FROM, MAIL_COPY_MBOX,
                                    MAIL_COPY_ORIG_RCPT, MAIL_COPY_RETURN_PATH,
                                    MAIL_COPY_STAT_CORRUPT, MAIL_COPY_STAT_WRITE,
                                    MAIL_COPY_TOFILE, mail_copy)
from pyfix.common.maildir import maildir_write
from pyfix.common.mbox_open import MBOX_DOT_LOCK_MAY_FAIL, mbox_open, mbox_release
from pyfix.common.pipe_command import (PIPE_STAT_BOUNCE, PIPE_STAT_CORRUPT,
                                       PIPE_STAT_DEFER, PIPE_STAT_OK, pipe_command)
from pyfix.daemons.local import privs
from pyfix.daemons.local.biff_notify import biff_notify
from pyfix.daemons.local.recipient import local_expand
from pyfix.daemons.local.state import (DEL_STAT_DEFER, DELIVER_HDR_CMD, DELIVER_HDR_FILE,
                                       bounce_workaround)

_hostname = []


def _get_hostname():
    if not _hostname:
        _hostname.append(get_hostname())
    return _hostname[0]


def deliver_mailbox(state, usr_attr):
    """(found, status): deliver to the recipient's mailbox; found False when there is
    no such UNIX account (and no mailbox_transport)."""
    from pyfix.daemons.local.forward import deliver_pass
    state = state.enter()
    usr_attr = usr_attr.copy()
    attr = state.msg_attr
    settings = state.settings
    helpers = state.helpers
    if state.been_here("mailbox %s" % attr.local):
        return True, 0
    maps = helpers.maps("mailbox_transport_maps")
    if maps:
        transport = maps.find(attr.user)
        if transport is not None:
            attr.rcpt.offset = -1
            return True, deliver_pass(state, transport)
        if maps.error:
            return True, state.defer("4.3.0", "table lookup failure")
    if settings.mailbox_transport:
        attr.rcpt.offset = -1
        return True, deliver_pass(state, settings.mailbox_transport)
    try:
        entry = pwd.getpwnam(attr.user)
    except KeyError:
        return False, 0
    usr_attr.set(entry)
    cmd_maps = helpers.maps("mailbox_command_maps")
    command = cmd_maps.find(attr.user) if cmd_maps else None
    if command is not None:
        return True, deliver_command(state, usr_attr, command)
    if cmd_maps and cmd_maps.error:
        return True, state.defer("4.3.0", "table lookup failure")
    if settings.mailbox_command:
        return True, deliver_command(state, usr_attr, settings.mailbox_command)
    if settings.home_mailbox.endswith("/"):
        return True, deliver_maildir(state, usr_attr,
                                     "%s/%s" % (usr_attr.home, settings.home_mailbox))
    if settings.mail_spool_dir.endswith("/"):
        return True, deliver_maildir(state, usr_attr,
                                     settings.mail_spool_dir + attr.user + "/")
    return True, deliver_mailbox_file(state, usr_attr)


def _spool_ids(spool_dir, usr_attr):
    """Whose rights create and lock the mailbox (mailbox.c's comments): the recipient
    for a home mailbox or a world-writable spool, the recipient with the spool's group
    for a group-writable spool, else root (and the new file is chowned)."""
    try:
        st = os.stat(spool_dir) if spool_dir else None
    except OSError:
        st = None
    if st is None or st.st_mode & stat.S_IWOTH:
        return usr_attr.uid, usr_attr.gid
    if st.st_mode & stat.S_IWGRP:
        return usr_attr.uid, st.st_gid
    return 0, 0


def deliver_mailbox_file(state, usr_attr):
    state = state.enter()
    attr = state.msg_attr
    settings = state.settings
    why = attr.why
    if state.trace_only:
        return state.sent("2.0.0", "delivers to mailbox")
    attr.fp.seek(attr.offset)
    if not settings.frozen_delivered:
        attr.delivered = attr.rcpt.address
    copy_status = MAIL_COPY_STAT_WRITE
    end = 0
    if settings.home_mailbox:
        spool_dir = None
        mailbox = "%s/%s" % (usr_attr.home, settings.home_mailbox)
    else:
        spool_dir = settings.mail_spool_dir
        mailbox = "%s/%s" % (spool_dir, attr.user)
    spool_uid, spool_gid = _spool_ids(spool_dir, usr_attr)
    if spool_uid == usr_attr.uid:
        chown_uid = chown_gid = -1
    else:
        chown_uid, chown_gid = usr_attr.uid, usr_attr.gid
    copy_flags = MAIL_COPY_MBOX
    if not settings.deliver_hdr_mask & DELIVER_HDR_FILE:
        copy_flags &= ~MAIL_COPY_DELIVERED
    switch = privs.can_switch()
    if switch:
        set_eugid(spool_uid, spool_gid)
    try:
        mbox = mbox_open(mailbox, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o600,
                         chown_uid, chown_gid, settings.mbox_lock_mask, "5.2.0", why)
        if mbox is not None:
            as_user = switch and (spool_uid, spool_gid) != (usr_attr.uid, usr_attr.gid)
            if as_user:
                set_eugid(usr_attr.uid, usr_attr.gid)
            if not stat.S_ISREG(mbox.st.st_mode):
                mbox.fp.close()
                why.simple("5.2.0", "destination %s is not a regular file" % mailbox)
            elif settings.strict_mbox_owner and mbox.st.st_uid != usr_attr.uid \
                    and switch:
                mbox.fp.close()
                why.simple("4.2.0", "destination %s is not owned by recipient" % mailbox)
                msg.warn('specify "strict_mailbox_ownership = no" to ignore mailbox '
                         'ownership mismatch')
            else:
                end = os.lseek(mbox.fp.fileno(), 0, os.SEEK_END)
                copy_status = mail_copy(attr.sender, attr.rcpt.orig_addr, attr.delivered,
                                        attr.fp, mbox.fp, copy_flags, "\n", why)
            if as_user:
                set_eugid(spool_uid, spool_gid)
            mbox_release(mbox)
    finally:
        if switch:
            privs.drop_to_owner(settings)
    if copy_status & MAIL_COPY_STAT_CORRUPT:
        return DEL_STAT_DEFER
    if copy_status:
        why.prepend("cannot update mailbox %s for user %s. " % (mailbox, attr.user))
        return state.bounce_or_defer()
    result = state.sent("2.0.0", "delivered to mailbox")
    if settings.biff:
        biff_notify("%s@%d" % (usr_attr.logname, end))
    return result


def deliver_maildir(state, usr_attr, path):
    state = state.enter()
    attr = state.msg_attr
    settings = state.settings
    why = attr.why
    if state.trace_only:
        return state.sent("2.0.0", "delivers to maildir")
    attr.fp.seek(attr.offset)
    if not settings.frozen_delivered:
        attr.delivered = attr.rcpt.address
    copy_flags = MAIL_COPY_TOFILE | MAIL_COPY_RETURN_PATH | MAIL_COPY_ORIG_RCPT
    if settings.deliver_hdr_mask & DELIVER_HDR_FILE:
        copy_flags |= MAIL_COPY_DELIVERED
    why.errno = 0
    copy_status = maildir_write(path, attr.fp, attr.sender, attr.rcpt.orig_addr,
                                attr.delivered, copy_flags, usr_attr.uid, usr_attr.gid,
                                "5.2.0", why, _get_hostname())
    if copy_status & MAIL_COPY_STAT_CORRUPT:
        return DEL_STAT_DEFER
    if copy_status:
        if why.errno == errno.EACCES:
            msg.warn("maildir access problem for UID/GID=%d/%d: %s"
                     % (usr_attr.uid, usr_attr.gid, why.reason))
            msg.warn("perhaps you need to create the maildirs in advance")
        why.prepend("maildir delivery failed: ")
        return state.bounce_or_defer()
    return state.sent("2.0.0", "delivered to maildir")


def _default_rights(usr_attr, settings):
    """A uid/gid of 0 means "not chosen": use default_privs (never root)."""
    if usr_attr.uid == 0:
        usr_attr.uid = settings.default_uid
    if usr_attr.gid == 0:
        usr_attr.gid = settings.default_gid
    if usr_attr.uid == 0:
        msg.panic("privileged default user id")
    if usr_attr.gid == 0:
        msg.panic("privileged default group id")


def deliver_file(state, usr_attr, path):
    """Append the message to a file named in an expansion."""
    state = state.enter()
    usr_attr = usr_attr.copy()
    attr = state.msg_attr
    settings = state.settings
    why = attr.why
    if state.been_here("file %d %s" % (usr_attr.uid, path)):
        return 0
    if not settings.file_deliver_mask & attr.exp_type:
        why.simple("5.7.1", "mail to file is restricted")
        return bounce_workaround(state)
    if state.trace_only:
        return state.sent("2.0.0", "delivers to file: %s" % path)
    _default_rights(usr_attr, settings)
    if path.endswith("/"):
        return deliver_maildir(state, usr_attr, path)
    attr.fp.seek(attr.offset)
    copy_flags = MAIL_COPY_MBOX
    if not settings.deliver_hdr_mask & DELIVER_HDR_FILE:
        copy_flags &= ~MAIL_COPY_DELIVERED
    copy_status = MAIL_COPY_STAT_WRITE
    with privs.as_user(usr_attr.uid, usr_attr.gid):
        mbox = mbox_open(path, os.O_APPEND | os.O_CREAT | os.O_WRONLY, 0o600, -1, -1,
                         settings.mbox_lock_mask | MBOX_DOT_LOCK_MAY_FAIL, "5.2.0", why)
        if mbox is not None:
            mode = mbox.st.st_mode
            if stat.S_ISREG(mode) and mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
                mbox.fp.close()
                why.simple("5.7.1", "file is executable")
            else:
                flags = copy_flags if stat.S_ISREG(mode) else copy_flags & ~MAIL_COPY_TOFILE
                copy_status = mail_copy(attr.sender, attr.rcpt.orig_addr, attr.delivered,
                                        attr.fp, mbox.fp, flags, "\n", why)
            mbox_release(mbox)
    if copy_status & MAIL_COPY_STAT_CORRUPT:
        return DEL_STAT_DEFER
    if copy_status:
        why.prepend("cannot append message to file %s: " % path)
        return bounce_workaround(state)
    return state.sent("2.0.0", "delivered to file: %s" % path)


def _command_env(state, usr_attr):
    attr = state.msg_attr
    values = attr.request.values
    env = []
    if usr_attr.home:
        env.append(("HOME", usr_attr.home))
    env += [("LOGNAME", attr.user), ("USER", attr.user), ("SENDER", attr.sender),
            ("RECIPIENT", attr.rcpt.address), ("LOCAL", attr.local)]
    if usr_attr.shell:
        env.append(("SHELL", usr_attr.shell))
    if attr.domain:
        env.append(("DOMAIN", attr.domain))
    if attr.extension:
        env.append(("EXTENSION", attr.extension))
    if attr.rcpt.orig_addr:
        env.append(("ORIGINAL_RECIPIENT", attr.rcpt.orig_addr))
    for name, key in (("CLIENT_HOSTNAME", "log_client_name"),
                      ("CLIENT_ADDRESS", "log_client_address"),
                      ("CLIENT_HELO", "log_helo_name"),
                      ("CLIENT_PROTOCOL", "log_protocol_name"),
                      ("SASL_METHOD", "sasl_method"), ("SASL_SENDER", "sasl_sender"),
                      ("SASL_USERNAME", "sasl_username")):
        if values.get(key):
            env.append((name, values[key]))
    # Censor what the network may have put there: no shell meta characters.
    allowed = state.settings.cmd_exp_filter
    return [(name, "".join(ch if ch in allowed else "_" for ch in value))
            for name, value in env]


def deliver_command(state, usr_attr, command):
    """Deliver to `|command` as the user whose rights apply."""
    from pyfix.common.macro import PARSE_ERROR
    state = state.enter()
    usr_attr = usr_attr.copy()
    attr = state.msg_attr
    settings = state.settings
    why = attr.why
    if state.been_here("command %s:%d %s" % (attr.user, usr_attr.uid, command)):
        return 0
    if state.trace_only:
        return state.sent("2.0.0", "delivers to command: %s" % command)
    _default_rights(usr_attr, settings)
    copy_flags = MAIL_COPY_FROM | MAIL_COPY_RETURN_PATH | MAIL_COPY_ORIG_RCPT
    if settings.deliver_hdr_mask & DELIVER_HDR_CMD:
        copy_flags |= MAIL_COPY_DELIVERED
    attr.fp.seek(attr.offset)
    env = _command_env(state, usr_attr)
    exec_dir, expand_status = local_expand(settings.exec_directory, state, usr_attr,
                                           settings.exec_exp_filter)
    if expand_status & PARSE_ERROR:
        cmd_status = PIPE_STAT_DEFER
        why.simple("4.3.5", "mail system configuration error")
        msg.warn("bad parameter value syntax for command_execution_directory: %s"
                 % settings.exec_directory)
    else:
        cmd_status = pipe_command(
            attr.fp, why, sender=attr.sender, orig_rcpt=attr.rcpt.orig_addr,
            delivered=attr.delivered, copy_flags=copy_flags, eol="\n",
            time_limit=settings.command_maxtime, command=command,
            shell=settings.local_cmd_shell or None, uid=usr_attr.uid, gid=usr_attr.gid,
            env=env, export=settings.export_environ.replace(",", " ").split(),
            cwd=exec_dir or None, progname="local")
    if cmd_status == PIPE_STAT_OK:
        return state.sent("2.0.0", "delivered to command: %s" % command)
    if cmd_status in (PIPE_STAT_BOUNCE, PIPE_STAT_DEFER):
        return bounce_workaround(state)
    if cmd_status == PIPE_STAT_CORRUPT:
        return DEL_STAT_DEFER
    msg.panic("deliver_command: bad status %d" % cmd_status)

"""Aliases, ~/.forward files and :include: files (Postfix's local/alias.c,
dotforward.c and include.c).

deliver_alias() looks a name up in alias_maps and delivers to each address of the
result, with the rights of the alias database owner (default_privs when root owns it),
the owner- alias as sender when there is one, and Postfix's loop limit (`alias database
loop for X` past 100 levels). deliver_dotforward() searches forward_path as the user and
delivers to the addresses of the first file found, refusing (with Postfix's warnings) a
file that is not regular, that another user owns or that is world writable.
deliver_include() does the same for `:include:/path`.
"""

import os
import pwd
import stat

from pyfix.common import msg
from pyfix.common.dsn_mask import DSN_NOTIFY_NEVER, DSN_NOTIFY_SUCCESS
from pyfix.daemons.local import privs
from pyfix.daemons.local.recipient import (LOCAL_EXP_EXTENSION_MATCHED, PARSE_ERROR,
                                           PARSE_UNDEF, local_expand)
from pyfix.daemons.local.state import (EXPAND_TYPE_ALIAS, EXPAND_TYPE_FWD,
                                       EXPAND_TYPE_INCL, EXT_PROP_FORWARD,
                                       EXT_PROP_INCLUDE)
from pyfix.queue import bounce_clnt

ALIAS_LOOP_LEVEL = 100


def _strip_success(notify):
    return DSN_NOTIFY_NEVER if notify == DSN_NOTIFY_SUCCESS else notify & ~DSN_NOTIFY_SUCCESS


def _trace_expanded(state, action):
    attr = state.msg_attr
    attr.why.update("2.0.0", action, "", "", "", "", "alias expanded")
    bounce_clnt.trace_append(0, attr.queue_id, attr.msg_stats, attr.rcpt, attr.relay,
                             attr.why.to_dsn())


def deliver_alias(state, usr_attr, name):
    """(found, status): expand name when an alias table has it (deliver_alias())."""
    from pyfix.daemons.local.token import deliver_token_string
    state = state.enter()
    usr_attr = usr_attr.copy()
    attr = state.msg_attr
    if attr.exp_from is not None and attr.exp_from.lower() == name.lower():
        return False, 0
    if state.level > ALIAS_LOOP_LEVEL:
        msg.warn("alias database loop for %s" % name)
        return True, state.bounce("5.4.6", "alias database loop for %s" % name)
    attr.exp_from = name
    aliases = state.helpers.alias_maps
    for table in aliases.tables:
        result = table.lookup(name)
        if result is not None:
            return True, _expand(state, usr_attr, name, table, result,
                                 deliver_token_string)
        if table.error:
            msg.warn("%s:%s: lookup of '%s' failed" % (table.type, table.name, name))
            return True, state.defer("4.3.0", "alias database unavailable")
    return False, 0


def _expand(state, usr_attr, name, table, result, deliver_token_string):
    attr = state.msg_attr
    settings = state.settings
    if state.request.flags & bounce_clnt.DEL_REQ_FLAG_MTA_VRFY:
        return state.sent("2.0.0", "aliased to %s" % result)
    attr.exp_type = EXPAND_TYPE_ALIAS
    # Commands and files of a root-owned table run with default_privs (usr_attr uid
    # 0 means "default" to deliver_command()/deliver_file()), else as the table owner.
    if table.owner_uid in (None, 0):
        usr_attr.reset()
    else:
        try:
            usr_attr.set(pwd.getpwuid(table.owner_uid))
        except KeyError:
            msg.warn("cannot find alias database owner for %s" % table.spec)
            return state.defer("4.3.0", "cannot find alias database owner")
    owner = "owner-" + name if settings.ownreq_special else None
    canon_owner = None
    if owner is not None:
        owner_rhs = state.helpers.alias_maps.find(owner)
        if owner_rhs is not None:
            canon_owner = state.helpers.rewriter().rewrite_internal(
                "local", owner_rhs if settings.exp_own_alias else owner)
            attr.sender = attr.owner = canon_owner
    if canon_owner is None and settings.reset_owner_attr:
        attr.owner = None
    if not settings.frozen_delivered:
        attr.delivered = attr.rcpt.address
    if owner is not None and state.helpers.alias_maps.error:
        return state.defer("4.3.0", "alias database unavailable")
    # DSN: an alias passes ENVID, RET and ORCPT on and NOTIFY without SUCCESS; a
    # mailing list (new sender) passes none of them.
    dsn_notify = attr.rcpt.dsn_notify
    attr.rcpt.dsn_notify = _strip_success(dsn_notify)
    saved = attr.dsn_envid, attr.dsn_ret, attr.rcpt.dsn_orcpt
    if canon_owner is not None:
        attr.dsn_envid, attr.dsn_ret, attr.rcpt.dsn_orcpt = "", 0, ""
        attr.rcpt.orig_addr = ""
    count = [0]
    status = deliver_token_string(state, usr_attr, result, count)
    if count[0] < 1:
        msg.warn("no recipient in alias lookup result for %s" % name)
        return state.defer("4.3.0", "alias database unavailable")
    if dsn_notify & DSN_NOTIFY_SUCCESS:
        attr.rcpt.dsn_notify = dsn_notify
        if canon_owner is not None:
            attr.dsn_envid, attr.dsn_ret, attr.rcpt.dsn_orcpt = saved
        _trace_expanded(state, "delivered" if canon_owner else "expanded")
    return status


# -- ~/.forward (dotforward.c) ----------------------------------------------------------

def deliver_dotforward(state, usr_attr):
    """(found, status): deliver to the addresses of the user's forward file."""
    from pyfix.daemons.local.token import deliver_token_stream
    state = state.enter()
    usr_attr = usr_attr.copy()
    attr = state.msg_attr
    settings = state.settings
    if not settings.forward_path:
        return False, 0
    try:
        entry = pwd.getpwnam(attr.user)
    except KeyError:
        return False, 0
    if not settings.frozen_delivered:
        attr.delivered = attr.rcpt.address
    usr_attr.set(entry)
    attr.exp_type = EXPAND_TYPE_FWD
    attr.owner = attr.user
    path = None
    st = None
    for pattern in _tokens(settings.forward_path):
        expanded, expand_status = local_expand(pattern, state, usr_attr,
                                               settings.fwd_exp_filter)
        if expand_status & (PARSE_ERROR | PARSE_UNDEF):
            continue
        try:
            st = privs.stat_as(expanded, usr_attr.uid, usr_attr.gid, follow=False)
        except OSError:
            continue
        path = expanded
        if expand_status & LOCAL_EXP_EXTENSION_MATCHED \
                or not settings.ext_prop_mask & EXT_PROP_FORWARD:
            attr.unmatched = None
        break
    if path is None:
        return False, 0
    if state.request.flags & bounce_clnt.DEL_REQ_FLAG_MTA_VRFY:
        return True, state.sent("2.0.0", "forward via file: %s" % path)
    if state.been_here("forward %s" % path):
        return state.dup_filter.check("forward-done %s" % path), 0
    attr.exp_from = attr.local
    found, status = False, 0
    if not stat.S_ISREG(st.st_mode):
        msg.warn("file %s is not a regular file" % path)
    elif st.st_uid != 0 and st.st_uid != usr_attr.uid:
        msg.warn("file %s has bad owner uid %d" % (path, st.st_uid))
    elif st.st_mode & 0o002:
        msg.warn("file %s is world writable" % path)
    else:
        try:
            fd = privs.open_as(path, os.O_RDONLY, usr_attr.uid, usr_attr.gid)
        except OSError as exc:
            msg.warn("cannot open file %s: %s" % (path, msg.strerror(exc)))
        else:
            saved_notify = attr.rcpt.dsn_notify
            attr.rcpt.dsn_notify = _strip_success(saved_notify)
            count = [0]
            with os.fdopen(fd, "rb") as fp:
                status = deliver_token_stream(state, usr_attr, fp, count)
            if count[0] > 0:
                found = True
                state.been_here("forward-done %s" % path)
                if status == 0 and saved_notify & DSN_NOTIFY_SUCCESS:
                    attr.rcpt.dsn_notify = saved_notify
                    _trace_expanded(state, "expanded")
    return found, status


def _tokens(text):
    return [word for word in text.replace(",", " ").split() if word]


# -- :include: (include.c) ------------------------------------------------------------

def deliver_include(state, usr_attr, path):
    """Deliver to the addresses listed in an :include: file."""
    from pyfix.daemons.local.token import deliver_token_stream
    state = state.enter()
    usr_attr = usr_attr.copy()
    attr = state.msg_attr
    if state.been_here("include %d %s" % (usr_attr.uid, path)):
        return 0
    attr.exp_from = attr.local
    if not path.startswith("/"):
        msg.warn(":include:%s uses a relative path" % path)
        return state.bounce("5.3.5", "mail system configuration error")
    try:
        st = privs.stat_as(path, usr_attr.uid, usr_attr.gid)
    except OSError as exc:
        msg.warn("unable to lookup :include: file %s: %s" % (path, msg.strerror(exc)))
        return state.bounce("5.3.5", "mail system configuration error")
    if not stat.S_ISREG(st.st_mode):
        msg.warn(":include: file %s is not a regular file" % path)
        return state.bounce("5.3.5", "mail system configuration error")
    if st.st_mode & stat.S_IWOTH:
        msg.warn(":include: file %s is world writable" % path)
        return state.bounce("5.3.5", "mail system configuration error")
    attr.exp_type = EXPAND_TYPE_INCL
    # A non-root include file in a root-owned alias runs with its owner's rights, so
    # that the file's owner cannot take over the default account.
    if usr_attr.uid == 0:
        try:
            file_pwd = pwd.getpwuid(st.st_uid)
        except KeyError:
            msg.warn("cannot find username for uid %d" % st.st_uid)
            msg.warn("%s: cannot find :include: file owner username" % path)
            return state.defer("4.3.5", "mail system configuration error")
        if file_pwd.pw_uid != 0:
            usr_attr.set(file_pwd)
    if attr.owner is None:
        attr.owner = attr.rcpt.address
    try:
        fd = privs.open_as(path, os.O_RDONLY, usr_attr.uid, usr_attr.gid)
    except OSError as exc:
        msg.warn("cannot open include file %s: %s" % (path, msg.strerror(exc)))
        return state.bounce("5.3.5", "mail system configuration error")
    if not state.settings.ext_prop_mask & EXT_PROP_INCLUDE:
        attr.unmatched = None
    with os.fdopen(fd, "rb") as fp:
        return deliver_token_stream(state, usr_attr, fp, None)

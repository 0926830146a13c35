"""The state that local(8) carries through one recipient's delivery graph (Postfix's
local/local.h, deliver_attr.c and bounce_workaround.c), and the settings of main.cf.

Postfix passes LOCAL_STATE and USER_ATTR by value, so that a lower level never changes
what a higher level sees; here each level takes a copy (LocalState.enter(),
UserAttr.copy()). The status helpers (sent, bounce, defer, bounce_workaround) report the
current recipient with the current DsnBuf, as Postfix's BOUNCE_ATTR()/SENT_ATTR() do.
"""

import copy
import pwd

from pyfix.common import msg
from pyfix.common.dsn_buf import DsnBuf
from pyfix.common.mbox_open import MBOX_DOT_LOCK, mbox_lock_mask
from pyfix.common.name_mask import name_mask
from pyfix.queue import bounce_clnt
from pyfix.queue import delivery_status as status
from pyfix.queue.deliver_request import DEL_REQ_TRACE_ONLY_MASK

EXPAND_TYPE_ALIAS = 1 << 0
EXPAND_TYPE_FWD = 1 << 1
EXPAND_TYPE_INCL = 1 << 2

DELIVER_HDR_CMD = 1 << 0
DELIVER_HDR_FILE = 1 << 1
DELIVER_HDR_FWD = 1 << 2

EXT_PROP_CANONICAL = 1 << 0
EXT_PROP_VIRTUAL = 1 << 1
EXT_PROP_ALIAS = 1 << 2
EXT_PROP_FORWARD = 1 << 3
EXT_PROP_INCLUDE = 1 << 4
EXT_PROP_GENERIC = 1 << 5

DEL_STAT_DEFER = -1

_EXPAND_NAMES = (("alias", EXPAND_TYPE_ALIAS), ("forward", EXPAND_TYPE_FWD),
                 ("include", EXPAND_TYPE_INCL))
_HDR_NAMES = (("command", DELIVER_HDR_CMD), ("file", DELIVER_HDR_FILE),
              ("forward", DELIVER_HDR_FWD))
_EXT_PROP_NAMES = (("canonical", EXT_PROP_CANONICAL), ("virtual", EXT_PROP_VIRTUAL),
                   ("alias", EXT_PROP_ALIAS), ("forward", EXT_PROP_FORWARD),
                   ("include", EXT_PROP_INCLUDE), ("generic", EXT_PROP_GENERIC))


class Settings:
    """local(8)'s main.cf parameters (the var_* of local.c), read once at start-up."""

    def __init__(self, config):
        get, get_bool = config.get, config.get_bool
        self.config = config
        self.alias_maps = get("alias_maps")
        self.home_mailbox = get("home_mailbox")
        self.local_cmd_shell = get("local_command_shell")
        self.mail_spool_dir = get("mail_spool_directory")
        self.mailbox_transport = get("mailbox_transport")
        self.mbox_transp_maps = get("mailbox_transport_maps")
        self.fallback_transport = get("fallback_transport")
        self.fbck_transp_maps = get("fallback_transport_maps")
        self.cmd_exp_filter = get("command_expansion_filter")
        self.fwd_exp_filter = get("forward_expansion_filter")
        self.exec_exp_filter = get("execution_directory_expansion_filter")
        self.mailbox_cmd_maps = get("mailbox_command_maps")
        self.biff = get_bool("biff")
        self.exp_own_alias = get_bool("expand_owner_alias")
        self.stat_home_dir = get_bool("require_home_directory")
        self.frozen_delivered = get_bool("frozen_delivered_to")
        self.reset_owner_attr = get_bool("reset_owner_alias")
        self.strict_mbox_owner = get_bool("strict_mailbox_ownership")
        self.ownreq_special = get_bool("owner_request_special")
        self.exec_directory = get("command_execution_directory")
        self.forward_path = get("forward_path")
        self.mailbox_command = get("mailbox_command")
        self.luser_relay = get("luser_relay")
        self.dup_filter_limit = config.get_int("duplicate_filter_limit")
        self.command_maxtime = config.get_time("command_time_limit")
        self.mailbox_limit = config.get_long("mailbox_size_limit")
        self.rcpt_delim = get("recipient_delimiter")
        self.export_environ = get("export_environment")
        self.myhostname = get("myhostname")
        self.mail_name = get("mail_name")
        self.cleanup_service = get("cleanup_service_name")
        self.double_bounce_sender = get("double_bounce_sender")
        self.line_limit = config.get_int("line_length_limit")
        self.file_deliver_mask = name_mask("allow_mail_to_files", _EXPAND_NAMES,
                                           get("allow_mail_to_files"))
        self.cmd_deliver_mask = name_mask("allow_mail_to_commands", _EXPAND_NAMES,
                                          get("allow_mail_to_commands"))
        self.ext_prop_mask = name_mask("propagate_unmatched_extensions", _EXT_PROP_NAMES,
                                       get("propagate_unmatched_extensions"))
        self.deliver_hdr_mask = name_mask("prepend_delivered_header", _HDR_NAMES,
                                          get("prepend_delivered_header"))
        self.mbox_lock_mask = mbox_lock_mask(get("mailbox_delivery_lock"))
        if get_bool("sun_mailtool_compatibility"):
            msg.warn('sun_mailtool_compatibility: deprecated parameter, use '
                     '"mailbox_delivery_lock = dotlock" instead')
            self.mbox_lock_mask &= MBOX_DOT_LOCK
        if self.mbox_lock_mask == 0:
            msg.fatal("parameter mailbox_delivery_lock specifies no applicable mailbox "
                      "locking method")
        self.default_uid, self.default_gid = _default_privs(config)
        owner = pwd.getpwnam(get("mail_owner"))
        self.owner_uid, self.owner_gid = owner.pw_uid, owner.pw_gid


def _default_privs(config):
    """default_privs checked as Postfix's mail_params.c checks it."""
    name = config.get("default_privs")
    where = "file %s/main.cf: parameter default_privs" % config.get("config_directory")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        msg.fatal("%s: unknown user name value: %s" % (where, name))
    if entry.pw_uid == 0:
        msg.fatal("%s: user %s has privileged user ID" % (where, name))
    if entry.pw_gid == 0:
        msg.fatal("%s: user %s has privileged group ID" % (where, name))
    return entry.pw_uid, entry.pw_gid


class UserAttr:
    """USER_ATTR: whose rights a command or file delivery uses, and its environment."""

    __slots__ = ("uid", "gid", "home", "logname", "shell")

    def __init__(self):
        self.reset()

    def reset(self):
        self.uid = self.gid = 0
        self.home = self.logname = self.shell = None

    def set(self, entry):
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.home, self.logname, self.shell = entry.pw_dir, entry.pw_name, entry.pw_shell

    def copy(self):
        return copy.copy(self)


class DeliverAttr:
    """DELIVER_ATTR: the message and recipient attributes of one expansion level."""

    def __init__(self, request, relay):
        self.level = 0
        self.fp = request.fp
        self.queue_name = request.queue_name
        self.queue_id = request.queue_id
        self.offset = request.data_offset
        self.encoding = request.values["encoding"]
        self.smtputf8 = request.values["smtputf8"]
        self.sender = request.sender
        self.dsn_envid = request.values["envelope_id"]
        self.dsn_ret = request.values["ret_flags"]
        self.rcpt = None
        self.domain = self.local = self.user = self.extension = self.unmatched = None
        self.owner = None
        self.delivered = None
        self.relay = relay
        self.msg_stats = request.stats
        self.exp_type = 0
        self.exp_from = None
        self.request = request
        self.why = DsnBuf()


class LocalState:
    """LOCAL_STATE: the nesting level, the attributes, the duplicate filter and the
    Delivered-To: addresses of the message."""

    def __init__(self, request, settings, msg_attr, loop_info, helpers):
        self.level = 0
        self.request = request
        self.settings = settings
        self.msg_attr = msg_attr
        self.dup_filter = None
        self.loop_info = loop_info
        self.helpers = helpers          # maps, clients and the forwarder of the process

    def enter(self):
        """A copy one level down (Postfix's pass by value plus state.level++)."""
        state = copy.copy(self)
        state.msg_attr = copy.copy(self.msg_attr)
        state.msg_attr.rcpt = copy.copy(self.msg_attr.rcpt)
        state.level += 1
        return state

    # -- what BOUNCE_FLAGS()/BOUNCE_ATTR()/SENT_ATTR() give the status calls --------------

    @property
    def bounce_flags(self):
        return self.request.trace_flags

    @property
    def trace_only(self):
        return bool(self.request.flags & DEL_REQ_TRACE_ONLY_MASK)

    def _report(self, function):
        attr = self.msg_attr
        return function(self.bounce_flags, attr.queue_id, attr.msg_stats, attr.rcpt,
                        attr.relay, attr.why.to_dsn())

    def sent(self, status_text=None, reason=None):
        if status_text is not None:
            self.msg_attr.why.simple(status_text, reason)
        return self._report(status.sent)

    def bounce(self, status_text=None, reason=None):
        if status_text is not None:
            self.msg_attr.why.simple(status_text, reason)
        return self._report(status.bounce_append)

    def defer(self, status_text=None, reason=None):
        if status_text is not None:
            self.msg_attr.why.simple(status_text, reason)
        return self._report(status.defer_append)

    def bounce_or_defer(self):
        """defer_append when the status is 4.x.x, else bounce_append."""
        if self.msg_attr.why.status.startswith("4"):
            return self.defer()
        return self.bounce()

    def been_here(self, key):
        """been_here(): True when key was seen before for this recipient."""
        return self.dup_filter.been_here(key)


class DupFilter:
    """been_here(): remembered keys, at most `limit` of them (0: no limit)."""

    def __init__(self, limit):
        self.limit = limit
        self.keys = set()

    def been_here(self, key):
        key = key.lower()
        if key in self.keys:
            return True
        if self.limit <= 0 or len(self.keys) < self.limit:
            self.keys.add(key)
        return False

    def check(self, key):
        return key.lower() in self.keys


def bounce_one(state):
    """Report the current (failed) recipient to its new sender, the owner- alias, in a
    notice of its own (Postfix's bounce_one(): the bounce service's `one` request),
    before the delivery request completes."""
    from pyfix.common.dsn_util import dsn_valid
    bc = bounce_clnt
    attr = state.msg_attr
    flags = state.bounce_flags
    dsn = attr.why.to_dsn()
    if not dsn.status.startswith("5") or not dsn_valid(dsn.status):
        msg.warn('bounce_one: ignoring dsn code "%s"' % dsn.status)
        dsn = dsn.copy(status="5.0.0")
    args = (attr.queue_id, attr.msg_stats, attr.rcpt, attr.relay)
    if flags & bc.DEL_REQ_FLAG_MTA_VRFY:
        return bc.verify_append(*args, dsn.copy(action="undeliverable"), 2)
    if flags & bc.DEL_REQ_FLAG_USR_VRFY:
        return bc.trace_append(flags, *args, dsn.copy(action="undeliverable"))
    if bc._settings["soft_bounce"]:
        return status.bounce_append(flags, *args, dsn)
    dsn = dsn.copy(action="failed")
    request = [("nrequest", bc.CMD_ONE), ("flags", flags), ("queue_name", attr.queue_name),
               ("queue_id", attr.queue_id), ("encoding", attr.encoding),
               ("smtputf8", attr.smtputf8), ("sender", attr.sender),
               ("envelope_id", attr.dsn_envid), ("ret_flags", attr.dsn_ret)] \
        + attr.rcpt.attrs() + dsn.attrs()
    if bc.mail_command_client("private", bc._settings["bounce_service_name"],
                              bc.PROTO_BOUNCE, request) == 0 \
            and (not flags & bc.DEL_REQ_FLAG_RECORD
                 or bc.trace_append(flags, *args, dsn) == 0):
        bc.log_adhoc(attr.queue_id, attr.msg_stats, attr.rcpt, attr.relay, dsn, "bounced")
        return 0
    reason = "%s or %s service failure" % (bc._settings["bounce_service_name"],
                                           bc._settings["trace_service_name"])
    return status.defer_append(flags, *args, dsn.copy(status="4.3.0", reason=reason))


def _find_owner(aliases, address):
    """FIND_OWNER(): the owner- alias of an address's local part and its expansion."""
    owner = "owner-" + address.rsplit("@", 1)[0] if "@" in address else "owner-" + address
    return owner, aliases.find(owner)


def bounce_workaround(state):
    """Report a failure of the current recipient (bounce_workaround()): when the
    recipient (or the recipient without its extension) has an owner- alias, the notice
    goes to that owner in a one-recipient bounce; else the failure is logged in the
    bounce or defer log of the message, for its sender."""
    from pyfix.daemons.local.recipient import split_addr
    settings = state.settings
    attr = state.msg_attr
    canon_owner = None
    if settings.ownreq_special:
        aliases = state.helpers.alias_maps
        address = attr.rcpt.address
        owner, expansion = _find_owner(aliases, address)
        if not aliases.error and expansion is None and settings.rcpt_delim:
            local, at, domain = address.rpartition("@")
            if not at:
                local, domain = address, ""
            user, extension = split_addr(local, settings.rcpt_delim, settings)
            if extension is not None:
                owner, expansion = _find_owner(aliases, user + (at + domain if at else ""))
        if not aliases.error and expansion is not None:
            canon_owner = state.helpers.rewriter().rewrite_internal(
                "local", expansion if settings.exp_own_alias else owner)
            attr.sender = attr.owner = canon_owner
        if aliases.error:
            return state.defer("4.3.0", "alias database unavailable")
    if canon_owner is not None:
        if attr.why.status.startswith("4"):
            return state.defer()
        return bounce_one(state)
    return state.bounce_or_defer()

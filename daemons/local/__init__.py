"""local(8): the delivery agent for local UNIX accounts (Postfix's src/local/local.c).

qmgr hands local each delivery request over the delivery request protocol; every
recipient is then run through the delivery graph of Postfix's local(8): aliases
(alias.py), ~/.forward and :include: files, mailbox_transport / fallback_transport /
luser_relay (recipient.py, forward.py), and the leaves (mailbox.py): an mbox in
mail_spool_directory or under home_mailbox, a Maildir, mailbox_command, /file and
|command deliveries. Delivered-To: loops are broken, duplicates dropped, addresses of
other transports resubmitted through cleanup (token.py, forward.py). The daemon keeps
real uid root and rests as mail_owner; deliveries run as the recipient (or
default_privs), never as root (privs.py). A recipient whose fate was logged
(delivered, bounced) is marked done in the queue file.
"""

import encodings.idna

from pyfix.common import info_log_addr_form as log_form
from pyfix.common import mail_copy, msg
from pyfix.common import dot_lockfile
from pyfix.common.resolve_clnt import ResolveClient
from pyfix.common.rewrite_clnt import Rewriter
from pyfix.daemons.local import (alias, biff_notify, forward, mailbox, privs, recipient,
                                 state, token)
from pyfix.daemons.local.state import DupFilter, LocalState, Settings
from pyfix.daemons.skeleton.single import single_server_main
from pyfix.maps import dict as dict_module
from pyfix.maps.maps import Maps
from pyfix.queue import bounce_clnt
from pyfix.queue import delivery_status as status
from pyfix.queue.deliver_request import (DEL_REQ_FLAG_SUCCESS, deliver_request_done,
                                         deliver_request_read)

# Loaded before privileges are dropped: afterwards the Python library is unreadable
# (socket calls load the idna codec on first use).
_MODULES = (alias, forward, mailbox, token, encodings.idna)

ALIAS_FLAGS = dict_module.FLAG_LOCK | dict_module.FLAG_NO_REGSUB \
    | dict_module.FLAG_NO_PROXY | dict_module.FLAG_NO_UNAUTH | dict_module.FLAG_FOLD_FIX \
    | dict_module.FLAG_UTF8_REQUEST
TRANSPORT_MAP_FLAGS = dict_module.FLAG_LOCK | dict_module.FLAG_NO_REGSUB \
    | dict_module.FLAG_UTF8_REQUEST
COMMAND_MAP_FLAGS = ALIAS_FLAGS & ~dict_module.FLAG_FOLD_FIX


class Helpers:
    """What the process keeps between requests: the tables, the rewrite and resolve
    clients, the forwarder."""

    def __init__(self, settings):
        self.settings = settings
        self.alias_maps = Maps("aliases", settings.alias_maps, ALIAS_FLAGS)
        self._maps = {
            "mailbox_transport_maps": Maps("mailbox_transport_maps",
                                           settings.mbox_transp_maps, TRANSPORT_MAP_FLAGS),
            "fallback_transport_maps": Maps("fallback_transport_maps",
                                            settings.fbck_transp_maps, TRANSPORT_MAP_FLAGS),
            "mailbox_command_maps": Maps("mailbox_command_maps", settings.mailbox_cmd_maps,
                                         COMMAND_MAP_FLAGS),
        }
        self._rewriter = None
        self._resolver = None
        self.forwarder = forward.Forwarder(settings)

    def maps(self, name):
        """The Maps of a *_maps parameter (empty, and false, when it is not set)."""
        return self._maps[name]

    def rewriter(self):
        if self._rewriter is None:
            self._rewriter = Rewriter(self.settings.config)
        return self._rewriter

    def resolver(self):
        if self._resolver is None:
            self._resolver = ResolveClient(self.settings.config)
        return self._resolver


_process = {}


def local_deliver(request, service):
    """Deliver each recipient of the request; the per-message status."""
    settings = _process["settings"]
    helpers = _process["helpers"]
    msg_attr = state.DeliverAttr(request, service)
    loop_info = recipient.delivered_hdr_init(request.fp, request.data_offset)
    top = LocalState(request, settings, msg_attr, loop_info, helpers)
    usr_attr = state.UserAttr()
    msg_stat = 0
    for rcpt in request.rcpts:
        top.dup_filter = DupFilter(settings.dup_filter_limit)
        helpers.forwarder.init()
        msg_attr.rcpt = rcpt
        msg_attr.why.reset()
        rcpt_stat = recipient.deliver_recipient(top, usr_attr)
        rcpt_stat |= helpers.forwarder.finish(request, msg_attr, rcpt_stat)
        if rcpt_stat == 0 and request.flags & DEL_REQ_FLAG_SUCCESS:
            status.deliver_completed(request.fp, rcpt.offset)
        msg_stat |= rcpt_stat
    return msg_stat


def local_service(conn, server):
    if server.argv:
        msg.fatal("unexpected command-line argument: %s" % server.argv[0])
    stream, request = deliver_request_read(conn, server.config, server.name)
    if request is None:
        return
    result = local_deliver(request, server.name)
    deliver_request_done(stream, request, result)


def pre_init(server):
    """As root: the size limit and the tables (which may be readable by root only)."""
    config = server.config
    settings = Settings(config)
    mail_copy.configure(config)
    mail_copy.set_mailbox_limit(config, "mailbox_size_limit")
    dot_lockfile.configure(config)
    bounce_clnt.configure(config)
    log_form.init(config)
    _process["settings"] = settings
    _process["helpers"] = Helpers(settings)
    mailbox._get_hostname()
    if settings.biff:
        biff_notify.biff_init()


def post_init(server):
    """Rest with the privileges of mail_owner (effective ids only)."""
    privs.drop_to_owner(_process["settings"])


def pre_accept(server):
    server.exit_if_tables_changed()


def main(argv):
    single_server_main(argv, local_service, pre_init=pre_init, post_init=post_init,
                       pre_accept=pre_accept, privileged=True)

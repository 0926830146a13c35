"""pipe(8): delivery to an external command (Postfix's src/pipe/pipe.c).

A master.cf entry such as
    uucp  unix  -  n  n  -  -  pipe  flags=Fqhu user=uucp argv=uux -r -n -z -a$sender - $nexthop!rmail ($recipient)
names the command and how to run it: flags= (B D F O R X h q u . >, see pipe(8)),
user=name[:group] (required; never root, nor the mail system owner or its groups),
size=, null_sender=, eol=, directory=, chroot= and, last, argv=. The macros of argv
(${sender}, ${recipient}, ${nexthop}, ${user}, ${extension}, ${mailbox}, ${domain},
${original_recipient}, ${size}, ${queue_id}, ${client_*}, ${sasl_*}) are expanded for
each request; an argument with a recipient macro expands into one argument per
recipient. The command gets the message on its standard input; its exit status
(<sysexits.h>), or a d.d.d status at the start of its output, decides whether the
recipients are delivered, deferred or bounced, with the command output in the status
text. `<service>_time_limit` (default $command_time_limit) bounds it.
"""

import grp
import os
import pwd

from pyfix.common import info_log_addr_form as log_form
from pyfix.common import mail_copy as mc
from pyfix.common import macro, msg
from pyfix.common.clean_env import mail_parm_split
from pyfix.common.dot_lockfile import set_eugid
from pyfix.common.dsn_buf import DsnBuf
from pyfix.common.delivered_hdr import delivered_hdr_find, delivered_hdr_init
from pyfix.common.fold_addr import (FOLD_ADDR_ALL, FOLD_ADDR_HOST, FOLD_ADDR_USER,
                                    fold_addr)
from pyfix.common.pipe_command import (PIPE_STAT_BOUNCE, PIPE_STAT_CORRUPT,
                                       PIPE_STAT_DEFER, PIPE_STAT_OK, pipe_command)
from pyfix.common.quote_822 import quote_822_local
from pyfix.common.strings import unescape
from pyfix.maps.addr_find import AddressRules
from pyfix.maps.dict_utf8 import casefold
from pyfix.queue import bounce_clnt
from pyfix.queue import delivery_status as status
from pyfix.queue.deliver_request import (DEL_REQ_FLAG_SUCCESS, DEL_REQ_TRACE_ONLY_MASK,
                                         deliver_request_done, deliver_request_read)

from pyfix.daemons.skeleton.single import single_server_main

MAIL_ADDR_MAIL_DAEMON = "MAILER-DAEMON"
MASTER_CONF_FILE = "master.cf"

# pipe's own flags beside the mail_copy() ones (pipe.c).
PIPE_OPT_FOLD_BASE = 16
PIPE_OPT_FOLD_USER = FOLD_ADDR_USER << PIPE_OPT_FOLD_BASE
PIPE_OPT_FOLD_HOST = FOLD_ADDR_HOST << PIPE_OPT_FOLD_BASE
PIPE_OPT_QUOTE_LOCAL = 1 << (PIPE_OPT_FOLD_BASE + 2)
PIPE_OPT_FINAL_DELIVERY = 1 << (PIPE_OPT_FOLD_BASE + 3)
PIPE_OPT_FOLD_ALL = FOLD_ADDR_ALL << PIPE_OPT_FOLD_BASE

FLAG_LETTERS = {
    "B": mc.MAIL_COPY_BLANK, "D": mc.MAIL_COPY_DELIVERED, "F": mc.MAIL_COPY_FROM,
    "O": mc.MAIL_COPY_ORIG_RCPT, "R": mc.MAIL_COPY_RETURN_PATH,
    "X": PIPE_OPT_FINAL_DELIVERY, ".": mc.MAIL_COPY_DOT, ">": mc.MAIL_COPY_QUOTE,
    "h": PIPE_OPT_FOLD_HOST, "q": PIPE_OPT_QUOTE_LOCAL, "u": PIPE_OPT_FOLD_USER,
}

# The macros of argv; those that depend on the recipient expand once per recipient.
PER_RECIPIENT = ("recipient", "original_recipient", "user", "extension", "mailbox",
                 "domain")
MACRO_NAMES = ("nexthop", "sender", "size", "client_address", "client_hostname",
               "client_port", "client_protocol", "client_helo", "sasl_method",
               "sasl_username", "sasl_sender", "queue_id") + PER_RECIPIENT


class PipeAttr:
    """The command attributes of master.cf (get_service_attr()); bad ones are fatal."""

    def __init__(self, argv, config):
        self.command = None
        self.flags = 0
        self.exec_dir = None
        self.chroot_dir = None
        self.eol = "\n"
        self.null_sender = MAIL_ADDR_MAIL_DAEMON
        self.size_limit = 0
        self.uid = self.gid = None
        user = None
        for index, arg in enumerate(argv):
            name, eq, value = arg.partition("=")
            name = name.lower() if eq else None
            if name == "flags":
                for letter in value:
                    if letter not in FLAG_LETTERS:
                        msg.fatal("unknown flag: %s (ignored)" % letter)
                    self.flags |= FLAG_LETTERS[letter]
            elif name == "user":
                user = value
                self.uid, self.gid = _user_ids(value)
            elif name == "directory":
                self.exec_dir = value
            elif name == "chroot":
                self.chroot_dir = value
            elif name == "eol":
                self.eol = unescape(value)
            elif name == "null_sender":
                self.null_sender = value
            elif name == "size":
                self.size_limit = _off_cvt(value)
                if self.size_limit < 0:
                    msg.fatal("get_service_attr: bad size= value: %s" % value)
            elif name == "argv":
                self.command = [value] + list(argv[index + 1:])
                break
            else:
                msg.fatal("unknown attribute name: %s" % arg)
        if user is None:
            msg.fatal("missing user= command-line attribute")
        if self.command is None:
            msg.fatal("missing argv= command-line attribute")
        self._check_ids(config)

    def _check_ids(self, config):
        owner_name = config.get("mail_owner")
        owner = _getpwnam(owner_name)
        sgid_group = config.get("setgid_group")
        sgid = _getgrnam(sgid_group)
        if self.uid == 0:
            msg.fatal("user= command-line attribute specifies root privileges")
        if owner is not None and self.uid == owner.pw_uid:
            msg.fatal("user= command-line attribute specifies mail system owner %s"
                      % owner_name)
        if self.gid == 0:
            msg.fatal("user= command-line attribute specifies privileged group id 0")
        if owner is not None and self.gid == owner.pw_gid:
            msg.fatal("user= command-line attribute specifies mail system owner %s "
                      "group id %d" % (owner_name, self.gid))
        if sgid is not None and self.gid == sgid.gr_gid:
            msg.fatal("user= command-line attribute specifies mail system %s group id %d"
                      % (sgid_group, self.gid))


def _getpwnam(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _getgrnam(name):
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def _user_ids(spec):
    user, _, group = spec.partition(":")
    entry = _getpwnam(user)
    if entry is None:
        msg.fatal("get_service_attr: unknown username: %s" % user)
    gid = entry.pw_gid
    if group:
        found = _getgrnam(group)
        if found is None:
            msg.fatal("get_service_attr: unknown group: %s" % group)
        gid = found.gr_gid
    return entry.pw_uid, gid


def _off_cvt(text):
    """off_cvt_string(): a non-negative decimal number, else -1."""
    if not text or not text.isascii() or not text.isdigit():
        return -1
    return int(text)


# -- argv expansion -----------------------------------------------------------------------

class ArgvExpander:
    """expand_argv(): the command's arguments with the macros of one request replaced.

    The table persists between requests, as Postfix's pipe_command dictionary does: an
    argument whose $user is empty is left out, and its other macros keep their values."""

    def __init__(self, service, config_dir, delimiters):
        self.service = service
        self.config_dir = config_dir
        self.delimiters = delimiters
        self.table = {}

    def _references(self, arg):
        """The macro names of arg; None (with Postfix's warning) for an unknown one."""
        names = set()
        unknown = []

        def action(kind, text):
            if kind == macro.EXPR:
                if text not in MACRO_NAMES:
                    unknown.append(text)
                    return macro.PARSE_ERROR
                names.add(text)
            return macro.PARSE_OK

        if macro.mac_parse(arg, action) & macro.PARSE_ERROR:
            if unknown:
                msg.warn('file %s/%s: service %s: unknown macro name: "%s"'
                         % (self.config_dir, MASTER_CONF_FILE, self.service, unknown[0]))
            return None
        return names

    def _eval(self, arg):
        return macro.mac_expand(arg, lambda name, mode: self.table.get(name),
                                macro.FLAG_NONE)[0]

    def expand(self, command, rcpts, flags):
        """The expanded argument list, or None after a bad macro reference."""
        result = []
        for arg in command:
            names = self._references(arg)
            if names is None:
                return None
            if not names & set(PER_RECIPIENT):
                result.append(self._eval(arg))
                continue
            for rcpt in rcpts:
                if self._per_recipient(names, rcpt, flags):
                    result.append(self._eval(arg))
        return result

    def _per_recipient(self, names, rcpt, flags):
        """Set the recipient macros arg uses; False when $user is empty (skip arg)."""
        if "recipient" in names:
            self.table["recipient"] = morph_recipient(rcpt.address, flags)
        if "original_recipient" in names:
            self.table["original_recipient"] = morph_recipient(rcpt.orig_addr, flags)
        fold_only = flags & PIPE_OPT_FOLD_ALL
        if "user" in names:
            local = self._localpart(rcpt.address, fold_only)
            if self.delimiters:
                local = _split_addr(local, self.delimiters)[0]
            if not local:
                return False
            self.table["user"] = local
        if "extension" in names:
            local = self._localpart(rcpt.address, fold_only)
            ext = _split_addr(local, self.delimiters)[1] if self.delimiters else None
            self.table["extension"] = ext or ""
        if "mailbox" in names:
            self.table["mailbox"] = self._localpart(rcpt.address, fold_only)
        if "domain" in names:
            folded = morph_recipient(rcpt.address, fold_only)
            local, at, domain = folded.rpartition("@")
            if not at:
                msg.warn("no @ in recipient address: %s" % rcpt.address)
            self.table["domain"] = domain if at else ""
        return True

    @staticmethod
    def _localpart(address, flags):
        folded = morph_recipient(address, flags)
        local, at, _ = folded.rpartition("@")
        if not at:
            msg.warn("no @ in recipient address: %s" % address)
            return folded
        return local


def morph_recipient(address, flags):
    """morph_recipient(): the address quoted (q) and case-folded (h, u) as asked."""
    if flags & PIPE_OPT_QUOTE_LOCAL:
        address = quote_822_local(address)
    return fold_addr(address, (flags & PIPE_OPT_FOLD_ALL) >> PIPE_OPT_FOLD_BASE)


def _split_addr(localpart, delimiters):
    """split_addr(): (bare local part, extension) at the first delimiter; no split for
    the special names, an empty bare part or an empty extension."""
    split = _rules.split_localpart(localpart)
    if split is None:
        return localpart, None
    return split


_rules = None


# -- delivery -------------------------------------------------------------------------------

class PipeAgent:
    """One pipe service process: its attributes, time limit and macro table."""

    def __init__(self, server):
        self.server = server
        self.service = server.name
        self.attr = None
        self.time_limit = None
        self.expander = None

    def configure(self):
        """get_service_params() and get_service_attr(), once, at the first request."""
        config = self.server.config
        self.time_limit = config.get_time(self.service + "_time_limit", unit="s")
        self.attr = PipeAttr(self.server.argv, config)
        self.expander = ArgvExpander(self.service, config.get("config_directory"),
                                     config.get("recipient_delimiter") or "")

    def finish(self, request, pipe_status, why):
        """eval_command_status(): log and record each recipient's outcome."""
        result = 0
        if pipe_status == PIPE_STAT_OK:
            output = why.reason.rstrip(" \t\r\n\v\f")
            saved = " (%.100s)" % output if output else ""
            why.update("2.0.0", "delivered" if self.attr.flags & PIPE_OPT_FINAL_DELIVERY
                       else "relayed", "", "", "", "",
                       "delivered via %s service%s" % (self.service, saved))
            dsn = why.to_dsn()
            for rcpt in request.rcpts:
                done = status.sent(request.trace_flags, request.queue_id, request.stats,
                                   rcpt, self.service, dsn)
                if done == 0 and request.flags & DEL_REQ_FLAG_SUCCESS:
                    status.deliver_completed(request.fp, rcpt.offset)
                result |= done
        elif pipe_status in (PIPE_STAT_BOUNCE, PIPE_STAT_DEFER):
            dsn = why.to_dsn()
            append = status.defer_append if dsn.status.startswith("4") \
                else status.bounce_append
            for rcpt in request.rcpts:
                done = append(request.trace_flags, request.queue_id, request.stats, rcpt,
                              self.service, dsn)
                if done == 0:
                    status.deliver_completed(request.fp, rcpt.offset)
                result |= done
        elif pipe_status == PIPE_STAT_CORRUPT:
            result |= -1
        else:
            msg.panic("eval_command_status: bad status %d" % pipe_status)
        return result

    def deliver(self, request):
        """deliver_message()."""
        if not request.nexthop:
            msg.fatal("empty nexthop hostname")
        if self.attr is None:
            self.configure()
        attr = self.attr
        why = DsnBuf()
        for flag, letter in ((mc.MAIL_COPY_DELIVERED, "D"), (mc.MAIL_COPY_ORIG_RCPT, "O")):
            if attr.flags & flag and len(request.rcpts) > 1:
                why.simple("4.3.5", "mail system configuration error")
                result = self.finish(request, PIPE_STAT_DEFER, why)
                msg.warn("pipe flag `%s' requires %s_destination_recipient_limit = 1"
                         % (letter, self.service))
                return result
        if attr.size_limit and request.data_size > attr.size_limit:
            why.simple("5.2.3", "message too large")
            return self.finish(request, PIPE_STAT_BOUNCE, why)
        if request.flags & DEL_REQ_TRACE_ONLY_MASK:
            return self._trace_only(request, why)
        if attr.flags & mc.MAIL_COPY_DELIVERED:
            rcpt = request.rcpts[0]
            info = delivered_hdr_init(request.fp, request.data_offset, FOLD_ADDR_ALL)
            if delivered_hdr_find(info, rcpt.address):
                why.simple("5.4.6", "mail forwarding loop for %s" % rcpt.address)
                return self.finish(request, PIPE_STAT_BOUNCE, why)
        try:
            request.fp.seek(request.data_offset)
        except OSError as exc:
            msg.fatal("seek queue file %s: %s" % (request.fp.qpath, msg.strerror(exc)))
        sender = request.sender or attr.null_sender
        self._set_request_macros(request, sender)
        argv = self.expander.expand(attr.command, request.rcpts, attr.flags)
        if argv is None:
            why.simple("4.3.5", "mail system configuration error")
            return self.finish(request, PIPE_STAT_DEFER, why)
        config = self.server.config
        root = os.getuid() == 0
        pipe_status = pipe_command(
            request.fp, why, sender=sender, orig_rcpt=request.rcpts[0].orig_addr,
            delivered=request.rcpts[0].address, copy_flags=attr.flags & 0xFFFF,
            eol=attr.eol, time_limit=self.time_limit, argv=argv,
            uid=attr.uid if root else None, gid=attr.gid if root else None,
            export=mail_parm_split("export_environment", config.get("export_environment")),
            cwd=attr.exec_dir, chroot=attr.chroot_dir, progname=self.server.progname)
        return self.finish(request, pipe_status, why)

    def _trace_only(self, request, why):
        why.simple("2.0.0", "delivers to command: %s" % self.attr.command[0])
        dsn = why.to_dsn()
        result = 0
        for rcpt in request.rcpts:
            done = status.sent(request.trace_flags, request.queue_id, request.stats, rcpt,
                               self.service, dsn)
            if done == 0 and request.flags & DEL_REQ_FLAG_SUCCESS:
                status.deliver_completed(request.fp, rcpt.offset)
            result |= done
        return result

    def _set_request_macros(self, request, sender):
        table = self.expander.table
        flags = self.attr.flags
        table["sender"] = quote_822_local(sender) if sender and flags & PIPE_OPT_QUOTE_LOCAL \
            else sender
        table["nexthop"] = casefold(request.nexthop) if flags & PIPE_OPT_FOLD_HOST \
            else request.nexthop
        table["size"] = "%d" % request.data_size
        values = request.values
        for name, key in (("client_address", "log_client_address"),
                          ("client_helo", "log_helo_name"),
                          ("client_hostname", "log_client_name"),
                          ("client_port", "log_client_port"),
                          ("client_protocol", "log_protocol_name"),
                          ("sasl_method", "sasl_method"),
                          ("sasl_username", "sasl_username"),
                          ("sasl_sender", "sasl_sender")):
            table[name] = values.get(key) or ""
        table["queue_id"] = request.queue_id


_agent = None


def pipe_service(conn, server):
    stream, request = deliver_request_read(conn, server.config, server.name)
    if request is None:
        return
    deliver_request_done(stream, request, _agent.deliver(request))


def pre_init(server):
    global _agent, _rules
    _rules = AddressRules(server.config)
    _agent = PipeAgent(server)


def post_init(server):
    """Configure the status clients, then wait as mail_owner (drop_privileges());
    pipe_command() becomes root again to run the command as its user."""
    bounce_clnt.configure(server.config)
    mc.configure(server.config)
    log_form.init(server.config)
    if os.getuid() == 0:
        owner = _getpwnam(server.config.get("mail_owner"))
        if owner is not None:
            set_eugid(owner.pw_uid, owner.pw_gid)


def main(argv):
    single_server_main(argv, pipe_service, pre_init=pre_init, post_init=post_init,
                       privileged=True)

"""bounce(8): the delivery status services bounce, defer and trace (Postfix's src/bounce;
master.cf runs this daemon under those three names).

Each client session is one request over the delivery status protocol (the client side is
queue/bounce_clnt.py and queue/delivery_status.py):

    bounce -> client   protocol=delivery_status_protocol
    client -> bounce   nrequest=<N> and the request's attributes
    bounce -> client   status=<0 or non-zero>

    APPEND (0)  append one recipient's status to the <service> logfile of a message
                (bounce/, defer/ or trace/<queue ID>): flags, queue_id, recipient, DSN
    FLUSH  (1)  send the sender a non-delivery report from the logfile, then remove it
    WARN   (2)  send the sender a delay warning from the defer logfile
    VERP   (3)  FLUSH with one report per recipient, to VERP senders
    ONE    (4)  a non-delivery report for one recipient, without a logfile
    TRACE  (5)  send the delivery report of the trace logfile

The notification requests carry flags, queue_name, queue_id, encoding, smtputf8, sender,
envelope_id and ret_flags. With BOUNCE_FLAG_CLEAN in the flags, a request that fails
removes the logfile, so that a client that gives up leaves nothing behind.
"""

import importlib
import os
import signal

from pyfix.common import attr, msg
from pyfix.queue.bounce_clnt import (BOUNCE_FLAG_CLEAN, CMD_APPEND, CMD_FLUSH, CMD_ONE,
                                     CMD_TRACE, CMD_VERP, CMD_WARN, PROTO_BOUNCE)
from pyfix.queue.bounce_log import Dsn, Recipient, append as log_append
from pyfix.queue.mail_queue import QueueLayout, queue_id_ok, queue_name_ok

from pyfix.daemons.bounce import services
from pyfix.daemons.bounce.templates import hfrom_format, load_templates
from pyfix.daemons.skeleton.single import single_server_main

RCPT_ATTRS = [(attr.STR, "original_recipient"), (attr.STR, "recipient"),
              (attr.LONG, "offset"), (attr.STR, "dsn_orig_rcpt"),
              (attr.INT, "notify_flags")]
DSN_ATTRS = [(attr.STR, "status"), (attr.STR, "diag_type"), (attr.STR, "diag_text"),
             (attr.STR, "mta_type"), (attr.STR, "mta_mname"), (attr.STR, "action"),
             (attr.STR, "reason")]
NOTIFY_ATTRS = [(attr.INT, "flags"), (attr.STR, "queue_name"), (attr.STR, "queue_id"),
                (attr.STR, "encoding"), (attr.INT, "smtputf8"), (attr.STR, "sender"),
                (attr.STR, "envelope_id"), (attr.INT, "ret_flags")]

MAIL_SERVICE_BOUNCE = "bounce"


class Request(dict):
    """The attributes of one request, made printable as Postfix's VS_NEUTER() does."""

    def neuter(self, *names):
        for name in names:
            self[name] = msg.printable(self[name])

    def recipient(self):
        self.neuter("recipient", "original_recipient", "dsn_orig_rcpt")
        return Recipient(address=self["recipient"], orig_addr=self["original_recipient"],
                         dsn_orcpt=self["dsn_orig_rcpt"], dsn_notify=self["notify_flags"],
                         offset=self["offset"])

    def dsn(self):
        self.neuter("status", "action", "reason", "diag_type", "diag_text", "mta_type",
                    "mta_mname")
        return Dsn(status=self["status"], action=self["action"], reason=self["reason"],
                   dtype=self["diag_type"], dtext=self["diag_text"],
                   mtype=self["mta_type"], mname=self["mta_mname"])


class BounceDaemon:
    def __init__(self):
        self.ctx = None
        self.templates = None
        self.layout = None
        self.cleanup_path = None        # the logfile to remove if the request fails
        self.oldlog_compat = True
        self.lock_tries = 20
        self.lock_delay = 1

    # -- start-up ---------------------------------------------------------------------------

    def pre_init(self, server):
        # Imported now: after the privilege drop the installation may be unreadable.
        for module in ("encodings.idna", "pyfix.common.dsn_util",
                       "pyfix.queue.cleanup_user"):
            importlib.import_module(module)
        self.templates = load_templates(server.config)

    def post_init(self, server):
        config = server.config
        self.layout = QueueLayout(config)
        self.oldlog_compat = config.get_bool("backwards_bounce_logfile_compatibility")
        self.lock_tries = config.get_int("deliver_lock_attempts")
        self.lock_delay = config.get_time("deliver_lock_delay")
        self.ctx = services.Context(config, self.layout, self.templates,
                                    hfrom_format(config))

    # -- the service -----------------------------------------------------------------------

    def service(self, conn, server):
        if server.argv:
            msg.fatal("unexpected command-line argument: %s" % server.argv[0])
        if not queue_name_ok(server.name):
            msg.fatal("malformed service name: %s" % server.name)
        stream = attr.AttrStream(conn, "%s socket" % server.name,
                                 server.config.get_time("ipc_timeout"))
        stream.send([("protocol", PROTO_BOUNCE)])
        try:
            status = self.request(stream, server.name)
            sent = stream.send([("status", status)])
        except BaseException:
            self.cleanup_log()
            raise
        if self.cleanup_path is not None:
            if status or not sent:
                self.cleanup_log()
            self.cleanup_path = None
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def request(self, stream, service):
        count, values = stream.scan([(attr.INT, "nrequest")],
                                    attr.FLAG_STRICT | attr.FLAG_MORE)
        if count != 1:
            msg.warn("malformed request")
            return -1
        command = values["nrequest"]
        if command == CMD_VERP:
            return self.verp_proto(stream, service)
        if command in (CMD_FLUSH, CMD_WARN, CMD_TRACE):
            return self.notify_proto(stream, service, command)
        if command == CMD_APPEND:
            return self.append_proto(stream, service)
        if command == CMD_ONE:
            return self.one_proto(stream, service)
        msg.warn("unknown command: %d" % command)
        return -1

    @staticmethod
    def _scan(stream, wanted):
        count, values = stream.scan(wanted, attr.FLAG_STRICT)
        if count != len(wanted):
            msg.warn("malformed request")
            return None
        return Request(values)

    def _names_ok(self, req, with_queue_name=True):
        if with_queue_name and not queue_name_ok(req["queue_name"]):
            msg.warn("malformed queue name: %s" % msg.printable(req["queue_name"]))
            return False
        if not queue_id_ok(req["queue_id"]):
            msg.warn("malformed queue id: %s" % msg.printable(req["queue_id"]))
            return False
        return True

    def _register_cleanup(self, flags, service, queue_id):
        """bounce_cleanup_register(): until the request is done, a fatal error or
        SIGTERM removes the logfile."""
        if flags & BOUNCE_FLAG_CLEAN:
            self.cleanup_path = self.layout.path(service, queue_id)
            signal.signal(signal.SIGTERM, self._sigterm)

    def append_proto(self, stream, service):
        req = self._scan(stream, [(attr.INT, "flags"), (attr.STR, "queue_id")]
                         + RCPT_ATTRS + DSN_ATTRS)
        if req is None or not self._names_ok(req, with_queue_name=False):
            return -1
        rcpt, dsn = req.recipient(), req.dsn()
        self._register_cleanup(req["flags"], service, req["queue_id"])
        log_append(self.layout, service, req["queue_id"], rcpt, dsn, self.oldlog_compat,
                   self.lock_tries, self.lock_delay)
        return 0

    def _notify_request(self, stream, extra=()):
        req = self._scan(stream, NOTIFY_ATTRS + list(extra))
        if req is None or not self._names_ok(req):
            return None
        req.neuter("encoding", "sender", "envelope_id")
        return req

    def _notify_args(self, req, service):
        return (req["flags"], service, req["queue_name"], req["queue_id"], req["encoding"],
                req["smtputf8"], req["sender"], req["envelope_id"], req["ret_flags"])

    def notify_proto(self, stream, service, command):
        req = self._notify_request(stream)
        if req is None:
            return -1
        self._register_cleanup(req["flags"], service, req["queue_id"])
        handler = {CMD_FLUSH: services.bounce_notify_service,
                   CMD_WARN: services.bounce_warn_service,
                   CMD_TRACE: services.bounce_trace_service}[command]
        return handler(self.ctx, *self._notify_args(req, service))

    def verp_proto(self, stream, service):
        req = self._notify_request(stream, [(attr.STR, "verp_delimiters")])
        if req is None:
            return -1
        req.neuter("verp_delimiters")
        delims = req["verp_delimiters"]
        if len(delims.encode("utf-8", "surrogateescape")) != 2:
            msg.warn("malformed verp delimiter string: %s" % delims)
            return -1
        self._register_cleanup(req["flags"], service, req["queue_id"])
        sender = req["sender"]
        if not sender or self.ctx.is_double_bounce(sender):
            msg.warn("request to send VERP-style notification of bounced mail")
            return services.bounce_notify_service(self.ctx, *self._notify_args(req, service))
        return services.bounce_notify_verp(self.ctx, *self._notify_args(req, service),
                                           delims)

    def one_proto(self, stream, service):
        req = self._scan(stream, NOTIFY_ATTRS + RCPT_ATTRS + DSN_ATTRS)
        if req is None:
            return -1
        if service != MAIL_SERVICE_BOUNCE:
            msg.warn('wrong service name "%s" for one-recipient bouncing' % service)
            return -1
        if not self._names_ok(req):
            return -1
        req.neuter("encoding", "sender", "envelope_id")
        rcpt, dsn = req.recipient(), req.dsn()
        return services.bounce_one_service(
            self.ctx, req["flags"], req["queue_name"], req["queue_id"], req["encoding"],
            req["smtputf8"], req["sender"], req["envelope_id"], req["ret_flags"], rcpt, dsn)

    # -- bounce_cleanup.c ------------------------------------------------------------------

    def cleanup_log(self):
        if self.cleanup_path is not None:
            try:
                os.unlink(self.cleanup_path)
            except OSError:
                pass
            self.cleanup_path = None

    def _sigterm(self, signum, frame):
        self.cleanup_log()
        os._exit(signum)


def dump_templates(config, expand):
    """`postconf -t` (expand False) and `postconf -b` (expand True): Postfix runs bounce
    as the service `dump_templates` or `expand_templates` for this."""
    templates = load_templates(config)
    if expand:
        return templates.expand(config)
    return templates.dump(hfrom_format(config))


def main(argv):
    daemon = BounceDaemon()
    single_server_main(argv, daemon.service, pre_init=daemon.pre_init,
                       post_init=daemon.post_init, unlimited=True)

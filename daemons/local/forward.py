"""Resubmitting and passing on recipients (Postfix's local/forward.c and
global/deliver_pass.c).

Forwarder collects the recipients that an expansion sends elsewhere, one cleanup
connection per (Delivered-To address, sender) pair, and at the end of the recipient
sends each new message: the envelope (time, sender, DSN and client attributes,
recipients), then `Received: by <myhostname> (<mail_name>)`, `Delivered-To:` and the
original content. Success is logged `status=sent (forwarded as <new queue ID>)`.

deliver_pass() hands one recipient to another delivery agent (mailbox_transport,
fallback_transport): a delivery request for that recipient alone, over the same
protocol qmgr speaks (`passing <x> to transport=y`).
"""

import os
import socket
import time

from pyfix.common import attr as attr_codec
from pyfix.common import info_log_addr_form as log_form
from pyfix.common import msg
from pyfix.common.dsn_mask import DSN_NOTIFY_NEVER, DSN_NOTIFY_SUCCESS
from pyfix.common.mail_date import mail_date
from pyfix.common.name_mask import name_mask
from pyfix.daemons.local.state import DELIVER_HDR_FWD
from pyfix.queue import bounce_clnt, record
from pyfix.queue import cleanup_user as cu
from pyfix.queue import delivery_status as status
from pyfix.queue.bounce_clnt import Dsn
from pyfix.queue.cleanup_client import CleanupClient, CleanupError
from pyfix.queue.deliver_request import PROTO_DELIVER
from pyfix.queue.scan import mark_corrupt

SMTPUTF8_FLAG_REQUESTED = 1 << 0
MAIL_SRC_NAMES = (("sendmail", 1 << 0), ("smtpd", 1 << 1), ("qmqpd", 1 << 2),
                  ("forward", 1 << 3), ("bounce", 1 << 4), ("notify", 1 << 5),
                  ("verify", 1 << 6), ("all", (1 << 7) - 1))
MAIL_SRC_MASK_FORWARD = 1 << 3
_PASSED_ATTRS = ("log_client_name", "log_client_address", "log_protocol_name",
                 "log_helo_name", "sasl_method", "sasl_username", "sasl_sender",
                 "log_ident", "rewrite_context")


class _Info:
    """FORWARD_INFO: one new message on its way to cleanup."""

    def __init__(self, client, posting_time):
        self.client = client
        self.queue_id = client.queue_id
        self.posting_time = posting_time


class Forwarder:
    """forward_init() / forward_append() / forward_finish() for one recipient."""

    def __init__(self, settings):
        self.settings = settings
        self.table = {}                 # delivered -> sender -> _Info
        classes = settings.config.get("smtputf8_autodetect_classes") or ""
        mask = name_mask("smtputf8_autodetect_classes", MAIL_SRC_NAMES, classes) \
            if classes else 0
        self.autoutf8 = cu.FLAG_AUTOUTF8 if mask & MAIL_SRC_MASK_FORWARD else 0

    def init(self):
        if self.table:
            msg.panic("forward_init: missing forward_finish call")
        self.table = {}

    def _open(self, request, sender):
        path = "public/" + self.settings.cleanup_service
        try:
            client = CleanupClient.connect(path, self.settings.config.get_time(
                "ipc_timeout"), wait=False)
        except CleanupError as exc:
            msg.warn(str(exc).replace("connect to subsystem ", "connect to "))
            return None
        now = time.time()
        info = _Info(client, (int(now), int(now * 1000000) % 1000000))
        flags = cu.FLAG_BOUNCE | cu.FLAG_MASK_INTERNAL | self.autoutf8 \
            | (cu.FLAG_SMTPUTF8 if request.values["smtputf8"] & SMTPUTF8_FLAG_REQUESTED
               else 0)
        client.send_flags(flags)
        client.put(record.TIME, b"%d %d" % info.posting_time)
        client.put(record.FROM, _b(sender))
        values = request.values
        if values["ret_flags"]:
            client.put(record.ATTR, b"ret_flags=%d" % values["ret_flags"])
        if values["envelope_id"]:
            client.put(record.ATTR, _b("envelope_id=" + values["envelope_id"]))
        for name in _PASSED_ATTRS:
            if values.get(name):
                client.put(record.ATTR, _b("%s=%s" % (name, values[name])))
        return info

    def append(self, attr):
        """Add the current recipient; nonzero on failure."""
        senders = self.table.setdefault(attr.delivered, {})
        info = senders.get(attr.sender)
        if info is None:
            info = self._open(attr.request, attr.sender)
            if info is None:
                return -1
            senders[attr.sender] = info
        client = info.client
        rcpt = attr.rcpt
        if rcpt.dsn_orcpt:
            client.put(record.ATTR, _b("dsn_orig_rcpt=" + rcpt.dsn_orcpt))
        if rcpt.dsn_notify:
            client.put(record.ATTR, b"notify_flags=%d" % rcpt.dsn_notify)
        if rcpt.orig_addr:
            client.put(record.ORCP, _b(rcpt.orig_addr))
        ok = client.put(record.RCPT, _b(rcpt.address))
        return 0 if ok else -1

    def finish(self, request, attr, cancel):
        """Send (or, after a failure, drop) the collected messages; the status."""
        result = cancel
        table, self.table = self.table, {}
        for delivered, senders in table.items():
            for info in senders.values():
                if result == 0:
                    result |= self._send(info, request, attr, delivered)
                info.client.close()
        return result

    def _send(self, info, request, attr, delivered):
        client = info.client
        settings = self.settings
        client.put(record.MESG, b"")
        client.put(record.NORM, _b("Received: by %s (%s)" % (settings.myhostname,
                                                            settings.mail_name)))
        client.put(record.NORM, _b("\tid %s; %s" % (info.queue_id,
                                                   mail_date(info.posting_time[0]))))
        if settings.deliver_hdr_mask & DELIVER_HDR_FWD:
            client.put(record.NORM, _b("Delivered-To: %s" % delivered.lower()))
        ok = client.write_error is None
        rec_type = None
        if ok:
            attr.fp.seek(attr.offset)
            reader = record.RecordReader(attr.fp, getattr(attr.fp, "qpath", None))
            while ok:
                rec_type, payload = reader.get(seek_end=True)
                if rec_type not in (record.NORM, record.CONT):
                    break
                ok = client.put(rec_type, payload)
        failed = 0 if ok else 1
        if ok and rec_type != record.XTRA:
            number = -1 if rec_type is record.EOF else rec_type[0]
            msg.warn("%s: bad record type: %d in message content" % (info.queue_id, number))
            mark_corrupt(attr.fp.fileno(), getattr(attr.fp, "qpath", ""))
            failed = 1
        if not failed:
            client.put(record.XTRA, b"")
            client.put(record.END, b"")
            code, _ = client.finish(with_reason=False)
            failed = 1 if code else 0
        if failed:
            return failed
        rcpt = attr.rcpt
        notify = rcpt.dsn_notify
        rcpt.dsn_notify = DSN_NOTIFY_NEVER if notify == DSN_NOTIFY_SUCCESS \
            else notify & ~DSN_NOTIFY_SUCCESS
        try:
            attr.why.update("2.0.0", "relayed", "", "", "", "",
                            "forwarded as %s" % info.queue_id)
            return status.sent(request.trace_flags, attr.queue_id, attr.msg_stats, rcpt,
                               attr.relay, attr.why.to_dsn())
        finally:
            rcpt.dsn_notify = notify


def _b(text):
    return text.encode("utf-8", "surrogateescape")


# -- deliver_pass.c ---------------------------------------------------------------------

def deliver_pass(state, service):
    """Pass the current recipient to another transport (`transport[:nexthop]`)."""
    request = state.request
    rcpt = state.msg_attr.rcpt
    transport, _, nexthop = service.partition(":")
    if not nexthop:
        nexthop = request.nexthop
    if not transport:
        msg.fatal('missing transport name in "%s"' % service)
    msg.info("%s: passing <%s> to transport=%s"
             % (request.queue_id, log_form.info_log_addr_form(rcpt.address), transport))
    sock = _connect_wait("private/" + transport)
    try:
        stream = attr_codec.AttrStream(sock, "private/%s socket" % transport,
                                       state.settings.config.get_time("ipc_timeout"))
        result = _exchange(stream, request, nexthop, rcpt)
    finally:
        sock.close()
    if result is None:
        return _defer_none(request, rcpt, "mail transport unavailable")
    if result == "unknown":
        return _defer_none(request, rcpt, "unknown mail transport error")
    return result


def _defer_none(request, rcpt, text):
    return status.defer_append(request.trace_flags, request.queue_id, request.stats, rcpt,
                               "none", Dsn("4.3.0", text))


def _connect_wait(path):
    """mail_connect_wait(): retry, with Postfix's warnings, until the service answers."""
    count = 0
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError as exc:
            sock.close()
            count += 1
            if count > 10:
                msg.fatal("connect #%d to subsystem %s: %s" % (count, path,
                                                              msg.strerror(exc)))
            msg.warn("connect #%d to subsystem %s: %s" % (count, path, msg.strerror(exc)))
            time.sleep(10)


def _exchange(stream, request, nexthop, rcpt):
    count, _ = stream.scan([(attr_codec.STREQ, "protocol", PROTO_DELIVER)],
                           attr_codec.FLAG_STRICT)
    if count != 0:
        msg.warn("%s: malformed response" % stream.path)
        return None
    values = request.values
    common = [("flags", request.flags), ("queue_name", request.queue_name),
              ("queue_id", request.queue_id), (attr_codec.LONG, "offset", request.data_offset),
              (attr_codec.LONG, "size", request.data_size), ("nexthop", nexthop),
              ("encoding", values["encoding"]), ("smtputf8", values["smtputf8"]),
              ("sender", request.sender), ("envelope_id", values["envelope_id"]),
              ("ret_flags", values["ret_flags"]), ("time", values["time"])]
    common += [(name, values[name]) for name in (
        "log_client_name", "log_client_address", "log_client_port", "log_protocol_name",
        "log_helo_name", "sasl_method", "sasl_username", "sasl_sender", "log_ident",
        "rewrite_context")]
    common.append(("recipient_count", 1))
    if not stream.send(common) or not stream.send(rcpt.attrs()):
        msg.warn("%s: bad write: %s" % (stream.path, os.strerror(32)))
        return None
    count, reply = stream.scan(
        [(attr_codec.STR, "status"), (attr_codec.STR, "diag_type"),
         (attr_codec.STR, "diag_text"), (attr_codec.STR, "mta_type"),
         (attr_codec.STR, "mta_mname"), (attr_codec.STR, "action"),
         (attr_codec.STR, "reason")], attr_codec.FLAG_STRICT | attr_codec.FLAG_MORE)
    if count == 7:
        count, final = stream.scan([(attr_codec.INT, "status")], attr_codec.FLAG_STRICT)
        count = count + 7 if count == 1 else -1
    if count != 8:
        msg.warn("%s: malformed response" % stream.path)
        return "unknown"
    return 1 if final["status"] else 0


__all__ = ["Forwarder", "deliver_pass", "bounce_clnt"]

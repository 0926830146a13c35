"""Handing queue entries to delivery agents (Postfix's qmgr_deliver.c and the connection
part of qmgr_transport.c, with deliver_request.c's protocol as the client speaks it).

qmgr connects to private/<transport>; when the agent announces
`protocol=delivery_request_protocol`, it picks an entry of that transport and sends the
request: flags, queue_name, queue_id, offset, size, nexthop, encoding, smtputf8, sender,
envelope_id, ret_flags, time (MSG_STATS as binary data), the log_* and sasl_* client
attributes, log_ident, rewrite_context, recipient_count, then per recipient
original_recipient, recipient, offset, dsn_orig_rcpt, notify_flags. The agent answers,
when done, with the DSN of a site problem (status, diag_type, diag_text, mta_type,
mta_mname, action, reason) and `status` (0 = every recipient finished). Everything
waits in the event loop; nothing here blocks on an agent that has not answered yet.
"""

import errno
import os
import socket
import struct

from pyfix.common import attr, msg
from pyfix.common.dsn_util import dsn_valid
from pyfix.queue.bounce_clnt import Dsn
from pyfix.queue.deliver_request import DEL_REQ_FLAG_BOUNCE, DEL_REQ_FLAG_DEFLT, PROTO_DELIVER

from pyfix.daemons.qmgr.queues import BUSY

STAT_OK, STAT_DEFER, STAT_CRASH = 0, 1, 2
SUSPENDED = "delivery temporarily suspended: "
SMTPUTF8_FLAG_RECIPIENT = 1 << 2
SMTPUTF8_FLAG_SENDER = 1 << 3

# struct MSG_STATS on LP64: five struct timeval and an int, padded to 88 bytes.
_MSG_STATS = struct.Struct("=qqqqqqqqqqi4x")


def msg_stats_data(message):
    """The `time` attribute: MSG_STATS with the arrival and active-queue times."""
    return _MSG_STATS.pack(message.arrival[0], message.arrival[1], message.active_time[0],
                           message.active_time[1], 0, 0, 0, 0, 0, 0, 0)


class Deliverer:
    def __init__(self, qmgr):
        self.qmgr = qmgr
        self.sched = qmgr.sched
        self.events = qmgr.events
        self.concurrency = 0

    # -- connecting to an agent (qmgr_transport_alloc()) -----------------------------------

    def transport_alloc(self, transport):
        if transport.xport_rate_delay > 0:
            transport.rate_lock = True
        transport.pending += 1
        path = "private/" + transport.name
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            # A Unix-domain connect either completes at once or fails (EAGAIN: the
            # listen queue is full); only EINPROGRESS means "wait" (unix_connect()).
            error = sock.connect_ex(path)
            if error not in (0, errno.EINPROGRESS):
                raise OSError(error, os.strerror(error))
        except OSError as exc:
            sock.close()
            msg.warn("connect to transport %s: %s" % (path, msg.strerror(exc)))
            self.events.request_timer(("alloc", id(transport), object()),
                                      lambda: self._transport_event(transport, None), 0)
            return
        key = ("alloc", sock.fileno())
        self.events.enable_read(sock.fileno(), lambda fd, ev: (
            self.events.cancel_timer(key), self._transport_event(transport, sock)))
        self.events.request_timer(key, lambda: self._transport_abort(transport),
                                  self.qmgr.daemon_timeout)

    def _transport_abort(self, transport):
        msg.fatal("timeout connecting to transport: %s" % transport.name)

    def _transport_event(self, transport, sock):
        if sock is not None:
            self.events.disable(sock.fileno())
            sock.setblocking(True)
        transport.pending -= 1
        if transport.xport_rate_delay > 0:
            self.events.request_timer(("rate", id(transport), object()),
                                      lambda: self._rate_done(transport, sock),
                                      transport.xport_rate_delay)
        else:
            self.deliver(transport, sock)

    def _rate_done(self, transport, sock):
        transport.rate_lock = False
        self.deliver(transport, sock)

    # -- one delivery (qmgr_deliver()) -----------------------------------------------------

    def deliver(self, transport, sock):
        stream = None
        if sock is not None:
            stream = attr.AttrStream(sock, "private/%s socket" % transport.name,
                                     self.qmgr.ipc_timeout)
        if stream is None or self._initial_reply(stream) != STAT_OK:
            self.sched.transport_throttle(transport, Dsn("4.3.0", "mail transport unavailable"))
            self.sched.defer_transport(transport, Dsn("4.3.0", "mail transport unavailable"))
            if sock is not None:
                sock.close()
            return
        entry = self.sched.entry_select(transport)
        if entry is None:
            sock.close()
            return
        if not self._send_request(entry, stream):
            self.sched.entry_unselect(entry)
            dsn = Dsn("4.3.0", "mail transport unavailable")
            self.sched.transport_throttle(transport, dsn)
            self.sched.defer_transport(transport, dsn)
            sock.close()
            return
        self.concurrency += 1
        entry.sock = sock
        entry.stream = stream
        key = ("deliver", id(entry))
        self.events.enable_read(sock.fileno(), lambda fd, ev: (
            self.events.cancel_timer(key), self._update(entry)))
        self.events.request_timer(key, lambda: msg.fatal(
            "%s: timeout receiving delivery status from transport: %s"
            % (entry.message.queue_id, transport.name)), self.qmgr.daemon_timeout)

    @staticmethod
    def _initial_reply(stream):
        # An agent that closed the connection is a "malformed response": attr_scan()
        # returns 0 at a clean end of input (Postfix's peekfd() fails only on errors).
        count, _ = stream.scan([(attr.STREQ, "protocol", PROTO_DELIVER)], attr.FLAG_STRICT)
        if count != 0:
            msg.warn("%s: malformed response" % stream.path)
            return STAT_DEFER
        return STAT_OK

    def _send_request(self, entry, stream):
        message = entry.message
        queue = entry.queue
        smtputf8 = message.smtputf8
        for rcpt in entry.rcpts:
            address = rcpt.address
            if self.qmgr.smtputf8_enable and address and not address.isascii():
                smtputf8 |= SMTPUTF8_FLAG_RECIPIENT
                if message.verp_delims:
                    smtputf8 |= SMTPUTF8_FLAG_SENDER
        sender = message.sender
        if message.verp_delims:
            sender = verp_sender(message.verp_delims, sender, entry.rcpts[0].address)
        flags = message.tflags | queue.dflags | \
            (DEL_REQ_FLAG_BOUNCE if message.inspect_xport else DEL_REQ_FLAG_DEFLT)
        request = [
            ("flags", flags), ("queue_name", message.queue_name),
            ("queue_id", message.queue_id), (attr.LONG, "offset", message.data_offset),
            (attr.LONG, "size", message.cont_length), ("nexthop", queue.nexthop),
            ("encoding", message.encoding), ("smtputf8", smtputf8), ("sender", sender),
            ("envelope_id", message.dsn_envid), ("ret_flags", message.dsn_ret),
            ("time", msg_stats_data(message)),
            ("log_client_name", message.client_name),
            ("log_client_address", message.client_addr),
            ("log_client_port", message.client_port),
            ("log_protocol_name", message.client_proto),
            ("log_helo_name", message.client_helo),
            ("sasl_method", message.sasl_method), ("sasl_username", message.sasl_username),
            ("sasl_sender", message.sasl_sender), ("log_ident", message.log_ident),
            ("rewrite_context", message.rewrite_context),
            ("recipient_count", len(entry.rcpts))]
        data = attr.print0(request)
        for rcpt in entry.rcpts:
            data += attr.print0(rcpt.attrs())
        try:
            stream.sock.settimeout(self.qmgr.ipc_timeout)
            stream.sock.sendall(data)
        except OSError as exc:
            msg.warn("write to process (%s): %s" % (queue.transport.name,
                                                    msg.strerror(exc)))
            return False
        if msg.verbose:
            msg.info("qmgr_deliver: site `%s'" % queue.name)
        return True

    # -- the agent's answer (qmgr_deliver_update()) ----------------------------------------

    def _final_reply(self, stream):
        # The DSN and the final status both travel as `status`: two scans (dsb_scan()).
        count, values = stream.scan(
            [(attr.STR, "status"), (attr.STR, "diag_type"), (attr.STR, "diag_text"),
             (attr.STR, "mta_type"), (attr.STR, "mta_mname"), (attr.STR, "action"),
             (attr.STR, "reason")], attr.FLAG_STRICT | attr.FLAG_MORE)
        if count == 7:
            count, final = stream.scan([(attr.INT, "status")], attr.FLAG_STRICT)
            count = count + 7 if count == 1 else -1
        if count != 8:
            msg.warn("%s: malformed response" % stream.path)
            return STAT_CRASH, None
        values["dsn_status"] = values["status"]
        values["status"] = final["status"]
        return (STAT_DEFER if values["status"] else STAT_OK), values

    def _update(self, entry):
        queue = entry.queue
        transport = queue.transport
        message = entry.message
        stream = entry.stream
        self.events.disable(entry.sock.fileno())
        status, values = self._final_reply(stream)
        dsn_status = dsn_reason = ""
        if values is not None:
            dsn_status, dsn_reason = values.get("dsn_status", ""), values.get("reason", "")
        if status == STAT_CRASH:
            dsn_status, dsn_reason = "4.3.0", "unknown mail transport error"
        if status in (STAT_CRASH, STAT_DEFER):
            message.flags |= 1
            if dsn_status:
                if not dsn_valid(dsn_status):
                    dsn_status = "4.0.0"
                dsn_reason = SUSPENDED + (dsn_reason or "unknown error")
                if queue.ready:
                    self.sched.queue_throttle(queue, Dsn(dsn_status, dsn_reason))
                    if queue.throttled:
                        self.sched.defer_todo(queue, queue.dsn)
        if status != STAT_CRASH:
            self.sched.transport_unthrottle(transport)
            if not dsn_reason:
                self.sched.queue_unthrottle(queue)
        entry.sock.close()
        entry.sock = entry.stream = None
        self.concurrency -= 1
        self.sched.entry_done(entry, BUSY)


def verp_sender(delims, sender, address):
    """prefix+user=domain@origin for one recipient (verp_sender())."""
    if not address:
        return sender
    local, at, domain = sender.rpartition("@")
    if not at:
        local, domain = sender, ""
    rcpt_local, rcpt_at, rcpt_domain = address.rpartition("@")
    if not rcpt_at:
        rcpt_local, rcpt_domain = address, ""
    text = local + delims[0] + rcpt_local
    if rcpt_domain:
        text += delims[1] + rcpt_domain
    if domain:
        text += "@" + domain
    return text


"""The delivery agents' side of qmgr's delivery request protocol (Postfix's
global/deliver_request.c, msg_stats_scan.c and rcpt_buf.c).

An agent announces `protocol=delivery_request_protocol`, reads the request (the
attribute list that daemons/qmgr/deliver.py sends: flags, queue_name, queue_id, offset,
size, nexthop, ..., recipient_count, then one list per recipient), opens the queue file
read-write with a shared lock (qmgr's exclusive lock excludes a message that an agent
still holds), and finally answers with the DSN of a destination problem (empty when
there is none) and `status` (0: every recipient was finished — delivered, bounced or
deferred and logged). It then waits for qmgr to close the connection.
"""

import os
import struct
import time

from pyfix.common import attr, msg
from pyfix.queue.bounce_clnt import MsgStats, Recipient
from pyfix.queue.lock import NOWAIT, SHARED, myflock
from pyfix.queue.mail_queue import QueueLayout
from pyfix.queue.scan import mail_open_ok, mail_queue_open

PROTO_DELIVER = "delivery_request_protocol"

# Request flags (deliver_request.h).
DEL_REQ_FLAG_SUCCESS = 1 << 0           # mark delivered recipients done
DEL_REQ_FLAG_BOUNCE = 1 << 1            # mark bounced recipients done
DEL_REQ_FLAG_DEFLT = DEL_REQ_FLAG_SUCCESS | DEL_REQ_FLAG_BOUNCE
DEL_REQ_FLAG_MTA_VRFY = 1 << 8          # address probe from an MTA
DEL_REQ_FLAG_USR_VRFY = 1 << 9          # sendmail -bv
DEL_REQ_FLAG_RECORD = 1 << 10           # sendmail -v: record and deliver
DEL_REQ_FLAG_CONN_LOAD = 1 << 11        # may reuse a cached connection
DEL_REQ_FLAG_CONN_STORE = 1 << 12       # may cache the connection
DEL_REQ_FLAG_CONN_MASK = DEL_REQ_FLAG_CONN_LOAD | DEL_REQ_FLAG_CONN_STORE
DEL_REQ_FLAG_REC_DLY_SENT = 1 << 13     # record delayed delivery
DEL_REQ_TRACE_FLAGS_MASK = DEL_REQ_FLAG_MTA_VRFY | DEL_REQ_FLAG_USR_VRFY \
    | DEL_REQ_FLAG_RECORD | DEL_REQ_FLAG_REC_DLY_SENT
DEL_REQ_TRACE_ONLY_MASK = DEL_REQ_FLAG_MTA_VRFY | DEL_REQ_FLAG_USR_VRFY
_MSG_STATS = struct.Struct("=qqqqqqqqqqi4x")

_COMMON = [
    (attr.INT, "flags"), (attr.STR, "queue_name"), (attr.STR, "queue_id"),
    (attr.LONG, "offset"), (attr.LONG, "size"), (attr.STR, "nexthop"),
    (attr.STR, "encoding"), (attr.INT, "smtputf8"), (attr.STR, "sender"),
    (attr.STR, "envelope_id"), (attr.INT, "ret_flags"), (attr.DATA, "time"),
    (attr.STR, "log_client_name"), (attr.STR, "log_client_address"),
    (attr.STR, "log_client_port"), (attr.STR, "log_protocol_name"),
    (attr.STR, "log_helo_name"), (attr.STR, "sasl_method"), (attr.STR, "sasl_username"),
    (attr.STR, "sasl_sender"), (attr.STR, "log_ident"), (attr.STR, "rewrite_context"),
    (attr.INT, "recipient_count")]
_RECIPIENT = [(attr.STR, "original_recipient"), (attr.STR, "recipient"),
              (attr.LONG, "offset"), (attr.STR, "dsn_orig_rcpt"), (attr.INT, "notify_flags")]


class DeliverRequest:
    """One request: its attributes by name, the recipients, the queue file, and the
    destination status (hop_status, a bounce_clnt.Dsn) the agent may set."""

    def __init__(self, values):
        self.values = values
        self.flags = values["flags"]
        self.queue_name = values["queue_name"]
        self.queue_id = values["queue_id"]
        self.data_offset = values["offset"]
        self.data_size = values["size"]
        self.nexthop = values["nexthop"]
        self.sender = values["sender"]
        self.stats = _msg_stats(values["time"])
        self.rcpts = []
        self.fp = None
        self.hop_status = None

    @property
    def trace_flags(self):
        """DEL_REQ_TRACE_FLAGS(): the flags that the status services care about."""
        return self.flags & DEL_REQ_TRACE_FLAGS_MASK

    def close(self):
        if self.fp is not None:
            self.fp.close()
            self.fp = None


def _msg_stats(data):
    """msg_stats_scan(); the hand-off time is now when qmgr did not set it."""
    fields = _MSG_STATS.unpack(data) if len(data) == _MSG_STATS.size else (0,) * 11
    pairs = [(fields[n], fields[n + 1]) for n in range(0, 10, 2)]
    stats = MsgStats(*pairs, reuse_count=fields[10])
    if stats.agent_handoff[0] == 0:
        now = time.time()
        stats.agent_handoff = (int(now), int(now * 1000000) % 1000000)
    return stats


_layouts = []                           # [(config, QueueLayout)]: one per process


def _layout(config):
    """The queue layout of this process's configuration, worked out once (a delivery
    agent's main.cf settings do not change while it runs)."""
    if not _layouts or _layouts[0][0] is not config:
        _layouts[:] = [(config, QueueLayout(config))]
    return _layouts[0][1]


def deliver_request_read(sock, config, service, timeout=3600):
    """Announce the protocol and read one request from qmgr; (stream, request), request
    None when the request was bad (Postfix's warning logged). service names the
    stream in warnings (`discard socket`)."""
    stream = attr.AttrStream(sock, "%s socket" % service, timeout)
    if not stream.send([("protocol", PROTO_DELIVER)]):
        return stream, None
    count, values = stream.scan(_COMMON, attr.FLAG_STRICT)
    if count != len(_COMMON):
        msg.warn("deliver_request_get: error receiving common attributes")
        return stream, None
    layout = _layout(config)
    # Postfix compares mail_open_ok()'s result with 0, which it never is: only its
    # warnings count here; a missing file is found when it is opened below.
    mail_open_ok(layout, values["queue_name"], values["queue_id"])
    request = DeliverRequest(values)
    for _ in range(values["recipient_count"]):
        count, rcpt = stream.scan(_RECIPIENT, attr.FLAG_STRICT)
        if count != len(_RECIPIENT):
            msg.warn("deliver_request_get: error receiving recipient attributes")
            return stream, None
        request.rcpts.append(Recipient(rcpt["offset"], rcpt["dsn_orig_rcpt"],
                                       rcpt["notify_flags"], rcpt["original_recipient"],
                                       rcpt["recipient"]))
    if not request.rcpts:
        msg.warn("%s: no recipients in delivery request for destination %s"
                 % (request.queue_id, request.nexthop))
        return stream, None
    try:
        request.fp = mail_queue_open(layout, request.queue_name, request.queue_id,
                                     os.O_RDWR)
    except FileNotFoundError as exc:
        msg.warn("open %s %s: %s" % (request.queue_name, request.queue_id,
                                     msg.strerror(exc)))
        return stream, None
    except OSError as exc:
        msg.fatal("open %s %s: %s" % (request.queue_name, request.queue_id,
                                      msg.strerror(exc)))
    try:
        locked = myflock(request.fp.fileno(), SHARED | NOWAIT)
    except OSError as exc:
        msg.fatal("shared lock %s: %s" % (request.fp.qpath, msg.strerror(exc)))
    if not locked:
        msg.fatal("shared lock %s: Resource temporarily unavailable" % request.fp.qpath)
    return stream, request


def deliver_request_done(stream, request, status):
    """Send the final status and wait for qmgr to hang up (deliver_request_final())."""
    hop = request.hop_status
    dsn = [("status", ""), ("diag_type", ""), ("diag_text", ""), ("mta_type", ""),
           ("mta_mname", ""), ("action", ""), ("reason", "")] if hop is None else hop.attrs()
    request.close()
    if stream.send(dsn + [("status", status)]):
        stream.peek()

"""Clients of the delivery status services: bounce, defer, trace and verify (Postfix's
global/bounce.c, trace.c, verify.c, verify_clnt.c, mail_command_client.c, rcpt_print.c,
dsn_print.c) and the ad-hoc delivery status log line (log_adhoc.c, util/format_tv.c).

Each request is one short session on private/<service>: the service announces
`protocol=delivery_status_protocol`, the client sends one attribute list (nrequest,
flags, queue_id, the recipient and the DSN), the service answers `status`. A service
that cannot be reached is a failure (-1) with a warning, never a wait: these are the
"non-critical" services of mail_command_client().

    QUEUEID: to=<rcpt>[, orig_to=<orcpt>], relay=none, delay=0.12,
        delays=0.12/0/0/0, dsn=5.7.1, status=bounced (reason)
"""

import socket
import time

from pyfix.common import attr, flush_clnt, msg, verify_clnt
from pyfix.common.info_log_addr_form import info_log_addr_form
# The verify client lives in common/verify_clnt.py (smtpd queries it too).
from pyfix.common.verify_clnt import verify_clnt_update

PROTO_BOUNCE = "delivery_status_protocol"

CMD_APPEND = 0
CMD_FLUSH = 1
CMD_WARN = 2
CMD_VERP = 3
CMD_ONE = 4
CMD_TRACE = 5

BOUNCE_FLAG_NONE = 0
BOUNCE_FLAG_CLEAN = 1 << 0
BOUNCE_FLAG_DELRCPT = 1 << 1
DEL_REQ_FLAG_MTA_VRFY = 1 << 8
DEL_REQ_FLAG_USR_VRFY = 1 << 9
DEL_REQ_FLAG_RECORD = 1 << 10

NO_RELAY_AGENT = "none"

_settings = {"bounce_service_name": "bounce", "defer_service_name": "defer",
             "trace_service_name": "trace", "address_verify_service_name": "verify",
             "soft_bounce": False, "delay_logging_resolution_limit": 2,
             "address_verify_negative_cache": True, "ipc_timeout": 3600}


def configure(config):
    for name in ("bounce_service_name", "defer_service_name", "trace_service_name",
                 "address_verify_service_name"):
        _settings[name] = config.get(name)
    _settings["soft_bounce"] = config.get_bool("soft_bounce")
    _settings["address_verify_negative_cache"] = \
        config.get_bool("address_verify_negative_cache")
    _settings["delay_logging_resolution_limit"] = \
        config.get_int("delay_logging_resolution_limit")
    _settings["ipc_timeout"] = config.get_time("ipc_timeout")
    flush_clnt.flush_init(config)           # for defer_append's flush_add()
    verify_clnt.configure(config)


class MsgStats:
    """Time stamps of a message's way through the system (msg_stats.h); (sec, usec)."""

    def __init__(self, incoming_arrival=(0, 0), active_arrival=(0, 0),
                 agent_handoff=(0, 0), conn_setup_done=(0, 0), deliver_done=(0, 0),
                 reuse_count=0):
        self.incoming_arrival = incoming_arrival
        self.active_arrival = active_arrival
        self.agent_handoff = agent_handoff
        self.conn_setup_done = conn_setup_done
        self.deliver_done = deliver_done
        self.reuse_count = reuse_count


class Recipient:
    def __init__(self, offset, dsn_orcpt, dsn_notify, orig_addr, address):
        self.offset = offset
        self.dsn_orcpt = dsn_orcpt or ""
        self.dsn_notify = dsn_notify
        self.orig_addr = orig_addr or ""
        self.address = address

    def attrs(self):
        return [("original_recipient", self.orig_addr), ("recipient", self.address),
                (attr.LONG, "offset", self.offset), ("dsn_orig_rcpt", self.dsn_orcpt),
                ("notify_flags", self.dsn_notify)]


class Dsn:
    def __init__(self, status, reason, action="", dtype="", dtext="", mtype="", mname=""):
        self.status = status
        self.reason = reason
        self.action = action
        self.dtype, self.dtext, self.mtype, self.mname = dtype, dtext, mtype, mname

    def copy(self, **changes):
        dsn = Dsn(self.status, self.reason, self.action, self.dtype, self.dtext,
                  self.mtype, self.mname)
        for name, value in changes.items():
            setattr(dsn, name, value)
        return dsn

    def attrs(self):
        return [("status", self.status), ("diag_type", self.dtype),
                ("diag_text", self.dtext), ("mta_type", self.mtype),
                ("mta_mname", self.mname), ("action", self.action),
                ("reason", self.reason)]


def mail_command_client(klass, service, proto, attrs):
    """One request to a status service; its status, or -1 with a warning."""
    path = "%s/%s" % (klass, service)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
        except OSError as exc:
            msg.warn("connect to %s: %s" % (path, msg.strerror(exc)))
            return -1
        stream = attr.AttrStream(sock, path + " socket", _settings["ipc_timeout"])
        count, _ = stream.scan([(attr.STREQ, "protocol", proto)], attr.FLAG_STRICT)
        if count != 0 or stream.eof:
            msg.warn("read %s socket: protocol error" % path)
            return -1
        if not stream.send(attrs):
            msg.warn("write %s socket: connection lost" % path)
            return -1
        count, values = stream.scan([(attr.INT, "status")], attr.FLAG_STRICT)
        if count != 1:
            msg.warn("write/read %s socket: protocol error" % path)
            return -1
        return values["status"]
    finally:
        sock.close()


def _dsn_valid(status):
    from pyfix.common.dsn_util import dsn_valid
    return dsn_valid(status) > 0


def bounce_append(flags, queue_id, stats, rcpt, relay, dsn):
    """Record a permanent failure of one recipient (bounce.c bounce_append())."""
    if not dsn.status.startswith("5") or not _dsn_valid(dsn.status):
        msg.warn('bounce_append: ignoring dsn code "%s"' % dsn.status)
        dsn = dsn.copy(status="5.0.0")
    if flags & DEL_REQ_FLAG_MTA_VRFY:
        return verify_append(queue_id, stats, rcpt, relay, dsn.copy(action="undeliverable"),
                             verify_clnt.DEL_RCPT_STAT_BOUNCE)
    if flags & DEL_REQ_FLAG_USR_VRFY:
        return trace_append(flags, queue_id, stats, rcpt, relay,
                            dsn.copy(action="undeliverable"))
    soft = _settings["soft_bounce"]
    if soft and flags & BOUNCE_FLAG_CLEAN:
        return -1
    status = ("4" + dsn.status[1:]) if soft else dsn.status
    my_dsn = dsn.copy(status=status, action="delayed" if soft else "failed")
    service = _settings["defer_service_name" if soft else "bounce_service_name"]
    request = [("nrequest", CMD_APPEND), ("flags", flags), ("queue_id", queue_id)] \
        + rcpt.attrs() + my_dsn.attrs()
    if mail_command_client("private", service, PROTO_BOUNCE, request) == 0 \
            and (not flags & DEL_REQ_FLAG_RECORD
                 or trace_append(flags, queue_id, stats, rcpt, relay, my_dsn) == 0):
        log_adhoc(queue_id, stats, rcpt, relay, my_dsn,
                  "SOFTBOUNCE" if soft else "bounced")
        return -1 if soft else 0
    # Without BOUNCE_FLAG_CLEAN Postfix falls back to a defer log record; cleanup, the
    # one user of this module so far, always sets the flag.
    return -1


def bounce_flush(flags, queue, queue_id, encoding, smtputf8, sender, dsn_envid, dsn_ret,
                 verp_delims=None):
    """Ask the bounce service to send the bounce log of a message to its sender."""
    request = [("nrequest", CMD_VERP if verp_delims else CMD_FLUSH), ("flags", flags),
               ("queue_name", queue), ("queue_id", queue_id), ("encoding", encoding),
               ("smtputf8", smtputf8), ("sender", sender), ("envelope_id", dsn_envid),
               ("ret_flags", dsn_ret)]
    if verp_delims:
        request.append(("verp_delimiters", verp_delims))
    if mail_command_client("private", _settings["bounce_service_name"], PROTO_BOUNCE,
                           request) == 0:
        return 0
    if flags & BOUNCE_FLAG_CLEAN:
        return -1
    msg.warn("%s: %s service failure" % (queue_id, _settings["bounce_service_name"]))
    return -1


def trace_append(flags, queue_id, stats, rcpt, relay, dsn):
    """Append one record to the message's trace log (trace.c)."""
    reason = dsn.reason if relay == NO_RELAY_AGENT else \
        "delivery via %s: %s" % (relay, dsn.reason)
    request = [("nrequest", CMD_APPEND), ("flags", flags), ("queue_id", queue_id)] \
        + rcpt.attrs() + dsn.copy(reason=reason).attrs()
    service = _settings["trace_service_name"]
    if mail_command_client("private", service, PROTO_BOUNCE, request) != 0:
        msg.warn("%s: %s service failure" % (queue_id, service))
        return -1
    if flags & DEL_REQ_FLAG_USR_VRFY:
        log_adhoc(queue_id, stats, rcpt, relay, dsn, dsn.action)
    return 0


def verify_append(queue_id, stats, rcpt, relay, dsn, vrfy_stat):
    """Record the result of an address probe with the verify service (verify.c)."""
    action = dsn.action
    if _settings["address_verify_negative_cache"] or vrfy_stat == 0:
        status = verify_clnt_update(rcpt.orig_addr, vrfy_stat, dsn.reason) \
            if rcpt.orig_addr else 0
        if status == 0 and rcpt.address != rcpt.orig_addr:
            status = verify_clnt_update(rcpt.address, vrfy_stat, dsn.reason)
    else:
        action = "undeliverable-but-not-cached"
        status = 0
    if status == 0:
        log_adhoc(queue_id, stats, rcpt, relay, dsn, action)
        return 0
    msg.warn("%s: %s service failure" % (queue_id, _settings["address_verify_service_name"]))
    return -1


# -- the delivery status log line ---------------------------------------------------------

def format_tv(sec, usec, sig_dig, max_dig):
    """util/format_tv.c: seconds with at most sig_dig significant digits after the
    point, never finer than 10**-max_dig, trailing zeros dropped."""
    million = 1000000
    ures = million // 10 ** max_dig
    wid = 10 ** sig_dig
    if ures < million:
        if sec > 0:
            n = 1
            while sec >= n and n <= wid // 10:
                n *= 10
            ures = (million // wid) * n
        else:
            while usec >= wid * ures:
                ures *= 10
    if ures > 1:
        usec += ures // 2
        if usec >= million:
            sec += 1
            usec -= million
    out = ["%d" % sec]
    if usec >= ures:
        out.append(".")
        rem = usec
        n = million // 10
        while rem >= ures and n > 0:
            out.append("0123456789"[rem // n])
            rem %= n
            n //= 10
    return "".join(out)


def _delta(later, earlier):
    sec = later[0] - earlier[0]
    usec = later[1] - earlier[1]
    while usec < 0:
        usec += 1000000
        sec -= 1
    while usec >= 1000000:
        usec -= 1000000
        sec += 1
    return (0, 0) if sec < 0 else (sec, usec)


def log_adhoc(queue_id, stats, rcpt, relay, dsn, status):
    text = "%s: to=<%s>" % (queue_id, info_log_addr_form(rcpt.address))
    if rcpt.orig_addr and rcpt.address.lower() != rcpt.orig_addr.lower():
        text += ", orig_to=<%s>" % info_log_addr_form(rcpt.orig_addr)
    text += ", relay=%s" % relay
    if stats.reuse_count > 0:
        text += ", conn_use=%d" % (stats.reuse_count + 1)
    if stats.deliver_done[0] > 0:
        now = stats.deliver_done
    else:
        stamp = time.time()
        now = (int(stamp), int(stamp * 1000000) % 1000000)
    delay = _delta(now, stats.incoming_arrival)
    adelay = sdelay = xdelay = (0, 0)
    if stats.active_arrival[0] > 0:
        pdelay = _delta(stats.active_arrival, stats.incoming_arrival)
        if stats.agent_handoff[0] > 0:
            adelay = _delta(stats.agent_handoff, stats.active_arrival)
            if stats.conn_setup_done[0] > 0:
                sdelay = _delta(stats.conn_setup_done, stats.agent_handoff)
                xdelay = _delta(now, stats.conn_setup_done)
            else:
                xdelay = _delta(now, stats.agent_handoff)
        else:
            adelay = _delta(now, stats.active_arrival)
    else:
        pdelay = _delta(now, stats.incoming_arrival)
    res = _settings["delay_logging_resolution_limit"]

    def pretty(value):
        return format_tv(value[0], value[1], 2, res)

    text += ", delay=%s, delays=%s/%s/%s/%s" % (pretty(delay), pretty(pdelay),
                                                pretty(adelay), pretty(sdelay),
                                                pretty(xdelay))
    text += ", dsn=%s, status=%s (%s)" % (dsn.status, status, dsn.reason)
    msg.info(text)

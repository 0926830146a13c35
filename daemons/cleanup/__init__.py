"""cleanup(8): turns a record stream from smtpd, pickup and other clients into a queue
file in incoming/ (Postfix's src/cleanup).

The protocol of one connection (Postfix's cleanup.c; the client side is
queue/cleanup_client.py):

    cleanup -> client   protocol=cleanup_protocol  queue_id=<ID>        (attr0)
    client  -> cleanup  flags=<CLEANUP_FLAG_*>                         (attr0)
    client  -> cleanup  envelope records ... M  content ... X  extracted ... E
    cleanup -> client   status=<CLEANUP_STAT_*>  reason=<text>         (attr0)

The answer comes after the queue file was committed: status 0 means the message is
complete (mode 0700) and fsync'ed in incoming/ (or hold/), and qmgr was woken up.
Malformed input (a bad record, a record type out of place, `p` or `w` records, missing
sender, time or `E`) is CLEANUP_STAT_BAD; cleanup then reads the rest of the stream
before it answers, so that the client is never blocked writing.

The modules follow Postfix's cleanup_*.c: api (open, control, flush), envelope,
message and header (content and header processing), act (header/body check actions),
extracted, addr (envelope addresses), out_recipient (virtual aliases, duplicates),
map11 (canonical), map1n (virtual), masquerade, rewrite, bounce, out (records), init
(configuration), state. Milter applications are not supported.
"""

import signal
import time

from pyfix.common import attr, msg
from pyfix.common.mail_flow import mail_flow_get
from pyfix.queue import bounce_clnt
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record

from pyfix.daemons.cleanup import api
from pyfix.daemons.cleanup.init import Settings
from pyfix.daemons.skeleton.single import single_server_main

PROTO_CLEANUP = "cleanup_protocol"
_settings = {}


def cleanup_service(conn, server):
    """One client: one message."""
    settings = _settings["settings"]
    if server.argv:
        msg.fatal("unexpected command-line argument: %s" % server.argv[0])
    if settings.in_flow_delay > 0 and mail_flow_get(1) < 0:
        time.sleep(settings.in_flow_delay)
    try:
        _serve(conn, server, settings)
    except BaseException:
        api.cleanup_all()
        raise


def _serve(conn, server, settings):
    state = api.cleanup_open(settings, conn)
    path = server.name + " socket"
    stream = attr.AttrStream(conn, path, settings.ipc_timeout)
    stream.send([("protocol", PROTO_CLEANUP), ("queue_id", state.queue_id)])
    count, values = stream.scan([(attr.INT, "flags")], attr.FLAG_STRICT)
    flags = values.get("flags", 0) if count == 1 else 0
    if count != 1:
        state.errs |= cu.STAT_BAD
    api.cleanup_control(state, flags)
    source = record.SocketReader(conn, bytes(stream.buf), settings.ipc_timeout, path)
    reader = record.RecordReader(source, path)
    # A record of type 0 is a record like any other here (cleanup rejects it later);
    # only a missing payload means EOF or a malformed record (Postfix: type < 0).
    rec_type = None
    while state.out_ok():
        rec_type, payload = reader.get_raw()
        if payload is None:
            rec_type = None
            state.errs |= cu.STAT_BAD
            break
        if rec_type in record.HIDDEN_TYPES:
            msg.warn("%s: record type %d not allowed - discarding this message"
                     % (state.queue_id, rec_type[0]))
            state.errs |= cu.STAT_BAD
            break
        state.record(rec_type, payload)
        if rec_type == record.END:
            break
    # Keep reading until the client waits for the status; as in Postfix (type > 0),
    # a record of type 0 ends this too.
    if not state.out_ok() and rec_type is not None and rec_type[0] > 0:
        while rec_type != record.END:
            rec_type, payload = reader.get_raw()
            if payload is None or rec_type[0] == 0:
                break
    if source.timed_out:
        msg.warn("%s: read timeout on %s" % (state.queue_id, path))
    status = api.cleanup_flush(state)
    if state.flags & cu.FLAG_SMTP_REPLY and state.smtp_reply:
        reason = state.smtp_reply
    else:
        reason = state.reason or ""
    stream.send([("status", status), ("reason", reason)])


def _sigterm(signum, frame):
    """cleanup_sig(): leave no incomplete queue file behind."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    api.cleanup_all()
    import os
    os._exit(signum)


def pre_init(server):
    _settings["settings"] = Settings(server.config)
    bounce_clnt.configure(server.config)


def post_init(server):
    signal.signal(signal.SIGTERM, _sigterm)


def main(argv):
    single_server_main(argv, cleanup_service, unlimited=True, pre_init=pre_init,
                       post_init=post_init)

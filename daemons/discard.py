"""discard(8): the delivery agent that discards mail (Postfix's src/discard/discard.c).

A single server on private/discard. For each delivery request from qmgr it logs every
recipient `status=sent` with the nexthop text as the reason (`discard:text` in a
transport table; a leading d.d.d is the DSN status, else 2.0.0), records it in the trace
log where the sender asked for a success report, and marks it done in the queue file.
"""

from pyfix.common import info_log_addr_form as log_form
from pyfix.common import msg
from pyfix.common.dsn_util import dsn_split
from pyfix.queue import bounce_clnt
from pyfix.queue import delivery_status as status
from pyfix.queue.bounce_clnt import Dsn
from pyfix.queue.deliver_request import DEL_REQ_FLAG_SUCCESS, deliver_request_done, \
    deliver_request_read

from pyfix.daemons.skeleton.single import single_server_main


def deliver_message(request):
    """sent() for every recipient; 0 when all were done, else -1."""
    if not request.nexthop:
        msg.fatal("empty nexthop hostname")
    dsn_status, text = dsn_split("2.0.0", request.nexthop)
    dsn = Dsn(dsn_status, text)
    result = 0
    for rcpt in request.rcpts:
        done = status.sent(request.trace_flags, request.queue_id, request.stats, rcpt,
                           "none", dsn)
        if done == 0 and request.flags & DEL_REQ_FLAG_SUCCESS:
            status.deliver_completed(request.fp, rcpt.offset)
        result |= done
    return result


def discard_service(conn, server):
    if server.argv:
        msg.fatal("unexpected command-line argument: %s" % server.argv[0])
    stream, request = deliver_request_read(conn, server.config, server.name)
    if request is not None:
        deliver_request_done(stream, request, deliver_message(request))


def post_init(server):
    bounce_clnt.configure(server.config)
    log_form.init(server.config)


def main(argv):
    single_server_main(argv, discard_service, post_init=post_init)

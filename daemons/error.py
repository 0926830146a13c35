"""error(8): the delivery agent that bounces or defers mail (Postfix's src/error/error.c).

As the `error` service, every recipient of a request is bounced (5.0.0 unless the
nexthop text starts with its own d.d.d status); as `retry` (master.cf `retry unix ...
error`), deferred (4.0.0). The reason is the nexthop text: `error:mailbox gone` in a
transport table, or what qmgr put there (`4.4.1 delivery temporarily suspended: ...`
for the mail of a dead destination). A recipient whose status was recorded is marked
done in the queue file.
"""

from pyfix.common import info_log_addr_form as log_form
from pyfix.common import msg
from pyfix.common.dsn_util import dsn_split
from pyfix.queue import bounce_clnt
from pyfix.queue import delivery_status as status
from pyfix.queue.bounce_clnt import Dsn
from pyfix.queue.deliver_request import deliver_request_done, deliver_request_read

from pyfix.daemons.skeleton.single import single_server_main

SERVICE_ERROR = "error"
SERVICE_RETRY = "retry"


def deliver_message(request, def_dsn, append):
    if not request.nexthop:
        msg.fatal("empty nexthop hostname")
    dsn_status, text = dsn_split(def_dsn, request.nexthop)
    dsn = Dsn(dsn_status, text)
    result = 0
    for rcpt in request.rcpts:
        done = append(request.trace_flags, request.queue_id, request.stats, rcpt, "none",
                      dsn)
        if done == 0:
            status.deliver_completed(request.fp, rcpt.offset)
        result |= done
    return result


def error_service(conn, server):
    if server.argv:
        msg.fatal("unexpected command-line argument: %s" % server.argv[0])
    stream, request = deliver_request_read(conn, server.config, server.name)
    if request is None:
        return
    if server.name == SERVICE_ERROR:
        result = deliver_message(request, "5.0.0", status.bounce_append)
    elif server.name == SERVICE_RETRY:
        result = deliver_message(request, "4.0.0", status.defer_append)
    else:
        msg.fatal("bad error service name: %s" % server.name)
    deliver_request_done(stream, request, result)


def post_init(server):
    bounce_clnt.configure(server.config)
    log_form.init(server.config)


def main(argv):
    single_server_main(argv, error_service, post_init=post_init)

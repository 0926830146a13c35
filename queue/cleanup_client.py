"""The client side of the cleanup protocol (Postfix's global/mail_stream.c
mail_stream_service(), as pickup, smtpd, qmqpd, bounce and local use it).

    cleanup -> client   protocol=cleanup_protocol, queue_id=<ID>          (attr0)
    client  -> cleanup  flags=<CLEANUP_FLAG_* bits>                       (attr0)
    client  -> cleanup  records: envelope ... M content ... X extracted ... E
    cleanup -> client   status=<CLEANUP_STAT_* bits>, reason=<text>       (attr0)

The status arrives only after cleanup has written, fsync'ed and committed the queue
file (or removed it); status 0 means the message is safe. Records are sent with the
queue-file record codec and may be batched: cleanup reads nothing back until `E`.

    client = CleanupClient.connect("public/cleanup")    # mail_connect_wait()
    queue_id = client.queue_id
    client.send_flags(FLAG_MASK_EXTERNAL)
    client.put(record.TIME, b"...") ...
    status, reason = client.finish()
"""

import errno
import socket
import time

from pyfix.common import attr, msg
from pyfix.queue import record

PROTO_CLEANUP = "cleanup_protocol"
CONNECT_ATTEMPTS = 10
CONNECT_RETRY_DELAY = 10
SEND_BUFFER = 65536


class CleanupError(Exception):
    """The service could not be reached or did not speak the protocol."""


class CleanupClient:
    def __init__(self, sock, path, timeout=None):
        self.sock = sock
        self.path = path
        self.stream = attr.AttrStream(sock, path + " socket", timeout)
        self.queue_id = None
        self.pending = bytearray()
        self.write_error = None

    # -- connection ---------------------------------------------------------------------------

    @classmethod
    def connect(cls, path, timeout=None, wait=True, retry_delay=CONNECT_RETRY_DELAY):
        """Connect and read the queue ID. With wait, retry as mail_connect_wait() does
        (warnings `connect #N to subsystem <path>: <error>`, fatal after ten)."""
        count = 0
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                break
            except OSError as exc:
                sock.close()
                if not wait:
                    raise CleanupError("connect to subsystem %s: %s"
                                       % (path, msg.strerror(exc))) from exc
                count += 1
                text = "connect #%d to subsystem %s: %s" % (count, path, msg.strerror(exc))
                if count > CONNECT_ATTEMPTS:
                    msg.fatal(text)
                msg.warn(text)
                time.sleep(retry_delay)
        client = cls(sock, path, timeout)
        count, values = client.stream.scan(
            [(attr.STREQ, "protocol", PROTO_CLEANUP), (attr.STR, "queue_id")],
            attr.FLAG_STRICT)
        if count != 1:
            client.close()
            raise CleanupError("%s: bad cleanup service handshake" % path)
        client.queue_id = values["queue_id"]
        return client

    def close(self):
        """Send what is still buffered, then close, as vstream_fclose() does: a client
        that gives up halfway (pickup on a malformed maildrop file) still delivers the
        records it had put, and cleanup logs what it made of them."""
        self.flush()
        try:
            self.sock.close()
        except OSError:
            pass

    # -- the request -------------------------------------------------------------------------

    def send_flags(self, flags):
        if not self.stream.send([("flags", int(flags))]):
            raise CleanupError("write %s socket: %s" % (self.path, "connection lost"))

    def put(self, rec_type, payload=b""):
        """Queue one record for sending (rec_put()); False after a write error."""
        self.pending += record.encode(rec_type, payload)
        if len(self.pending) >= SEND_BUFFER:
            return self.flush()
        return self.write_error is None

    def put_raw(self, data):
        self.pending += data
        if len(self.pending) >= SEND_BUFFER:
            return self.flush()
        return self.write_error is None

    def flush(self):
        if self.write_error is None and self.pending:
            try:
                self.sock.settimeout(self.stream.timeout)
                self.sock.sendall(self.pending)
            except OSError as exc:
                self.write_error = exc
        self.pending.clear()
        return self.write_error is None

    def finish(self, with_reason=True):
        """Send what is left and read cleanup's verdict: (status, reason). A lost
        connection is (CLEANUP_STAT_WRITE, "") as in mail_stream_finish_ipc()."""
        from pyfix.queue.cleanup_user import STAT_WRITE
        self.flush()
        wanted = [(attr.INT, "status"), (attr.STR, "reason")] if with_reason \
            else [(attr.INT, "status")]
        count, values = self.stream.scan(wanted, attr.FLAG_STRICT if with_reason
                                         else attr.FLAG_MISSING)
        if count != len(wanted):
            return STAT_WRITE, ""
        return values["status"], values.get("reason", "")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_missing_service(exc):
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.ENOENT, errno.ECONNREFUSED)

"""Posting a notification through the cleanup service (Postfix's global/post_mail.c, the
post_mail_fopen_nowait() / post_mail_fputs() / post_mail_fclose() that bounce uses).

The envelope is minimal (arrival time, log_message_origin=local, trace_flags, sender,
one recipient); the content starts with Postfix's own Received: and Date: headers.
Cleanup adds Message-ID:, qualifies addresses and writes the queue file; its status
arrives after the `E` record. A notice that turns out to have nothing to report is
abandoned: the connection is closed before `E`, and cleanup discards the file.
"""

import time

from pyfix.common import msg
from pyfix.common.mail_date import mail_date
from pyfix.common.name_mask import name_mask
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record as R
from pyfix.queue.cleanup_client import CleanupClient, CleanupError

MAIL_SRC_MASK_BOUNCE = 1 << 4
MAIL_SRC_MASK_VERIFY = 1 << 6
MAIL_SRC_NAMES = (("sendmail", 1 << 0), ("smtpd", 1 << 1), ("qmqpd", 1 << 2),
                  ("forward", 1 << 3), ("bounce", 1 << 4), ("notify", 1 << 5),
                  ("verify", 1 << 6), ("all", (1 << 7) - 1))
INT_FILT_NAMES = (("notify", 1 << 5), ("bounce", 1 << 4), ("sendmail", 0), ("smtpd", 0),
                  ("qmqpd", 0), ("forward", 0), ("verify", 0))
SMTPUTF8_FLAG_REQUESTED = 1 << 0


def _class_flags(config, name, table, source_class, flags):
    """int_filt_flags() and smtputf8_autodetect(): flags when source_class is listed."""
    value = config.get(name) or ""
    if not value:
        return 0
    mask = name_mask(name, table, value)
    if mask == 0:
        msg.warn("%s: bad input: %s" % (name, value))
    return flags if mask & source_class else 0


def cleanup_flags(config, smtputf8, source_class=MAIL_SRC_MASK_BOUNCE):
    return (_class_flags(config, "internal_mail_filter_classes", INT_FILT_NAMES,
                         source_class, cu.FLAG_FILTER | cu.FLAG_MILTER)
            | cu.FLAG_MASK_INTERNAL
            | _class_flags(config, "smtputf8_autodetect_classes", MAIL_SRC_NAMES,
                           source_class, cu.FLAG_AUTOUTF8)
            | (cu.FLAG_SMTPUTF8 if smtputf8 & SMTPUTF8_FLAG_REQUESTED else 0))


class PostMail:
    """One notification on its way into the queue."""

    def __init__(self, client):
        self.client = client
        self.queue_id = client.queue_id

    @classmethod
    def open_nowait(cls, config, sender, recipient, smtputf8, trace_flags=0,
                    source_class=MAIL_SRC_MASK_BOUNCE):
        """post_mail_fopen_nowait(): None, with a warning, when cleanup is unreachable.
        source_class: MAIL_SRC_MASK_* of the poster (bounce, or verify for probes)."""
        path = "public/" + config.get("cleanup_service_name")
        try:
            client = CleanupClient.connect(path, config.get_time("ipc_timeout"), wait=False)
        except CleanupError as exc:
            if exc.__cause__ is not None:
                msg.warn("connect to %s: %s" % (path, msg.strerror(exc.__cause__)))
                return None
            msg.fatal("unable to contact the %s service" % config.get("cleanup_service_name"))
        try:
            client.send_flags(cleanup_flags(config, smtputf8, source_class))
        except CleanupError:
            msg.fatal("unable to contact the %s service" % config.get("cleanup_service_name"))
        post = cls(client)
        now = time.time()
        seconds, usec = int(now), int(now * 1000000) % 1000000
        date = mail_date(seconds)
        client.put(R.TIME, b"%d %d" % (seconds, usec))
        client.put(R.ATTR, b"log_message_origin=local")
        client.put(R.ATTR, b"trace_flags=%d" % trace_flags)
        client.put(R.FROM, sender.encode("utf-8", "surrogateescape"))
        client.put(R.RCPT, recipient.encode("utf-8", "surrogateescape"))
        client.put(R.MESG, b"")
        post.line("Received: by %s (%s)" % (config.get("myhostname"), config.get("mail_name")))
        post.line("\tid %s; %s" % (post.queue_id, date))
        post.line("Date: %s" % date)
        return post

    def line(self, text):
        """post_mail_fputs(): one line of content."""
        return self.client.put(R.NORM, text.encode("utf-8", "surrogateescape"))

    def record(self, rec_type, payload):
        return self.client.put(rec_type, payload)

    def ok(self):
        return self.client.write_error is None

    def close(self):
        """post_mail_fclose(): the end of the message and cleanup's status."""
        if not self.ok():
            self.client.close()
            return cu.STAT_WRITE
        self.client.put(R.XTRA, b"")
        self.client.put(R.END, b"")
        status, _ = self.client.finish(with_reason=False)
        self.client.close()
        return status

    def abandon(self):
        """vstream_fclose() without the end marker: cleanup drops the message."""
        self.client.close()

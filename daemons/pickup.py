"""pickup(8): local submissions from the maildrop directory into the queue (Postfix's
src/pickup/pickup.c).

A trigger server (master wakes it every 60 seconds, postdrop with `W` on public/pickup),
solitary. Each wakeup scans maildrop/ until a pass removes nothing. A file is taken when
its name is a queue ID and it is complete (owner rwx, as postdrop leaves it); its
records are copied to the cleanup service segment by segment, each segment limited to
the record types that belong there:

  envelope    `MCTcFILSDRO/WVA>K<ion` (ends at `M`); a `T` is made from the file's
              mtime when the file has none; `L` (content filter) and `>` (redirect)
              records of a `postsuper -r` are dropped
  content     pickup's own `Received: by $myhostname ($mail_name, from userid N)` and
              `\\tid QUEUEID; date` first, then `XLNw` (ends at `X`); an empty line is
              inserted when the first content line starts with white space
  extracted   `EDRO/PreAFIL>Kon` (ends at `E`); `r`, `e` and the non-DSN `A` records of
              a `postsuper -r` are dropped

with content_filter as an `L` record up front. It logs `QUEUEID: uid=N from=<sender>`
(plus `orig_id=<maildrop name>` for a file of mail_owner that is not world-readable: a
message requeued by postsuper -r). The maildrop file is removed only after cleanup
answered success, or when it is malformed (`uid=N: unexpected or malformed record type
T`, no sender) or cleanup called it hopeless (no recipients, bad data); after any other
cleanup failure it stays for the next scan. The cleanup request asks for bounces
(CLEANUP_FLAG_BOUNCE) and external processing, minus receive_override_options.
"""

import errno
import os
import pwd
import stat
import time

from pyfix.common import msg
from pyfix.common import info_log_addr_form as log_form
from pyfix.common.info_log_addr_form import info_log_addr_form
from pyfix.common.mail_date import mail_date
from pyfix.common.name_mask import name_mask
from pyfix.common.safe_open import safe_open
from pyfix.common.strings import split_nameval
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record
from pyfix.queue.cleanup_client import CleanupClient, CleanupError
from pyfix.queue.mail_queue import MAILDROP, QueueLayout
from pyfix.queue.scan import OPEN_YES, mail_open_ok, scan_queue

from pyfix.daemons.skeleton.trigger import trigger_server_main

REMOVE_MESSAGE_FILE = 1
KEEP_MESSAGE_FILE = 2
DAY_SECONDS = 86400
HOUR_SECONDS = 3600

INPUT_TRANSP_UNKNOWN_RCPT = 1 << 0
INPUT_TRANSP_ADDRESS_MAPPING = 1 << 1
INPUT_TRANSP_HEADER_BODY = 1 << 2
INPUT_TRANSP_MILTER = 1 << 3
INPUT_TRANSP_NAMES = (("no_unknown_recipient_checks", INPUT_TRANSP_UNKNOWN_RCPT),
                      ("no_address_mappings", INPUT_TRANSP_ADDRESS_MAPPING),
                      ("no_header_body_checks", INPUT_TRANSP_HEADER_BODY),
                      ("no_milters", INPUT_TRANSP_MILTER))
MAIL_SRC_NAMES = (("sendmail", 1 << 0), ("smtpd", 1 << 1), ("qmqpd", 1 << 2),
                  ("forward", 1 << 3), ("bounce", 1 << 4), ("notify", 1 << 5),
                  ("verify", 1 << 6), ("all", (1 << 7) - 1))
MAIL_SRC_MASK_SENDMAIL = 1 << 0


def input_transp_cleanup(flags, transp_mask):
    if transp_mask & INPUT_TRANSP_ADDRESS_MAPPING:
        flags &= ~(cu.FLAG_BCC_OK | cu.FLAG_MAP_OK)
    if transp_mask & INPUT_TRANSP_HEADER_BODY:
        flags &= ~cu.FLAG_FILTER
    if transp_mask & INPUT_TRANSP_MILTER:
        flags &= ~cu.FLAG_MILTER
    return flags


class PickupInfo:
    def __init__(self, path, st):
        self.id = None
        self.path = path
        self.st = st
        self.mtime = int(st.st_mtime)
        self.sender = None


class Pickup:
    def __init__(self):
        self.config = None
        self.layout = None
        self.transp_mask = 0
        self.autoutf8 = 0
        self.filter = ""
        self.owner_uid = -1
        self.line_limit = 2048
        self.cleanup_path = "public/cleanup"
        self.timeout = 3600

    # -- start-up -------------------------------------------------------------------------

    def post_init(self, server):
        config = self.config = server.config
        owner = config.get("mail_owner")
        try:
            entry = pwd.getpwnam(owner)
            self.owner_uid = entry.pw_uid
            if os.getuid() == 0 and os.getuid() != entry.pw_uid:
                os.setgid(entry.pw_gid)
                os.initgroups(owner, entry.pw_gid)
                os.setuid(entry.pw_uid)
        except KeyError:
            self.owner_uid = os.getuid()
        self.transp_mask = name_mask("receive_override_options", INPUT_TRANSP_NAMES,
                                     config.get("receive_override_options") or "")
        self.filter = config.get("content_filter") or ""
        self.line_limit = config.get_int("line_length_limit")
        self.cleanup_path = "public/" + config.get("cleanup_service_name")
        self.timeout = config.get_time("ipc_timeout")
        self.layout = QueueLayout(config)
        log_form.init(config)
        classes = config.get("smtputf8_autodetect_classes") or ""
        if classes:
            mask = name_mask("smtputf8_autodetect_classes", MAIL_SRC_NAMES, classes)
            if mask == 0:
                msg.warn("%s: bad input: %s" % ("smtputf8_autodetect_classes", classes))
            if mask & MAIL_SRC_MASK_SENDMAIL:
                self.autoutf8 = cu.FLAG_AUTOUTF8

    # -- the service ----------------------------------------------------------------------

    def service(self, data, server):
        if server.argv:
            msg.fatal("unexpected command-line argument: %s" % server.argv[0])
        while True:
            removed = 0
            for queue_id in scan_queue(MAILDROP):
                status, st, path = mail_open_ok(self.layout, MAILDROP, queue_id)
                if status != OPEN_YES:
                    continue
                info = PickupInfo(path, st)
                if self.pickup_file(info) == REMOVE_MESSAGE_FILE:
                    try:
                        os.unlink(info.path)
                        removed += 1
                    except OSError as exc:
                        msg.warn("remove %s: %s" % (info.path, msg.strerror(exc)))
            if not removed:
                return

    def is_requeued(self, info):
        return info.st.st_uid == self.owner_uid and not info.st.st_mode & stat.S_IROTH

    def pickup_file(self, info):
        opened = safe_open(info.path, os.O_RDONLY | os.O_NONBLOCK)
        if opened.fd is None:
            if opened.errno != errno.ENOENT:
                msg.warn("open input file %s: %s" % (info.path, opened.why))
            if opened.errno == errno.EACCES:
                msg.warn("if this file was created by Postfix < 1.1, then you may have "
                         "to chmod a+r %s/%s" % (self.config.get("queue_directory"),
                                                 info.path))
                return KEEP_MESSAGE_FILE
            return REMOVE_MESSAGE_FILE
        fd = opened.fd
        flags = input_transp_cleanup(cu.FLAG_BOUNCE | cu.FLAG_MASK_EXTERNAL,
                                     self.transp_mask)
        if self.is_requeued(info):
            flags &= ~cu.FLAG_MILTER
        else:
            flags |= self.autoutf8
        with os.fdopen(fd, "rb") as qfile:
            try:
                client = CleanupClient.connect(self.cleanup_path, self.timeout)
            except CleanupError:
                return KEEP_MESSAGE_FILE
            with client:
                try:
                    client.send_flags(flags)
                except CleanupError:
                    return KEEP_MESSAGE_FILE
                info.id = client.queue_id
                return self.pickup_copy(qfile, client, info)

    # -- copying ----------------------------------------------------------------------------

    def file_read_error(self, info, rec_type):
        # rec_type is EOF (None, -1), ERROR (with no payload, -2) or a real record type.
        kind = -1 if rec_type is None else (-2 if rec_type == record.ERROR else rec_type[0])
        msg.warn("uid=%d: unexpected or malformed record type %d" % (info.st.st_uid, kind))
        return REMOVE_MESSAGE_FILE

    def service_error(self, info, status, reason=""):
        if not reason:
            msg.warn("%s: error writing %s: %s" % (info.path, info.id, cu.strerror(status)))
        return REMOVE_MESSAGE_FILE if status & (cu.STAT_BAD | cu.STAT_RCPT) \
            else KEEP_MESSAGE_FILE

    def copy_segment(self, reader, client, info, expected):
        content = expected == record.CONTENT_TYPES
        check_first = content
        time_seen = False
        while True:
            rec_type, payload = reader.get()
            # Postfix tests strchr(expected, type), which also finds the string's
            # terminator: a record of type 0 passes in every segment (and cleanup
            # rejects it).
            if payload is None or (rec_type not in expected and rec_type != b"\0"):
                return self.file_read_error(info, rec_type)
            if msg.verbose:
                msg.info("%s: read %s %s" % (info.id, rec_type.decode("latin-1"),
                                             payload.decode("utf-8", "replace")))
            if rec_type == expected[:1]:
                return 0
            if rec_type == record.FROM:
                if info.sender is None:
                    info.sender = payload.decode("utf-8", "surrogateescape")
                if not time_seen:
                    client.put(record.TIME, b"%d" % info.mtime)
            if rec_type == record.TIME:
                time_seen = True
            if not content:
                if rec_type in (record.FILT, record.RDR):
                    continue
            if expected == record.EXTRACT_TYPES:
                if rec_type in (record.RRTO, record.ERTO):
                    continue
                if rec_type == record.ATTR:
                    name, _, error = split_nameval(payload.decode("utf-8", "surrogateescape"))
                    if not error and record.attr_map(name) is None:
                        continue
            if check_first and rec_type in (record.NORM, record.CONT):
                check_first = False
                if payload[:1] in (b" ", b"\t"):
                    client.put(record.NORM, b"")
            if not client.put(rec_type, payload):
                return self.service_error(info, cu.STAT_WRITE)

    def pickup_copy(self, qfile, client, info):
        config = self.config
        now = int(time.time())
        if info.mtime > now + 2 * HOUR_SECONDS:
            msg.warn("%s: message dated %d seconds into the future"
                     % (info.id, info.mtime - now))
            info.mtime = now
        elif info.mtime < now - DAY_SECONDS:
            msg.warn("%s: message has been queued for %d days"
                     % (info.id, (now - info.mtime) // DAY_SECONDS))
        if self.filter:
            client.put(record.FILT, self.filter)
        reader = record.RecordReader(qfile, info.path, self.line_limit)
        status = self.copy_segment(reader, client, info, record.ENVELOPE_TYPES)
        if status:
            return status
        if info.sender is None:
            msg.warn("%s: uid=%d: no envelope sender" % (info.id, info.st.st_uid))
            return REMOVE_MESSAGE_FILE
        sender = info_log_addr_form(info.sender)
        if self.is_requeued(info):
            msg.info("%s: uid=%d from=<%s> orig_id=%s"
                     % (info.id, info.st.st_uid, sender, os.path.basename(info.path)))
        else:
            msg.info("%s: uid=%d from=<%s>" % (info.id, info.st.st_uid, sender))
        client.put(record.MESG, b"")
        client.put(record.NORM, "Received: by %s (%s, from userid %d)"
                   % (config.get("myhostname"), config.get("mail_name"), info.st.st_uid))
        client.put(record.NORM, "\tid %s; %s" % (info.id, mail_date(info.mtime)))
        status = self.copy_segment(reader, client, info, record.CONTENT_TYPES)
        if status:
            return status
        client.put(record.XTRA, b"")
        status = self.copy_segment(reader, client, info, record.EXTRACT_TYPES)
        if status:
            return status
        client.put(record.END, b"")
        status, reason = client.finish()
        if status:
            return self.service_error(info, status, reason)
        return REMOVE_MESSAGE_FILE


def main(argv):
    pickup = Pickup()
    trigger_server_main(argv, pickup.service, solitary=True, post_init=pickup.post_init)

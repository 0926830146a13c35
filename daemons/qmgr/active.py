"""The active queue: bringing messages in and deciding their fate when every recipient
was tried (Postfix's qmgr_active.c and qmgr_move.c).

feed() moves a file from incoming/ or deferred/ into active/ (a deferred file whose
mtime, its next retry time, is still in the future is skipped, unless the scan is a
`postqueue -f` flush) and reads it; a file that cannot be read goes to corrupt/. When
the last entry of a message is done, done() runs Postfix's chain:

  1. a non-empty bounce log: ask the bounce service to return it to the sender;
  2. the message must be tried again (some recipient deferred) and has been queued
     longer than maximal_queue_lifetime (bounce_queue_lifetime for a null sender):
     `QUEUEID: from=<...>, status=expired, returned to sender`, and the defer service
     returns it; or its delay_warning_time has come: a delay warning, and the `W`
     record is rewritten in place so that there is only one;
  3. still to be tried again: back to deferred/ with its mtime set to the next retry,
     now + its age clamped to [minimal_backoff_time, maximal_backoff_time]; otherwise
     removed (`QUEUEID: removed`).

Recovery at start (qmgr_move()): whatever is in active/ belongs to a qmgr that died;
it goes back to incoming/ with its times set to now.
"""

import os
import stat
import time

from pyfix.common import msg
from pyfix.common.info_log_addr_form import info_log_addr_form
from pyfix.queue import delivery_status as status
from pyfix.queue.deliver_request import DEL_REQ_FLAG_REC_DLY_SENT, DEL_REQ_FLAG_RECORD, \
    DEL_REQ_FLAG_USR_VRFY
from pyfix.queue.mail_queue import ACTIVE, BOUNCE, DEFERRED, INCOMING, MODE_EXPIRED, \
    MODE_THROTTLE_HINT, queue_id_ok
from pyfix.queue.scan import OPEN_NO, mail_open_ok, save_corrupt, scan_queue

from pyfix.daemons.qmgr.message import LOCKED, QMGR_FLUSH_DFXP, QMGR_FLUSH_EACH, \
    QMGR_FORCE_EXPIRE, READ_FLAG_NOTIFY_SUCCESS, message_alloc

QMGR_SCAN_ALL = 1 << 1


class Active:
    def __init__(self, qmgr):
        self.qmgr = qmgr
        self.layout = qmgr.layout
        self.message_count = 0

    # -- bringing a message in (qmgr_active_feed()) ----------------------------------------

    def feed(self, queue_name, scan_flags, queue_id):
        """1 when a message was taken in, else 0."""
        ok, st, path = mail_open_ok(self.layout, queue_name, queue_id)
        if ok == OPEN_NO:
            return 0
        if not scan_flags & QMGR_SCAN_ALL and st.st_mtime > time.time() + 1:
            if msg.verbose:
                msg.info("qmgr_active_feed: skip %s (%d seconds)"
                         % (queue_id, st.st_mtime - time.time()))
            return 0
        try:
            self.layout.rename(queue_id, queue_name, ACTIVE)
        except FileNotFoundError as exc:
            msg.warn("qmgr_active_feed: %s: rename from %s to %s: %s"
                     % (queue_id, queue_name, ACTIVE, msg.strerror(exc)))
            return 0
        except OSError as exc:
            msg.fatal("qmgr_active_feed: %s: rename from %s to %s: %s"
                      % (queue_id, queue_name, ACTIVE, msg.strerror(exc)))
        mode = st.st_mode
        qflags = scan_flags
        new_mode = 0
        if mode & MODE_THROTTLE_HINT:
            qflags |= QMGR_FLUSH_EACH | QMGR_FLUSH_DFXP
            new_mode = stat.S_IMODE(mode) & ~MODE_THROTTLE_HINT
        if mode & MODE_EXPIRED:
            qflags |= QMGR_FORCE_EXPIRE
        message = message_alloc(self.qmgr, ACTIVE, queue_id, qflags, new_mode)
        if message is None:
            save_corrupt(self.layout, queue_id)
            return 0
        if message is LOCKED:
            self.defer(ACTIVE, queue_id, INCOMING, 60)
            return 0
        self.message_count += 1
        if message.refcount == 0:
            self.done(message)
        return 1

    def defer(self, queue_name, queue_id, dest_queue, delay):
        """Move a message to another queue, not to be looked at for `delay` seconds
        (qmgr_active_defer()): the mtime is the time of the next attempt."""
        if msg.verbose:
            msg.info("wakeup %s after %d secs" % (queue_id, delay))
        when = time.time() + delay
        path = self.layout.path(queue_name, queue_id)
        try:
            os.utime(path, (when, when))
        except FileNotFoundError:
            pass
        except OSError as exc:
            msg.fatal("qmgr_active_defer: update %s time stamps: %s"
                      % (path, msg.strerror(exc)))
        try:
            self.layout.rename(queue_id, queue_name, dest_queue)
        except FileNotFoundError as exc:
            msg.warn("qmgr_active_defer: rename %s from %s to %s: %s"
                     % (queue_id, queue_name, dest_queue, msg.strerror(exc)))
        except OSError as exc:
            msg.fatal("qmgr_active_defer: rename %s from %s to %s: %s"
                      % (queue_id, queue_name, dest_queue, msg.strerror(exc)))

    # -- the end of a message (qmgr_active_done()) -----------------------------------------

    def done(self, message):
        path = self.layout.path(BOUNCE, message.queue_id)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            size = None
        if size == 0:
            os.unlink(path)
        elif size is not None:
            message.flags |= status.bounce_flush(status.BOUNCE_FLAG_KEEP, message)
        if message.flags:
            ok, _, _ = mail_open_ok(self.layout, ACTIVE, message.queue_id)
            if ok == OPEN_NO:
                save_corrupt(self.layout, message.queue_id)
                self.message_count -= 1
                return
        self._trace(message)
        self._expire_or_warn(message)
        self._finish(message)

    def _trace(self, message):
        """The delivery report of a traced message or of NOTIFY=SUCCESS recipients; a
        `sendmail -v` record is killed once its report went out."""
        if message.tflags & (DEL_REQ_FLAG_USR_VRFY | DEL_REQ_FLAG_RECORD
                             | DEL_REQ_FLAG_REC_DLY_SENT) \
                or message.rflags & READ_FLAG_NOTIFY_SUCCESS:
            result = status.trace_flush(message.tflags, message)
            if result == 0 and message.tflags_offset:
                message.kill_record(message.tflags_offset)
            message.flags |= result

    def _expire_or_warn(self, message):
        if not message.flags:
            return
        if message.qflags & QMGR_FORCE_EXPIRE:
            expire_status = "force-expired"
        elif time.time() >= message.create_time + (
                self.qmgr.max_queue_time if message.sender else self.qmgr.dsn_queue_time):
            expire_status = "expired"
        else:
            expire_status = None
        if expire_status:
            msg.info("%s: from=<%s>, status=%s, returned to sender"
                     % (message.queue_id, info_log_addr_form(message.sender), expire_status))
            message.flags = status.defer_flush(status.BOUNCE_FLAG_KEEP, message)
        elif message.warn_time > 0 and time.time() >= message.warn_time - 1:
            if msg.verbose:
                msg.info("qmgr_active_done_25_generic: sending defer warning for %s"
                         % message.queue_id)
            if status.defer_warn(status.BOUNCE_FLAG_KEEP, message) == 0:
                message.rewrite_record(message.warn_offset, b"W\x0f%15d" % -1)

    def _finish(self, message):
        if message.flags:
            if message.create_time > 0:
                delay = int(time.time()) - message.create_time
                delay = min(delay, self.qmgr.max_backoff)
                delay = max(delay, self.qmgr.min_backoff)
            else:
                delay = self.qmgr.min_backoff
            self.defer(message.queue_name, message.queue_id, DEFERRED, delay)
        else:
            try:
                self.layout.remove(message.queue_name, message.queue_id)
                msg.info("%s: removed" % message.queue_id)
            except FileNotFoundError as exc:
                msg.warn("qmgr_active_done_3_generic: remove %s from %s: %s"
                         % (message.queue_id, message.queue_name, msg.strerror(exc)))
            except OSError as exc:
                msg.fatal("qmgr_active_done_3_generic: remove %s from %s: %s"
                          % (message.queue_id, message.queue_name, msg.strerror(exc)))
        self.message_count -= 1

    # -- recovery (qmgr_move()) ------------------------------------------------------------

    def move_all(self, src_queue, dst_queue):
        """Move every message of src_queue to dst_queue, times set to now."""
        now = time.time()
        for queue_id in list(scan_queue(src_queue)):
            if not queue_id_ok(queue_id):
                continue
            path = self.layout.path(src_queue, queue_id)
            try:
                os.utime(path, (now, now))
            except FileNotFoundError:
                continue
            except OSError as exc:
                msg.fatal("qmgr_move: update %s time stamps: %s" % (path, msg.strerror(exc)))
            try:
                self.layout.rename(queue_id, src_queue, dst_queue)
            except FileNotFoundError:
                continue
            except OSError as exc:
                msg.fatal("qmgr_move: rename %s from %s to %s: %s"
                          % (queue_id, src_queue, dst_queue, msg.strerror(exc)))
            if msg.verbose:
                msg.info("qmgr_move: %s: moved from %s to %s" % (queue_id, src_queue,
                                                                  dst_queue))

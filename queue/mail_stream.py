"""A queue file being written, from creation to commit (Postfix's global/mail_stream.c,
the file flavour, and mail_trigger.c).

MailStream.create() makes an embryonic file (mode 0600) in a queue; the caller writes
records; finish() commits it and wakes the service that reads the queue:

    1. flush the application buffer (all records, and the rewritten `C` record, are now
       in the kernel);
    2. fchmod 0700 (owner rwx: "complete") plus any extra mode bits;
    3. fsync: data and the mode change reach the disk together;
    4. (once per process) compare the file's mtime with the clock;
    5. close;
    6. only then send `W` to the waiting service (public/qmgr for incoming).

The caller acknowledges the message only after finish() returned success, so a message
that was acknowledged is on disk and complete. A process killed before step 2 leaves a
0600 file that every reader (qmgr, showq, postsuper, pickup) skips; a system crash
between steps 2 and 3 can at worst leave a 0700 file whose tail is missing, and readers
reject such a file because it lacks the final `E` record (Postfix's own argument for
this order, which costs one fsync per message).
"""

import errno
import os
import stat
import time

from pyfix.common import msg, trigger
from pyfix.queue import mail_queue

TRIGGER_WAKEUP = b"W"

_clock_ok = False
_clock_warned = False


class MailStream:
    def __init__(self, layout, queue, klass, service, mode, stream, queue_id, ctime):
        self.layout = layout
        self.queue = queue
        self.klass = klass
        self.service = service
        self.mode = mode
        self.stream = stream
        self.id = queue_id
        self.ctime = ctime                  # (seconds, microseconds) of the queue ID
        self.path = layout.path(queue, queue_id)
        self.trigger_timeout = 10
        # VSTREAM's sticky write error: set by the writer when a record could not be
        # written (size limit, I/O error), cleared only by clear_error().
        self.error = False

    @classmethod
    def create(cls, layout, queue, klass, service, mode=0):
        """mail_stream_file(): a new embryonic file in queue."""
        stream, queue_id, ctime = layout.enter(queue, 0o600 | mode)
        if msg.verbose:
            msg.info("open %s" % layout.path(queue, queue_id))
        return cls(layout, queue, klass, service, mode, stream, queue_id, ctime)

    def move_to(self, new_queue):
        """mail_stream_ctl(QUEUE): rename the file into another queue before it is
        finished (cleanup's hold action); the trigger then goes nowhere."""
        if new_queue == self.queue:
            return
        new_path = self.layout.path(new_queue, self.id)
        try:
            try:
                os.rename(self.path, new_path)
            except FileNotFoundError:
                if not os.path.exists(self.path):
                    raise
                mail_queue.make_dirs(os.path.dirname(new_path))
                os.rename(self.path, new_path)
        except OSError as exc:
            msg.fatal("%s: move to %s queue failed: %s" % (self.id, new_queue,
                                                           msg.strerror(exc)))
        if msg.verbose:
            msg.info("%s: placed in %s queue" % (self.id, new_queue))
        self.queue = new_queue
        self.path = new_path
        self.klass = self.service = None

    def finish(self):
        """mail_stream_finish_file(): commit; returns a CLEANUP_STAT_* value."""
        from pyfix.queue.cleanup_user import STAT_OK, STAT_SIZE, STAT_WRITE
        global _clock_ok, _clock_warned
        status = STAT_OK
        check_clock = not _clock_ok and self.queue == mail_queue.INCOMING
        path_to_reset = None
        st = None
        try:
            self.stream.flush()
            fd = self.stream.fileno()
            os.fchmod(fd, mail_queue.MODE_COMPLETE | self.mode)
            os.fsync(fd)
            if check_clock:
                st = os.fstat(fd)
        except OSError as exc:
            status = STAT_SIZE if exc.errno == errno.EFBIG else STAT_WRITE
        if status == STAT_OK and check_clock:
            expect = int(time.time())
            mtime = int(st.st_mtime)
            if mtime > expect:
                path_to_reset = self.path
                if not _clock_warned:
                    msg.warn("file system clock is %d seconds ahead of local clock"
                             % (mtime - expect))
                    msg.warn("resetting file time stamps - this hurts performance")
                    _clock_warned = True
            else:
                if mtime < expect - 100:
                    msg.warn("file system clock is %d seconds behind local clock"
                             % (expect - mtime))
                _clock_ok = True
        try:
            self.stream.close()
        except OSError as exc:
            if status == STAT_OK:
                status = STAT_SIZE if exc.errno == errno.EFBIG else STAT_WRITE
        self.stream = None
        if path_to_reset is not None and status == STAT_OK:
            try:
                os.utime(path_to_reset, (expect, expect))
            except FileNotFoundError:
                pass
            except OSError as exc:
                msg.fatal("%s: update file time stamps: %s" % (self.id, msg.strerror(exc)))
        if status == STAT_OK and self.klass and self.service:
            mail_trigger(self.klass, self.service, TRIGGER_WAKEUP, self.trigger_timeout)
        return status

    def set_error(self):
        """Remember a failed write, as VSTREAM's error flag does."""
        self.error = True

    def clear_error(self):
        """vstream_clearerr()."""
        self.error = False

    def cleanup(self):
        """mail_stream_cleanup(): close without committing (the caller removes the file).
        Closing a stream that saw a write error fails in Postfix (vstream_fclose()
        reports the sticky error), hence the warning after an oversized message."""
        if self.stream is not None:
            failed = self.error
            try:
                self.stream.close()
            except OSError:
                failed = True
            if failed:
                msg.warn("mail_stream_cleanup: close error")
            self.stream = None


def mail_trigger(klass, service, data, timeout=10):
    """mail_trigger(): wake a service through its public or private endpoint; failures
    are warnings (the service finds the work at its next periodic wakeup)."""
    path = "%s/%s" % (klass, service)
    try:
        st = os.stat(path)
    except OSError as exc:
        msg.warn("unable to look up %s: %s" % (path, msg.strerror(exc)))
        return -1
    try:
        if stat.S_ISFIFO(st.st_mode):
            trigger.fifo_trigger(path, data, timeout)
        elif stat.S_ISSOCK(st.st_mode):
            trigger.unix_trigger(path, data, timeout)
        else:
            msg.warn("%s is not a socket or a fifo" % path)
            return -1
    except OSError:
        return -1
    return 0

"""Opening, controlling and finishing one message (Postfix's cleanup_api.c).

cleanup_open() creates the queue file in incoming/ (its name gives the queue ID) and
removes spurious defer/bounce/trace logs of a previous message with the same ID.
cleanup_control() takes the client's flags. cleanup_flush() decides the message's fate:
missing recipients or a missing `E` are errors; a discarded message counts as success;
the `C` record gets its real numbers; a client that asked for bounces gets rejected
mail bounced; a message to be held moves to hold/ first; then the file is committed
(flush, 0700, fsync, close, then the qmgr trigger — queue/mail_stream.py) or, after an
error or a discard, removed. The status it returns is what the client hears, after the
file is safe on disk.
"""

import os

from pyfix.common import msg
from pyfix.common.mail_flow import mail_flow_put
from pyfix.queue import cleanup_user as cu
from pyfix.queue import mail_queue
from pyfix.queue.mail_stream import MailStream

from pyfix.daemons.cleanup import bounce, envelope
from pyfix.daemons.cleanup.out import cleanup_final
from pyfix.daemons.cleanup.state import (FLAG_END_SEEN, SMTPUTF8_REQUESTED, CleanupState,
                                         open_paths)

LOG_QUEUES = (mail_queue.DEFER, mail_queue.BOUNCE, mail_queue.TRACE)


def cleanup_open(settings, src=None):
    state = CleanupState(settings, src)
    state.queue_name = mail_queue.INCOMING
    state.handle = MailStream.create(settings.layout, state.queue_name, "public",
                                     settings.queue_service)
    state.handle.trigger_timeout = settings.trigger_timeout
    state.dst = state.handle.stream
    state.path = state.handle.path
    open_paths["queue"] = state.path
    state.queue_id = state.handle.id
    state.action = envelope.cleanup_envelope
    if msg.verbose:
        msg.info("cleanup_open: open %s" % state.path)
    for queue in LOG_QUEUES:
        try:
            settings.layout.remove(queue, state.queue_id)
            msg.warn("%s: removed spurious %s log" % (queue, state.queue_id))
        except FileNotFoundError:
            pass
        except OSError as exc:
            msg.fatal("%s: remove %s log: %s" % (queue, state.queue_id, msg.strerror(exc)))
    return state


def cleanup_control(state, flags):
    if msg.verbose:
        msg.info("cleanup flags = %s" % cu.strflags(flags))
    state.flags = flags
    state.err_mask = cu.STAT_MASK_INCOMPLETE if flags & cu.FLAG_BOUNCE else ~0
    if flags & cu.FLAG_SMTPUTF8:
        state.smtputf8 = SMTPUTF8_REQUESTED


def _remove(path):
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def cleanup_flush(state):
    if state.out_ok():
        if state.recip is None:
            state.errs |= cu.STAT_RCPT
        if not state.flags & FLAG_END_SEEN:
            state.errs |= cu.STAT_BAD
    if state.flags & cu.FLAG_DISCARD:
        state.errs = 0
    if state.out_ok():
        cleanup_final(state)
    if state.errs and not state.errs & cu.STAT_MASK_CANT_BOUNCE \
            and state.sender is not None and state.flags & cu.FLAG_BOUNCE:
        bounce.cleanup_bounce(state)
    if state.errs == 0 and not state.flags & cu.FLAG_DISCARD:
        if state.flags & cu.FLAG_HOLD:
            state.queue_name = mail_queue.HOLD
            state.handle.move_to(mail_queue.HOLD)
            state.path = state.handle.path
            open_paths["queue"] = state.path
            mail_flow_put(1)
        state.errs = state.handle.finish()
    else:
        state.handle.cleanup()
    state.handle = None
    state.dst = None
    if state.errs or state.flags & cu.FLAG_DISCARD:
        if state.trace_path is not None:
            _remove(state.trace_path)
        try:
            os.unlink(state.path)
        except OSError as exc:
            msg.warn("remove %s: %s" % (state.path, msg.strerror(exc)))
    # From here on the message is the queue manager's: never remove it on error.
    open_paths["queue"] = open_paths["trace"] = None
    if msg.verbose:
        msg.info("cleanup_flush: status %d" % state.errs)
    return state.errs


def cleanup_all():
    """Remove an open incomplete queue file (and trace log): fatal error or SIGTERM."""
    for key in ("trace", "queue"):
        path = open_paths[key]
        open_paths[key] = None
        if path:
            _remove(path)

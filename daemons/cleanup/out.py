"""Writing records to the queue file (Postfix's cleanup_out.c and cleanup_final.c).

Every record cleanup writes goes through cleanup_out(): nothing is written after a fatal
error or once the message is being discarded; message text longer than
line_length_limit is cut into `L` records with the last piece an `N`; a record that
would make the file larger than message_size_limit is not written and the message gets
CLEANUP_STAT_SIZE (Postfix enforces the limit as a file size resource limit; pyfix
counts the bytes itself, with the same effect); a write error is CLEANUP_STAT_WRITE.
"""

import errno

from pyfix.common import msg
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record

from pyfix.daemons.cleanup.state import SMTPUTF8_HEADER, SMTPUTF8_REQUESTED

TEXT_TYPES = (record.NORM, record.CONT)


def _bytes(text):
    if isinstance(text, str):
        return text.encode("utf-8", "surrogateescape")
    return bytes(text)


def _write(state, data):
    """One encoded record into the file, within the size limit; False on error."""
    limit = state.settings.message_limit
    if limit > 0 and state.offset + len(data) > limit:
        msg.warn("%s: queue file size limit exceeded" % state.queue_id)
        state.errs |= cu.STAT_SIZE
        state.handle.set_error()
        return False
    try:
        state.dst.write(data)
    except OSError as exc:
        return write_error(state, exc)
    state.offset += len(data)
    return True


def write_error(state, exc):
    state.handle.set_error()
    if exc.errno == errno.EFBIG:
        msg.warn("%s: queue file size limit exceeded" % state.queue_id)
        state.errs |= cu.STAT_SIZE
    else:
        msg.warn("%s: write queue file: %s" % (state.queue_id, msg.strerror(exc)))
        state.errs |= cu.STAT_WRITE
    return False


def cleanup_out(state, rec_type, payload):
    """Write one record (several for long text), unless the message is already lost."""
    if not state.out_ok():
        return
    payload = _bytes(payload)
    limit = state.settings.line_limit
    if msg.verbose and rec_type not in TEXT_TYPES:
        msg.info("cleanup_out: %s %s" % (rec_type.decode(), payload.decode("utf-8", "replace")))
    if rec_type in TEXT_TYPES:
        while len(payload) > limit:
            if not _write(state, record.encode(record.CONT, payload[:limit])):
                return
            payload = payload[limit:]
    _write(state, record.encode(rec_type, payload))


def out_string(state, rec_type, text):
    cleanup_out(state, rec_type, text)


def out_raw(state, data):
    """A pre-encoded record (padding), under the same rules."""
    if state.out_ok():
        _write(state, data)


def tell(state):
    return state.offset


def out_header(state, header):
    """cleanup_out_header(): a (possibly multi-line) header as records. Lines after the
    first that do not start with white space get a tab (they came out of the address
    rewriting), and a header longer than header_size_limit is cut: at a line boundary
    when that loses at most 10%, else in the middle of a line."""
    settings = state.settings
    if settings.smtputf8_enable and header and not header.isascii():
        state.smtputf8 |= SMTPUTF8_HEADER
        if state.flags & cu.FLAG_AUTOUTF8:
            state.smtputf8 |= SMTPUTF8_REQUESTED
    data = _bytes(header)
    limit = settings.header_limit
    pos = 0
    first = True
    while pos is not None:
        newline = data.find(b"\n", pos)
        line_end = newline if newline >= 0 else len(data)
        next_pos = newline + 1 if newline >= 0 else None
        if line_end > limit:
            if pos > 0.9 * limit:
                break
            line_end = limit
            next_pos = None
        line = data[pos:line_end]
        if first:
            cleanup_out(state, record.NORM, line)
            first = False
        elif line[:1] in (b" ", b"\t"):
            cleanup_out(state, record.NORM, line)
        else:
            cleanup_out(state, record.NORM, b"\t" + line)
        pos = next_pos


def cleanup_final(state):
    """Rewrite the `C` record at the start of the file with the real numbers."""
    try:
        state.dst.flush()
    except OSError as exc:
        write_error(state, exc)
        return
    try:
        state.dst.seek(0)
    except OSError as exc:
        msg.fatal("cleanup_final: vstream_fseek %s: %s" % (state.path, msg.strerror(exc)))
    saved = state.offset
    state.offset = 0
    cleanup_out(state, record.SIZE, size_record(
        state.xtra_offset - state.data_offset, state.data_offset, state.rcpt_count,
        state.qmgr_opts, state.cont_length, state.smtputf8))
    state.offset = max(saved, state.offset)


def size_record(content_size, data_offset, rcpt_count, qmgr_opts, cont_length, smtputf8):
    return record.SIZE_FORMAT % (content_size, data_offset, rcpt_count, qmgr_opts,
                                 cont_length, smtputf8)

"""The message content segment: from `M` up to `X` (Postfix's cleanup_message.c, the
content part; the header callbacks are in header.py).

cleanup writes the `M` record, remembers where the content starts, and feeds each `N`/`L`
record through the MIME parser: headers go to header.py, body lines to body_checks and
out. Stray CR and LF characters become spaces (cleanup_replace_stray_cr_lf);
message_reject_characters reject the message and message_strip_characters are removed
(with header/body checks on). `X` ends the content: the content length is known, MIME
errors become the rejection reason, and control passes to the extracted segment.
"""

from pyfix.common import mime_state as mime
from pyfix.common import msg
from pyfix.common.dsn_util import dsn_prepend
from pyfix.common.info_log_addr_form import info_log_addr_form
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record

from pyfix.daemons.cleanup import act as actions
from pyfix.daemons.cleanup import extracted, header
from pyfix.daemons.cleanup.out import cleanup_out

_REC_INT = {record.NORM: mime.REC_TYPE_NORM, record.CONT: mime.REC_TYPE_CONT}
_REC_BYTES = {mime.REC_TYPE_NORM: record.NORM, mime.REC_TYPE_CONT: record.CONT}
_CR_LF = bytes.maketrans(b"\r\n", b"  ")


def body_callback(state, rec_type, text, offset):
    """cleanup_body_callback(): one body record, through body_checks."""
    if not state.out_ok():
        return
    settings = state.settings
    out_type = _REC_BYTES.get(rec_type, record.NORM)
    checks = settings.body_checks
    if state.flags & cu.FLAG_FILTER and checks is not None \
            and (settings.body_check_len == 0 or offset < settings.body_check_len):
        value = checks.find(text)
        if value is not None:
            result = actions.act(state, actions.CTXT_BODY, text, value, "body_checks")
            if result is actions.DROP:
                return
            if result is not text:
                cleanup_out(state, out_type, str(result))
                return
        elif checks.error:
            msg.warn("%s: %s map lookup problem -- message not accepted, try again later"
                     % (state.queue_id, checks.title))
            state.errs |= cu.STAT_WRITE
    cleanup_out(state, out_type, text)


def mime_error_callback(state, err_code, text):
    """A MIME error (other than a long header) is logged as a rejection."""
    if err_code & ~mime.ERR_TRUNC_HEADER:
        origin = state.attr.get("log_message_origin", "unknown")
        msg.info("%s: reject: mime-error %s: %.100s from %s; from=<%s> to=<%s>"
                 % (state.queue_id, mime.error_text(err_code), text, origin,
                    info_log_addr_form(state.sender or ""),
                    info_log_addr_form(state.recip or "unknown")))


def _mime_options(state):
    settings = state.settings
    if settings.disable_mime_input:
        return mime.OPT_DISABLE_MIME
    options = 0
    if state.flags & cu.FLAG_FILTER:
        if settings.strict_8bitmime or settings.strict_7bit_hdrs:
            options |= mime.OPT_REPORT_8BIT_IN_HEADER
        if settings.strict_8bitmime or settings.strict_8bit_body:
            options |= mime.OPT_REPORT_8BIT_IN_7BIT_BODY
        if settings.strict_encoding:
            options |= mime.OPT_REPORT_ENCODING_DOMAIN
        if settings.strict_8bitmime or settings.strict_7bit_hdrs \
                or settings.strict_8bit_body or settings.strict_encoding \
                or settings.header_checks_text or settings.mimehdr_checks_text \
                or settings.nesthdr_checks_text:
            options |= mime.OPT_REPORT_NESTING
    return options


def cleanup_message(state, rec_type, payload):
    """The first content record: write `M`, set up the MIME parser, go on."""
    cleanup_out(state, record.MESG, b"")
    state.data_offset = state.offset
    settings = state.settings
    state.mime_state = mime.MimeState(
        _mime_options(state),
        head_out=lambda cls, info, text, off: header.header_callback(state, cls, info,
                                                                     text, off),
        head_end=lambda: header.header_done_callback(state),
        body_out=lambda kind, text, off: body_callback(state, kind, text, off),
        err_print=lambda code, text: mime_error_callback(state, code, text),
        header_limit=settings.header_limit, max_depth=settings.mime_nesting_limit,
        bound_len=settings.mime_bound_len)
    state.action = headerbody
    headerbody(state, rec_type, payload)


def headerbody(state, rec_type, payload):
    """cleanup_message_headerbody(): one content record."""
    settings = state.settings
    if settings.mask_stray_cr_lf:
        payload = payload.translate(_CR_LF)
    if state.flags & cu.FLAG_FILTER and settings.reject_chars:
        if any(byte in settings.reject_chars for byte in payload):
            actions.act(state, actions.CTXT_ANY, payload.decode("utf-8", "surrogateescape"),
                        "REJECT disallowed character", "character reject")
            return
    if state.flags & cu.FLAG_FILTER and settings.strip_chars:
        payload = bytes(byte for byte in payload if byte not in settings.strip_chars)
    if rec_type in (record.NORM, record.CONT):
        state.mime_errs = state.mime_state.update(
            _REC_INT[rec_type], payload.decode("utf-8", "surrogateescape"))
    elif rec_type == record.XTRA:
        state.mime_errs = state.mime_state.update(mime.REC_TYPE_END, "")
        state.mime_errs &= ~mime.ERR_TRUNC_HEADER
        if state.mime_errs and state.reason is None:
            state.errs |= cu.STAT_CONT
            status, text = mime.error_detail(state.mime_errs)
            state.reason = dsn_prepend(status, text)
        state.mime_state = None
        state.xtra_offset = state.offset
        state.cont_length = state.xtra_offset - state.data_offset
        state.action = extracted.cleanup_extracted
    else:
        msg.warn("%s: message rejected: unexpected record type %d in message content"
                 % ("cleanup_message_headerbody", rec_type[0]))
        state.errs |= cu.STAT_BAD

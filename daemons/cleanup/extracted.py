"""The extracted segment: from `X` to `E` (Postfix's cleanup_extracted.c).

Recipients that the client found in the message (`sendmail -t`) arrive here and get the
same treatment as envelope recipients. Before the first of them cleanup writes what the
content checks decided: the FILTER transport (`L`), the REDIRECT target (`>`) and
`A encoding=8bit` when a Content-Transfer-Encoding header said so. At `E` the automatic
always_bcc recipient and the BCC recipients of header/body checks are added, and the
`E` record ends the file.
"""

from pyfix.common import msg
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record

from pyfix.daemons.cleanup import addr
from pyfix.daemons.cleanup import envelope as env
from pyfix.daemons.cleanup.out import cleanup_out
from pyfix.daemons.cleanup.state import FLAG_END_SEEN, FLAG_INRCPT, type_in


def cleanup_extracted(state, rec_type, payload):
    cleanup_out(state, record.XTRA, b"")
    state.action = process
    process(state, rec_type, payload)


def process(state, rec_type, payload):
    if msg.verbose:
        msg.info("extracted envelope %s %s" % (rec_type.decode("latin-1"), env.text(payload)))
    if rec_type == record.FLGS:
        env.extra_flags(state, payload)
        return
    if not type_in(record.EXTRACT_TYPES, rec_type):
        env.reject(state, "unexpected record type %d in extracted envelope" % rec_type[0])
        return
    mapped = env.text(payload)
    if rec_type == record.ATTR:
        parts = env.split_attribute(state, payload)
        if parts is None:
            return
        name, value, junk = parts
        if junk is not None:
            rec_type, mapped = junk, value
            payload = value.encode("utf-8", "surrogateescape")
    if not state.flags & FLAG_INRCPT and type_in(record.EXT_RECIPIENT_TYPES, rec_type):
        if state.filter is not None:
            cleanup_out(state, record.FILT, state.filter)
        if state.redirect is not None:
            cleanup_out(state, record.RDR, state.redirect)
        encoding = state.attr.get("encoding")
        if encoding is not None:
            cleanup_out(state, record.ATTR, "%s=%s" % ("encoding", encoding))
        state.flags |= FLAG_INRCPT
    if env.recipient_records(state, rec_type, rec_type, payload, mapped):
        return
    if rec_type == record.END:
        state.flags &= ~FLAG_INRCPT
        state.flags |= FLAG_END_SEEN
        finish(state)
        return
    if state.flags & FLAG_INRCPT:
        state.qmgr_opts |= env.QMGR_READ_FLAG_MIXED_RCPT_OTHER
    cleanup_out(state, rec_type, payload)


def finish(state):
    """cleanup_extracted_finish(): automatic BCC recipients, then `E`."""
    settings = state.settings
    if state.flags & cu.FLAG_BCC_OK and state.recip is not None and settings.always_bcc:
        addr.cleanup_addr_bcc(state, settings.always_bcc)
    if state.hbc_rcpt:
        if state.out_ok() and state.recip is not None:
            for bcc in state.hbc_rcpt:
                addr.cleanup_addr_bcc(state, bcc)
        state.hbc_rcpt = None
    cleanup_out(state, record.END, b"")

"""Delivered-To: loop detection (Postfix's global/delivered_hdr.c).

delivered_hdr_init() collects the addresses of the Delivered-To: headers at the top of
a queued message (at most 1000; the scan stops at the first line that is neither a
header nor a continuation), case-folded; delivered_hdr_find() says whether a recipient,
quoted as mail_copy() writes it, is among them: a message that already went through
this delivery is bounced with `mail forwarding loop for <recipient>`.
"""

from pyfix.common import msg
from pyfix.common.fold_addr import FOLD_ADDR_ALL, fold_addr
from pyfix.common.header_opts import HDR_DELIVERED_TO, header_opts_find
from pyfix.common.mime_state import is_header
from pyfix.common.quote_822 import quote_822_local
from pyfix.queue import record

DELIVERED_HDR_LIMIT = 1000
_SPACE = " \t\r\n\v\f"


class DeliveredHdrInfo:
    def __init__(self, flags):
        self.flags = flags
        self.table = set()


def delivered_hdr_init(fp, offset, flags=FOLD_ADDR_ALL):
    """The Delivered-To: addresses of the message whose content starts at offset."""
    info = DeliveredHdrInfo(flags)
    try:
        fp.seek(offset)
    except OSError as exc:
        msg.fatal("seek queue file %s: %s" % (getattr(fp, "qpath", fp.name),
                                              msg.strerror(exc)))
    reader = record.RecordReader(fp, getattr(fp, "qpath", None))
    prev_type = record.NORM
    while len(info.table) < DELIVERED_HDR_LIMIT:
        rec_type, payload = reader.get()
        if rec_type not in (record.NORM, record.CONT):
            break
        continued, prev_type = prev_type == record.CONT, rec_type
        if continued:
            continue
        text = payload.decode("utf-8", "surrogateescape")
        if is_header(text):
            opts = header_opts_find(text)
            if opts is not None and opts.type == HDR_DELIVERED_TO:
                value = text[text.index(":") + 1:].lstrip(_SPACE)
                info.table.add(fold_addr(value, flags))
        elif text[:1] in (" ", "\t", "\r", "\n", "\v", "\f") and text:
            continue
        else:
            break
    return info


def delivered_hdr_find(info, address):
    """Whether address (internal form) is among the Delivered-To: addresses."""
    return fold_addr(quote_822_local(address), info.flags) in info.table

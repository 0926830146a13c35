"""Message headers: checks, address rewriting, and the headers cleanup adds (the header
callbacks of Postfix's cleanup_message.c).

For each logical header the MIME parser hands out: header_checks (primary headers),
mime_header_checks (MIME headers, and Content-* headers anywhere) or
nested_header_checks (headers of attached messages) may act on it; Received: headers are
counted against hopcount_limit; the primary headers are logged (message-id=...),
rewritten (sender and recipient address headers, when the rewrite context allows:
canonical maps by class, masquerading) or dropped (message_drop_headers). At the end of
the primary headers the missing Message-Id:, Date: and From: (or their Resent-
versions, when the message has Resent- headers) are added for local submissions or with
always_add_missing_headers, plus undisclosed_recipients_header when there is no To:/Cc:.
"""

import time

from pyfix.common import msg, tok822
from pyfix.common import header_opts as ho
from pyfix.common import mime_state as mime
from pyfix.common.mail_date import mail_date
from pyfix.common.mime_state import is_header
from pyfix.common.quote_822 import quote_822_local
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record

from pyfix.daemons.cleanup import act as actions
from pyfix.daemons.cleanup import init
from pyfix.daemons.cleanup.map11 import map11_tree
from pyfix.daemons.cleanup.masquerade import masquerade_tree
from pyfix.daemons.cleanup.out import cleanup_out, out_header
from pyfix.daemons.cleanup.rewrite import rewrite_tree

ENCODING_8BIT = {"7bit": "7bit", "8bit": "8bit", "binary": "8bit",
                 "quoted-printable": "7bit", "base64": "7bit"}
LEX_822_SPECIALS = '()<>@,;:\\".[]'
VISIBLE_RCPT = (1 << ho.HDR_TO) | (1 << ho.HDR_RESENT_TO) | (1 << ho.HDR_CC) \
    | (1 << ho.HDR_RESENT_CC)


def fold_header(state, header):
    """cleanup_fold_header(): one rewritten address per line becomes as many addresses
    per line as fit in about 70 columns."""
    chars = list(header)
    start_line = 0
    pos = 0
    first = True
    while pos is not None:
        newline = header.find("\n", pos)
        end_line = newline if newline >= 0 else len(header)
        if not first:
            if end_line - start_line < 70:
                chars[pos - 1] = " "
            else:
                start_line = pos
        first = False
        pos = newline + 1 if newline >= 0 else None
    out_header(state, "".join(chars))


def _rewrite_addresses(state, opts, header, sender):
    settings = state.settings
    tree = tok822.parse(header[len(opts.name) + 1:], settings.token_limit)
    propagate = settings.ext_prop_mask & init.EXT_PROP_CANONICAL
    if sender:
        own_maps, own_flags = settings.send_canon_maps, settings.send_canon_flags
        canon_class, masq_class = init.CANON_FLAG_HDR_FROM, init.MASQ_FLAG_HDR_FROM
    else:
        own_maps, own_flags = settings.rcpt_canon_maps, settings.rcpt_canon_flags
        canon_class, masq_class = init.CANON_FLAG_HDR_RCPT, init.MASQ_FLAG_HDR_RCPT
    changed = False
    for node in tok822.grep(tree, tok822.ADDR):
        changed |= rewrite_tree(state, state.hdr_rewrite_context, node)
        if state.flags & cu.FLAG_MAP_OK:
            if own_maps is not None and own_flags & canon_class:
                changed |= map11_tree(state, node, own_maps, propagate)
            if settings.comm_canon_maps is not None \
                    and settings.comm_canon_flags & canon_class:
                changed |= map11_tree(state, node, settings.comm_canon_maps, propagate)
            if settings.masq_domains is not None and settings.masq_flags & masq_class:
                changed |= masquerade_tree(state, node, settings.masq_domains)
    if changed:
        header = header[:len(opts.name)] + ": " + tok822.externalize_tree(tree,
                                                                           tok822.STR_HEAD)
    if not opts.flags & ho.HDR_OPT_DROP:
        if changed:
            fold_header(state, header)
        else:
            out_header(state, header)


def _checks_for(state, header_class):
    settings = state.settings
    if header_class == mime.HDR_PRIMARY:
        return settings.header_checks, "header_checks"
    if header_class == mime.HDR_MULTIPART:
        return settings.mimehdr_checks, "mime_header_checks"
    if header_class == mime.HDR_NESTED:
        return settings.nesthdr_checks, "nested_header_checks"
    return None, None


def header_callback(state, header_class, opts, header, offset):
    """cleanup_header_callback(): one complete header."""
    if msg.verbose:
        msg.info("cleanup_header_callback: '%.200s'" % header)
    if opts is not None and opts.flags & ho.HDR_OPT_MIME:
        header_class = mime.HDR_MULTIPART
    if opts is not None and opts.type == ho.HDR_RECEIVED:
        state.hop_count += 1
    if state.flags & cu.FLAG_FILTER:
        checks, map_class = _checks_for(state, header_class)
        if checks is not None:
            value = checks.find(header)
            if value is not None:
                result = actions.act(state, actions.CTXT_HEADER, header, value, map_class)
                if result is actions.DROP:
                    return
                if result is not header:
                    header = str(result)
                    opts = ho.header_opts_find(header)
            elif checks.error:
                msg.warn("%s: %s map lookup problem -- message not accepted, "
                         "try again later" % (state.queue_id, checks.title))
                state.errs |= cu.STAT_WRITE
    if opts is None:
        out_header(state, header)
        return
    value = header[len(opts.name) + 1:].lstrip(" \t\n\v\f\r")
    if state.settings.auto_8bit_enc_hdr and opts.type == ho.HDR_CONTENT_TRANSFER_ENCODING:
        encoding = ENCODING_8BIT.get(value.lower())
        if encoding == "8bit":
            state.attr["encoding"] = encoding
    if header_class != mime.HDR_PRIMARY:
        out_header(state, header)
        return
    state.headers_seen |= 1 << opts.type
    if opts.type == ho.HDR_MESSAGE_ID:
        msg.info("%s: message-id=%s" % (state.queue_id, value))
    if opts.type == ho.HDR_RESENT_MESSAGE_ID:
        msg.info("%s: resent-message-id=%s" % (state.queue_id, value))
    if opts.type == ho.HDR_RECEIVED:
        if state.hop_count >= state.settings.hopcount_limit:
            msg.warn("%s: message rejected: hopcount exceeded" % state.queue_id)
            state.errs |= cu.STAT_HOPS
        if state.hop_count == 1:
            state.auto_hdrs.append(header)
    if state.out_ok():
        if opts.flags & ho.HDR_OPT_RR:
            state.resent = "Resent-"
        if opts.flags & ho.HDR_OPT_SENDER and state.hdr_rewrite_context:
            _rewrite_addresses(state, opts, header, True)
        elif opts.flags & ho.HDR_OPT_RECIP and state.hdr_rewrite_context:
            _rewrite_addresses(state, opts, header, False)
        elif not opts.flags & ho.HDR_OPT_DROP:
            out_header(state, header)


def _want(state, kind, resent_kind):
    settings = state.settings
    return (state.hdr_rewrite_context or settings.always_add_hdrs) \
        and not state.headers_seen & (1 << (resent_kind if state.resent else kind))


def _from_header(state):
    settings = state.settings
    address = quote_822_local(state.sender or "MAILER-DAEMON")
    if state.sender and state.fullname:
        fullname = state.fullname.replace("\r", " ").replace("\n", " ")
        if settings.hfrom_format == init.HFROM_FORMAT_STD:
            text = "%sFrom: " % state.resent
            if not any(ch in "%!" + LEX_822_SPECIALS for ch in fullname):
                head, _ = tok822.scan_linked(fullname, settings.token_limit)
            else:
                head = tok822.Token(tok822.QSTRING, fullname)
            if head is not None:
                text += tok822.externalize_tree(head) + " "
            return text + "<%s>" % address
        comment = tok822.parse("(%s)" % fullname)
        return "%sFrom: %s %s" % (state.resent, address, tok822.externalize_tree(comment))
    return "%sFrom: %s" % (state.resent, address)


def header_done_callback(state):
    """cleanup_header_done_callback(): add the missing headers."""
    if not state.out_ok():
        return
    settings = state.settings
    if state.hop_count < 1:
        msg.warn("%s: message rejected: no Received: header" % state.queue_id)
        state.errs |= cu.STAT_BAD
        return
    if _want(state, ho.HDR_MESSAGE_ID, ho.HDR_RESENT_MESSAGE_ID):
        if settings.long_queue_ids:
            message_id = "%s@%s" % (state.queue_id, settings.myhostname)
        else:
            stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(state.handle.ctime[0]))
            message_id = "%s.%s@%s" % (stamp, state.queue_id, settings.myhostname)
        cleanup_out(state, record.NORM, "%sMessage-Id: <%s>" % (state.resent, message_id))
        msg.info("%s: %smessage-id=<%s>" % (state.queue_id,
                                             "resent-" if state.resent else "", message_id))
        state.headers_seen |= 1 << (ho.HDR_RESENT_MESSAGE_ID if state.resent
                                    else ho.HDR_MESSAGE_ID)
    if not state.headers_seen & (1 << ho.HDR_MESSAGE_ID):
        msg.info("%s: message-id=<>" % state.queue_id)
    if _want(state, ho.HDR_DATE, ho.HDR_RESENT_DATE):
        cleanup_out(state, record.NORM, "%sDate: %s" % (state.resent,
                                                         mail_date(state.arrival_time[0])))
    if _want(state, ho.HDR_FROM, ho.HDR_RESENT_FROM):
        cleanup_out(state, record.NORM, _from_header(state))
    witheld = settings.rcpt_witheld
    if (state.hdr_rewrite_context or settings.always_add_hdrs) \
            and not state.headers_seen & VISIBLE_RCPT and witheld:
        if not is_header(witheld):
            msg.warn('bad %s header text "%s" -- need "headername: headervalue"'
                     % ("undisclosed_recipients_header", witheld))
        else:
            cleanup_out(state, record.NORM, witheld)

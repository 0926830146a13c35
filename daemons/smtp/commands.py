"""The command lines of a mail transaction (Postfix's smtp_proto.c, the SMTP_STATE_*
cases of smtp_loop() that build commands, and smtp_out_add_headers()): MAIL FROM with
SIZE, BODY, ENVID, RET and SMTPUTF8; RCPT TO with ORCPT and NOTIFY; the XFORWARD
commands; the headers that master.cf flags=DOR prepend.
"""

from pyfix.common import msg
from pyfix.common.dsn_mask import dsn_notify_str, dsn_ret_str
from pyfix.common.quote_822 import (QUOTE_FLAG_8BITCLEAN, QUOTE_FLAG_EXPOSE_AT,
                                    quote_822_local)
from pyfix.common.xtext import xtext_quote

SMTPUTF8_FLAG_REQUESTED = 1 << 0
ENC_8BIT = "8bit"               # MAIL_ATTR_ENC_8BIT
ENC_7BIT = "7bit"


def quote_821(params, address):
    if address and params.get_bool("quote_rfc821_envelope"):
        return quote_822_local(address, QUOTE_FLAG_8BITCLEAN | QUOTE_FLAG_EXPOSE_AT)
    return address


def mime_downgrade(params, session, request):
    """SMTP_MIME_DOWNGRADE(): Postfix would convert 8-bit content for this server."""
    return not params.config.get_bool("disable_mime_output_conversion") \
        and "8BITMIME" not in session.features \
        and request.values.get("encoding", "") != ENC_7BIT


def mail_command(state, session):
    params = state.params
    request = state.request
    values = request.values
    line = "MAIL FROM:<%s>" % quote_821(params, request.sender)
    if "SIZE" in session.features and not mime_downgrade(params, session, request):
        line += " SIZE=%d" % request.data_size
    if "8BITMIME" in session.features:
        encoding = values.get("encoding", "")
        if encoding == ENC_8BIT:
            line += " BODY=8BITMIME"
        elif encoding == ENC_7BIT:
            line += " BODY=7BIT"
        elif encoding:
            msg.warn("%s: unknown content encoding: %s" % (request.queue_id, encoding))
    if "DSN" in session.features:
        if values.get("envelope_id"):
            line += " ENVID=" + xtext_quote(values["envelope_id"], "+=")
        if values.get("ret_flags"):
            line += " RET=" + dsn_ret_str(values["ret_flags"])
    if "SMTPUTF8" in session.features and values.get("smtputf8", 0) & SMTPUTF8_FLAG_REQUESTED:
        line += " SMTPUTF8"
    return line


def rcpt_command(state, session, rcpt):
    line = "RCPT TO:<%s>" % quote_821(state.params, rcpt.address)
    if "DSN" in session.features:
        orcpt = rcpt.dsn_orcpt
        if not orcpt and rcpt.orig_addr:
            local = quote_822_local(rcpt.orig_addr)
            utf8 = state.request.values.get("smtputf8", 0) and not local.isascii()
            orcpt = "%s;%s" % ("utf-8" if utf8 else "rfc822", local)
        if orcpt:
            if orcpt[:6].lower() == "utf-8;":
                line += " ORCPT=" + orcpt        # uxtext: UTF-8 stays as it is
            else:
                line += " ORCPT=" + xtext_quote(orcpt, "=")
        if rcpt.dsn_notify:
            line += " NOTIFY=" + dsn_notify_str(rcpt.dsn_notify)
    return line


def _known(value):
    """CAN_FORWARD_CLIENT_NAME() and friends: present and not "unknown"."""
    return bool(value) and value.lower() != "unknown"


XFORWARD_NAME_ADDR = (("NAME", "log_client_name", _known),
                      ("ADDR", "log_client_address", _known),
                      ("PORT", "log_client_port", _known))
XFORWARD_PROTO_HELO = (("PROTO", "log_protocol_name", _known),
                       ("HELO", "log_helo_name", bool),
                       ("IDENT", "log_ident", bool),
                       ("SOURCE", "rewrite_context", bool))


def xforward_steps(state, session):
    """The XFORWARD commands before MAIL (smtp_send_xforward_command = yes, and the
    server announced the attributes): the original client's name, address, port,
    then protocol, HELO name, queue ID and the local/remote source."""
    if not state.params.get_bool("send_xforward_command") \
            or "XFORWARD" not in session.features:
        return []
    offered = set(session.features["XFORWARD"].split())
    values = state.request.values
    steps = []
    for name, group in (("XFWD1", XFORWARD_NAME_ADDR), ("XFWD2", XFORWARD_PROTO_HELO)):
        line = "XFORWARD"
        for word, attribute, available in group:
            value = values.get(attribute, "") or ""
            if word in offered and available(value):
                if word == "SOURCE":
                    value = "LOCAL" if value == "local" else "REMOTE"
                line += " %s=%s" % (word, xtext_quote(value))
        if line != "XFORWARD":
            steps.append((name, line, None))
    return steps


def added_headers(state):
    """smtp_out_add_headers(): the headers that master.cf flags=R, O, D ask for, in
    mail_copy.c's order."""
    params = state.params
    request = state.request
    flags = state.cli_flags
    rcpt = request.rcpts[0]

    def quoted(address):
        if address and params.get_bool("quote_rfc821_envelope"):
            return quote_822_local(address)
        return address
    headers = []
    if "return_path" in flags:
        headers.append("Return-Path: <%s>" % quoted(request.sender))
    if "orig_rcpt" in flags:
        headers.append("X-Original-To: %s" % quoted(rcpt.orig_addr))
    if "delivered_to" in flags:
        headers.append("Delivered-To: %s" % quoted(rcpt.address))
    return headers

"""Actions of header_checks, mime_header_checks, nested_header_checks and body_checks
(the cleanup_act() part of Postfix's cleanup_message.c).

A table result is `ACTION optional text`. The actions, with the log line each writes
(`QUEUEID: <action>: <header|body> <content> from <origin>; from=<> to=<> proto=
helo=<>: <text>`):

  REJECT [text]    reject the message (5.7.1 by default; a 4.x.x text defers it)
  WARN, INFO       log only
  HOLD             put the message on hold
  DISCARD          accept and throw away
  FILTER t:d       route the message through content filter transport t, next hop d
  REDIRECT addr    deliver to addr instead of the recipients
  BCC addr         add a recipient
  PREPEND text     insert a header (header checks) or a line (body checks) before it
  REPLACE text     replace the header or line
  STRIP [text]     remove it, with a log line
  IGNORE           remove it silently
  PASS             stop header/body checks for this message
  DUNNO, OK        do nothing

act() returns the content to keep (the same object when unchanged), a replacement
string, or DROP.
"""

from pyfix.common import msg
from pyfix.common.dsn_util import dsn_prepend
from pyfix.common.info_log_addr_form import info_log_addr_form
from pyfix.common.mime_state import is_header
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record

from pyfix.daemons.cleanup.out import cleanup_out, out_header

DROP = None
CTXT_HEADER = "header"
CTXT_BODY = "body"
CTXT_ANY = "content"
ATTR_LOG_PROTO_NAME = "log_protocol_name"
ATTR_LOG_HELO_NAME = "log_helo_name"


def act_log(state, action, context, content, text):
    """cleanup_act_log(): the log line of an action, with the message's context."""
    origin = state.attr.get("log_message_origin", "unknown")
    line = "%s: %s: %s %.200s from %s;" % (state.queue_id, action, context, content, origin)
    if state.sender is not None:
        line += " from=<%s>" % info_log_addr_form(state.sender)
    if state.recip is not None:
        line += " to=<%s>" % info_log_addr_form(state.recip)
    proto = state.attr.get(ATTR_LOG_PROTO_NAME)
    if proto is not None:
        line += " proto=%s" % proto
    helo = state.attr.get(ATTR_LOG_HELO_NAME)
    if helo is not None:
        line += " helo=<%s>" % helo
    if text:
        line += ": %s" % text
    msg.info(line)


def _split(value):
    """(command, optional text) of an action: the text starts after white space."""
    end = 0
    while end < len(value) and value[end] not in " \t":
        end += 1
    return value[:end], value[end:].lstrip(" \t\n\v\f\r")


def act(state, context, content, value, map_class):
    command, text = _split(value)
    name = command.upper()
    if name == "REJECT":
        if text:
            reason = dsn_prepend("5.7.1", text)
            if reason[0] not in "45":
                msg.warn("bad DSN action in %s -- need 4.x.x or 5.x.x" % text)
                reason = "4" + reason[1:]
        else:
            detail = cu.stat_detail(cu.STAT_CONT)
            reason = dsn_prepend(detail.dsn, detail.text)
        state.reason = reason
        state.errs |= cu.STAT_DEFER if reason[0] == "4" else cu.STAT_CONT
        state.flags &= ~cu.FLAG_FILTER_ALL
        act_log(state, "reject", context, content, reason)
        return content
    if name == "WARN":
        act_log(state, "warning", context, content, text)
        return content
    if name == "INFO":
        act_log(state, "info", context, content, text)
        return content
    if name == "FILTER":
        if not text:
            msg.warn("missing FILTER command argument in %s map" % map_class)
        elif ":" not in text:
            msg.warn("bad FILTER command %s in %s -- need transport:destination"
                     % (text, map_class))
        else:
            state.filter = text
            act_log(state, "filter", context, content, text)
        return content
    if name == "PASS":
        act_log(state, "pass", context, content, text)
        state.flags &= ~cu.FLAG_FILTER_ALL
        return content
    if name == "DISCARD":
        act_log(state, "discard", context, content, text)
        state.flags |= cu.FLAG_DISCARD
        state.flags &= ~cu.FLAG_FILTER_ALL
        return content
    if name == "HOLD":
        if not state.flags & (cu.FLAG_HOLD | cu.FLAG_DISCARD):
            act_log(state, "hold", context, content, text)
            state.flags |= cu.FLAG_HOLD
        return content
    if name == "PREPEND":
        if not text:
            msg.warn("PREPEND action without text in %s map" % map_class)
        elif context == CTXT_HEADER:
            if not is_header(text):
                msg.warn('bad PREPEND header text "%s" in %s map -- '
                         'need "headername: headervalue"' % (text, map_class))
            else:
                act_log(state, "prepend", context, content, text)
                out_header(state, text)
        else:
            act_log(state, "prepend", context, content, text)
            cleanup_out(state, record.NORM, text)
        return content
    if name == "REPLACE":
        if not text:
            msg.warn("REPLACE action without text in %s map" % map_class)
            return content
        if context == CTXT_HEADER and not is_header(text):
            msg.warn('bad REPLACE header text "%s" in %s map -- '
                     'need "headername: headervalue"' % (text, map_class))
            return content
        act_log(state, "replace", context, content, text)
        return Replacement(text)
    if name == "REDIRECT":
        if "@" not in text:
            msg.warn('bad REDIRECT target "%s" in %s map -- need user@domain'
                     % (text, map_class))
        else:
            state.redirect = text
            act_log(state, "redirect", context, content, text)
            state.flags &= ~cu.FLAG_FILTER_ALL
        return content
    if name == "BCC":
        if "@" not in text:
            msg.warn('bad BCC address "%s" in %s map -- need user@domain' % (text, map_class))
        else:
            if state.hbc_rcpt is None:
                state.hbc_rcpt = []
            state.hbc_rcpt.append(text)
            act_log(state, "bcc", context, content, text)
        return content
    if name == "STRIP":
        act_log(state, "strip", context, content, text)
        return DROP
    if name == "IGNORE":
        return DROP
    if name in ("DUNNO", "OK"):
        return content
    msg.warn("unknown command in %s map: %s" % (map_class, value))
    return content


class Replacement(str):
    """A REPLACE result: a new string, told apart from the unchanged content."""

"""What Postfix knows about each message header name (Postfix's global/header_opts.c).

header_opts_find("From: x") gives the HeaderOpts of the header: its canonical name, its
type (HDR_*) and flags: SENDER and RECIP (addresses cleanup rewrites), EXTRACT
(recipients `sendmail -t` takes), RR (a Resent- header), MIME (a MIME content header)
and DROP (removed by cleanup: message_drop_headers). Names are looked up
case-insensitively, with white space before the colon ignored; an unknown header gives
None, unless message_drop_headers names it (then it is an HDR_OTHER entry with DROP).
"""

from pyfix.common import msg

HDR_OTHER = 0
HDR_APPARENTLY_TO = 1
HDR_BCC = 2
HDR_CC = 3
HDR_CONTENT_LENGTH = 4
HDR_CONTENT_TRANSFER_ENCODING = 5
HDR_CONTENT_TYPE = 6
HDR_DATE = 7
HDR_DELIVERED_TO = 8
HDR_ERRORS_TO = 9
HDR_FROM = 10
HDR_MESSAGE_ID = 11
HDR_RECEIVED = 12
HDR_REPLY_TO = 13
HDR_RESENT_BCC = 14
HDR_RESENT_CC = 15
HDR_RESENT_DATE = 16
HDR_RESENT_FROM = 17
HDR_RESENT_MESSAGE_ID = 18
HDR_RESENT_REPLY_TO = 19
HDR_RESENT_SENDER = 20
HDR_RESENT_TO = 21
HDR_RETURN_PATH = 22
HDR_RETURN_RECEIPT_TO = 23
HDR_SENDER = 24
HDR_TO = 25
HDR_MAIL_FOLLOWUP_TO = 26
HDR_CONTENT_DESCRIPTION = 27
HDR_CONTENT_DISPOSITION = 28
HDR_CONTENT_ID = 29
HDR_MIME_VERSION = 30
HDR_DISP_NOTIFICATION = 31

HDR_OPT_DROP = 1 << 0
HDR_OPT_SENDER = 1 << 1
HDR_OPT_RECIP = 1 << 2
HDR_OPT_RR = 1 << 3
HDR_OPT_EXTRACT = 1 << 4
HDR_OPT_MIME = 1 << 5
HDR_OPT_XRECIP = HDR_OPT_RECIP | HDR_OPT_EXTRACT

DEFAULT_DROP_HEADERS = "bcc, content-length, resent-bcc, return-path"


class HeaderOpts:
    __slots__ = ("name", "type", "flags")

    def __init__(self, name, kind, flags):
        self.name = name
        self.type = kind
        self.flags = flags

    def __repr__(self):
        return "HeaderOpts(%r, %d, %#x)" % (self.name, self.type, self.flags)


_KNOWN = (
    ("Apparently-To", HDR_APPARENTLY_TO, HDR_OPT_RECIP),
    ("Bcc", HDR_BCC, HDR_OPT_XRECIP),
    ("Cc", HDR_CC, HDR_OPT_XRECIP),
    ("Content-Description", HDR_CONTENT_DESCRIPTION, HDR_OPT_MIME),
    ("Content-Disposition", HDR_CONTENT_DISPOSITION, HDR_OPT_MIME),
    ("Content-ID", HDR_CONTENT_ID, HDR_OPT_MIME),
    ("Content-Length", HDR_CONTENT_LENGTH, 0),
    ("Content-Transfer-Encoding", HDR_CONTENT_TRANSFER_ENCODING, HDR_OPT_MIME),
    ("Content-Type", HDR_CONTENT_TYPE, HDR_OPT_MIME),
    ("Delivered-To", HDR_DELIVERED_TO, 0),
    ("Disposition-Notification-To", HDR_DISP_NOTIFICATION, HDR_OPT_SENDER),
    ("Date", HDR_DATE, 0),
    ("Errors-To", HDR_ERRORS_TO, HDR_OPT_SENDER),
    ("From", HDR_FROM, HDR_OPT_SENDER),
    ("Mail-Followup-To", HDR_MAIL_FOLLOWUP_TO, HDR_OPT_SENDER),
    ("Message-Id", HDR_MESSAGE_ID, 0),
    ("MIME-Version", HDR_MIME_VERSION, HDR_OPT_MIME),
    ("Received", HDR_RECEIVED, 0),
    ("Reply-To", HDR_REPLY_TO, HDR_OPT_SENDER),
    ("Resent-Bcc", HDR_RESENT_BCC, HDR_OPT_XRECIP | HDR_OPT_RR),
    ("Resent-Cc", HDR_RESENT_CC, HDR_OPT_XRECIP | HDR_OPT_RR),
    ("Resent-Date", HDR_RESENT_DATE, HDR_OPT_RR),
    ("Resent-From", HDR_RESENT_FROM, HDR_OPT_SENDER | HDR_OPT_RR),
    ("Resent-Message-Id", HDR_RESENT_MESSAGE_ID, HDR_OPT_RR),
    ("Resent-Reply-To", HDR_RESENT_REPLY_TO, HDR_OPT_RECIP | HDR_OPT_RR),
    ("Resent-Sender", HDR_RESENT_SENDER, HDR_OPT_SENDER | HDR_OPT_RR),
    ("Resent-To", HDR_RESENT_TO, HDR_OPT_XRECIP | HDR_OPT_RR),
    ("Return-Path", HDR_RETURN_PATH, HDR_OPT_SENDER),
    ("Return-Receipt-To", HDR_RETURN_RECEIPT_TO, HDR_OPT_SENDER),
    ("Sender", HDR_SENDER, HDR_OPT_SENDER),
    ("To", HDR_TO, HDR_OPT_XRECIP),
)

_table = None
_drop_list = DEFAULT_DROP_HEADERS


def init(drop_headers=DEFAULT_DROP_HEADERS):
    """(Re)build the table with the message_drop_headers value of this process."""
    global _table, _drop_list
    _drop_list = drop_headers
    table = {name.lower(): HeaderOpts(name, kind, flags) for name, kind, flags in _KNOWN}
    for name in drop_headers.replace(",", " ").split():
        key = name.lower()
        entry = table.get(key)
        if entry is None:
            entry = table[key] = HeaderOpts(key, HDR_OTHER, 0)
        entry.flags |= HDR_OPT_DROP
    _table = table


def header_opts_find(text):
    """The HeaderOpts of the header text starts with (it must contain a colon)."""
    if _table is None:
        init(_drop_list)
    colon = text.find(":")
    if colon < 0:
        msg.panic("header_opts_find: no colon in header: %.30s" % text)
    return _table.get(text[:colon].rstrip(" \t\n\v\f\r").lower())

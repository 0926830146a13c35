"""The cleanup service's request flags and completion status codes, shared by cleanup and
its clients (Postfix's global/cleanup_user.h and cleanup_strerror.c, cleanup_strflags.c).

A client (smtpd, pickup, bounce, local's forwarder, ...) sends CLEANUP_FLAG_* bits after
the service announced the queue ID; cleanup answers with a CLEANUP_STAT_* bit mask and a
reason. stat_detail() maps a status to the SMTP reply code, enhanced status code and text
that smtpd sends, e.g. CLEANUP_STAT_SIZE -> 552 5.3.4 "message file too big".
"""

FLAG_NONE = 0
FLAG_BOUNCE = 1 << 0            # bounce bad messages (instead of reporting an error)
FLAG_FILTER = 1 << 1            # header/body checks
FLAG_HOLD = 1 << 2              # place the message on hold
FLAG_DISCARD = 1 << 3           # discard the message silently
FLAG_BCC_OK = 1 << 4            # automatic BCC recipients
FLAG_MAP_OK = 1 << 5            # canonical, virtual and masquerade mapping
FLAG_MILTER = 1 << 6            # Milter applications
FLAG_SMTP_REPLY = 1 << 7        # answer with an SMTP-style reply
FLAG_SMTPUTF8 = 1 << 8          # SMTPUTF8 requested
FLAG_AUTOUTF8 = 1 << 9          # detect SMTPUTF8

FLAG_FILTER_ALL = FLAG_FILTER | FLAG_MILTER
FLAG_MASK_EXTERNAL = FLAG_FILTER_ALL | FLAG_BCC_OK | FLAG_MAP_OK
FLAG_MASK_INTERNAL = FLAG_MAP_OK
FLAG_MASK_EXTRA = FLAG_HOLD | FLAG_DISCARD

STAT_OK = 0
STAT_BAD = 1 << 0               # internal protocol error
STAT_WRITE = 1 << 1             # error writing the queue file
STAT_SIZE = 1 << 2              # message file too big
STAT_CONT = 1 << 3              # message content rejected
STAT_HOPS = 1 << 4              # too many hops
STAT_RCPT = 1 << 6              # no recipients
STAT_PROXY = 1 << 7             # proxy reject
STAT_DEFER = 1 << 8             # temporary reject
STAT_NOPERM = 1 << 9            # denied by non-content policy
STAT_BARE_LF = 1 << 16          # bare <LF> received (smtpd)

STAT_MASK_CANT_BOUNCE = STAT_BAD | STAT_WRITE | STAT_DEFER | STAT_RCPT
STAT_MASK_INCOMPLETE = STAT_BAD | STAT_WRITE | STAT_SIZE | STAT_DEFER


class StatDetail:
    __slots__ = ("status", "smtp", "dsn", "text")

    def __init__(self, status, smtp, dsn, text):
        self.status = status
        self.smtp = smtp
        self.dsn = dsn
        self.text = text


# Most severe first: one message may have several problems, one is reported.
_DETAILS = (
    StatDetail(STAT_DEFER, 451, "4.7.1", "service unavailable"),
    StatDetail(STAT_PROXY, 451, "4.3.0", "queue file write error"),
    StatDetail(STAT_BAD, 451, "4.3.0", "internal protocol error"),
    StatDetail(STAT_RCPT, 550, "5.1.0", "no recipients specified"),
    StatDetail(STAT_HOPS, 554, "5.4.0", "too many hops"),
    StatDetail(STAT_SIZE, 552, "5.3.4", "message file too big"),
    StatDetail(STAT_CONT, 550, "5.7.1", "message content rejected"),
    StatDetail(STAT_WRITE, 451, "4.3.0", "queue file write error"),
    StatDetail(STAT_NOPERM, 550, "5.7.1", "service denied"),
    StatDetail(STAT_BARE_LF, 521, "5.5.2", "bare <LF> received"),
)
_SUCCESS = StatDetail(STAT_OK, 250, "2.0.0", "Success")

_FLAG_NAMES = (
    (FLAG_BOUNCE, "enable_bad_mail_bounce"),
    (FLAG_FILTER, "enable_header_body_filter"),
    (FLAG_HOLD, "hold_message"),
    (FLAG_DISCARD, "discard_message"),
    (FLAG_BCC_OK, "enable_automatic_bcc"),
    (FLAG_MAP_OK, "enable_address_mapping"),
    (FLAG_MILTER, "enable_milters"),
    (FLAG_SMTP_REPLY, "enable_smtp_reply"),
    (FLAG_SMTPUTF8, "smtputf8_requested"),
    (FLAG_AUTOUTF8, "smtputf8_autodetect"),
)


def stat_detail(status):
    """cleanup_stat_detail(): the entry for the most severe problem in status."""
    if status == STAT_OK:
        return _SUCCESS
    for detail in _DETAILS:
        if detail.status & status:
            return detail
    raise ValueError("cleanup_stat_detail: unknown status %u" % status)


def strerror(status):
    """cleanup_strerror(): the text of the most severe problem in status."""
    return stat_detail(status).text


def strflags(flags):
    """cleanup_strflags(): the names of the flags, for verbose logging."""
    if flags == 0:
        return "none"
    return " ".join(name for bit, name in _FLAG_NAMES if flags & bit)

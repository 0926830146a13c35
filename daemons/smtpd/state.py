"""The state of one SMTP session (Postfix's smtpd/smtpd.h SMTPD_STATE and smtpd_state.c).

One SmtpdState per connection. The attribute names are Postfix's, because the access
restrictions (pyfix.daemons.smtpd.check) read and set them exactly where smtpd_check.c
does: client identity (name, reverse_name, addr, port, namaddr, rfc_addr, ...), the
session (helo_name, protocol, where, sasl_*, tls_context), the transaction (sender,
recipient, rcpt_count, queue_id, dsn_*, msg_size) and what access actions leave for
cleanup (discard, saved_filter, saved_redirect, saved_bcc, saved_flags, prepend).
The restrictions may add attributes of their own, named check_*.
"""

import os
import time

# smtpd.h: peer lookup status.
SMTPD_PEER_CODE_OK = 2
SMTPD_PEER_CODE_TEMP = 4
SMTPD_PEER_CODE_PERM = 5
SMTPD_PEER_CODE_FORGED = 6

# smtpd.h: state.flags.
SMTPD_FLAG_HANGUP = 1 << 0              # 421/521 disconnect
SMTPD_FLAG_ILL_PIPELINING = 1 << 1      # improper pipelining seen (reject_unauth_pipelining)
SMTPD_FLAG_SMTPUTF8 = 1 << 3            # RFC 6531 transaction

# smtpd.h: where the session is, for logging.
SMTPD_AFTER_CONNECT = "CONNECT"
SMTPD_AFTER_DATA = "DATA content"
SMTPD_AFTER_BDAT = "BDAT content"
SMTPD_AFTER_EOM = "END-OF-MESSAGE"
SMTPD_CMD_UNKNOWN = "UNKNOWN"

CLIENT_ATTR_UNKNOWN = "unknown"

REASON_LOST_CONNECTION = "lost connection"
REASON_TIMEOUT = "timeout"
REASON_ERROR_LIMIT = "too many errors"

BDAT_STAT_NONE = 0
BDAT_STAT_OK = 1
BDAT_STAT_ERROR = 2

# mail_proto.h
MAIL_PROTO_SMTP = "SMTP"
MAIL_PROTO_ESMTP = "ESMTP"

# The session's address family numbers as Postfix writes them into the queue file.
AF_INET = 2
AF_INET6 = 10


class XForward:
    """XFORWARD attributes of the current transaction (smtpd_xforward_init)."""

    def __init__(self):
        self.flags = 0
        self.name = self.addr = self.port = self.namaddr = self.rfc_addr = None
        self.protocol = self.helo_name = self.ident = self.domain = None


class SmtpdState:
    def __init__(self, service="smtp"):
        self.service = service
        self.stand_alone = False            # SMTPD_STAND_ALONE(): sendmail -bs
        # Client identity (smtpd_peer.c).
        self.name = CLIENT_ATTR_UNKNOWN
        self.reverse_name = CLIENT_ATTR_UNKNOWN
        self.addr = CLIENT_ATTR_UNKNOWN
        self.port = CLIENT_ATTR_UNKNOWN
        self.namaddr = CLIENT_ATTR_UNKNOWN
        self.rfc_addr = CLIENT_ATTR_UNKNOWN
        self.addr_family = 0
        self.name_status = SMTPD_PEER_CODE_PERM
        self.reverse_name_status = SMTPD_PEER_CODE_PERM
        self.forward_name_status = SMTPD_PEER_CODE_PERM
        self.rewrite_context = "remote"   # smtpd_check_rewrite(): local or remote
        self.dest_addr = ""
        self.dest_port = ""
        # Session.
        self.helo_name = None
        self.protocol = MAIL_PROTO_SMTP
        self.where = SMTPD_AFTER_CONNECT
        self.reason = None
        self.error_count = 0
        self.error_mask = 0
        self.junk_cmds = 0
        self.flags = 0
        self.access_denied = None
        self.ehlo_discard_mask = 0
        self.ehlo_discard_error = False
        self.sasl_username = None
        self.sasl_method = None
        self.sasl_sender = None
        self.sasl_server = None             # sasl.SaslServer while AUTH is offered
        self.sasl_mechanism_list = None
        self.tls_context = None
        self.xclient_allowed = False
        self.xforward_allowed = False
        self.xforward = XForward()
        self.seqno = 0
        self.instance = ""
        self.defer_if_permit = None       # helperF's holders (smtpd_check.c)
        self.defer_if_reject = None
        self.conn_count = 0
        self.conn_rate = 0
        # Transaction.
        self.reset_mail()
        self.reset_rcpt()

    # -- reset points (smtpd.c mail_reset, rcpt_reset) ------------------------------------

    def reset_mail(self):
        self.flags &= ~SMTPD_FLAG_SMTPUTF8     # SMTPD_MASK_MAIL_KEEP
        self.sender = None
        self.queue_id = None
        self.cleanup = None
        self.msg_size = 0
        self.act_size = 0
        self.err = 0
        self.encoding = None
        self.smtputf8 = False
        self.dsn_envid = None
        self.dsn_ret = 0
        self.discard = False
        self.saved_filter = None
        self.saved_redirect = None
        self.saved_bcc = []
        self.saved_flags = 0
        self.prepend = []
        self.instance = ""
        self.arrival_time = None
        self.bdat_state = BDAT_STAT_NONE
        self.verp_delims = None
        self.sasl_sender = None             # MAIL FROM ... AUTH=<sender>

    def reset_rcpt(self):
        self.recipient = None
        self.rcpt_count = 0
        self.rcpt_overshoot = 0
        self.dsn_orcpt = None
        self.dsn_notify = 0

    # -- derived ------------------------------------------------------------------------

    def in_mail_transaction(self):
        return self.sender is not None

    def processing_bdat(self):
        return self.bdat_state != BDAT_STAT_NONE

    def queue_id_or_noqueue(self):
        return self.queue_id or "NOQUEUE"

    def start_transaction(self, sender):
        """What mail_cmd records once MAIL FROM is accepted."""
        self.arrival_time = time.time()
        self.sender = sender
        self.instance = "%x.%x.%x.%x" % (os.getpid(), int(self.arrival_time),
                                         int((self.arrival_time % 1) * 1000000), self.seqno)
        self.seqno += 1

    # XFORWARD overrides what cleanup and the logs see (smtpd.h FORWARD_* macros).
    def forward_name(self):
        return self.xforward.name or self.name

    def forward_addr(self):
        return self.xforward.rfc_addr or self.rfc_addr

    def forward_port(self):
        return self.xforward.port or self.port

    def forward_namaddr(self):
        return self.xforward.namaddr or self.namaddr

    def forward_helo(self):
        return self.xforward.helo_name if self.xforward.flags else self.helo_name

    def forward_proto(self):
        return self.xforward.protocol or self.protocol

    def forward_ident(self):
        return self.xforward.ident if self.xforward.ident else self.queue_id

    def forwarded_ident(self):
        return self.xforward.ident is not None

    def forward_domain(self):
        return self.xforward.domain or self.rewrite_context

"""The state of one message in cleanup (Postfix's cleanup_state.c and cleanup.h), and the
duplicate filter (global/been_here.c).
"""

from pyfix.queue import cleanup_user as cu

# Status flags above the client flags (cleanup.h).
FLAG_INRCPT = 1 << 16           # processing recipient records
FLAG_WARN_SEEN = 1 << 17        # a W record was seen
FLAG_END_SEEN = 1 << 18         # the E record was seen

SMTPUTF8_REQUESTED = 1 << 0
SMTPUTF8_HEADER = 1 << 1
SMTPUTF8_SENDER = 1 << 2

ATTR_LOG_ORIGIN = "log_message_origin"

# The files to remove if this process dies while a message is open (cleanup_path and
# cleanup_trace_path of Postfix): see api.cleanup_all().
open_paths = {"queue": None, "trace": None}
ATTR_ENCODING = "encoding"


def type_in(types, rec_type):
    """Postfix's `strchr(types, type) != 0` on record types: strchr() also finds the
    string's terminating NUL, so a record of type 0 belongs to every set (Postfix
    writes it into the queue file as it is)."""
    return rec_type == b"\0" or (len(rec_type) == 1 and rec_type in types)


class BeenHere:
    """A duplicate filter: remembers up to `limit` keys (0: no limit), case-folded."""

    def __init__(self, limit=0, fold=True):
        self.limit = limit
        self.fold = fold
        self.seen = set()

    def _key(self, text):
        return text.lower() if self.fold else text

    def been_here(self, text):
        """True when text was seen before; otherwise remember it (if there is room)."""
        key = self._key(text)
        if key in self.seen:
            return True
        if self.limit <= 0 or self.limit > len(self.seen):
            self.seen.add(key)
        return False

    def check(self, text):
        return self._key(text) in self.seen


class CleanupState:
    def __init__(self, settings, src=None):
        self.settings = settings
        self.src = src
        self.dst = None                 # the queue file being written (binary, buffered)
        self.offset = 0                 # where the next record goes in dst
        self.handle = None              # MailStream
        self.path = None                # queue file to remove if things go wrong
        self.queue_name = None
        self.queue_id = None
        self.arrival_time = (0, 0)
        self.fullname = None
        self.sender = None
        self.recip = None
        self.orig_rcpt = None
        self.return_receipt = None
        self.errors_to = None
        self.auto_hdrs = []
        self.hbc_rcpt = None
        self.flags = 0
        self.tflags = 0
        self.qmgr_opts = 0
        self.errs = 0
        self.err_mask = 0
        self.headers_seen = 0
        self.hop_count = 0
        self.resent = ""
        self.dups = BeenHere(settings.dup_filter_limit, True)
        self.action = None
        self.data_offset = -1
        self.body_offset = -1
        self.xtra_offset = -1
        self.cont_length = 0
        self.rcpt_count = 0
        self.reason = None
        self.smtp_reply = None
        self.attr = {ATTR_LOG_ORIGIN: "local"}
        self.mime_state = None
        self.mime_errs = 0
        self.hdr_rewrite_context = "local"
        self.filter = None
        self.redirect = None
        self.dsn_envid = None
        self.dsn_ret = 0
        self.dsn_notify = 0
        self.dsn_orcpt = None
        self.verp_delims = None
        self.smtputf8 = 0
        self.trace_path = None

    def out_ok(self):
        """CLEANUP_OUT_OK(): no fatal error and not being discarded."""
        return not (self.errs & self.err_mask) and not (self.flags & cu.FLAG_DISCARD)

    def record(self, rec_type, payload):
        """CLEANUP_RECORD(): hand one input record to the current segment's handler."""
        self.action(self, rec_type, payload)

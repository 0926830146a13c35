"""The delivery status buffer of the delivery agents (Postfix's global/dsn_buf.c).

A DsnBuf collects what an agent learns about one delivery attempt: the RFC 3463 status,
the RFC 3464 action, the remote MTA (mtype, mname), the diagnostic (dtype `smtp` or
`x-unix`, dtext) and the free text `reason` that goes into the `status=... (reason)`
log line and the bounce message. The dsb_*() functions of Postfix are methods here;
to_dsn() gives the queue/bounce_clnt.Dsn that the status services take.

errno is a pyfix addition: the errno of the last system call that failed while the
buffer was filled (Postfix's callers look at the global errno after mail_copy(),
mbox_open(), ... ; Python has no global errno, so it travels here).
"""

from pyfix.queue.bounce_clnt import Dsn

DSB_DTYPE_NONE = ""
DSB_DTYPE_SMTP = "smtp"
DSB_DTYPE_UNIX = "x-unix"
DSB_DTYPE_SASL = "x-sasl"
DSB_MTYPE_NONE = ""
DSB_MTYPE_DNS = "dns"


class DsnBuf:
    __slots__ = ("status", "action", "mtype", "mname", "dtype", "dtext", "reason",
                 "errno")

    def __init__(self):
        self.reset()

    def reset(self):
        """dsb_reset(): every field empty."""
        self.status = self.action = self.mtype = self.mname = ""
        self.dtype = self.dtext = self.reason = ""
        self.errno = 0

    def update(self, status, action, mtype, mname, dtype, dtext, reason):
        """dsb_update(): the formal fields and the free text."""
        self.formal(status, action, mtype, mname, dtype, dtext)
        self.reason = reason
        return self

    def formal(self, status, action, mtype, mname, dtype, dtext):
        """dsb_formal(): the formal fields; an MTA or diagnostic half-given is cleared."""
        self.status = status
        self.action = action or ""
        self.mtype, self.mname = (mtype, mname) if mtype and mname else ("", "")
        self.dtype, self.dtext = (dtype, dtext) if dtype and dtext else ("", "")
        return self

    def simple(self, status, reason):
        """dsb_simple(): the status and the free text; other formal fields cleared."""
        self.set_status(status)
        self.reason = reason
        return self

    def unix(self, status, dtext, reason):
        """dsb_unix(): the status, an `x-unix` diagnostic (a sysexits text) and the text."""
        self.set_status(status)
        self.dtype = DSB_DTYPE_UNIX
        self.dtext = dtext
        self.reason = reason
        return self

    def set_status(self, status):
        """dsb_status(): the status; the other formal fields cleared, reason kept."""
        self.status = status
        self.action = self.mtype = self.mname = self.dtype = self.dtext = ""
        return self

    def prepend(self, text):
        """vstring_sprintf_prepend(why->reason, ...)."""
        self.reason = text + self.reason
        return self

    def to_dsn(self):
        """DSN_FROM_DSN_BUF(): the Dsn that sent()/bounce_append()/defer_append() take."""
        return Dsn(self.status, self.reason, self.action, self.dtype, self.dtext,
                   self.mtype, self.mname)

    def __repr__(self):
        return "DsnBuf(%r, %r)" % (self.status, self.reason)

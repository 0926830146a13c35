"""An SMTP reply as the access restrictions and the protocol hand it around: code,
enhanced status code and text (what Postfix's smtpd_check.c returns as a formatted
"code dsn text" string).
"""

from collections import namedtuple


class Reply(namedtuple("Reply", "code dsn text")):
    """Reply(554, "5.7.1", "<x@y>: Relay access denied"); str() gives the wire form
    without CRLF. A reply without an enhanced status code has dsn "" (HELO, ETRN)."""

    __slots__ = ()

    def __str__(self):
        if self.dsn:
            return "%d %s %s" % (self.code, self.dsn, self.text)
        return "%d %s" % (self.code, self.text)

    @classmethod
    def parse(cls, line):
        """The Reply of a "code [dsn] text" line."""
        code = int(line[:3])
        rest = line[4:]
        dsn, _, text = rest.partition(" ")
        if len(dsn) >= 5 and dsn[0] in "245" and dsn[1] == "." and dsn.count(".") == 2:
            return cls(code, dsn, text)
        return cls(code, "", rest)

"""smtpd_reject_footer and smtpd_reject_footer_maps (Postfix's global/smtp_reply_footer.c
with smtpd's $name macros): text appended to every 4xx/5xx reply, as extra reply lines
with the reply's own code and enhanced status code; `\\n` in the template starts another
line, a leading `\\c` continues the last line of the reply instead. A template that does
not expand leaves the reply as it was.
"""

from pyfix.common.dsn_util import dsn_valid
from pyfix.common.macro import PARSE_ERROR, mac_expand


def reply_footer(reply, template, lookup, filter_chars):
    """The reply text (lines joined by CRLF) with the footer, or reply unchanged."""
    lines = reply.split("\r\n")
    for line in lines:
        if len(line) < 4 or not line[:3].isdigit() or line[3] not in " -":
            return reply
    last = lines[-1]
    code = last[:3]
    dsn_len = dsn_valid(last[4:])
    dsn = last[4:4 + dsn_len] if dsn_len else ""
    parts = template.split("\\n")
    out = list(lines)
    added = False
    for n, part in enumerate(parts):
        if n == 0 and part.startswith("\\c"):
            text, status = mac_expand(part[2:], lookup, 0, filter_chars)
            if status & PARSE_ERROR:
                return reply
            out[-1] += text
            continue
        text, status = mac_expand(part, lookup, 0, filter_chars)
        if status & PARSE_ERROR:
            return reply
        out.append("%s%s%s%s" % (code, "-" if n + 1 < len(parts) else " ",
                                 dsn + " " if dsn else "", text))
        added = True
    if added:
        out[len(lines) - 1] = out[len(lines) - 1][:3] + "-" + out[len(lines) - 1][4:]
    return "\r\n".join(out)

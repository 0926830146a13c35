"""RFC 2822 dates as Postfix writes them in Date: and Received: headers (Postfix's
global/mail_date.c): `Wed, 25 Nov 2026 16:53:38 +0000 (UTC)` — the day of month padded
with a space (strftime %e), the offset from UTC computed from local time, and the time
zone name in parentheses.
"""

import time


def mail_date(when):
    local = time.localtime(when)
    utc = time.gmtime(when)
    offset = (local.tm_hour - utc.tm_hour) * 60 + local.tm_min - utc.tm_min
    if local.tm_year < utc.tm_year:
        offset -= 24 * 60
    elif local.tm_year > utc.tm_year:
        offset += 24 * 60
    elif local.tm_yday < utc.tm_yday:
        offset -= 24 * 60
    elif local.tm_yday > utc.tm_yday:
        offset += 24 * 60
    if local.tm_sec <= utc.tm_sec - 60:
        offset -= 1
    elif local.tm_sec >= utc.tm_sec + 60:
        offset += 1
    hours = int(offset / 60)
    return "%s%s%02d (%s)" % (time.strftime("%a, %e %b %Y %H:%M:%S ", local),
                              "%+03d" % hours, abs(offset) % 60,
                              time.strftime("%Z", local))

"""sysexits.h exit codes and their DSN details (Postfix's global/sys_exits.c).

Delivery agents map a command's exit status (pipe(8), local(8) commands) and their own
I/O failures to an RFC 3463 status and a text: sys_exits_detail(EX_IOERR) is
("5.3.0", "input/output error").
"""

EX_OK = 0
EX__BASE = 64
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_NOHOST = 68
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_OSFILE = 72
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77
EX_CONFIG = 78
EX__MAX = 78

_TABLE = {
    EX_USAGE: ("5.3.0", "command line usage error"),
    EX_DATAERR: ("5.6.0", "data format error"),
    EX_NOINPUT: ("5.3.0", "cannot open input"),
    EX_NOUSER: ("5.1.1", "user unknown"),
    EX_NOHOST: ("5.1.2", "host name unknown"),
    EX_UNAVAILABLE: ("5.3.0", "service unavailable"),
    EX_SOFTWARE: ("5.3.0", "internal software error"),
    EX_OSERR: ("4.3.0", "system resource problem"),
    EX_OSFILE: ("5.3.0", "critical OS file missing"),
    EX_CANTCREAT: ("5.2.0", "can't create user output file"),
    EX_IOERR: ("5.3.0", "input/output error"),
    EX_TEMPFAIL: ("4.3.0", "temporary failure"),
    EX_PROTOCOL: ("5.5.0", "remote error in protocol"),
    EX_NOPERM: ("5.7.0", "permission denied"),
    EX_CONFIG: ("5.3.5", "local configuration error"),
}


class SysExitsDetail:
    __slots__ = ("status", "dsn", "text")

    def __init__(self, status, dsn, text):
        self.status, self.dsn, self.text = status, dsn, text


def sys_exits_code(code):
    """SYS_EXITS_CODE(): one of the sysexits.h codes."""
    return EX__BASE <= code <= EX__MAX


def sys_exits_detail(code):
    """The (dsn, text) entry of a code; an unknown code is 5.3.0 `unknown mail system
    error N`."""
    if code in _TABLE:
        dsn, text = _TABLE[code]
        return SysExitsDetail(code, dsn, text)
    return SysExitsDetail(0, "5.3.0", "unknown mail system error %d" % code)


def sys_exits_strerror(code):
    return sys_exits_detail(code).text


def sys_exits_softerror(code):
    """True when the code means try again later."""
    return sys_exits_detail(code).dsn.startswith("4")

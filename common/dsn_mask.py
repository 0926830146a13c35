"""DSN NOTIFY and RET values: Postfix's global/dsn_mask.c (and dsn_mask.h).

The NOTIFY bits travel in queue files and internal protocols as a number
(notify_flags), RET as a code (ret_flags); this is their one definition, with the
conversions from and to the words of RFC 3461 (`NOTIFY=SUCCESS,DELAY`, `RET=HDRS`).
"""

from pyfix.common.name_mask import FLAG_ANY_CASE, FLAG_RETURN, name_mask

DSN_NOTIFY_NEVER = 1 << 0
DSN_NOTIFY_SUCCESS = 1 << 1
DSN_NOTIFY_FAILURE = 1 << 2
DSN_NOTIFY_DELAY = 1 << 3
DSN_NOTIFY_ANY = DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY
DSN_NOTIFY_MASK = DSN_NOTIFY_NEVER | DSN_NOTIFY_ANY

DSN_RET_FULL = 1 << 0
DSN_RET_HDRS = 1 << 1
DSN_RET_MASK = DSN_RET_FULL | DSN_RET_HDRS

DSN_NOTIFY_TABLE = (("NEVER", DSN_NOTIFY_NEVER), ("SUCCESS", DSN_NOTIFY_SUCCESS),
                    ("FAILURE", DSN_NOTIFY_FAILURE), ("DELAY", DSN_NOTIFY_DELAY))
DSN_RET_TABLE = (("FULL", DSN_RET_FULL), ("HDRS", DSN_RET_HDRS))


def dsn_notify_ok(mask):
    """DSN_NOTIFY_OK(): NEVER alone, or any mix of SUCCESS, FAILURE and DELAY."""
    return mask == DSN_NOTIFY_NEVER or mask == mask & DSN_NOTIFY_ANY


def dsn_ret_ok(code):
    """DSN_RET_OK(): FULL or HDRS."""
    return code in (DSN_RET_FULL, DSN_RET_HDRS)


def dsn_notify_mask(text):
    """The NOTIFY bits of a word list, 0 when it is not a valid combination (an unknown
    word also gets Postfix's warning)."""
    mask = name_mask("DSN NOTIFY command", DSN_NOTIFY_TABLE, text,
                     FLAG_ANY_CASE | FLAG_RETURN)
    return mask if dsn_notify_ok(mask) else 0


def dsn_notify_str(mask):
    """The words of a NOTIFY mask, comma separated (NEVER,SUCCESS,...)."""
    return ",".join(name for name, bit in DSN_NOTIFY_TABLE if mask & bit)


def dsn_ret_code(text):
    """The RET code of FULL or HDRS (any case), else 0."""
    upper = _ascii_upper(text)
    for name, code in DSN_RET_TABLE:
        if upper == name:
            return code
    return 0


def dsn_ret_str(code):
    """FULL or HDRS."""
    for name, value in DSN_RET_TABLE:
        if value == code:
            return name
    raise ValueError("dsn_ret_str: unknown code %d" % code)


def _ascii_upper(text):
    # strcasecmp() folds only ASCII letters; str.upper() would map e.g. U+017F to S.
    return "".join(chr(ord(ch) - 32) if "a" <= ch <= "z" else ch for ch in text)

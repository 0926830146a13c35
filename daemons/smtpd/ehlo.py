"""The EHLO keyword masks (Postfix's global/ehlo_mask.c): smtpd_discard_ehlo_keywords and
smtpd_discard_ehlo_keyword_address_maps name keywords that smtpd must not announce (and
whose features it then refuses).
"""

from pyfix.common.name_mask import FLAG_ANY_CASE, FLAG_IGNORE, name_mask

MASK_8BITMIME = 1 << 0
MASK_PIPELINING = 1 << 1
MASK_SIZE = 1 << 2
MASK_VRFY = 1 << 3
MASK_ETRN = 1 << 4
MASK_AUTH = 1 << 5
MASK_VERP = 1 << 6
MASK_STARTTLS = 1 << 7
MASK_XCLIENT = 1 << 8
MASK_XFORWARD = 1 << 9
MASK_ENHANCEDSTATUSCODES = 1 << 10
MASK_DSN = 1 << 11
MASK_SMTPUTF8 = 1 << 12
MASK_CHUNKING = 1 << 13
MASK_SILENT = 1 << 15

TABLE = (
    ("8BITMIME", MASK_8BITMIME), ("AUTH", MASK_AUTH), ("ETRN", MASK_ETRN),
    ("PIPELINING", MASK_PIPELINING), ("SIZE", MASK_SIZE), ("VERP", MASK_VERP),
    ("VRFY", MASK_VRFY), ("XCLIENT", MASK_XCLIENT), ("XFORWARD", MASK_XFORWARD),
    ("STARTTLS", MASK_STARTTLS), ("ENHANCEDSTATUSCODES", MASK_ENHANCEDSTATUSCODES),
    ("DSN", MASK_DSN), ("EHLO_MASK_SMTPUTF8", MASK_SMTPUTF8), ("SMTPUTF8", MASK_SMTPUTF8),
    ("CHUNKING", MASK_CHUNKING), ("SILENT-DISCARD", MASK_SILENT),
)


def ehlo_mask(text):
    """The bits of a keyword list; unknown words are ignored, case does not matter."""
    return name_mask("ehlo string mask", TABLE, text, FLAG_ANY_CASE | FLAG_IGNORE)


def str_ehlo_mask(mask):
    """str_name_mask(): the names of the bits, in table order (as Postfix logs them)."""
    names = []
    for name, bit in TABLE:
        if mask & bit:
            mask &= ~bit
            names.append(name)
    return " ".join(names)

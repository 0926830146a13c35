"""xtext and unitext, the encodings of DSN parameters (RFC 3461 xtext, RFC 6533 unitext;
Postfix's util/xtext.c and uxtext.c): smtp quotes ORCPT and ENVID, smtpd and XCLIENT
unquote them.
"""


def xtext_quote(text, special=""):
    """RFC 3461 xtext (xtext_quote()): + and what is not printable ASCII or is in
    special become +XX."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        char = chr(byte)
        if char != "+" and 32 < byte < 127 and char not in special:
            out.append(char)
        else:
            out.append("+%02X" % byte)
    return "".join(out)


def xtext_unquote(text):
    """RFC 3461 xtext: `+XX` is a hex-coded byte; None when malformed."""
    out = bytearray()
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch == "+":
            digits = text[pos + 1:pos + 3]
            if len(digits) != 2 or any(c not in "0123456789ABCDEFabcdef" for c in digits):
                return None
            out.append(int(digits, 16))
            pos += 3
        else:
            out += ch.encode("utf-8", "surrogateescape")
            pos += 1
    return out.decode("utf-8", "surrogateescape")


def uxtext_unquote(text):
    """RFC 6533 unitext: `\\x{HEX}` is a code point; None when malformed."""
    out = []
    pos = 0
    while pos < len(text):
        if text.startswith("\\x{", pos):
            end = text.find("}", pos)
            digits = text[pos + 3:end] if end > 0 else ""
            if not digits or any(c not in "0123456789ABCDEFabcdef" for c in digits):
                return None
            out.append(chr(int(digits, 16)))
            pos = end + 1
        else:
            out.append(text[pos])
            pos += 1
    return "".join(out)

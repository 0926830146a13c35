"""postconf's output lines (postconf_print.c): whitespace normalized, optionally folded.

Every `name = value` line postconf prints collapses runs of whitespace to one space; with
-f, lines longer than 80 columns are folded at word boundaries onto lines indented by four
spaces. Output is written as bytes so that non-UTF-8 configuration text comes back intact.
"""

import os
import sys

LINE_LIMIT = 80
INDENT = "    "
SEPARATORS = " \t\r\n"

FOLD_LINE = 1 << 11


def _words(text):
    word = []
    for ch in text:
        if ch in SEPARATORS:
            if word:
                yield "".join(word)
                word = []
        else:
            word.append(ch)
    if word:
        yield "".join(word)


def format_line(mode, text):
    """The line print_line() would print for text (without the final newline)."""
    out = []
    line_len = 0
    for word in _words(text):
        width = len(word.encode("utf-8", "surrogateescape"))
        if line_len > 0:
            if not mode & FOLD_LINE or line_len + width < LINE_LIMIT:
                out.append(" ")
                line_len += 1
            else:
                out.append("\n" + INDENT)
                line_len = len(INDENT)
        out.append(word)
        line_len += width
    return "".join(out)


# Postfix's VSTREAM_OUT: a 4096-byte buffer written out only when full or when flushed.
# A fatal error exits without flushing, so the lines still in the buffer are lost; pyfix
# keeps that, because scripts see the same (partial) output either way.
BUFFER_SIZE = 4096
_pending = bytearray()


def _write_out(data):
    view = memoryview(data)
    while view:
        written = os.write(sys.stdout.fileno(), view)
        view = view[written:]


def write(text):
    _pending.extend(text.encode("utf-8", "surrogateescape"))
    while len(_pending) >= BUFFER_SIZE:
        _write_out(bytes(_pending[:BUFFER_SIZE]))
        del _pending[:BUFFER_SIZE]


def flush():
    """vstream_fflush(VSTREAM_OUT): write what is buffered."""
    if _pending:
        data = bytes(_pending)
        _pending.clear()
        _write_out(data)


def print_line(mode, text):
    write(format_line(mode, text) + "\n")

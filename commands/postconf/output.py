"""postconf's output lines (postconf_print.c): whitespace normalized, optionally folded.

Every `name = value` line postconf prints collapses runs of whitespace to one space; with
-f, lines longer than 80 columns are folded at word boundaries onto lines indented by four
spaces. Output is written as bytes so that non-UTF-8 configuration text comes back intact.
"""

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


def write(text):
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))


def print_line(mode, text):
    write(format_line(mode, text) + "\n")

"""Logical lines of Postfix configuration files (util/readlline.c).

main.cf, master.cf and lookup-table sources share one reader: blank lines and lines whose
first non-blank character is `#` are skipped; a line that starts with whitespace continues
the previous logical line (its newline dropped, its leading whitespace kept), and comment
or blank lines inside a continued entry do not end it. A logical line that itself starts
with whitespace is dropped with Postfix's warning.
"""

import os

from pyfix.common import msg
from pyfix.common.strings import SPACE, byte_length, byte_prefix


class ReadError(OSError):
    """The file opened but could not be read (a directory, an I/O error): Postfix words
    this `read <path>: ...` where a failed open is `open <path>: ...`."""


def read_text(path):
    """A configuration file as text; bytes that are not UTF-8 survive a round trip.

    Raises OSError when the file cannot be opened, ReadError when it cannot be read.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError as exc:
                raise ReadError(exc.errno, exc.strerror, path) from None
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def physical_lines(text):
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()          # the newline at the end, not a line of its own
    return lines


def _is_comment_or_blank(line):
    stripped = line.lstrip(SPACE)
    return stripped == "" or stripped[0] == "#"


def logical_lines(text, path):
    """Yield (logical_line, first_line_number, last_line_number) for the text of `path`.

    The last line number counts the comment lines consumed inside the entry, as Postfix does.
    """
    lines = physical_lines(text)
    count = len(lines)
    i = 0
    while i < count:
        parts = []
        first = last = 0
        while i < count:
            line = lines[i]
            i += 1
            if not _is_comment_or_blank(line):
                if not parts:
                    first = i
                parts.append(line)
            if parts and i < count:
                following = lines[i][:1] or "\n"
                if following != "#" and following not in SPACE:
                    break
        last = i
        if not parts:
            continue
        logical = "".join(parts)
        if logical[0] in SPACE:
            msg.warn('%s: logical line must not start with whitespace: "%s%s"'
                     % (path, byte_prefix(logical, 30),
                        "..." if byte_length(logical) > 30 else ""))
            continue
        yield logical, first, last

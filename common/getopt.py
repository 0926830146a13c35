"""Command-line options the way Postfix's commands see them.

Postfix calls getopt() with a leading `+` on Linux: options end at the first non-option
argument (or `--`), flags cluster (`-nf`), an option's value may be attached (`-cDIR`) or
follow. GNU getopt reports mistakes itself before the command prints its usage line; the
texts here are GNU's.
"""


class GetoptError(Exception):
    """A bad option; str() is GNU getopt's message (without the program name)."""


def posix_getopt(args, optstring):
    """Return ([(letter, value or None)], remaining arguments)."""
    parsed = []
    for letter, value in iter_getopt(args, optstring):
        if letter is None:
            return parsed, value
        parsed.append((letter, value))


def iter_getopt(args, optstring):
    """Yield (letter, value or None) one option at a time, as getopt() returns them, so
    that a command can act on each option before a later one is found bad (GetoptError is
    raised where the bad option stands); the last item is (None, remaining arguments)."""
    takes_value = {}
    for i, ch in enumerate(optstring):
        if ch != ":":
            takes_value[ch] = optstring[i + 1:i + 2] == ":"
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            index += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        pos = 1
        while pos < len(arg):
            letter = arg[pos]
            if letter not in takes_value:
                raise GetoptError("invalid option -- '%s'" % letter)
            if not takes_value[letter]:
                yield letter, None
                pos += 1
                continue
            if pos + 1 < len(arg):
                yield letter, arg[pos + 1:]
            elif index + 1 < len(args):
                index += 1
                yield letter, args[index]
            else:
                raise GetoptError("option requires an argument -- '%s'" % letter)
            break
        index += 1
    yield None, args[index:]

"""master.cf entries as written: the eight fields, the command and its arguments.

This is the text-level model that postconf(1) shows and edits (postconf_master.c): fields
keep their `-` defaults, `-o name=value` options are split into an option and its value
(`-oname=value` and `-o { name = value }` both become `-o` `name=value`), and `{ ... }`
arguments lose their braces. The master daemon's resolved view (defaults applied, Postfix's
master_ent.c errors) builds on these entries.
"""

from pyfix.common import msg
from pyfix.common.readlline import ReadError, logical_lines, read_text
from pyfix.common.strings import CHARS_BRACE, extract_parens, split_nameval, tokens_quoted

BLANKS = " \t\r\n"
MIN_FIELDS = 8
SERVICE_TYPES = ("unix", "fifo", "inet", "pass", "unix-dgram")
FIELD_NAMES = ("service", "type", "private", "unprivileged", "chroot", "wakeup",
               "process_limit", "command")
SERVICE, TYPE, PRIVATE, UNPRIV, CHROOT, WAKEUP, MAXPROC, COMMAND = range(8)
# Daemon options that take a value (the next argument).
OPTIONS_WITH_VALUE = "o"


class MasterEntry:
    """One master.cf service: argv holds the fields, then the command arguments."""

    def __init__(self, argv, line=0):
        self.argv = argv
        self.line = line

    @property
    def service(self):
        return self.argv[SERVICE]

    @property
    def type(self):
        return self.argv[TYPE]

    @property
    def name_space(self):
        return "%s/%s" % (self.service, self.type)

    @property
    def command(self):
        return self.argv[COMMAND]

    def option_pairs(self):
        """(index, option, value) of the daemon options before the first other argument."""
        field = MIN_FIELDS
        argv = self.argv
        while field < len(argv):
            arg = argv[field]
            if not arg.startswith("-") or arg == "--":
                break
            if expects_value(arg) and field + 1 < len(argv):
                yield field, arg, argv[field + 1]
                field += 2
            else:
                field += 1

    def parameters(self):
        """The `-o name=value` settings, later ones replacing earlier ones."""
        result = {}
        for _, option, value in self.option_pairs():
            if option == "-o":
                name, val, err = split_nameval(value)
                if err is None:
                    result[name] = val
        return result


def split_fields(text):
    """Whitespace-separated fields; a `{ ... }` group is one field (argv_splitq)."""
    return tokens_quoted(text, BLANKS, CHARS_BRACE)


def _fatal(text):
    msg.fatal(text.replace("\n", " "))


def check_fields(argv, raw_text):
    """postconf's sanity checks of the type, boolean, wakeup and process-limit fields."""
    if argv[TYPE] not in SERVICE_TYPES:
        _fatal('invalid type field "%s" in "%s"' % (argv[TYPE], raw_text))
    for field in (PRIVATE, UNPRIV, CHROOT):
        value = argv[field]
        if len(value) != 1 or value not in "yn-":
            _fatal('invalid %s field "%s" in "%s"' % (FIELD_NAMES[field], value, raw_text))
    wakeup = argv[WAKEUP]
    digits = wakeup[:-1] if wakeup.endswith("?") else wakeup
    if wakeup != "-" and not _all_digits_or_empty(digits):
        _fatal('invalid wakeup field "%s" in "%s"' % (wakeup, raw_text))
    maxproc = argv[MAXPROC]
    if maxproc != "-" and not _all_digits_or_empty(maxproc):
        _fatal('invalid process_limit field "%s" in "%s"' % (maxproc, raw_text))


def _all_digits_or_empty(text):
    return all("0" <= ch <= "9" for ch in text)


def _extract_braces(argv, field):
    payload, err = extract_parens(argv[field], CHARS_BRACE, strip=True)
    if err:
        msg.warn("master.cf: %s" % err)
    argv[field] = payload


def _normalize_nameval(argv, field):
    name, value, err = split_nameval(argv[field])
    if err:
        msg.warn('master.cf: %s: "%s"' % (err, argv[field]))
    else:
        argv[field] = "%s=%s" % (name, value)


def expects_value(arg):
    """Whether a daemon option takes the next argument as its value.

    A bare `-` counts, because Postfix tests the character after the dash with strchr(),
    which also matches the terminating NUL.
    """
    return arg[1:2] == "" or arg[1] in OPTIONS_WITH_VALUE


def normalize_args(argv):
    """Bring daemon options into `-o` `name=value` form and strip `{}` (in place)."""
    field = MIN_FIELDS
    while field < len(argv):
        arg = argv[field]
        if not arg.startswith("-") or arg == "--":
            break
        for pos in range(2, len(arg)):
            if arg[pos] in OPTIONS_WITH_VALUE:
                # Split "-vozz" into "-v" and "-ozz".
                argv.insert(field + 1, "-" + arg[pos:])
                argv[field] = arg = arg[:pos]
                break
        if not expects_value(arg):
            field += 1
            continue
        extract = False
        if len(arg) > 2:
            # Split "-oname=value" into "-o" and "name=value".
            argv[field] = arg[:2]
            argv.insert(field + 1, arg[2:])
            field += 1
            extract = argv[field].startswith("{")
        elif field + 1 < len(argv):
            field += 1
            extract = argv[field].startswith("{")
        if extract:
            _extract_braces(argv, field)
            if argv[field - 1][1:2] == "o":
                _normalize_nameval(argv, field)
        field += 1
    while field < len(argv):
        if argv[field].startswith("{"):
            _extract_braces(argv, field)
        field += 1


def parse_entry(text):
    """(argv, error) for one logical line; error is Postfix's text for a bad field count."""
    argv = split_fields(text)
    if len(argv) < MIN_FIELDS:
        return None, "bad field count"
    check_fields(argv, text)
    normalize_args(argv)
    return argv, None


def read_master_cf(path, fail_on_open_error=True):
    """The entries of master.cf in file order; None (with a warning) when it cannot be read
    and that is allowed."""
    try:
        text = read_text(path)
    except ReadError:
        # Postfix's reader takes a read error for the end of the file.
        text = ""
    except OSError as exc:
        if fail_on_open_error:
            msg.fatal("open %s: %s" % (path, msg.strerror(exc)))
        msg.warn("open %s: %s" % (path, msg.strerror(exc)))
        return []
    entries = []
    for line, first, _ in logical_lines(text, path):
        argv, err = parse_entry(line)
        if err:
            msg.fatal("file %s: line %d: %s" % (path, first, err))
        entries.append(MasterEntry(argv, first))
    return entries

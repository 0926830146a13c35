"""Showing master.cf: `postconf -M`, `-F` and `-P` (Postfix's postconf_master.c).

-M prints whole entries in Postfix's own layout (the eight fields aligned on fixed
columns, each `-o name=value` on its own line with -f); -F prints `name/type/field = value`
records, -P the `name/type/parameter = value` settings of each entry. Filters are
service patterns (match.py); a filter that selects nothing is warned about afterwards.
format_entry() is also the layout `postconf -M/-F/-P -e` writes back into master.cf.
"""

from pyfix.common import msg
from pyfix.common.master_cf import COMMAND, MIN_FIELDS, expects_value
from pyfix.common.strings import byte_length

from pyfix.commands.postconf.match import (FIELD_WILDCARD, WILDCARD, field_name,
                                           match_service, parse_field_pattern,
                                           parse_service_pattern)
from pyfix.commands.postconf.output import INDENT, LINE_LIMIT, print_line, write
from pyfix.commands.postconf.session import (FOLD_LINE, HIDE_NAME, HIDE_VALUE,
                                             SHOW_EVAL)

# Preferred start column of each of the eight fields in -M output.
COLUMN_GOALS = (0, 11, 17, 25, 33, 41, 49, 57)
BLANKS = " \t\r\n"

# What an option and its value add to the width test besides their own lengths: in -M
# output Postfix counts three, in -F output one (the separating space).
ENTRY_VALUE_EXTRA = 3
FIELD_VALUE_EXTRA = 1


def has_blank(text):
    return any(ch in BLANKS for ch in text)


class _Line:
    """Output text with the current column counted in bytes, as C's strlen() does."""

    def __init__(self):
        self.parts = []
        self.length = 0

    def add(self, text):
        self.parts.append(text)
        self.length += byte_length(text)

    def wrap(self):
        self.parts.append("\n" + INDENT)
        self.length = len(INDENT)

    def text(self):
        return "".join(self.parts) + "\n"


def _format_args(line, mode, argv, field, expand, value_extra):
    """Append the daemon options and arguments argv[field:] to line."""
    in_options = True
    while field < len(argv):
        arg = argv[field]
        width = byte_length(arg)
        value = None
        braces = False
        if in_options:
            if not arg.startswith("-") or arg == "--":
                # The first non-option argument is never braced: Postfix decides about
                # braces for it before it knows that the options have ended.
                in_options = False
            elif expects_value(arg) and field + 1 < len(argv):
                value = argv[field + 1]
                line.length = LINE_LIMIT        # an option with a value starts a line
                if arg == "-o" and expand is not None:
                    value = expand(value)
                width += byte_length(value) + value_extra
                braces = has_blank(value)
                if braces:
                    width += 2
        else:
            braces = has_blank(arg)
        if line.length > len(INDENT):
            if not mode & FOLD_LINE or line.length + 1 + width < LINE_LIMIT:
                line.add(" ")
            else:
                line.wrap()
        line.add("{%s}" % arg if braces and not in_options else arg)
        if value is not None:
            line.add(" ")
            line.add("{%s}" % value if braces else value)
            field += 1
            line.length = LINE_LIMIT            # and the next item starts another
        field += 1


def format_entry(mode, argv, expand=None):
    """One master.cf entry as pcf_print_master_entry() lays it out (with newline)."""
    line = _Line()
    for field in range(MIN_FIELDS):
        if line.length > 0:
            line.add(" ")
            while line.length < COLUMN_GOALS[field]:
                line.add(" ")
        line.add(argv[field])
    _format_args(line, mode, argv, MIN_FIELDS, expand, ENTRY_VALUE_EXTRA)
    return line.text()


def format_field(mode, argv, field, expand=None):
    """One `name/type/field = value` record; the command field includes its arguments."""
    line = _Line()
    if not mode & HIDE_NAME:
        line.add("%s/%s/%s" % (argv[0], argv[1], field_name(field)))
    if not mode & (HIDE_NAME | HIDE_VALUE):
        line.add(" = ")
    if not mode & HIDE_VALUE:
        # Unlike the arguments below, a long first value wraps even without -f.
        if line.length > 0 and line.length + byte_length(argv[field]) > LINE_LIMIT:
            line.wrap()
        line.add(argv[field])
        if field == COMMAND:
            _format_args(line, mode, argv, field + 1, expand, FIELD_VALUE_EXTRA)
    return line.text()


def _expander(session, mode, scope):
    if not mode & SHOW_EVAL:
        return None
    return lambda value: session.expand(value, mode, scope)


class _Request:
    """One command-line filter and how often it matched."""

    def __init__(self, raw, pattern):
        self.raw = raw
        self.pattern = pattern
        self.count = 0


def _parse_requests(args, max_parts, error):
    requests = []
    for raw in args:
        pattern = parse_service_pattern(raw, 1, max_parts)
        if pattern is None:
            msg.fatal(error)
        requests.append(_Request(raw, pattern))
    return requests


def _warn_unmatched(requests):
    for req in requests:
        if req.count == 0:
            msg.warn('unmatched request: "%s"' % req.raw)


def _matching(requests, argv):
    """The requests that select this entry, counted; an entry can be selected twice."""
    for req in requests:
        if match_service(req.pattern, argv[0], argv[1]):
            req.count += 1
            yield req


def show_entries(session, mode, args):
    """postconf -M [service[/type]...]"""
    requests = _parse_requests(args, 2, "-M option requires service_name[/type]")
    for scope in session.services:
        expand = _expander(session, mode, scope)
        times = sum(1 for _ in _matching(requests, scope.argv)) if requests else 1
        for _ in range(times):
            write(format_entry(mode, scope.argv, expand))
    _warn_unmatched(requests)


def show_fields(session, mode, args):
    """postconf -F [service[/type[/field]]...]"""
    requests = _parse_requests(args, 3, "-F option requires service_name[/type[/field]]")
    for req in requests:
        req.field = parse_field_pattern(req.pattern[2])
    all_fields = range(COMMAND + 1)
    for scope in session.services:
        expand = _expander(session, mode, scope)
        if not requests:
            selections = [all_fields]
        else:
            selections = [all_fields if req.field == FIELD_WILDCARD else [req.field]
                          for req in _matching(requests, scope.argv)]
        for fields in selections:
            for field in fields:
                write(format_field(mode, scope.argv, field, expand))
    _warn_unmatched(requests)


def _print_param(session, mode, scope, name, value):
    if mode & HIDE_VALUE:
        print_line(mode, "%s/%s" % (scope.name_space, name))
        return
    if mode & SHOW_EVAL:
        value = session.expand(value, mode, scope)
    if mode & HIDE_NAME:
        print_line(mode, value)
    else:
        print_line(mode, "%s/%s = %s" % (scope.name_space, name, value))


def _byte_key(name):
    return name.encode("utf-8", "surrogateescape")


def _print_all_params(session, mode, scope):
    params = scope.all_params
    for name in sorted(params, key=_byte_key):
        _print_param(session, mode, scope, name, params[name])


def show_params(session, mode, args):
    """postconf -P [service[/type[/parameter]]...]"""
    requests = _parse_requests(args, 3,
                               "-P option requires service_name[/type[/parameter]]")
    for scope in session.services:
        params = scope.all_params
        if params is None:
            continue            # entries without -o settings take no part at all
        if not requests:
            _print_all_params(session, mode, scope)
            continue
        for req in requests:
            if not match_service(req.pattern, scope.argv[0], scope.argv[1]):
                continue
            name = req.pattern[2]
            if name == WILDCARD:
                _print_all_params(session, mode, scope)
                req.count += 1
            elif name in params:
                _print_param(session, mode, scope, name, params[name])
                req.count += 1
    _warn_unmatched(requests)

"""Editing main.cf and master.cf in place (Postfix's postconf_edit.c).

main.cf: `postconf -e name=value...` replaces each named parameter where it stands (a
continued value as a unit) and appends the ones not found; `-X name...` removes them,
`-# name...` comments them out. master.cf: `-M name/type=entry` replaces or adds a whole
service, `-MX`/`-M#` remove or comment one out, `-F name/type/field=value` and
`-P name/type/param=value` (`-PX name/type/param`) change one field or `-o` setting; an
entry that is changed this way is written back in Postfix's layout (master_show).

Every other line is copied byte for byte, a missing final newline included. The result
replaces the file through a temporary file and rename (edit_file.py).
"""

import os

from pyfix.common import msg
from pyfix.common.config import MAIN_CF, MASTER_CF
from pyfix.common.master_cf import (COMMAND, MIN_FIELDS, check_fields, expects_value,
                                    normalize_args, parse_entry, split_fields)
from pyfix.common.readlline import ReadError, read_text
from pyfix.common.strings import SPACE, split_nameval, tokens

from pyfix.commands.postconf.edit_file import EditFile
from pyfix.commands.postconf.master_show import BLANKS, format_entry, has_blank
from pyfix.commands.postconf.match import (FIELD_WILDCARD, WILDCARD, match_service,
                                           parse_field_pattern, parse_service_pattern)
from pyfix.commands.postconf.session import (COMMENT_OUT, EDIT_CONF, EDIT_EXCL, FOLD_LINE,
                                             MASTER_ENTRY, MASTER_FLD, MASTER_PARAM)

MASTER_MODES = MASTER_ENTRY | MASTER_FLD | MASTER_PARAM
MASTER_EDIT_OPTIONS = "-Me, -Fe, -Pe, -X, or -#"
# Where a main.cf parameter name ends on its line.
NAME_END = " \t\r\n="


# -- reading the file as lines -------------------------------------------------------------

class _Lines:
    """The physical lines of a file, each with its newline (the last one may lack it)."""

    def __init__(self, text):
        self.lines = text.split("\n")
        last = self.lines.pop()
        self.lines = [line + "\n" for line in self.lines]
        if last:
            self.lines.append(last)
        self.pos = 0
        self.lineno = 0

    def get(self):
        if self.pos >= len(self.lines):
            return None
        self.pos += 1
        return self.lines[self.pos - 1]

    def peek_char(self):
        return self.lines[self.pos][:1] if self.pos < len(self.lines) else None


def _content_start(line):
    """Index of a line's first non-blank character; None for comment and blank lines."""
    start = len(line) - len(line.lstrip(SPACE))
    if start == len(line) or line[start] == "#":
        return None
    return start


def _next_content_line(src, dst):
    """The next line with content and where its text starts; other lines go to dst."""
    while True:
        line = src.get()
        if line is None:
            return None, None
        src.lineno += 1
        start = _content_start(line)
        if start is not None:
            return line, start
        dst.write(line)


def _read_source(path):
    try:
        return _Lines(read_text(path))
    except ReadError as exc:
        msg.fatal("read %s: %s" % (path, msg.strerror(exc)))
    except OSError as exc:
        msg.fatal("open %s for reading: %s" % (path, msg.strerror(exc)))


def _check_edit_arg(text, options):
    """The argument without leading blanks, after the checks every edit request gets."""
    if "\n" in text:
        msg.fatal("%s no multi-line input" % options)
    text = text.lstrip(SPACE)
    if text.startswith("#"):
        msg.fatal("%s no comment input" % options)
    return text


# -- main.cf ---------------------------------------------------------------------------

def _main_requests(mode, args):
    """name -> [value, times found]; a later request for a name replaces an earlier one."""
    requests = {}
    for arg in args:
        text = _check_edit_arg(arg, "-e, -X, or -# accepts")
        if mode & EDIT_CONF:
            name, value, err = split_nameval(text)
            if err:
                msg.fatal('%s: "%s"' % (err, text))
        else:
            if text == "":
                msg.fatal("-X or -# requires non-blank parameter names")
            if "=" in text:
                msg.fatal("-X or -# requires parameter names without value")
            # Trailing blanks stay part of the name (and then match nothing), as in Postfix.
            name, value = text, None
        if name in requests:
            earlier = requests.pop(name)[0]
            # For a repeated -X or -# name (no value) Postfix crashes instead.
            msg.warn("ignoring earlier request: '%s'" % name if earlier is None
                     else "ignoring earlier request: '%s = %s'" % (name, earlier))
        requests[name] = [value, 0]
    return requests


def edit_main(session, mode, args):
    """postconf -e / -X / -# on main.cf."""
    requests = _main_requests(mode, args)
    session.set_config_dir()
    path = os.path.join(session.config_dir, MAIN_CF)
    with EditFile(path) as dst:
        src = _read_source(path)
        _copy_main(mode, requests, path, src, dst)
        if mode & EDIT_CONF:
            for name, (value, found) in requests.items():
                if not found:
                    dst.write("%s = %s\n" % (name, value))
        dst.commit()


def _copy_main(mode, requests, path, src, dst):
    selected = False            # whether the current logical line is being edited
    while True:
        line, start = _next_content_line(src, dst)
        if line is None:
            return
        if start > 0:
            # A continuation line goes with the line it continues.
            if not selected:
                dst.write(line)
            elif mode & COMMENT_OUT:
                dst.write("#" + line)
            continue
        name = _leading_name(line)
        request = requests.get(name)
        selected = request is not None
        if not selected:
            dst.write(line)
            continue
        request[1] += 1
        if request[1] == 2:
            msg.warn('%s: multiple entries for "%s"' % (path, name))
        if mode & EDIT_CONF:
            dst.write("%s = %s\n" % (name, request[0]))
        elif mode & COMMENT_OUT:
            dst.write("#" + line)


def _leading_name(line):
    end = 0
    while end < len(line) and line[end] not in NAME_END:
        end += 1
    return line[:end]


# -- master.cf -------------------------------------------------------------------------

class _MasterRequest:
    """One `name/type[/field-or-parameter][=value]` argument."""

    def __init__(self, raw):
        self.raw = raw
        self.count = 0
        self.value = None
        self.pattern = None
        self.field = None
        self.param = None


def _master_request(mode, raw):
    req = _MasterRequest(raw)
    text = _check_edit_arg(raw, MASTER_EDIT_OPTIONS + " accept")
    if mode & EDIT_CONF:
        pattern, req.value, err = split_nameval(text)
        if err:
            msg.fatal('%s: "%s"' % (err, raw))
    else:
        if "=" in text:
            msg.fatal("-X or -# requires names without value")
        pattern = text
    kind = mode & MASTER_MODES
    if kind == MASTER_ENTRY:
        req.pattern = parse_service_pattern(pattern, 2, 2)
        if req.pattern is None:
            msg.fatal("-Me, -MX or -M# requires service_name/type")
    elif kind == MASTER_FLD:
        req.pattern = parse_service_pattern(pattern, 3, 3)
        if req.pattern is None:
            msg.fatal("-Fe or -FX requires service_name/type/field_name")
        req.field = parse_field_pattern(req.pattern[2])
        if req.field == FIELD_WILDCARD:
            msg.fatal("-Fe does not accept wild-card field name")
        if mode & EDIT_CONF and req.field < COMMAND and has_blank(req.value):
            msg.fatal("-Fe does not accept whitespace in non-command field")
    else:
        req.pattern = parse_service_pattern(pattern, 3, 3)
        if req.pattern is None:
            msg.fatal("-Pe or -PX requires service_name/type/parameter")
        req.param = req.pattern[2]
        if req.param == WILDCARD:
            msg.fatal("-Pe does not accept wild-card parameter name")
        if mode & EDIT_CONF and has_blank(req.value):
            msg.fatal("-Pe does not accept whitespace in parameter value")
    return req


def edit_master(session, mode, args):
    """postconf -M/-F/-P with -e, -X or -# on master.cf."""
    requests = [_master_request(mode, raw) for raw in args]
    session.set_config_dir()
    path = os.path.join(session.config_dir, MASTER_CF)
    with EditFile(path) as dst:
        src = _read_source(path)
        _MasterEditor(mode, requests, path, src, dst).run()
        _add_unmatched(mode, requests, dst)
        dst.commit()


def _add_unmatched(mode, requests, dst):
    """New services for -Me requests that replaced nothing; -F/-P: warn."""
    for req in requests:
        if req.count:
            continue
        if mode & MASTER_ENTRY and mode & EDIT_CONF:
            argv, err = parse_entry(req.value)
            if err:
                msg.fatal('%s: "%s"' % (err, req.raw))
            dst.write(format_entry(FOLD_LINE, argv))
        elif not mode & MASTER_ENTRY:
            msg.warn('unmatched service_name/type: "%s"' % req.raw)


class _MasterEditor:
    """The copy loop of pcf_edit_master(): one pass over master.cf."""

    def __init__(self, mode, requests, path, src, dst):
        self.mode = mode
        self.requests = requests
        self.path = path
        self.src = src
        self.dst = dst
        self.selected = False   # sticky: the current entry matched some request

    def run(self):
        mode, dst = self.mode, self.dst
        while True:
            line, start = _next_content_line(self.src, dst)
            if line is None:
                return
            if start > 0:
                if not self.selected:
                    dst.write(line)
                elif mode & COMMENT_OUT:
                    dst.write("#" + line)
                continue
            new_entry = self.edit_entry(line)
            if new_entry is not None:
                dst.write(format_entry(FOLD_LINE, new_entry))
            elif not self.selected:
                dst.write(line)
            elif mode & COMMENT_OUT:
                dst.write("#" + line)

    def _name_and_type(self, line):
        words = tokens(line, BLANKS)
        where = "file %s: line %d: " % (self.path, self.src.lineno)
        if len(words) < 2:
            msg.fatal(where + "specify service name and type on the same line")
        name, service_type = words[0], words[1]
        if "=" in name:
            msg.fatal(where + 'service name syntax "%s" is unsupported with %s'
                      % (name, MASTER_EDIT_OPTIONS))
        if any(ch in "=/" for ch in service_type):
            msg.fatal(where + 'service type syntax "%s" is unsupported with %s'
                      % (service_type, MASTER_EDIT_OPTIONS))
        return name, service_type

    def edit_entry(self, line):
        """The replacement for the entry starting at line, or None; sets self.selected."""
        mode = self.mode
        name, service_type = self._name_and_type(line)
        self.selected = False
        new_entry = None
        whole_entry = mode & MASTER_ENTRY and mode & EDIT_CONF
        for req in self.requests:
            # -Me: the new entry also replaces an entry with its own name and type.
            tentative = self._parse_new_entry(req) if whole_entry else None
            take_tentative = False
            if match_service(req.pattern, name, service_type):
                self.selected = True
                req.count += 1
                if mode & EDIT_CONF or (mode & MASTER_PARAM and mode & EDIT_EXCL):
                    if mode & MASTER_ENTRY:
                        take_tentative = req.count == 1
                    else:
                        if new_entry is None:
                            new_entry = self._parse_old_entry(line)
                        self._apply(req, new_entry)
            elif tentative is not None and match_service(tentative, name, service_type):
                self.selected = True
                req.count += 1
                take_tentative = req.count == 1
            if take_tentative:
                new_entry = tentative
        return new_entry

    @staticmethod
    def _parse_new_entry(req):
        argv, err = parse_entry(req.value)
        if err:
            msg.fatal('%s: "%s"' % (err, req.raw))
        return argv

    def _parse_old_entry(self, line):
        """Parse the entry with its continuation lines (comments among them pass through)."""
        text = self._gobble(line)
        argv, err = parse_entry(text)
        if err:
            msg.fatal("file %s: line %d: %s" % (self.path, self.src.lineno, err))
        return argv

    def _gobble(self, line):
        parts = [line]
        while True:
            following = self.src.peek_char()
            # Postfix does not count these lines: later messages name the entry's first.
            if following is None or (following != "#" and following not in SPACE):
                break
            extra = self.src.get()
            if _content_start(extra) is None:
                self.dst.write(extra)
            else:
                parts.append(extra)
        return "".join(parts)

    def _apply(self, req, argv):
        if self.mode & MASTER_FLD:
            edit_field(argv, req.field, req.value)
        else:
            edit_param(argv, self.mode, req.param, req.value)


def edit_field(argv, field, value):
    """Replace one field; a new command field brings its own arguments (in place)."""
    if field == COMMAND:
        del argv[COMMAND:]
        argv.extend(split_fields(value))
        if len(argv) < MIN_FIELDS:
            # Postfix crashes on an empty command; refuse it instead.
            msg.fatal('invalid command field "%s"' % value)
        normalize_args(argv)
    else:
        argv[field] = value
    check_fields(argv, value)


def edit_param(argv, mode, name, value):
    """Update, remove or add `-o name=value` among the daemon options (in place)."""
    prefix = name + "="
    found = False
    field = MIN_FIELDS
    while field < len(argv):
        arg = argv[field]
        if not arg.startswith("-") or arg == "--":
            break
        if expects_value(arg) and field + 1 < len(argv):
            if arg == "-o" and argv[field + 1].startswith(prefix):
                found = True
                if mode & EDIT_CONF:
                    argv[field + 1] = prefix + value
                else:
                    del argv[field:field + 2]
                    continue
            field += 1
        field += 1
    if mode & EDIT_CONF and not found:
        argv[field:field] = ["-o", prefix + value]

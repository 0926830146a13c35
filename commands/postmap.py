"""postmap(1): build, query, list and edit lookup tables (Postfix's src/postmap/postmap.c).

    postmap [-bfFhimnNoprsuUvw] [-c config_dir] [-d key] [-q key] [type:]file...

Without -q, -s or -d each file is a source (`key whitespace value` lines, see
maps/dict_thash.py) from which `type:file` is rebuilt (maps/mkmap.py); -i reads the
entries from standard input into the existing table instead. -q KEY prints the value of
the first table that has KEY (exit 0, else 1); `-q -` reads keys from standard input and
prints `key<TAB>value` for each key found, or, with -h / -b (and -m), takes the input as a
message and looks up its header lines or body lines, as header_checks and body_checks
do. -s lists the first table; -d deletes a key from each table. Types without a prefix
are default_database_type. Messages and exit statuses are Postfix's.
"""

import os

from pyfix.common import msg
from pyfix.maps import dict as dict_mod
from pyfix.maps.dict import (ERR_CONFIG, ERR_NONE, FLAG_BULK_UPDATE, FLAG_LOCK,
                             FLAG_SRC_RHS_IS_FILE, FLAG_UTF8_MASK)
from pyfix.maps.mkmap import mkmap_open
from pyfix.commands import table_tool as tool
from pyfix.commands.table_tool import OUT, c_string, split_map

OPTSTRING = "bc:d:fFhimnNopq:rsuUvw"
USAGE = ("usage: %s [-bfFhimnNoprsuUvw] [-c config_dir] [-d key] [-q key]"
         " [map_type:]file...")

FLAG_HEADER_KEY = 1 << 2  # bits 0 and 1: table_tool.FLAG_AS_OWNER, FLAG_SAVE_PERM
FLAG_BODY_KEY = 1 << 3
FLAG_MIME_KEY = 1 << 4
FLAG_HB_KEY = FLAG_HEADER_KEY | FLAG_BODY_KEY
FLAG_FULL_KEY = FLAG_BODY_KEY | FLAG_MIME_KEY
FLAG_ANY_KEY = FLAG_HB_KEY | FLAG_MIME_KEY


class Options(tool.TableOptions):
    def __init__(self):
        super().__init__()
        self.force_utf8 = False


_KEY_OPTIONS = {"b": FLAG_BODY_KEY, "h": FLAG_HEADER_KEY, "m": FLAG_MIME_KEY}


def parse_args(progname, argv):
    opts = Options()
    for letter, value in tool.options(progname, argv, OPTSTRING, USAGE % progname):
        if letter is None:
            opts.args = value
        elif letter in _KEY_OPTIONS:
            opts.tool_flags |= _KEY_OPTIONS[letter]
        elif letter == "F":
            opts.dict_flags |= FLAG_SRC_RHS_IS_FILE
        elif letter == "U":
            opts.force_utf8 = True
        else:
            tool.common_option(opts, letter, value)
    return opts


# -- building ----------------------------------------------------------------------------


def _file_value(mkmap, source, lineno, value):
    from pyfix.maps.dict_file import DictFileError, file_to_b64
    try:
        return file_to_b64(value)
    except DictFileError as exc:
        msg.warn("%s, line %d: %s: skipping this entry" % (source.path, lineno, exc))
        return None


def feed_entries(mkmap, source, dict_flags):
    """Every entry of the source into the table (postmap's read loop)."""
    from pyfix.maps.dict_thash import (UNBALANCED, non_utf8_line, source_lines,
                                       split_entry)
    path = source.path
    for line, lineno in source_lines(source.text, path):
        if non_utf8_line(mkmap.dict, line):
            msg.warn('%s, line %d: non-UTF-8 input "%s" -- ignoring this line'
                     % (path, lineno, line))
            continue
        key, value = split_entry(line)
        if key is None:
            if value == UNBALANCED:
                msg.warn("%s, line %d: unbalanced '\"' in '%s' -- ignoring this line"
                         % (path, lineno, line))
            else:
                msg.warn("%s, line %d: expected format: key whitespace value"
                         % (path, lineno))
            continue
        if key.endswith(":"):
            msg.warn('%s, line %d: record is in "key: value" format; is this an alias file?'
                     % (path, lineno))
        if dict_flags & FLAG_SRC_RHS_IS_FILE:
            value = _file_value(mkmap, source, lineno, value)
            if value is None:
                continue
        mkmap.append(key, value)
        if mkmap.dict.error:
            msg.fatal("table %s:%s: write error: %s"
                      % (mkmap.dict.type, mkmap.dict.name, tool.errno_text(mkmap.dict)))


def postmap(map_type, path, opts):
    """Rebuild type:path from the file path, or update it from stdin (-i)."""
    dict_flags = opts.dict_flags
    if opts.open_flags & os.O_TRUNC:
        if map_type == "proxy":
            msg.fatal("can't create maps via the proxy service")
        dict_flags |= FLAG_BULK_UPDATE
        source = tool.open_source(path)
    else:
        source = tool.stdin_source()
    tool.preload(map_type, dict_flags & FLAG_SRC_RHS_IS_FILE)
    with tool.RebuildPrivileges(source.st, opts.tool_flags & tool.FLAG_SAVE_PERM,
                                opts.tool_flags & tool.FLAG_AS_OWNER):
        mkmap = mkmap_open(map_type, path, opts.open_flags, dict_flags)
    mkmap.build(lambda target: feed_entries(target, source, dict_flags))


# -- queries -----------------------------------------------------------------------------


def lookup(table, key, dict_flags):
    if dict_flags & FLAG_SRC_RHS_IS_FILE:
        from pyfix.maps.dict_file import file_lookup
        return file_lookup(table, key)
    return table.lookup(key)


def query_error(table):
    if table.error == ERR_NONE:
        return
    if table.error == ERR_CONFIG:
        msg.fatal("table %s:%s: query error" % (table.type, table.name))
    msg.fatal("table %s:%s: query error: %s" % (table.type, table.name, tool.errno_text(table)))


class LazyTables:
    """The tables of `-q -`, each opened when it is first needed."""

    def __init__(self, specs, default_type, dict_flags):
        self.specs = [split_map(spec, default_type) for spec in specs]
        self.tables = [None] * len(specs)
        self.dict_flags = dict_flags

    def get(self, index):
        table = self.tables[index]
        if table is None:
            dict_type, name = self.specs[index]
            table = self.tables[index] = dict_mod.dict_open3(dict_type, name, os.O_RDONLY,
                                                             self.dict_flags)
        return table

    def find(self, key):
        """Print `key<TAB>value` for the first table that has key; True if one did."""
        for index in range(len(self.tables)):
            table = self.get(index)
            value = lookup(table, key, self.dict_flags)
            if value is not None:
                if value == "":
                    tool.warn_empty_result(table.type, table.name, key)
                OUT.write("%s\t%s\n" % (key, value))
                return True
            query_error(table)
        return False

    def close(self):
        for table in self.tables:
            if table is not None:
                table.close()


def postmap_queries(specs, opts, default_type, dict_flags):
    tables = LazyTables(specs, default_type, dict_flags)
    found = False
    if not opts.tool_flags & FLAG_HB_KEY:
        for key in tool.stdin_lines():
            found |= tables.find(c_string(key))
    else:
        from pyfix.commands.postmap_mime import message_queries
        found = message_queries(tables, opts.tool_flags)
    if found:
        OUT.flush()
    tables.close()
    return found


def postmap_query(map_type, name, key, dict_flags):
    table = dict_mod.dict_open3(map_type, name, os.O_RDONLY, dict_flags)
    value = lookup(table, key, dict_flags)
    if value is not None:
        if value == "":
            tool.warn_empty_result(map_type, name, key)
        OUT.write("%s\n" % value)
    query_error(table)
    OUT.flush()
    table.close()
    return value is not None


# -- deleting and listing ----------------------------------------------------------------


def _open_for_delete(dict_type, name, dict_flags):
    from pyfix.maps.mkmap import zero_fresh_memory
    zero_fresh_memory(True)             # as in a rebuild: no stale heap data in the file
    open_flags = os.O_RDWR | os.O_CREAT if dict_type == "proxy" else os.O_RDWR
    return dict_mod.dict_open3(dict_type, name, open_flags, dict_flags)


def delete_error(table):
    if table.error:
        msg.fatal("table %s:%s: delete error: %s"
                  % (table.type, table.name, tool.errno_text(table)))


def postmap_deletes(specs, default_type, dict_flags):
    tables = [_open_for_delete(*split_map(spec, default_type), dict_flags) for spec in specs]
    found = False
    for key in tool.stdin_lines():
        key = c_string(key)
        for table in tables:
            found |= table.delete(key) == 0
            delete_error(table)
    for table in tables:
        table.close()
    return found


def postmap_delete(map_type, name, key, dict_flags):
    table = _open_for_delete(map_type, name, dict_flags)
    status = table.delete(key)
    delete_error(table)
    table.close()
    return status == 0


def print_sequence(map_type, name, dict_flags, separator):
    """postmap -s / postalias -s: every entry of one table."""
    if map_type == "proxy":
        msg.fatal("can't sequence maps via the proxy service")
    table = dict_mod.dict_open3(map_type, name, os.O_RDONLY, dict_flags)
    for key, value in table.items():
        if key == "":
            msg.warn("table %s:%s: empty lookup key value is not allowed" % (map_type, name))
        elif value == "":
            tool.warn_empty_result(map_type, name, key)
        if dict_flags & FLAG_SRC_RHS_IS_FILE:
            value = _decoded_file(table, key, value)
            if value is None:
                continue
        OUT.write("%s%s%s\n" % (key, separator, value))
    if table.error:
        msg.fatal("table %s:%s: sequence error: %s"
                  % (table.type, table.name, tool.errno_text(table)))
    OUT.flush()
    table.close()


def _decoded_file(table, key, value):
    from pyfix.maps.dict_file import DictFileError, file_from_b64
    try:
        return file_from_b64(value)
    except DictFileError as exc:
        msg.warn("table %s:%s: key %s: %s" % (table.type, table.name, key, exc))
        return None


# -- main --------------------------------------------------------------------------------


def check_message_options(opts):
    flags = opts.tool_flags
    if (opts.query is None or opts.query != "-") and flags & FLAG_ANY_KEY:
        msg.fatal('specify -b -h or -m only with "-q -"')
    if flags & FLAG_ANY_KEY and flags & FLAG_ANY_KEY == flags & FLAG_MIME_KEY:
        msg.warn("ignoring -m option without -b or -h")
    if flags & (FLAG_ANY_KEY & ~FLAG_MIME_KEY) and not opts.force_utf8:
        opts.dict_flags &= ~FLAG_UTF8_MASK


def dispatch(progname, opts, default_type):
    """The -d, -q, -s or rebuild work; returns the exit status."""
    args = opts.args
    if opts.delkey is not None or opts.query is not None:
        if not args:
            msg.fatal(USAGE % progname)
    dict_flags = opts.dict_flags | FLAG_LOCK
    if opts.delkey is not None:
        if opts.delkey == "-":
            return 0 if postmap_deletes(args, default_type, dict_flags) else 1
        found = False
        for spec in args:
            found |= postmap_delete(*split_map(spec, default_type), opts.delkey, dict_flags)
        return 0 if found else 1
    if opts.query is not None:
        if opts.query == "-":
            return 0 if postmap_queries(args, opts, default_type, dict_flags) else 1
        for spec in args:
            if postmap_query(*split_map(spec, default_type), opts.query, dict_flags):
                return 0
        return 1
    if opts.sequence:
        if not args:
            return 1
        print_sequence(*split_map(args[0], default_type), dict_flags, "\t")
        return 0
    if not args:
        msg.fatal(USAGE % progname)
    for spec in args:
        postmap(*split_map(spec, default_type), opts)
    return 0


def run(argv):
    progname = tool.start(argv)
    opts = parse_args(progname, argv)
    config = tool.read_config(progname)
    check_message_options(opts)
    if opts.tool_flags & FLAG_ANY_KEY:
        from pyfix.commands import postmap_mime
        postmap_mime.configure(config)
    return dispatch(progname, opts, config.get("default_database_type"))


def main():
    return tool.main_wrapper(run)

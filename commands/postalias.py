"""postalias(1): build, query, list and edit alias databases (Postfix's
src/postalias/postalias.c).

    postalias [-Nfinoprsuvw] [-c config_dir] [-d key] [-q key] [type:]file...

An alias source line is `name: value`, read as RFC 822 tokens (common/tok822.py): the
name is everything before the first `:` in internal form, the value the rest in
external (quoted) form. A line without a name, a value or with a comma before the colon
is `need name:value pair`; a name with `@` or `%` is `name must be local`. After the
entries postalias stores the sendmail completion marker `@` -> `@` and the NIS entries
YP_LAST_MODIFIED (the build time) and YP_MASTER_NAME ($myhostname), the latter two
without a trailing NUL and without case folding, as Debian's postalias (built with NIS)
does. -q, -s and -d work as postmap's, printing `key:<TAB>value` for `-q -` and -s.
"""

import os
import time

from pyfix.common import msg, tok822
from pyfix.maps import dict as dict_mod
from pyfix.maps.dict import (FLAG_BULK_UPDATE, FLAG_DUP_REPLACE, FLAG_FOLD_FIX, FLAG_LOCK,
                             FLAG_TRY0NULL, FLAG_TRY1NULL)
from pyfix.maps.mkmap import mkmap_open
from pyfix.commands import table_tool as tool
from pyfix.commands.postmap import postmap_delete, postmap_deletes, print_sequence
from pyfix.commands.table_tool import OUT, c_string, split_map

OPTSTRING = "Nc:d:finopq:rsuvw"
USAGE = "usage: %s [-Nfinoprsuvw] [-c config_dir] [-d key] [-q key] [map_type:]file..."

def parse_args(progname, argv):
    opts = tool.TableOptions()
    for letter, value in tool.options(progname, argv, OPTSTRING, USAGE % progname):
        if letter is None:
            opts.args = value
        else:
            tool.common_option(opts, letter, value)
    return opts


# -- building ----------------------------------------------------------------------------


def alias_entry(line, path, lineno):
    """(name, value) of an alias line, None (with Postfix's warning) when it is not one."""
    tokens = tok822.scan(line)
    if not tokens:
        return None
    colon = next((i for i, tok in enumerate(tokens) if tok.type == ord(":")), None)
    if (colon is None or colon == 0 or colon == len(tokens) - 1
            or any(tok.type == ord(",") for tok in tokens[:colon])):
        msg.warn("%s, line %d: need name:value pair" % (path, lineno))
        return None
    if any(tok.type in (ord("@"), ord("%")) for tok in tokens[:colon]):
        msg.warn("%s, line %d: name must be local" % (path, lineno))
        return None
    return tok822.internalize(tokens[:colon]), tok822.externalize(tokens[colon + 1:])


def write_error(mkmap):
    if mkmap.dict.error:
        msg.fatal("table %s:%s: write error: %s"
                  % (mkmap.dict.type, mkmap.dict.name, tool.errno_text(mkmap.dict)))


def feed_aliases(mkmap, source, opts, myhostname):
    from pyfix.maps.dict_thash import non_utf8_line, source_lines
    path = source.path
    for line, lineno in source_lines(source.text, path):
        if non_utf8_line(mkmap.dict, line):
            msg.warn('%s, line %d: non-UTF-8 input "%s" -- ignoring this line'
                     % (path, lineno, line))
            continue
        entry = alias_entry(line, path, lineno)
        if entry is None:
            continue
        mkmap.append(*entry)
        write_error(mkmap)
    table = mkmap.dict
    if not opts.open_flags & os.O_TRUNC:
        table.flags |= FLAG_DUP_REPLACE
    mkmap.append("@", "@")
    write_error(mkmap)
    table.flags = (table.flags & ~FLAG_TRY1NULL) | FLAG_TRY0NULL
    table.flags &= ~FLAG_FOLD_FIX
    mkmap.append("YP_LAST_MODIFIED", "%010d" % int(time.time()))
    mkmap.append("YP_MASTER_NAME", myhostname)


def postalias(map_type, path, opts, config):
    dict_flags = opts.dict_flags
    if opts.open_flags & os.O_TRUNC:
        if map_type == "proxy":
            msg.fatal("can't create maps via the proxy service")
        dict_flags |= FLAG_BULK_UPDATE
        source = tool.open_source(path)
    else:
        source = tool.stdin_source()
    tool.preload(map_type, False)
    with tool.RebuildPrivileges(source.st, opts.tool_flags & tool.FLAG_SAVE_PERM,
                                opts.tool_flags & tool.FLAG_AS_OWNER):
        mkmap = mkmap_open(map_type, path, opts.open_flags, dict_flags)
    saved_flags = mkmap.dict.flags
    myhostname = config.get("myhostname")

    def feed(target):
        target.dict.flags = saved_flags
        feed_aliases(target, source, opts, myhostname)
    mkmap.build(feed)


# -- queries -----------------------------------------------------------------------------


def postalias_queries(specs, default_type, dict_flags):
    tables = [None] * len(specs)
    names = [split_map(spec, default_type) for spec in specs]
    found = False
    for key in tool.stdin_lines():
        key = c_string(key)
        for index, (dict_type, name) in enumerate(names):
            if tables[index] is None:
                tables[index] = dict_mod.dict_open3(dict_type, name, os.O_RDONLY, dict_flags)
            table = tables[index]
            value = table.lookup(key)
            if value is not None:
                if value == "":
                    tool.warn_empty_result(table.type, table.name, key)
                OUT.write("%s:\t%s\n" % (key, value))
                found = True
                break
            _query_error(table)
    if found:
        OUT.flush()
    for table in tables:
        if table is not None:
            table.close()
    return found


def _query_error(table):
    if table.error:
        msg.fatal("table %s:%s: query error: %s"
                  % (table.type, table.name, tool.errno_text(table)))


def postalias_query(map_type, name, key, dict_flags):
    table = dict_mod.dict_open3(map_type, name, os.O_RDONLY, dict_flags)
    value = table.lookup(key)
    if value is not None:
        if value == "":
            tool.warn_empty_result(map_type, name, key)
        OUT.write("%s\n" % value)
    _query_error(table)
    OUT.flush()
    table.close()
    return value is not None


# -- main --------------------------------------------------------------------------------


def dispatch(progname, opts, config):
    args = opts.args
    default_type = config.get("default_database_type")
    if (opts.delkey is not None or opts.query is not None) and not args:
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
            return 0 if postalias_queries(args, default_type, dict_flags) else 1
        for spec in args:
            if postalias_query(*split_map(spec, default_type), opts.query, dict_flags):
                return 0
        return 1
    if opts.sequence:
        if not args:
            return 1
        print_sequence(*split_map(args[0], default_type), dict_flags, ":\t")
        return 0
    if not args:
        msg.fatal(USAGE % progname)
    for spec in args:
        postalias(*split_map(spec, default_type), opts, config)
    return 0


def run(argv):
    progname = tool.start(argv)
    opts = parse_args(progname, argv)
    config = tool.read_config(progname)
    return dispatch(progname, opts, config)


def main():
    return tool.main_wrapper(run)

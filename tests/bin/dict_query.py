"""A stand-in for `postmap -q` over pyfix's Dict API (tests of the table types).

    dict_query.py [-c dir] [-f] [-F] -q key|-|-s type:name...

Prints what postmap prints for a query: the value (`-q key`) or `key<TAB>value` lines
(`-q -`, keys from stdin), with postmap's exit status and its fatal errors for a table
that cannot be opened or a failed query, so that a test can compare it with Debian's
postmap without depending on pyfix's own postmap command.
"""

import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from pyfix.common import msg  # noqa: E402
from pyfix.maps import dict_file  # noqa: E402
from pyfix.maps.dict import (ERR_CONFIG, FLAG_DUP_WARN, FLAG_FOLD_FIX,  # noqa: E402
                             FLAG_SRC_RHS_IS_FILE, dict_open3)


def open_table(spec, flags):
    dict_type, colon, name = spec.partition(":")
    if not colon:
        dict_type, name = "hash", spec
    table = dict_open3(dict_type, name, os.O_RDONLY, flags)
    if table.surrogate:      # also behind the UTF-8 proxy
        msg.fatal(table.reason)
    return table


def query_error(table):
    if table.error == ERR_CONFIG:
        msg.fatal("table %s:%s: query error" % (table.type, table.name))
    msg.fatal("table %s:%s: query error: %s" % (table.type, table.name, "Application error"))


def get(table, key, flags):
    if flags & FLAG_SRC_RHS_IS_FILE:
        return dict_file.file_lookup(table, key)
    return table.lookup(key)


def empty_warning(table, key):
    msg.warn("table %s:%s: key %s: empty string result is not allowed"
             % (table.type, table.name, key))
    msg.warn("table %s:%s should return NO RESULT in case of NOT FOUND"
             % (table.type, table.name))


def main(argv):
    msg.init_stderr("postmap")
    import pyfix.maps.dict as dict_module
    dict_module.allow_surrogate = False     # postmap: a table that cannot open is fatal
    flags = FLAG_DUP_WARN | FLAG_FOLD_FIX
    key = None
    args = list(argv)
    while args and args[0].startswith("-") and args[0] != "-":
        opt = args.pop(0)
        if opt == "-c":
            args.pop(0)
        elif opt == "-f":
            flags &= ~FLAG_FOLD_FIX
        elif opt == "-F":
            flags |= FLAG_SRC_RHS_IS_FILE
        elif opt == "-q":
            key = args.pop(0)
        elif opt == "-s":
            key = None
        else:
            msg.fatal("usage: dict_query.py [-c dir] [-f] [-F] -q key|-s type:name...")
    # Postfix does not flush stdout when a query error ends postmap: output is written
    # only when the program ends normally.
    out = io.BytesIO()
    status = run(args, key, flags, out)
    sys.stdout.buffer.write(out.getvalue())
    sys.stdout.buffer.flush()
    return status


def run(args, key, flags, out):
    if key is None:
        for spec in args:
            table = open_table(spec, flags)
            for name, value in table.items():
                if not name:
                    msg.warn("table %s:%s: empty lookup key value is not allowed"
                             % (table.type, table.name))
                elif not value:
                    empty_warning(table, name)
                out.write(("%s\t%s\n" % (name, value)).encode("utf-8", "surrogateescape"))
            if table.error:
                msg.fatal("table %s:%s: sequence error: Application error"
                          % (table.type, table.name))
        return 0
    if key != "-":
        table = open_table(args[0], flags)
        value = get(table, key, flags)
        if value is not None:
            if value == "":
                empty_warning(table, key)
            out.write(value.encode("utf-8", "surrogateescape") + b"\n")
        if table.error:
            query_error(table)
        return 0 if value is not None else 1
    tables = [None] * len(args)
    found = False
    data = sys.stdin.buffer.read()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    for raw in lines:
        line = raw.decode("utf-8", "surrogateescape")
        for n, spec in enumerate(args):
            if tables[n] is None:
                tables[n] = open_table(spec, flags)
            value = get(tables[n], line, flags)
            if value is not None:
                if value == "":
                    empty_warning(tables[n], line)
                out.write(("%s\t%s\n" % (line, value)).encode("utf-8", "surrogateescape"))
                found = True
                break
            if tables[n].error:
                    query_error(tables[n])
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

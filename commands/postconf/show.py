"""Showing main.cf parameters (postconf_main.c): `postconf`, `-n`, `-d`, `-h`, `-H`, `-x`."""

from pyfix.common import msg
from pyfix.common.params import RAW

from pyfix.commands.postconf.output import print_line
from pyfix.commands.postconf.session import HIDE_NAME, HIDE_VALUE, SHOW_EVAL


def print_parameter(session, mode, name, node):
    value = session.lookup(mode, name, None, node)
    if value is None:
        return
    if mode & HIDE_VALUE:
        print_line(mode, name)
        return
    if mode & SHOW_EVAL and not node.flags & RAW:
        value = session.expand(value, mode)
    if mode & HIDE_NAME:
        print_line(mode, value)
    else:
        print_line(mode, "%s = %s" % (name, value))


def _byte_key(name):
    return name.encode("utf-8", "surrogateescape")


def show_parameters(session, mode, param_class, names):
    """Every parameter of param_class in name order, or the named ones in argument order."""
    table = session.table
    if not names:
        for name in sorted(table, key=_byte_key):
            node = table[name]
            if param_class & node.flags:
                print_parameter(session, mode, name, node)
        return
    for name in names:
        node = table.get(name)
        if node is None:
            msg.warn("%s: unknown parameter" % name)
        else:
            print_parameter(session, mode, name, node)

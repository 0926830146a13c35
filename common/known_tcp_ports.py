"""Symbolic TCP port names that work without /etc/services (util/known_tcp_ports.c and
global/config_known_tcp_ports.c).

`known_tcp_ports = lmtp=24, smtp=25, smtps=submissions=465, submission=587` maps each name
on the left of a `=` to the number at the end of its association. A malformed association
is skipped with Postfix's warning; the others still count.
"""

from pyfix.common import msg
from pyfix.common.strings import tokens
from pyfix.common.valid_hostname import all_digits

PARAMETER = "known_tcp_ports"
_BLANKS = " \t\r\n"


def parse_known_tcp_ports(settings, source=PARAMETER):
    """The name -> port table of a known_tcp_ports value, warning about bad associations."""
    table = {}
    for association in tokens(settings, ","):
        parts = (" %s " % association).split("=")
        if len(parts) == 1:
            msg.warn('%s: in "%s" is not in "name = value" form' % (source, association))
            continue
        err = _add_association(table, parts[:-1], tokens(parts[-1], _BLANKS))
        if err:
            msg.warn('%s: in "%s": %s' % (source, association, err))
    return table


def _add_association(table, name_parts, port_words):
    """Enter every name of one `name = ... = port` association; the first error or None."""
    if not port_words:
        return 'missing port value after "="'
    if len(port_words) > 1:
        return "whitespace in port number"
    port = port_words[0]
    first_error = None
    for part in name_parts:
        names = tokens(part, _BLANKS)
        if not names:
            err = 'missing service name before "="'
        elif len(names) > 1:
            err = "whitespace in service name"
        else:
            err = _add_port(table, names[0], port)
        first_error = first_error or err
    return first_error


def _add_port(table, name, port):
    if all_digits(name):
        return "numerical service name"
    if not all_digits(port):
        return "non-numerical service port"
    if name in table:
        return "duplicate service name"
    table[name] = port
    return None


def filter_known_tcp_port(table, name_or_port):
    """The port number for a known name; anything else is returned unchanged."""
    if name_or_port is None or all_digits(name_or_port):
        return name_or_port
    return table.get(name_or_port, name_or_port)


def known_tcp_ports(config):
    """The table of a process's configuration (config_known_tcp_ports at startup)."""
    return parse_known_tcp_ports(config.get(PARAMETER))

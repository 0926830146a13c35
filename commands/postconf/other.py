"""postconf's informational modes: -m, -l, -a, -A, -T, -b, -t (postconf_other.c).

These report what this program supports, so pyfix's answers are pyfix's own (see
README, "Deliberate differences"): each list comes from the part of pyfix that provides
the feature, and is empty until that part exists.
"""

import ssl

from pyfix.common import msg

from pyfix.commands.postconf.output import write

# The mailbox locking methods Linux offers, in Postfix's order (mbox_lock_names()).
LOCK_METHODS = ("flock", "fcntl", "dotlock")


def _print_lines(names):
    write("".join(name + "\n" for name in names))


def _provided(module, attribute):
    """A list that another pyfix part publishes, or () while that part does not exist."""
    try:
        imported = __import__(module, fromlist=[attribute])
    except ImportError:
        return ()
    return getattr(imported, attribute, ())


def show_maps():
    _print_lines(sorted(_provided("pyfix.maps.types", "TABLE_TYPES")))


def show_locks():
    _print_lines(LOCK_METHODS)


def show_sasl_server_types():
    _print_lines(_provided("pyfix.common.sasl", "SERVER_TYPES"))


def show_sasl_client_types():
    _print_lines(_provided("pyfix.common.sasl", "CLIENT_TYPES"))


def show_tls(what):
    if what in ("compile-version", "run-version"):
        write(ssl.OPENSSL_VERSION + "\n")
    elif what == "public-key-algorithms":
        _print_lines(("dsa", "ecdsa", "rsa"))
    else:
        msg.warn("unknown 'postconf -T' mode: %s" % what)
        raise SystemExit(1)


def show_templates(letter, args):
    """-b (expanded template text) and -t (the templates), as bounce(8) prints them;
    a file argument stands for bounce_template_file."""
    if len(args) > 1:
        msg.fatal("options -b and -t require at most one template file")
    from pyfix.common.config import Config
    from pyfix.daemons.bounce import dump_templates
    config = Config.load()
    # Postfix runs the bounce daemon for this; its warnings come under its name.
    msg.init_stderr("%s/bounce" % config.get("syslog_name"))
    if args:
        config.set("bounce_template_file", args[0])
    config.set("queue_directory", ".")          # as postconf passes it to bounce
    write(dump_templates(config, expand=letter == "b"))

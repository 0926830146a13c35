"""The parameters of an SQL or LDAP table (Postfix's global/cfg_parser.c).

`pgsql:/etc/postfix/pgsql-aliases.cf` names a client file of `name = value` lines in
main.cf syntax (values are taken as written, without $name expansion). A name that does
not start with `/` or `.` (`ldap:ldapsource`) is the older style: the parameters are
`ldapsource_server_host`, `ldapsource_search_base`, ... in main.cf, read and expanded
like any main.cf parameter. CfgParser gives both the same get_str/get_int/get_bool,
with Postfix's range checks and fatal errors.

The main.cf of the process is the Config registered with use_config() (daemons and
commands register theirs); without one, main.cf is read from $MAIL_CONFIG or
/etc/postfix when a table first needs it.
"""

import os

from pyfix.common import msg
from pyfix.common.config import Config, MainCf
from pyfix.common.readlline import ReadError, read_text
from pyfix.common.strings import byte_length

_process_config = None


def use_config(config):
    """Register the process's Config: main.cf-style table parameters come from it."""
    global _process_config
    _process_config = config


def process_config():
    """The process's Config (registered, or main.cf read on first use)."""
    global _process_config
    if _process_config is None:
        _process_config = Config.load()
    return _process_config


def is_file_name(name):
    return name[:1] in ("/", ".")


class CfgParser:
    """Parameters of one table: from its client file, or prefixed in main.cf."""

    def __init__(self, name):
        if not name:
            msg.fatal("cfg_parser_alloc: null parser name")
        self.name = name
        self.entries = None
        self.owner_uid = 0
        if is_file_name(name):
            self._load_file(name)

    def _load_file(self, path):
        """Read the client file; OSError when it cannot be opened (the caller makes a
        surrogate table of that), Postfix's fatal error when it cannot be parsed."""
        st = os.stat(path)
        try:
            text = read_text(path)
        except ReadError as exc:
            msg.fatal("read %s: %s" % (path, msg.strerror(exc)))
        main_cf = MainCf(path)
        main_cf.load(text)
        self.entries = main_cf.entries
        self.owner_uid = st.st_uid

    @property
    def from_file(self):
        return self.entries is not None

    # -- typed values ---------------------------------------------------------------------

    def _main_name(self, name):
        return "%s_%s" % (self.name, name)

    def get_str(self, name, default, min_len=0, max_len=0):
        """The value (or default); None when default is None and the value is empty."""
        fallback = default if default is not None else ""
        if self.from_file:
            value = self.entries.get(name, fallback)
            where, shown = "%s: " % self.name, name
        else:
            value = _main_value(self._main_name(name), fallback)
            where, shown = "", self._main_name(name)
        length = byte_length(value)
        if min_len and length < min_len:
            msg.fatal("%sbad string length %d < %d: %s = %s"
                      % (where, length, min_len, shown, value))
        if max_len and length > max_len:
            msg.fatal("%sbad string length %d > %d: %s = %s"
                      % (where, length, max_len, shown, value))
        if default is None and value == "":
            value = None
        if msg.verbose:
            msg.info("cfg_get_str: %s: %s = %s"
                     % (self.name, name, "<NULL>" if value is None else value))
        return value

    def get_int(self, name, default, min_value=0, max_value=0):
        if self.from_file:
            where, shown = "%s: " % self.name, name
            text = self.entries.get(name)
        else:
            where, shown = "", self._main_name(name)
            text = _main_value(shown, None)
        value = default
        if text is not None:
            value = _strtol_int(text)
            if value is None:
                msg.fatal("%sbad numerical configuration: %s = %s" % (where, shown, text))
        if min_value and value < min_value:
            msg.fatal("%sinvalid %s parameter value %d < %d"
                      % (where, shown, value, min_value))
        if max_value and value > max_value:
            msg.fatal("%sinvalid %s parameter value %d > %d"
                      % (where, shown, value, max_value))
        if msg.verbose:
            msg.info("cfg_get_int: %s: %s = %d" % (self.name, name, value))
        return value

    def get_bool(self, name, default):
        if self.from_file:
            where, shown = "%s: " % self.name, name
            text = self.entries.get(name)
        else:
            where, shown = "", self._main_name(name)
            text = _main_value(shown, None)
        value = default
        if text is not None:
            if text.lower() == "yes":
                value = True
            elif text.lower() == "no":
                value = False
            else:
                msg.fatal("%sbad boolean configuration: %s = %s" % (where, shown, text))
        if msg.verbose:
            msg.info("cfg_get_bool: %s: %s = %s" % (self.name, name, "on" if value else "off"))
        return bool(value)


def _main_value(name, default):
    """A main.cf parameter, expanded; the (expanded) default when it is not set."""
    config = process_config()
    raw = config.raw(name)
    if raw is None:
        return None if default is None else config.expand(default)
    return config.get(name)


_INT_MIN, _INT_MAX = -2 ** 31, 2 ** 31 - 1


def _strtol_int(text):
    """strtol() of the whole text that fits an int, or None."""
    body = text.lstrip(" \t\n\v\f\r")
    digits = body[1:] if body[:1] in ("+", "-") else body
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    value = int(body)
    if not _INT_MIN <= value <= _INT_MAX:
        return None
    return value

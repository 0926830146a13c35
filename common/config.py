"""main.cf: reading it as Postfix does, and typed, lazily expanded parameter values.

MainCf is the file: `name = value` entries from logical lines, the last definition of a
name winning with Postfix's `overriding earlier entry` warning, and the line each came from.

Config is what a pyfix process reads its parameters from: the entries of main.cf, then
master.cf `-o` overrides (set()), then the registry's defaults. Values are expanded when
first read (`$name` resolves through the same three layers) and typed by the accessors:
get_bool, get_int, get_long (sizes), get_time (seconds, with the parameter's default unit),
get_list; errors are Postfix's fatal messages.
"""

import os

from pyfix.common import hostinfo, msg, params
from pyfix.common.macro import FLAG_RECURSE, PARSE_ERROR, mac_expand
from pyfix.common.readlline import ReadError, logical_lines, read_text
from pyfix.common.strings import CHARS_COMMA_SP, byte_length, split_nameval, tokens

MAIN_CF = "main.cf"
MASTER_CF = "master.cf"
DEFAULT_CONFIG_DIR = "/etc/postfix"
CONFIG_ENV = "MAIL_CONFIG"


def config_directory(explicit=None):
    """-c DIR, else $MAIL_CONFIG, else /etc/postfix."""
    return explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_DIR


class MainCf:
    """The name=value entries of one main.cf file, in file order."""

    def __init__(self, path=None, entries=None):
        self.path = path
        self.entries = {} if entries is None else entries
        self.lines = {}

    @classmethod
    def read(cls, path, entries=None):
        """Load path; a missing or unreadable file is Postfix's `open ...` fatal error.

        Entries already present (postconf's config_directory) act as earlier definitions.
        """
        main_cf = cls(path, entries)
        try:
            text = read_text(path)
        except ReadError as exc:
            msg.fatal("read %s: %s" % (path, msg.strerror(exc)))
        except OSError as exc:
            msg.fatal("open %s: %s" % (path, msg.strerror(exc)))
        main_cf.load(text)
        return main_cf

    def load(self, text):
        for line, first, _ in logical_lines(text, self.path):
            name, value, err = split_nameval(line)
            if err:
                msg.fatal('%s, line %d: %s: "%s"' % (self.path, first, err, line))
            old = self.entries.get(name)
            if old is not None and old != value:
                msg.warn("%s, line %d: overriding earlier entry: %s=%s"
                         % (self.path, first, name, old))
            self.entries[name] = value
            self.lines[name] = first


class Config:
    """Parameter values of one process: main.cf, -o overrides, then built-in defaults."""

    def __init__(self, main_cf=None, config_dir=None):
        self.main_cf = main_cf or MainCf()
        self.config_dir = config_dir
        self.explicit = dict(self.main_cf.entries)
        self._cache = {}

    @classmethod
    def load(cls, config_dir=None):
        directory = config_directory(config_dir)
        config = cls(MainCf.read(os.path.join(directory, MAIN_CF)), directory)
        config.explicit.setdefault("config_directory", directory)
        return config

    # -- raw layer -----------------------------------------------------------

    def set(self, name, value):
        """Override a parameter (master.cf -o, command-line -o), as mail_conf_update()."""
        self.explicit[name] = value
        self._cache.clear()

    def override_all(self, assignments):
        """Apply `name=value` texts; a malformed one is Postfix's fatal error."""
        for text in assignments:
            name, value, err = split_nameval(text)
            if err:
                msg.fatal("invalid parameter override: %s: %s" % (text, err))
            self.set(name, value)

    def raw(self, name, default=None):
        """The unexpanded value: explicit setting, else the registry default, else default."""
        if name in self.explicit:
            return self.explicit[name]
        return self.default(name, default)

    def default(self, name, default=None):
        """The unexpanded default: the registry's, a per-service one, else `default`."""
        param = params.lookup(name)
        if param is None:
            service_default = params.service_parameter_default(name)
            return default if service_default is None else service_default
        if param.kind == "fn":
            # Kept with the expanded values (set() clears both): mynetworks walks the
            # network interfaces, and several parameters expand it.
            key = ("fn", name)
            if key not in self._cache:
                self._cache[key] = self._function_default(name)
            return self._cache[key]
        return param.default

    def _function_default(self, name):
        if name == "myhostname":
            return hostinfo.default_myhostname(self.lookup_eval("mydomain"))
        if name == "mydomain":
            return hostinfo.default_mydomain(self.get("myhostname"))
        return hostinfo.mynetworks(self.get("mynetworks_style"), self.get("inet_interfaces"),
                                   self.get("inet_protocols")).rstrip()

    def lookup_eval(self, name):
        """An explicit setting expanded against explicit settings only (mail_conf_lookup_eval)."""
        value = self.explicit.get(name)
        if value is None:
            return None
        text, status = mac_expand(value, lambda key, mode: self.explicit.get(key),
                                  FLAG_RECURSE)
        if status & PARSE_ERROR:
            msg.fatal("dictionary mail_dict: macro processing error")
        return text

    # -- expanded layer ------------------------------------------------------

    def expand(self, text, name=None):
        """Expand $name references in text through this configuration."""
        value, status = mac_expand(text, lambda key, mode: self.raw(key), FLAG_RECURSE)
        if status & PARSE_ERROR:
            where = self._where(name)
            msg.fatal("%sparameter %s: macro processing error" % (where, name)
                      if name else "macro processing error")
        return value

    def _where(self, name):
        if name in self.main_cf.lines and self.explicit.get(name) == self.main_cf.entries[name]:
            return "%s, line %d: " % (self.main_cf.path, self.main_cf.lines[name])
        return ""

    def get(self, name, default=None):
        """The expanded string value (raw parameters stay unexpanded)."""
        if name in self._cache:
            return self._cache[name]
        value = self.raw(name, default)
        if value is None:
            return None
        param = params.lookup(name)
        if param is None or param.kind != "raw":
            value = self.expand(value, name)
        self._cache[name] = value
        return value

    def get_str(self, name, default=None):
        value = self.get(name, default)
        param = params.lookup(name)
        if value is not None and param is not None and param.kind == "str":
            length = byte_length(value)
            if param.min and length < param.min:
                msg.fatal("bad string length %d < %d: %s = %s" % (length, param.min, name, value))
            if param.max and length > param.max:
                msg.fatal("bad string length %d > %d: %s = %s" % (length, param.max, name, value))
        return value

    def get_bool(self, name, default=None):
        value = self.get(name, default)
        if value.lower() == "yes":
            return True
        if value.lower() == "no":
            return False
        msg.fatal("bad boolean configuration: %s = %s" % (name, value))

    def get_int(self, name, default=None):
        return self._integer(name, default, 2 ** 31 - 1)

    def get_long(self, name, default=None):
        """A size or other long integer (message_size_limit, mailbox_size_limit, ...)."""
        return self._integer(name, default, 2 ** 63 - 1)

    get_size = get_long

    def _integer(self, name, default, limit):
        value = self.get(name, default)
        number = _strtol(value)
        if number is None or not -limit - 1 <= number <= limit:
            msg.fatal("bad numerical configuration: %s = %s" % (name, value))
        _check_range(name, number, "invalid %s parameter value %d < %d",
                     "invalid %s parameter value %d > %d")
        return number

    def get_time(self, name, default=None, unit=None):
        """Seconds; a bare number takes the unit of the parameter's default (100s -> s)."""
        value = self.get(name, default)
        if unit is None:
            unit_source = self.default(name, default) or "s"
            unit = next((ch for ch in self.expand(unit_source) if ch.isalpha()), "s")
        seconds = conv_time(value, unit)
        if seconds is None:
            msg.fatal("parameter %s: bad time value or unit: %s" % (name, value))
        _check_range(name, seconds, "invalid %s: %d (min %d)", "invalid %s: %d (max %d)")
        return seconds

    def get_list(self, name, default=None, separators=CHARS_COMMA_SP):
        """A list parameter split on commas and whitespace."""
        value = self.get(name, default)
        return tokens(value or "", separators)


def _check_range(name, number, below, above):
    """Postfix's limits of a built-in parameter (0 = no limit), with its wording."""
    param = params.lookup(name)
    if param is None:
        return
    if param.min and number < param.min:
        msg.fatal(below % (name, number, param.min))
    if param.max and number > param.max:
        msg.fatal(above % (name, number, param.max))


_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_INT_MAX = 2 ** 31 - 1


def _strtol(text):
    """A whole-string base-10 integer as strtol() accepts it, or None."""
    body = text.lstrip(" \t\n\v\f\r")
    digits = body[1:] if body[:1] in ("+", "-") else body
    if not text or not digits or not digits.isascii() or not digits.isdigit():
        return None
    return int(body)


def conv_time(text, default_unit):
    """Postfix's conv_time(): `<number>[smhdw]` in seconds, or None when invalid."""
    body = text.lstrip(" \t\n\v\f\r")
    pos = 1 if body[:1] in ("+", "-") else 0
    while pos < len(body) and "0" <= body[pos] <= "9":
        pos += 1
    digits = body[:pos]
    if not text or digits in ("", "+", "-"):
        return None
    number = int(digits)
    if number < 0 or number > _INT_MAX:
        return None
    unit = body[pos] if pos < len(body) else default_unit
    if unit not in _TIME_UNITS:
        return None
    if unit != "s" and number >= _INT_MAX // _TIME_UNITS[unit]:
        return None
    return number * _TIME_UNITS[unit]

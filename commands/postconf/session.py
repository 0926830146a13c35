"""The state of one postconf run: main.cf, master.cf and the table of valid parameter names.

postconf's notion of a valid parameter (postconf.h, postconf_node.c, postconf_lookup.c) is
richer than a daemon's: built-in names from the registry, service names derived from
master.cf, and user-defined names that are set and referenced as `$name`. Each has a flag
class (built-in, service, user, legacy, read-only, raw) that decides whether it is printed,
expanded or warned about.
"""

import os

from pyfix.common import hostinfo, msg, params
from pyfix.common.config import CONFIG_ENV, MAIN_CF, MASTER_CF, MainCf, config_directory
from pyfix.common.macro import FLAG_RECURSE, PARSE_ERROR, mac_expand
from pyfix.common.master_cf import read_master_cf
from pyfix.common.params import BUILTIN, LEGACY, READONLY, SERVICE
from pyfix.common.strings import split_nameval

# Command modes (postconf.h).
SHOW_NONDEF = 1 << 0
SHOW_DEFS = 1 << 1
HIDE_NAME = 1 << 2
SHOW_MAPS = 1 << 3
EDIT_CONF = 1 << 4
SHOW_LOCKS = 1 << 5
SHOW_EVAL = 1 << 6
SHOW_SASL_SERV = 1 << 7
SHOW_SASL_CLNT = 1 << 8
COMMENT_OUT = 1 << 9
MASTER_ENTRY = 1 << 10
FOLD_LINE = 1 << 11
EDIT_EXCL = 1 << 12
MASTER_FLD = 1 << 13
MAIN_PARAM = 1 << 14
EXP_DSN_TEMPL = 1 << 15
PARAM_CLASS = 1 << 16
MAIN_OVER = 1 << 17
DUMP_DSN_TEMPL = 1 << 18
MASTER_PARAM = 1 << 19
HIDE_VALUE = 1 << 20
SHOW_TLS = 1 << 21


class Node:
    """One valid parameter name: its flags and how to get its default value."""

    __slots__ = ("flags", "default")

    def __init__(self, flags, default):
        self.flags = flags
        self.default = default          # text, or a callable returning text

    def default_value(self):
        return self.default() if callable(self.default) else self.default

    def reclass(self, flag):
        self.flags = (self.flags & ~params.CLASS_MASK) | flag


class ServiceScope:
    """The parameter name space of one master.cf entry (PCF_MASTER_ENT)."""

    def __init__(self, entry):
        self.entry = entry
        command = os.path.basename(entry.command)
        self.ro_params = {"process_name": command,
                          "service_name": entry.service if command != entry.service
                          else command}
        self.all_params = None       # -o name=value, once user parameters are registered
        self.valid_names = None

    @property
    def argv(self):
        return self.entry.argv

    @property
    def name_space(self):
        return self.entry.name_space


class Session:
    """Everything one postconf command works on."""

    def __init__(self, mode, progname):
        self.mode = mode
        self.progname = progname
        self.config_dir = None
        self.main = {}               # CONFIG_DICT: main.cf entries and overrides
        self.table = None            # name -> Node
        self.services = None         # ServiceScope per master.cf entry
        self._fn_cache = {}

    # -- reading the files -----------------------------------------------------

    def set_config_dir(self):
        """-c DIR (through MAIL_CONFIG) also becomes a main.cf setting, as in Postfix."""
        env = os.environ.get(CONFIG_ENV)
        self.config_dir = config_directory()
        if env:
            self.main["config_directory"] = env

    def read_main(self):
        if self.config_dir is None:
            self.set_config_dir()
        MainCf.read(os.path.join(self.config_dir, MAIN_CF), self.main)

    def set_overrides(self, assignments):
        for text in assignments:
            name, value, err = split_nameval(text)
            if err:
                msg.fatal("invalid parameter override: %s: %s" % (text, err))
            self.main[name] = value

    def read_master(self, fail_on_open_error):
        if self.config_dir is None:
            self.set_config_dir()
        path = os.path.join(self.config_dir, MASTER_CF)
        self.services = [ServiceScope(entry)
                         for entry in read_master_cf(path, fail_on_open_error)]

    @property
    def master_path(self):
        return os.path.join(self.config_dir, MASTER_CF)

    # -- the table of valid parameter names -----------------------------------

    def register_builtin_parameters(self):
        table = {}
        for name, param in params.BUILTIN_TABLE.items():
            if param.kind == "fn":
                table[name] = Node(BUILTIN, self._function_default(name))
            elif param.kind == "readonly":
                table[name] = Node(BUILTIN | READONLY, self._readonly_default(name))
            else:
                table[name] = Node(param.flags, param.default)
        for name in params.LEGACY_PARAMETERS:
            table[name] = Node(LEGACY, "")
        self.table = table

    def _readonly_default(self, name):
        if name == "process_name":
            return self.progname
        if name == "process_id":
            return str(os.getpid())
        return ""

    def _function_default(self, name):
        def compute():
            if name not in self._fn_cache:
                self._fn_cache[name] = getattr(self, "_default_" + name)()
            return self._fn_cache[name]
        return compute

    def _default_myhostname(self):
        return hostinfo.default_myhostname(self.lookup_eval("mydomain"))

    def _myhostname(self):
        explicit = self.lookup_eval("myhostname")
        return explicit if explicit is not None else self.table["myhostname"].default_value()

    def _default_mydomain(self):
        return hostinfo.default_mydomain(self._myhostname())

    def _default_mynetworks(self):
        settings = []
        for name in ("inet_interfaces", "mynetworks_style", "inet_protocols"):
            value = None if self.mode & SHOW_DEFS else self.lookup_eval(name)
            if value is None:
                value = self.expand(params.lookup(name).default, self.mode)
            settings.append(value)
        interfaces, style, protocols = settings
        return hostinfo.mynetworks(style, interfaces, protocols)

    def lookup_eval(self, name):
        """A main.cf setting expanded against main.cf settings only (mail_conf_lookup_eval)."""
        value = self.main.get(name)
        if value is None:
            return None
        text, status = mac_expand(value, lambda key, mode: self.main.get(key), FLAG_RECURSE)
        if status & PARSE_ERROR:
            msg.fatal("dictionary mail_dict: macro processing error")
        return text

    def register_service_parameters(self):
        for scope in self.services:
            for name, default in params.service_parameters(scope.entry.service,
                                                           scope.entry.command):
                node = self.table.get(name)
                if node is not None:
                    node.reclass(SERVICE)
                else:
                    self.table[name] = Node(SERVICE, default)

    # -- values ---------------------------------------------------------------

    def lookup(self, mode, name, scope=None, node=None):
        """The value postconf shows for name (pcf_lookup_parameter_value)."""
        value = None
        if not mode & SHOW_DEFS:
            if scope is not None:
                value = scope.ro_params.get(name)
                if value is None and scope.all_params is not None:
                    value = scope.all_params.get(name)
            if value is None:
                value = self.main.get(name)
            if value is not None or mode & SHOW_NONDEF:
                return value
        if node is None:
            node = self.table.get(name)
        if node is not None:
            value = node.default_value()
        return value

    def expand(self, value, mode, scope=None):
        """Expand $name in a value as `postconf -x` does (pcf_expand_parameter_value)."""
        lookup_mode = mode & ~SHOW_NONDEF
        text, status = mac_expand(value, lambda key, _: self.lookup(lookup_mode, key, scope),
                                  FLAG_RECURSE)
        if status & PARSE_ERROR:
            msg.fatal("macro processing error")
        return text


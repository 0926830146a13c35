"""The master daemon's resolved view of master.cf (Postfix src/master/master_ent.c, with the
duplicate handling of master_conf.c).

common/master_cf.py keeps master.cf as written, for postconf. This module is what master
makes of each entry: `-` defaults applied (private, unprivileged = y; chroot by
compatibility_level; wakeup 0; process limit $default_process_limit), the internal endpoint
name (`private/<name>`, `public/<name>`, `25`, `[127.0.0.1]:587`), the listen addresses of
an inet service as data, the program to run and the argv master gives it. Errors are
master_ent.c's fatal messages with `<file>: line <n>: ` in front; services matched by
master_service_disable (or every inet service when inet_protocols enables nothing) are left
out. Nothing here opens a socket.
"""

from dataclasses import dataclass, field
import os

from pyfix.common import msg
from pyfix.common.compat_level import compat_level_from_string
from pyfix.common.config import MASTER_CF
from pyfix.common.known_tcp_ports import known_tcp_ports
from pyfix.common.master_cf import BLANKS, split_fields
from pyfix.common.match_service import match_service_init, match_service_match
from pyfix.common.readlline import logical_lines, read_text
from pyfix.common.strings import CHARS_BRACE, extract_parens, tokens
from pyfix.common.valid_hostname import is_digit
from pyfix.master import master_inet

INET, UNIX, UNIX_DGRAM, FIFO, PASS = "inet", "unix", "unix-dgram", "fifo", "pass"
SERVICE_TYPES = (INET, UNIX, UNIX_DGRAM, FIFO, PASS)
# Types whose clients are always on this host (MASTER_FLAG_LOCAL_ONLY); pass is not one:
# its descriptors may come from a connection screener facing the network.
LOCAL_TYPES = (UNIX, UNIX_DGRAM, FIFO)
PRIVATE_CLASS, PUBLIC_CLASS = "private", "public"
STRESS_OPTION = "stress="
COMMAND_FIELD = 7           # the command and its arguments start at the eighth field

# The daemon programs of Postfix's daemon_directory that pyfix implements as modules of
# pyfix.daemons (forked, not exec'd). A module serves the programs mapped to it here.
POSTFIX_DAEMONS = frozenset((
    "anvil", "bounce", "cleanup", "discard", "dnsblog", "error", "flush", "lmtp", "local",
    "nqmgr", "oqmgr", "pickup", "pipe", "postlogd", "postscreen", "proxymap", "qmgr",
    "qmqpd", "scache", "showq", "smtp", "smtpd", "spawn", "tlsmgr", "tlsproxy",
    "trivial-rewrite", "verify", "virtual"))
DAEMON_MODULE_ALIASES = {"lmtp": "smtp", "nqmgr": "qmgr"}
COMPAT_LEVEL_1 = compat_level_from_string("1", msg.panic)


@dataclass
class MasterService:
    """One master.cf service as master runs it (MASTER_SERV without the run-time state)."""

    ext_name: str                   # column 1 as written
    name: str                       # internal endpoint name: private/x, public/x, 25, [h]:p
    type: str                       # one of SERVICE_TYPES
    line: int                       # first line of the entry in master.cf
    private: bool
    unprivileged: bool
    chroot: bool
    wakeup_time: int                # seconds, 0 = none
    conditional_wakeup: bool        # `?`: no wakeups before the first process was spawned
    max_proc: int                   # 0 = no limit
    command: str                    # column 8 as written
    path: str                       # the program to exec (and to name in log lines)
    args: list                      # argv master gives the child; see child_argv()
    throttle_delay: int             # service_throttle_time, seconds
    inet_host: str = None           # inet: host part of column 1 ("" when none)
    inet_port: str = None           # inet: port part of column 1, as written
    listen_addresses: list = field(default_factory=list)   # inet: ListenAddress items
    local_only: bool = True         # no remote clients: decides the stress option
    stress_index: int = None        # args[stress_index] is master's `stress=` option

    @property
    def key(self):
        """The identity master compares on reload: (internal name, type)."""
        return self.name, self.type

    @property
    def listen_fd_count(self):
        """Descriptors the child inherits from fd 6 on: one per inet address, else one."""
        return len(self.listen_addresses) if self.type == INET else 1

    @property
    def inet_host_given(self):
        """MASTER_FLAG_INETHOST: column 1 named a host, not only a port."""
        return bool(self.inet_host)

    @property
    def program_name(self):
        return os.path.basename(self.command)

    @property
    def daemon_module(self):
        """The pyfix.daemons module that serves this command, or None to exec self.path."""
        if "/" in self.command or self.command not in POSTFIX_DAEMONS:
            return None
        name = DAEMON_MODULE_ALIASES.get(self.command, self.command)
        return "pyfix.daemons." + name.replace("-", "_")

    def child_argv(self, stressed=False):
        """The argv of a new child; under stress master's `-o stress=` becomes `stress=yes`."""
        argv = list(self.args)
        if stressed and self.stress_index is not None:
            argv[self.stress_index] = STRESS_OPTION + "yes"
        return argv


@dataclass
class MasterSettings:
    """The main.cf parameters that shape master.cf entries (master_vars_init time)."""

    config_dir: str
    daemon_directory: str
    default_process_limit: int
    throttle_delay: int
    compat_level: int
    disable_patterns: list
    inet: master_inet.InetSettings

    @classmethod
    def from_config(cls, config, saved_interfaces=None):
        """Read the parameters; saved_interfaces is the inet_interfaces value of the
        running master on reload (a changed setting is ignored with a warning)."""
        inet = master_inet.InetSettings.from_config(config, saved_interfaces,
                                                    known_tcp_ports(config))
        disable = config.get("master_service_disable")
        if not inet.families:
            msg.warn("all network protocols are disabled (inet_protocols = %s)"
                     % config.get("inet_protocols"))
            msg.warn('disabling all type "inet" services in master.cf')
            disable = INET + "," + disable
        return cls(
            config_dir=config.config_dir or config.get("config_directory"),
            daemon_directory=config.get("daemon_directory"),
            default_process_limit=config.get_int("default_process_limit"),
            throttle_delay=config.get_time("service_throttle_time"),
            compat_level=compat_level_from_string(config.get("compatibility_level"),
                                                  msg.fatal),
            disable_patterns=match_service_init(disable),
            inet=inet)

    @property
    def chroot_is_legacy_default(self):
        """Below compatibility level 1 a `-` chroot means y, and says so in the log."""
        return self.compat_level < COMPAT_LEVEL_1

    @property
    def master_cf(self):
        return "%s/%s" % (self.config_dir, MASTER_CF)


class EntryContext:
    """Where an entry came from, for `<file>: line <n>: ...` diagnostics."""

    def __init__(self, path, line):
        self.path = path
        self.line = line

    def __str__(self):
        return "%s: line %d" % (self.path, self.line)

    def fatal(self, text):
        msg.fatal("%s: %s" % (self, text))

    def invalid_field(self, name, value):
        self.fatal('field "%s": bad value: "%s"' % (name, value))


class EntryFields:
    """The fields of one logical line, taken in order.

    As in master_ent.c, the eight columns are plain whitespace-separated words (a `{` there
    is an ordinary character) and only the command arguments after them may be `{ ... }`
    groups.
    """

    def __init__(self, text, context, settings):
        self.words = tokens(text, BLANKS)[:COMMAND_FIELD + 1]
        end = 0
        for word in self.words:
            end = text.index(word, end) + len(word)
        self.tail = split_fields(text[end:]) if len(self.words) > COMMAND_FIELD else []
        self.context = context
        self.settings = settings

    def string(self, index, name, default):
        """A field's text; `-` gives the default or is an error when there is none."""
        if index >= len(self.words):
            self.context.fatal('missing "%s" field' % name)
        value = self.words[index]
        if value != "-":
            return value
        if default is None:
            self.context.fatal('field "%s" has no default value' % name)
        if name == "chroot" and self.settings.chroot_is_legacy_default:
            msg.info("%s: using backwards-compatible default setting %s=%s"
                     % (self.context, name, default))
        return default

    def boolean(self, index, name, default):
        value = self.string(index, name, default)
        if value not in ("y", "n"):
            self.context.invalid_field(name, value)
        return value == "y"

    def integer(self, index, name, default):
        """A count that must start with a digit; trailing text is ignored, as atoi() does."""
        value = self.string(index, name, default)
        number = c_atoi(value) if is_digit(value[:1]) else -1
        if number < 0:
            self.context.invalid_field(name, value)
        return number

    def arguments(self):
        """The command arguments, each `{ ... }` argument unwrapped and trimmed."""
        result = []
        for word in self.tail:
            if word.startswith(CHARS_BRACE[0]):
                word, err = extract_parens(word, CHARS_BRACE, strip=True)
                if err:
                    self.context.fatal(err)
            result.append(word)
        return result


def c_atoi(text):
    """atoi() of text that starts with a digit: strtol() clamped, then cut to an int."""
    end = 0
    while end < len(text) and is_digit(text[end]):
        end += 1
    value = min(int(text[:end]), 2 ** 63 - 1) & 0xFFFFFFFF
    return value - 2 ** 32 if value >= 2 ** 31 else value


class MasterEntReader:
    """Reads master.cf entry by entry (set_master_ent / get_master_ent)."""

    def __init__(self, settings, detached=True, verbose=False):
        self.settings = settings
        self.detached = detached        # master -d (not detached) adds -d to every child
        self.verbose = verbose          # master -v adds one -v to every child

    def services(self):
        """Every enabled entry of master.cf, in file order."""
        path = self.settings.master_cf
        try:
            text = read_text(path)
        except OSError as exc:
            msg.fatal("open %s: %s" % (path, msg.strerror(exc)))
        for line, first, _ in logical_lines(text, path):
            service = self.parse_entry(line, EntryContext(path, first))
            if service is not None:
                yield service

    def disabled(self, name, service_type):
        return match_service_match(self.settings.disable_patterns,
                                   "%s/%s" % (name, service_type))

    def parse_entry(self, text, context):
        """One logical line as a MasterService, or None for a disabled service."""
        fields = EntryFields(text, context, self.settings)
        if not fields.words:
            return None
        ext_name = fields.words[0]
        service_type = fields.string(1, "transport type", None)
        if self.disabled(ext_name, service_type):
            return None
        if service_type == INET:
            endpoint = master_inet.resolve_endpoint(ext_name, self.settings.inet, context)
        elif service_type in SERVICE_TYPES:
            endpoint = None
        else:
            context.fatal("bad transport type: %s" % service_type)
        private = fields.boolean(2, "private", "y")
        if endpoint is not None:
            if private:
                context.fatal("inet service cannot be private")
            name = master_inet.canonical_name(endpoint, ext_name, self.settings.inet)
            if not endpoint.addresses:
                context.fatal("no valid IP address found: %s" % ext_name)
        else:
            name = "%s/%s" % (PRIVATE_CLASS if private else PUBLIC_CLASS, ext_name)
        return self._finish(fields, ext_name, service_type, name, private, endpoint)

    def _finish(self, fields, ext_name, service_type, name, private, endpoint):
        """The columns after `private`, the program and the child's argv."""
        settings = self.settings
        unprivileged = fields.boolean(3, "unprivileged", "y")
        chroot = fields.boolean(4, "chroot", "y" if settings.chroot_is_legacy_default else "n")
        wakeup = fields.integer(5, "wakeup_time", "0")
        conditional = wakeup > 0 and fields.words[5].endswith("?")
        max_proc = fields.integer(6, "max_proc", str(settings.default_process_limit))
        command = fields.string(COMMAND_FIELD, "command", None)
        service = MasterService(
            ext_name=ext_name, name=name, type=service_type, line=fields.context.line,
            private=private, unprivileged=unprivileged, chroot=chroot,
            wakeup_time=wakeup, conditional_wakeup=conditional, max_proc=max_proc,
            command=command, path=program_path(settings.daemon_directory, command),
            args=[], throttle_delay=settings.throttle_delay,
            local_only=service_type in LOCAL_TYPES)
        if endpoint is not None:
            service.inet_host = endpoint.host
            service.inet_port = endpoint.port
            service.listen_addresses = endpoint.addresses
            service.local_only = endpoint.local_only
        service.args = self.child_args(service, fields.arguments())
        return service

    def child_args(self, service, user_args):
        """argv in master's order: command, -l|-z, -n, -t, -d, -v, -u, -c, -o stress=, -s,
        then the master.cf arguments unchanged (the child applies its own -o options)."""
        args = [service.command]
        if service.max_proc == 1:
            args.append("-l")
        if service.max_proc == 0:
            args.append("-z")
        if service.program_name != service.ext_name:
            args += ["-n", service.ext_name]
        args += ["-t", service.type]
        if not self.detached:
            args.append("-d")
        if self.verbose:
            args.append("-v")
        if service.unprivileged:
            args.append("-u")
        if service.chroot:
            args.append("-c")
        if not service.local_only and service.max_proc > 1:
            args += ["-o", STRESS_OPTION]
            service.stress_index = len(args) - 1
        if service.listen_fd_count > 1:
            args += ["-s", str(service.listen_fd_count)]
        return args + user_args


def program_path(daemon_directory, command):
    """The file to exec: a command relative to daemon_directory, or an absolute path.

    Postfix always prefixes daemon_directory (an absolute command becomes
    `<daemon_directory>//usr/bin/x` and cannot run); pyfix runs the absolute path.
    """
    if command.startswith("/"):
        return command
    return "%s/%s" % (daemon_directory, command)


def load_services(config, detached=True, verbose=False, saved_interfaces=None,
                  settings=None):
    """master_config(): the services of master.cf, one per (internal name, type).

    A second entry for the same endpoint replaces the first (which keeps its place in the
    order) with Postfix's warning naming the first entry.
    """
    if settings is None:
        settings = MasterSettings.from_config(config, saved_interfaces)
    table = {}
    for service in MasterEntReader(settings, detached, verbose).services():
        previous = table.get(service.key)
        if previous is not None:
            msg.warn('duplicate master.cf entry for service "%s" (%s) -- using the last entry'
                     % (previous.ext_name, previous.name))
        table[service.key] = service
    return list(table.values())

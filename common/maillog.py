"""Where a process's diagnostics go: syslog, or the postlog service and $maillog_file.

This is Postfix's logging client, in one module:
- global/mail_task.c: the log tag, `$syslog_name/<program>` (mail_task());
- global/maillog_client.c: syslog, or postlog when maillog_file is set (before main.cf is
  read: when POSTLOG_SERVICE is in the environment), the maillog_file_prefixes check, and
  the POSTLOG_SERVICE / POSTLOG_HOSTNAME exports that let a child log before it has read
  main.cf (init());
- util/msg_syslog.c: syslog records `[severity: ]text`, the text cut at 2000 bytes;
- util/msg_logger.c: the postlog client. Each record becomes the line
  `Mmm dd HH:MM:SS host tag[pid]: [severity: ]text` (day zero-padded, host = first label
  of myhostname), sent as one datagram to $queue_directory/public/$postlog_service_name;
  when that socket cannot be reached the line goes to a fallback, or is lost;
- util/logwriter.c: the fallback of the commands that may run while Postfix is down
  (postlog, postfix, postsuper, postmulti) and of master: append the line and a newline
  to $maillog_file, opened each time with safe_open() (logwriter_one_shot()).

Syslog is spoken on /dev/log directly rather than through Python's syslog module. The
datagram is what glibc's syslog(3) sends for Postfix's openlog(tag, LOG_PID|LOG_NDELAY,
LOG_MAIL): `<PRI>Mmm dd HH:MM:SS tag[pid]: text` (day padded with a space), a retry over
a fresh connection when a send fails, and a switch to a stream socket (records ending in
NUL) when /dev/log is one. Speaking it here means that (1) the socket path is a module
setting (SYSLOG_PATH), so tests capture the exact datagrams and compare them with what
Debian's postlog sends; (2) text that is not valid UTF-8 leaves as the bytes Postfix would
send, where the syslog module only takes text that encodes to UTF-8; (3) nothing depends
on the C library's per-process openlog() state across pyfix's fork-based daemons.

Postfix 3.7 creates maillog_file with mode 0644 (minus the umask).
`maillog_file_permissions` is a Postfix 3.9 parameter and not in 3.7's registry (postconf
must stay 3.7's); when main.cf sets it anyway, it is honoured with 3.9's values (600, 640,
644; leading zeros ignored). Nothing here logs a parameter value except the maillog_file
path and syslog_facility name in Postfix's own error messages.
"""

import errno
import os
import socket
import syslog as _syslog
import time

from pyfix.common import msg
from pyfix.common.safe_open import safe_open

SYSLOG_PATH = "/dev/log"
RECLEN = 2000
DEFAULT_SYSLOG_NAME = "postfix"         # ${multi_instance_name?...:{postfix}} before main.cf
LOGTAG_ENV = "MAIL_LOGTAG"
SERVICE_ENV = "POSTLOG_SERVICE"
HOSTNAME_ENV = "POSTLOG_HOSTNAME"
UNKNOWN_HOSTNAME = "amnesiac"
LOGFILE_MODE = 0o644
SUN_PATH_MAX = 108

SEVERITY_NAME = ("info", "warning", "error", "fatal", "panic")
SYSLOG_LEVEL = (_syslog.LOG_INFO, _syslog.LOG_WARNING, _syslog.LOG_ERR, _syslog.LOG_CRIT,
                _syslog.LOG_CRIT)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
FACILITY_NAMES = ("auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news",
                  "security", "syslog", "user", "uucp", "local0", "local1", "local2",
                  "local3", "local4", "local5", "local6", "local7")
FACILITIES = {name: getattr(_syslog, "LOG_" + name.upper()) for name in FACILITY_NAMES
              if hasattr(_syslog, "LOG_" + name.upper())}
LOGFILE_PERMS = {"644": 0o644, "640": 0o640, "600": 0o600}


# -- environment ---------------------------------------------------------------------------

def unsafe():
    """Postfix's unsafe(): set-uid or set-gid, so inherited settings are not trusted."""
    if os.getuid() == 0 and os.geteuid() == 0:
        return False
    return os.geteuid() != os.getuid() or os.getgid() != os.getegid()


def safe_getenv(name):
    return None if unsafe() else os.environ.get(name)


def _export(name, value):
    if os.environ.get(name) != value:
        os.environ[name] = value


# -- the tag (mail_task) ---------------------------------------------------------------------

_task = None


def mail_task(argv0, config=None):
    """`$syslog_name/<basename of argv0>`, Postfix's mail_task().

    Without a config (before main.cf is read) the name is $MAIL_LOGTAG, inherited from
    the parent, or `postfix`. With one, it is the config's syslog_name (after -o
    overrides, so `-o syslog_name=postfix/$service_name` works), which is also exported as
    MAIL_LOGTAG for child processes, as Postfix's mail_params_init() does. argv0 None
    gives the previous result (`unknown` when there is none).
    """
    global _task
    if argv0 is None:
        if _task is None:
            argv0 = "unknown"
        else:
            return _task
    slash = argv0.rfind("/")
    if slash >= 0 and argv0[slash + 1:]:
        argv0 = argv0[slash + 1:]
    if config is not None:
        name = config.get("syslog_name")
        _export(LOGTAG_ENV, name)
    else:
        name = safe_getenv(LOGTAG_ENV)
        if name is None:
            name = DEFAULT_SYSLOG_NAME
    _task = "%s/%s" % (name, argv0)
    return _task


# -- formats -----------------------------------------------------------------------------

def _bytes(text):
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def record(level, text):
    """`[severity: ]text` as bytes, the text cut at 2000 bytes (msg_syslog, msg_logger)."""
    body = _bytes(text)[:RECLEN]
    if level == msg.INFO:
        return body
    return SEVERITY_NAME[level].encode("ascii") + b": " + body


def logger_timestamp(tm):
    """strftime("%b %d %H:%M:%S ") in the C locale: `Mar 04 12:34:56 `."""
    return "%s %02d %02d:%02d:%02d " % (MONTHS[tm.tm_mon - 1], tm.tm_mday, tm.tm_hour,
                                         tm.tm_min, tm.tm_sec)


def syslog_timestamp(tm):
    """glibc syslog()'s "%h %e %T ": `Mar  4 12:34:56 `."""
    return "%s %2d %02d:%02d:%02d " % (MONTHS[tm.tm_mon - 1], tm.tm_mday, tm.tm_hour,
                                        tm.tm_min, tm.tm_sec)


def logger_line(tag, hostname, rec, now=None, pid=None):
    """The postlog datagram, also the maillog_file line without its newline."""
    tm = time.localtime(now)
    host = hostname.split(".", 1)[0]
    head = "%s%s %s[%d]: " % (logger_timestamp(tm), host, tag,
                              os.getpid() if pid is None else pid)
    return _bytes(head) + rec


def syslog_packet(priority, tag, rec, with_pid=True, now=None, pid=None, stream=False):
    """The /dev/log datagram glibc's syslog() sends (a stream record ends in NUL)."""
    tm = time.localtime(now)
    pid_text = "[%d]" % (os.getpid() if pid is None else pid) if with_pid else ""
    head = "<%d>%s%s%s: " % (priority, syslog_timestamp(tm), tag, pid_text)
    return _bytes(head) + rec + (b"\0" if stream else b"")


# -- syslog client (msg_syslog + the C library's syslog) ---------------------------------------

class SyslogClient:
    """A connection to the syslog socket that behaves like glibc's."""

    def __init__(self):
        self.sock = None
        self.kind = socket.SOCK_DGRAM
        self.path = None

    def open(self, path):
        if self.sock is not None and path == self.path:
            return
        self.close()
        self.path = path
        for _ in range(2):
            sock = socket.socket(socket.AF_UNIX, self.kind)
            try:
                sock.connect(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EPROTOTYPE:      # /dev/log is a stream socket
                    self.kind = (socket.SOCK_STREAM if self.kind == socket.SOCK_DGRAM
                                 else socket.SOCK_DGRAM)
                    continue
                return
            self.sock = sock
            return

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, packet_fn):
        """Send packet_fn(stream); reconnect and retry once; give up quietly."""
        for attempt in range(2):
            if self.sock is None or attempt:
                self.close()
                self.open(self.path)
            if self.sock is None:
                return
            try:
                self.sock.send(packet_fn(self.kind == socket.SOCK_STREAM), socket.MSG_NOSIGNAL)
                return
            except OSError:
                continue
        self.close()


# -- postlog client (msg_logger) ------------------------------------------------------------

def unix_dgram_connect(path):
    """A connected unix-dgram socket, or None (Postfix's unix_dgram_connect)."""
    if len(_bytes(path)) >= SUN_PATH_MAX:
        msg.fatal("unix_dgram_connect: unix-domain name too long: %s" % path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


class MaillogOutput:
    """The msg output of this process: syslog or postlog, never both."""

    def __init__(self):
        self.syslog_enabled = False
        self.syslog = SyslogClient()
        self.syslog_tag = "unknown"
        self.facility = 0
        self.logger_enabled = False
        self.logger_tag = "unknown"
        self.hostname = UNKNOWN_HOSTNAME
        self.service_path = None
        self.logger_sock = None
        self.fallback = None
        self.fallback_only = False

    def __call__(self, level, text):
        if level < 0 or level >= len(SEVERITY_NAME):
            msg.panic("maillog: invalid severity level: %d" % level)
        rec = record(level, text)
        if self.syslog_enabled:
            self._syslog_print(level, rec)
        if self.logger_enabled:
            self._logger_print(rec)

    # syslog

    def syslog_init(self, tag, path):
        self.syslog_tag = tag
        self.syslog.open(path)
        self.syslog_enabled = True

    def _syslog_print(self, level, rec):
        # Postfix passes its configured facility; 0 (kern, or not yet configured) makes
        # syslog() use openlog()'s LOG_MAIL.
        priority = (self.facility or _syslog.LOG_MAIL) | SYSLOG_LEVEL[level]
        # A tag that carries a pid of its own (postlogd relaying) gets no second one.
        with_pid = "[" not in self.syslog_tag
        self.syslog.send(lambda stream: syslog_packet(priority, self.syslog_tag, rec,
                                                      with_pid, stream=stream))

    # postlog

    def logger_init(self, tag, hostname, service_path, fallback):
        self.logger_tag = tag
        self.hostname = hostname
        self.service_path = service_path
        self.fallback = fallback
        self.fallback_only = False
        self.logger_enabled = True

    def disconnect(self):
        if self.logger_sock is not None:
            self.logger_sock.close()
            self.logger_sock = None

    def connect(self):
        if self.logger_sock is None and not self.fallback_only and self.service_path:
            self.logger_sock = unix_dgram_connect(self.service_path)

    def connect_now(self):
        self.disconnect()
        self.connect()

    def _logger_print(self, rec):
        line = logger_line(self.logger_tag, self.hostname, rec)
        self.connect()
        if self.logger_sock is not None:
            try:
                self.logger_sock.send(line)
            except OSError:
                pass
        elif self.fallback is not None:
            self.fallback(line)


_output = MaillogOutput()


def _close_after_fork():
    """A forked child (master's daemons) starts without the parent's log connections: it
    closes its copies at once, before master's spawn code closes every descriptor it does
    not pass on, and reconnects when it logs (Postfix's closelog() in master_spawn)."""
    _output.syslog.close()
    _output.disconnect()


os.register_at_fork(after_in_child=_close_after_fork)


def fallback_only(fallback):
    """Stop using the postlog socket and hand every line to fallback(line) instead
    (postlogd, which is the postlog service, logs about itself this way)."""
    _output.fallback_only = True
    _output.disconnect()
    _output.fallback = fallback


# -- the log file (logwriter) ----------------------------------------------------------------

_maillog_file = None
_logfile_mode = LOGFILE_MODE
_fallback_guard = False


def logwriter_open_or_die(path, mode=None):
    """A descriptor open for appending to path; failure is Postfix's fatal error."""
    result = safe_open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND,
                       _logfile_mode if mode is None else mode)
    if result.fd is None:
        msg.fatal("open logfile '%s': %s" % (path, result.why or ""))
    return result.fd


def logwriter_write(fd, line):
    """Append line and a newline; an OSError reports a failed write."""
    data = line + b"\n"
    while data:
        written = os.write(fd, data)
        data = data[written:]


def logwriter_one_shot(path, line):
    """Open, append, close; None when all went well, else the OSError."""
    fd = logwriter_open_or_die(path)
    try:
        logwriter_write(fd, line)
    except OSError as exc:
        os.close(fd)
        return exc
    try:
        os.close(fd)
    except OSError as exc:
        return exc
    return None


def _logwriter_fallback(line):
    """MAILLOG_CLIENT_FLAG_LOGWRITER_FALLBACK: write $maillog_file directly, or die."""
    global _fallback_guard
    if _fallback_guard or not _maillog_file:
        return
    error = logwriter_one_shot(_maillog_file, line)
    if error is not None:
        _fallback_guard = True
        msg.fatal("logfile '%s' write error: %s" % (_maillog_file, msg.strerror(error)))


def write_directly():
    """Stop sending to the postlog service and append to $maillog_file directly: master's
    last lines, written while postlogd is being stopped with everything else."""
    if _maillog_file:
        fallback_only(_logwriter_fallback)


# -- setup (maillog_client_init) ------------------------------------------------------------

def syslog_facility(config):
    """The syslog_facility value, checked as Postfix's mail_params_init() checks it."""
    name = config.get("syslog_facility")
    if name not in FACILITIES:
        msg.fatal("file %s/main.cf: parameter syslog_facility: unrecognized value: %s"
                  % (config.get("config_directory"), name))
    return FACILITIES[name]


def logfile_mode(config):
    """0644 as Postfix 3.7; or a main.cf maillog_file_permissions (3.9) of 600/640/644."""
    value = config.get("maillog_file_permissions")
    if value is None:
        return LOGFILE_MODE
    mode = LOGFILE_PERMS.get(value.lstrip("0"))
    if mode is None:
        msg.fatal("file %s/main.cf: parameter maillog_file_permissions: unrecognized value: %s"
                  % (config.get("config_directory"), value))
    return mode


def check_maillog_file(config, path):
    """maillog_file must start with one of maillog_file_prefixes."""
    for prefix in config.get_list("maillog_file_prefixes"):
        if path.startswith(prefix):
            return
    msg.fatal("maillog_file value '%s' does not match any prefix in maillog_file_prefixes"
              % path)


def _nonempty(value):
    return value if value else None


def init(tag, config=None, *, stderr=None, fallback=False):
    """Route this process's diagnostics, Postfix's maillog_client_init().

    tag      the log tag, normally mail_task(program, config); postlog -t gives its own.
    config   the process's Config once main.cf (and -o overrides) are read; None before,
             when the POSTLOG_SERVICE / POSTLOG_HOSTNAME environment decides.
    stderr   also write `name: [severity: ]text` to stderr (msg_vstream_init): True for
             name = tag, or the name to use; None/False leaves stderr output as it is.
    fallback MAILLOG_CLIENT_FLAG_LOGWRITER_FALLBACK: when the postlog service cannot be
             reached, append to $maillog_file directly (master and the commands postfix,
             postsuper, postmulti, postlog); otherwise such lines are lost, as in Postfix.

    With maillog_file empty (or, without config, no POSTLOG_SERVICE) records go to syslog
    with syslog_facility; otherwise to the postlog socket. May be called again at any
    time, e.g. after main.cf was read or after a fork with the child's own tag.
    """
    global _maillog_file
    if stderr:
        msg.vstream_init(tag if stderr is True else stderr)
    service_env = _nonempty(safe_getenv(SERVICE_ENV))
    host_env = _nonempty(safe_getenv(HOSTNAME_ENV))
    if config is not None:
        _maillog_file = config.get("maillog_file")
        _output.facility = syslog_facility(config)
        postlog = bool(_maillog_file)
    else:
        postlog = service_env is not None
    if postlog:
        _init_postlog(tag, config, service_env, host_env, fallback)
    else:
        _output.logger_enabled = False
        for name, imported in ((SERVICE_ENV, service_env), (HOSTNAME_ENV, host_env)):
            if imported is not None:
                os.environ.pop(name, None)
        _output.syslog_init(tag, SYSLOG_PATH)
    msg.add_output(_output)


def _init_postlog(tag, config, service_env, host_env, fallback):
    global _logfile_mode
    hostname = None
    if config is not None:
        check_maillog_file(config, _maillog_file)
        _logfile_mode = logfile_mode(config)
        hostname = _nonempty(config.get("myhostname"))
        service_path = "%s/public/%s" % (config.get("queue_directory"),
                                         config.get("postlog_service_name"))
    else:
        service_path = service_env
    hostname = hostname or host_env or UNKNOWN_HOSTNAME
    _output.syslog_enabled = False
    _output.logger_init(tag, hostname, service_path,
                        _logwriter_fallback if fallback else None)
    _export(SERVICE_ENV, service_path)
    _export(HOSTNAME_ENV, hostname)
    _output.connect_now()

"""What every master-spawned pyfix daemon does before and around serving (the common part of
Postfix's single_server.c, multi_server.c, trigger_server.c and dgram_server.c).

A daemon is started by master with Postfix's child command line (`smtpd -n smtp -t inet -u
-o stress= ...`) and the descriptors of global/master_proto.h. The skeleton reads main.cf,
applies the `-o name=value` overrides before anything reads a parameter, sets the log tag
(syslog_name/program), checks the process-limit and privilege requirements the daemon
declares, takes the accept lock unless it runs alone, enters the chroot jail and drops to
mail_owner when master ran as root, and then counts uses and idle time so that the process
exits after max_use uses or max_idle idle seconds, or when master goes away.
"""

import fcntl
import os
import pwd
import signal
import socket
import sys

from pyfix.common import maillog, master_proto, msg
from pyfix.common.config import Config
from pyfix.common.events import EventLoop
from pyfix.common.getopt import GetoptError, posix_getopt
from pyfix.common.strings import split_nameval
from pyfix.common.valid_hostname import all_digits
from pyfix.maps import dict as dict_module, mkmap
from pyfix.maps.dict import changed_name

OPTSTRING = "cdDi:lm:n:o:r:s:St:uvVz"
WATCHDOG_STEPS = 3                # watchdog.c: wakeups of an idle loop per timeout
IDLE_TIMER = "idle"
RETIRE_TIMER = "retire"
RETIRE_MAX = 18000


class ServerExit(Exception):
    """Unwinds the serving loop; the process then exits with `status`."""

    def __init__(self, status=0):
        super().__init__(status)
        self.status = status


class Server:
    """One daemon process: its configuration, its plumbing to master and its limits.

    Daemons get this object in every callback: `server.config` (typed parameters),
    `server.name` (the service name), `server.argv` (master.cf arguments after the
    options), and may change `server.max_use` / `server.max_idle` in post_init, as qmgr,
    anvil and others do in Postfix.
    """

    uses_accept_lock = True       # serialize accept() among this service's processes

    def __init__(self, argv, *, solitary=False, unlimited=False, privileged=False,
                 pre_init=None, post_init=None, loop=None, on_exit=None, pre_accept=None,
                 retire=False, optstring=OPTSTRING):
        self.progname = os.path.basename(argv[0])
        self.name = self.progname
        self.transport = None
        self.alone = False
        self.zero_limit = False
        self.socket_count = 1
        self.chroot = False
        self.unprivileged = False
        self.daemon_mode = True
        self.stream_mode = False
        self.retire_time = 0
        self.loop_hook = loop
        self.on_exit = on_exit
        self.pre_accept = pre_accept
        self.use_count = 0
        self.lock_fd = None
        self.events = EventLoop()
        self._ignore_signals()
        dict_module.allow_surrogate = True
        self.config = self._read_config()
        self._parse_options(argv, optstring)
        self.config.set("service_name", self.name)
        self.init_logging()
        mkmap.configure(self.config)
        if self.daemon_mode and not self.stream_mode and os.isatty(0):
            msg.init_stderr(self.progname)
            msg.fatal("do not run this command by hand")
        self._check_requirements(solitary, unlimited, privileged)
        self.generation = self._generation()
        self.max_use = self.config.get_int("max_use")
        self.max_idle = self.config.get_time("max_idle")
        self.daemon_timeout = self.config.get_time("daemon_timeout")
        if retire:
            self.retire_time = self._retire_time()
        queue_directory = self.config.get("queue_directory")
        if self.uses_accept_lock and not self.stream_mode and not self.alone:
            self._open_lock()
        try:
            os.chdir(queue_directory)
        except OSError as exc:
            msg.fatal('chdir("%s"): %s' % (queue_directory, msg.strerror(exc)))
        if pre_init:
            pre_init(self)
        self._enter_jail(queue_directory)
        if post_init:
            post_init(self)

    # -- start-up ----------------------------------------------------------------------

    @staticmethod
    def _ignore_signals():
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def _read_config(self):
        config = Config.load()
        config.set("process_name", self.progname)
        return config

    def _parse_options(self, argv, optstring):
        try:
            options, self.argv = posix_getopt(argv[1:], optstring)
        except GetoptError as exc:
            msg.fatal("invalid option: %s" % str(exc)[-2:-1])
        for letter, value in options:
            self._apply_option(letter, value)

    def _apply_option(self, letter, value):
        if letter == "c":
            self.chroot = True
        elif letter == "d":
            self.daemon_mode = False
        elif letter == "i":
            self.config.set("max_idle", value)
        elif letter == "l":
            self.alone = True
        elif letter == "m":
            self.config.set("max_use", value)
        elif letter == "n":
            self.name = value
        elif letter == "o":
            name, val, err = split_nameval(value)
            if err:
                msg.fatal('invalid "-o %s" option value: %s' % (value, err))
            self.config.set(name, val)
        elif letter == "r":
            self.retire_time = _atoi(value)
            if self.retire_time <= 0:
                msg.fatal("invalid retirement time: %s" % value)
        elif letter == "s":
            self.socket_count = _atoi(value)
            if self.socket_count <= 0:
                msg.fatal("invalid socket_count: %s" % value)
        elif letter == "S":
            self.stream_mode = True
        elif letter == "t":
            self.transport = value
        elif letter == "u":
            self.unprivileged = True
        elif letter in "vV":
            msg.verbose += 1
        elif letter == "z":
            self.zero_limit = True

    def init_logging(self):
        """Log as `<syslog_name>/<program>` (after -o overrides) through the configured
        logging path, with UTF-8 kept in messages when smtputf8_enable is on."""
        msg.utf8_enable = self.config.get_bool("smtputf8_enable")
        maillog.init(maillog.mail_task(self.progname, self.config), self.config)

    def _check_requirements(self, solitary, unlimited, privileged):
        if solitary and not self.stream_mode and not self.alone:
            msg.fatal("service %s requires a process limit of 1" % self.name)
        if unlimited and not self.stream_mode and not self.zero_limit:
            msg.fatal("service %s requires a process limit of 0" % self.name)
        if privileged and self.unprivileged:
            msg.fatal("service %s requires privileged operation" % self.name)
        if not self.stream_mode and self.transport is None:
            msg.fatal("no transport type specified")

    @staticmethod
    def _generation():
        text = os.environ.get(master_proto.GENERATION_ENV)
        if text is None:
            return 0
        if not all_digits(text):
            msg.fatal("bad generation: %s" % text)
        return int(text, 8) & 0xFFFFFFFF

    def _retire_time(self):
        if self.retire_time > 0:
            return self.retire_time
        if self.max_idle == 0 or self.max_use == 0 or self.max_idle > RETIRE_MAX // self.max_use:
            return RETIRE_MAX
        return self.max_idle * self.max_use

    def _open_lock(self):
        """The file that serializes accept() among the processes of this service."""
        path = "%s/pid/%s.%s" % (self.config.get("queue_directory"), self.transport, self.name)
        try:
            self.lock_fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            msg.fatal("open lock file pid/%s.%s: %s"
                      % (self.transport, self.name, msg.strerror(exc)))

    def _enter_jail(self, queue_directory):
        """chroot_uid(): chroot to the queue directory and/or become mail_owner, as root only.

        Started by an ordinary user (development, tests), the process keeps that user.
        """
        if os.geteuid() != 0:
            return
        user = self.config.get("mail_owner") if self.unprivileged else None
        if user:
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                msg.fatal("unknown user: %s" % user)
            _checked("setgid(%d)" % entry.pw_gid, os.setgid, entry.pw_gid)
            _checked("initgroups", os.initgroups, user, entry.pw_gid)
        if self.chroot:
            _checked("chroot(%s)" % queue_directory, os.chroot, queue_directory)
            _checked("chdir(/)", os.chdir, "/")
        if user:
            _checked("setuid(%d)" % entry.pw_uid, os.setuid, entry.pw_uid)

    # -- plumbing to master -----------------------------------------------------------------

    def listeners(self):
        """The listening sockets master passed on descriptors 6, 7, ..."""
        return [socket.socket(fileno=fd) for fd in
                range(master_proto.LISTEN_FD, master_proto.LISTEN_FD + self.socket_count)]

    def watch_listeners(self, on_client):
        """Call on_client(conn) for each client accepted on master's listeners."""
        for listener in self.listeners():
            listener.setblocking(False)
            self.events.enable_read(listener.fileno(),
                                    lambda fd, ev, sock=listener: self._accept(sock, on_client))

    def _accept(self, listener, on_client):
        """accept() (or, for a pass service, receive the client's descriptor), release the
        accept lock, and hand the client on; a failed accept keeps the idle timer going."""
        time_left = self.cancel_idle_timer()
        self.exit_if_tables_changed()
        if self.pre_accept:
            self.pre_accept(self)
        try:
            if self.transport == "pass":
                conn = receive_passed(listener)
            else:
                conn, _ = listener.accept()
        except BlockingIOError:
            conn = None
        except OSError as exc:
            msg.error("accept connection: %s" % msg.strerror(exc))
            conn = None
        finally:
            self.unlock()
        if conn is None:
            if time_left is not None:
                self.arm_idle_timer(time_left)
            return
        conn.setblocking(True)
        on_client(conn, time_left)

    def exit_if_tables_changed(self):
        """A table file changed since it was opened: leave before the next client, so that
        a new process serves it with the new table (Postfix's daemons do this in their
        pre-accept routine)."""
        changed = changed_name()
        if changed is not None:
            msg.info("table %s has changed -- restarting" % changed)
            raise ServerExit(0)

    def notify_taken(self):
        master_proto.notify(self.generation, master_proto.STAT_TAKEN)

    def notify_avail(self):
        """Report availability; losing master means this process should go."""
        if not master_proto.notify(self.generation, master_proto.STAT_AVAIL):
            self.master_gone()

    def watch_master(self):
        """EOF on the status channel: master exited or was reloaded."""
        self.events.enable_read(master_proto.STATUS_FD, lambda fd, ev: self.master_gone())

    def master_gone(self):
        if msg.verbose:
            msg.info("master disconnect -- exiting")
        raise ServerExit(0)

    # -- limits -----------------------------------------------------------------------------

    def arm_idle_timer(self, delay=None):
        if self.max_idle > 0:
            self.events.request_timer(IDLE_TIMER, self._idle_timeout,
                                      self.max_idle if delay is None else delay)

    def cancel_idle_timer(self):
        return self.events.cancel_timer(IDLE_TIMER)

    def _idle_timeout(self):
        if msg.verbose:
            msg.info("idle timeout -- exiting")
        raise ServerExit(0)

    def _retire(self):
        if msg.verbose:
            msg.info("time to retire -- exiting")
        raise ServerExit(0)

    def count_use(self):
        if self.use_count < 2 ** 31 - 1:
            self.use_count += 1

    def uses_left(self):
        return self.max_use == 0 or self.use_count < self.max_use

    def lock(self):
        """Take the accept lock before waiting, so that one process at a time waits."""
        if self.lock_fd is not None:
            signal.alarm(0)
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            except OSError as exc:
                msg.fatal("select lock: %s" % msg.strerror(exc))

    def unlock(self):
        if self.lock_fd is not None:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
            except OSError as exc:
                msg.fatal("select unlock: %s" % msg.strerror(exc))

    # -- the main loop ----------------------------------------------------------------------

    def start_timers(self):
        self.arm_idle_timer()
        if self.retire_time:
            self.events.request_timer(RETIRE_TIMER, self._retire, self.retire_time)
        signal.signal(signal.SIGALRM, _watchdog_expired)

    def wait(self):
        """One round of the event loop, under the daemon_timeout watchdog.

        The watchdog catches a process stuck inside one round. Postfix's watchdog wakes
        an idle event loop every third of its timeout (watchdog.c, WATCHDOG_STEPS), and
        each new round restarts it; here the round's wait is capped at that third, so an
        idle daemon (postlogd with its 10 s watchdog) never trips it."""
        signal.alarm(self.daemon_timeout)
        step = max(1, self.daemon_timeout // WATCHDOG_STEPS)
        delay = self.loop_hook(self) if self.loop_hook else -1
        if delay is None or delay < 0 or delay > step:
            delay = step
        self.events.run_once(delay)

    def run(self, keep_going):
        """Serve until keep_going() is false or a callback raises ServerExit; then exit."""
        status = 0
        try:
            self.start_timers()
            while keep_going():
                self.lock()
                self.wait()
        except ServerExit as stop:
            status = stop.status
        self.exit(status)

    def exit(self, status=0):
        if self.on_exit:
            self.on_exit(self)
        raise SystemExit(status)


def receive_passed(listener):
    """A pass service: the client arrives as a descriptor sent over a local connection."""
    carrier, _ = listener.accept()
    try:
        carrier.setblocking(True)
        carrier.settimeout(10)
        _, fds, _, _ = socket.recv_fds(carrier, 1024, 1)
    finally:
        carrier.close()
    if not fds:
        raise OSError(0, "no descriptor received")
    return socket.socket(fileno=fds[0])


def _watchdog_expired(signum, frame):
    msg.fatal("watchdog timeout")


def _checked(what, function, *args):
    try:
        function(*args)
    except OSError as exc:
        msg.fatal("%s: %s" % (what, msg.strerror(exc)))


def _atoi(text):
    digits = ""
    for ch in text.lstrip(" \t"):
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else 0


def run_daemon(main, argv):
    """Run a daemon's main(argv) in this process and return its exit status."""
    try:
        main(argv)
        return 0
    except SystemExit as stop:
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass

"""master(8): the resident process that runs the services of master.cf (Postfix's
src/master/master.c, master_conf.c, master_sig.c, master_monitor.c).

    python -m pyfix.master.master [-c config_dir] [-d] [-e secs] [-s] [-t] [-v] [-w]

One single-threaded loop: it owns every listening endpoint, forks (pyfix daemons) or
execs (other programs) the children, follows their status reports, reaps them, throttles
a service whose processes die before serving, sends wakeup triggers, re-reads the
configuration on SIGHUP and stops everything on SIGTERM. Unlike Postfix's master it also
runs as an ordinary user (development and tests); then nothing changes user.
"""

import os
import pwd
import signal
import sys
import time

from pyfix.common import maillog, master_lock, master_proto, msg
from pyfix.common.config import CONFIG_ENV, Config
from pyfix.common.events import EventLoop
from pyfix.common.getopt import GetoptError, posix_getopt
from pyfix.common.std_fds import open_standard_fds

from pyfix.master import spawn as spawning
from pyfix.master.master_ent import MasterSettings, load_services
from pyfix.master.service import Child, Service

USAGE = "usage: %s [-c config_dir] [-D (debug)] [-d (do not detach)] " \
        "[-e exit_time] [-s (keep stdout)] [-t (test)] [-v (verbose)] [-w (wait)]"
INIT_TIMEOUT = 100
WATCHDOG_TIME = 1000
SUICIDE_TIME = 5
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class Options:
    def __init__(self):
        self.detach = True
        self.keep_stdout = False
        self.test_lock = False
        self.wait = False
        self.exit_after = None


def parse_args(argv):
    opts = Options()
    try:
        parsed, rest = posix_getopt(argv[1:], "c:Dde:istvw")
    except GetoptError as exc:
        sys.stderr.write("%s: %s\n" % (argv[0], exc))
        msg.fatal(USAGE % argv[0])
    if rest:
        msg.fatal(USAGE % argv[0])
    for letter, value in parsed:
        if letter == "c":
            os.environ[CONFIG_ENV] = value
        elif letter == "d":
            opts.detach = False
        elif letter == "e":
            opts.exit_after = int(value) if value.isdigit() else 0
        elif letter in "is":
            opts.keep_stdout = True
        elif letter == "t":
            opts.test_lock = True
        elif letter == "v":
            msg.verbose += 1
        elif letter == "w":
            opts.wait = True
    if opts.test_lock and opts.wait:
        msg.fatal("the -t and -w options cannot be used together")
    return opts


class Master:
    def __init__(self, opts):
        self.opts = opts
        self.events = EventLoop()
        self.services = {}
        self.children = {}
        self.generation = 0
        self.config = None
        self.settings = None
        self.owner_ids = (None, None)
        self.flow_fds = None
        self.signal_pipe = None
        self.got_sighup = False
        self.got_sigchld = False
        self.terminating = None
        self.lock_fds = None

    @staticmethod
    def now():
        return time.monotonic()

    # -- configuration -------------------------------------------------------------------

    def read_config(self):
        self.config = Config.load()
        self.config.set("process_name", "master")
        owner = self.config.get("mail_owner")
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(owner)
            except KeyError:
                msg.fatal("file %s/main.cf: parameter mail_owner: unknown user name value: %s"
                          % (self.config.config_dir, owner))
            self.owner_ids = (entry.pw_uid, entry.pw_gid)

    def init_logging(self):
        msg.utf8_enable = self.config.get_bool("smtputf8_enable")
        maillog.init(maillog.mail_task("master", self.config), self.config, fallback=True)

    def configure(self, saved_interfaces=None):
        """master_config(): start new services, update changed ones (reload keeps their
        listeners), and report which existing ones are gone."""
        self.settings = MasterSettings.from_config(self.config, saved_interfaces)
        specs = load_services(self.config, self.opts.detach, bool(msg.verbose),
                              saved_interfaces, self.settings)
        spawning.preload(specs)
        for service in self.services.values():
            service.marked = True
        for spec in specs:
            service = self.services.get(spec.key)
            if service is None:
                service = Service(spec, self)
                self.services[spec.key] = service
                service.start()
            else:
                service.marked = False
                service.restart(spec)
        for key in [key for key, service in self.services.items() if service.marked]:
            self.services.pop(key).stop()

    # -- children (master_spawn.c) ---------------------------------------------------------

    def spawn(self, service):
        self.generation = (self.generation + 1) & 0xFFFFFFFF
        spec = service.spec
        argv = spec.child_argv(stressed=service.stressed())
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            msg.warn("master_spawn: fork: %s -- throttling" % msg.strerror(exc))
            self.throttle(service)
            return
        if pid == 0:
            spawning.child_main(spec, argv, self.generation, self.flow_fds,
                                service.status_fds[1], service.listen_fds)
        if msg.verbose:
            msg.info("spawn command %s; pid %d" % (spec.path, pid))
        child = Child(service, pid, self.generation)
        self.children[pid] = child
        service.total += 1
        service.child_available(child)
        service.first_child_started()

    def status_update(self, service, pid, generation, avail):
        child = self.children.get(pid)
        if child is None:
            return
        if child.generation != generation:
            msg.info("ignoring status update from child pid %d generation %d"
                     % (pid, generation))
            return
        if child.service is not service:
            msg.panic("master_status_event: pointer corruption")
        if child.avail == bool(avail):
            return
        if avail == master_proto.STAT_AVAIL:
            child.use_count += 1
            service.child_available(child)
        elif avail == master_proto.STAT_TAKEN:
            service.child_busy(child)
        else:
            msg.warn("master_status_event: ignoring unknown status: %d allegedly from pid: %d"
                     % (avail, pid))

    def throttle(self, service):
        if service.throttled:
            return
        service.throttled = True
        self.events.request_timer(("throttle", id(service)), lambda: self.unthrottle(service),
                                  service.spec.throttle_delay)
        service.update_listening()

    def unthrottle(self, service):
        if service.throttled:
            service.throttled = False
            self.events.cancel_timer(("throttle", id(service)))
            service.update_listening()

    def reap_children(self):
        """master_reap_child(): collect exited children, log abnormal ends, throttle."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._child_exited(pid, status)

    def _child_exited(self, pid, status):
        child = self.children.get(pid)
        if child is None:
            return
        service = child.service
        ending = spawning.describe_exit(service.spec.path, pid, status)
        if ending is not None:
            kind, text = ending
            if kind == "stopped":
                msg.warn(text)
                return
            sent_by_master = kind == "signal" and service.marked \
                and os.WTERMSIG(status) == signal.SIGTERM
            if not sent_by_master:
                msg.warn(text)
            if child.use_count == 0 and not service.throttled:
                msg.warn("%s: bad command startup -- throttling" % service.spec.path)
                self.throttle(service)
        self._delete_child(child)

    def _delete_child(self, child):
        service = child.service
        service.total -= 1
        if child.avail:
            service.child_busy(child)
        else:
            service.update_listening()
        self.children.pop(child.pid, None)

    def delete_children(self, service):
        """Stop every process of a service and wait for them (service removed)."""
        self.throttle(service)
        pids = [pid for pid, child in self.children.items() if child.service is service]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
            self._child_exited(pid, status)
        self.unthrottle(service)

    # -- signals (master_sig.c) ------------------------------------------------------------

    def setup_signals(self):
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.signal_pipe = (read_end, write_end)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self.events.enable_read(read_end, self._drain_signal_pipe)
        signal.signal(signal.SIGHUP, self._on_sighup)
        signal.signal(signal.SIGCHLD, self._on_sigchld)
        for sig in TERMINATING_SIGNALS:
            signal.signal(sig, self._on_terminate)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def _drain_signal_pipe(self, fd, events):
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    def _on_sighup(self, signum, frame):
        self.got_sighup = True

    def _on_sigchld(self, signum, frame):
        self.got_sigchld = True

    def _on_terminate(self, signum, frame):
        self.terminating = signum

    def terminate(self, signum):
        """master_sigdeath(): stop every child, then die of the same signal."""
        maillog.write_directly()
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(SUICIDE_TIME)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for service in self.services.values():
            service.marked = True
        if os.getpgrp() == os.getpid():
            try:
                os.killpg(os.getpid(), signal.SIGTERM)
            except OSError:
                pass
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        msg.info("terminating on signal %d" % signum)
        for pid in list(self.children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        for service in self.services.values():
            for fd in service.listen_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        sys.stdout.flush()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(1)

    # -- the loop ---------------------------------------------------------------------------

    def reload(self):
        msg.info("reload -- version %s, configuration %s"
                 % (self.config.get("mail_version"), self.config.config_dir))
        saved_interfaces = self.config.get("inet_interfaces")
        self.read_config()
        self.configure(saved_interfaces)
        self.init_logging()

    def run(self):
        while True:
            self.events.run_once(WATCHDOG_TIME / 2)
            if self.terminating is not None:
                self.terminate(self.terminating)
            if self.got_sighup:
                self.got_sighup = False
                self.reload()
            if self.got_sigchld:
                self.got_sigchld = False
                self.reap_children()


def close_inherited_descriptors():
    """Start clean: descriptors 0-2 open (on /dev/null if need be), nothing above."""
    open_standard_fds()
    os.closerange(3, spawning.max_fd())


def reserve_descriptors():
    """Take descriptors 3-7, so that no endpoint lands where a child expects its plumbing
    (master.c does the same with dup(0))."""
    for _ in range(5):
        os.set_inheritable(os.dup(0), False)


def detach(opts):
    null = os.open(os.devnull, os.O_RDWR)
    for fd in range(3):
        if fd == 1 and opts.keep_stdout:
            continue
        os.dup2(null, fd)
    os.close(null)
    try:
        os.setsid()
    except OSError as exc:
        if os.getsid(0) != os.getpid():
            msg.fatal("unable to set session and process group ID: %s" % msg.strerror(exc))


def wait_for_child():
    """master -w: the foreground process waits until the daemon says it is up."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        import select
        ready, _, _ = select.select([read_end], [], [], INIT_TIMEOUT)
        if ready and os.read(read_end, 1) == b"\0":
            os._exit(0)
        msg.fatal("daemon initialization failure -- see logs for details")
    os.close(read_end)
    return write_end


def test_lock(config):
    """master -t: exit 0 when no master runs, 1 otherwise."""
    raise SystemExit(1 if master_lock.master_running(config.get("queue_directory")) else 0)


def lock_files(master):
    """Lock pid/master.pid and $data_directory/master.lock (owned by mail_owner)."""
    uid, gid = master.owner_ids
    fds = []
    for path, user, group in (
            (os.path.join(master_lock.PID_DIR, master_lock.PID_FILE), -1, -1),
            (os.path.join(master.config.get("data_directory"), "master.lock"),
             -1 if uid is None else uid, -1 if gid is None else gid)):
        fd, why = master_lock.open_lock(path, user, group)
        if fd is None:
            msg.fatal("open lock file %s: %s" % (path, why))
        master_lock.write_pid(fd)
        fds.append(fd)
    return fds


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    argv[0] = "master"
    spawning.set_process_title(argv)
    os.umask(0o077)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    msg.init_stderr("postfix/master")
    close_inherited_descriptors()
    opts = parse_args(argv)
    master = Master(opts)
    master.read_config()
    if opts.test_lock:
        test_lock(master.config)
    monitor_fd = wait_for_child() if opts.wait else None
    if opts.detach:
        detach(opts)
    reserve_descriptors()
    master.init_logging()
    queue_directory = master.config.get("queue_directory")
    try:
        os.chdir(queue_directory)
    except OSError as exc:
        msg.fatal("chdir %s: %s" % (queue_directory, msg.strerror(exc)))
    master.lock_fds = lock_files(master)
    flow_read, flow_write = os.pipe2(os.O_CLOEXEC)
    master.flow_fds = (flow_read, flow_write)
    master.setup_signals()
    master.configure()
    if opts.exit_after is not None:
        master.events.request_timer("exit", lambda: os._exit(0), opts.exit_after)
    msg.info("daemon started -- version %s, configuration %s"
             % (master.config.get("mail_version"), master.config.config_dir))
    if monitor_fd is not None:
        os.write(monitor_fd, b"\0")
        os.close(monitor_fd)
    master.run()


if __name__ == "__main__":
    main()

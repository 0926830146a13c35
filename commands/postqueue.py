"""postqueue(1): list or flush the mail queue (Postfix's src/postqueue/postqueue.c,
showq_compat.c and showq_json.c; the listings are postqueue_show.py's).

    postqueue [-v] [-c config_dir] -f | -i queue_id | -j | -p | -s site

-p lists the queue in the traditional `mailq` format, -j as one JSON object per message.
Both read the listing from the showq service (public/showq, Postfix's attr0 protocol);
when that service cannot be reached, root gets the listing from showq run directly
(`Mail system is down -- accessing queue directly`), anybody else an error. -f asks qmgr
to retry all deferred mail and pickup to look at the maildrop; -s and -i ask the flush
service to deliver mail for one site (fast_flush_domains) or one message, through
common/flush_clnt.py.

The program is meant to run set-gid postdrop, as Postfix's: its name in messages is
always `postqueue`, main.cf is read after the options, the environment is reduced to
import_environment, and authorized_mailq_users / authorized_flush_users decide who may
list or flush (root and mail_owner always may). Every fatal error exits with status 69
(EX_UNAVAILABLE), whatever status the message is reported with: Postfix's postqueue
installs a cleanup routine that does exactly that.

For sendmail -bp and mailq, mailq() runs the listing the way Postfix's sendmail runs
`postqueue -c <config_dir> -p`.
"""

import os
import pwd
import select
import socket
import stat
import sys
import time

from pyfix.common import attr, flush_clnt, maillog, msg
from pyfix.common.flush_clnt import FLUSH_STAT_BAD, FLUSH_STAT_DENY, FLUSH_STAT_FAIL, \
    FLUSH_STAT_OK
from pyfix.common.config import CONFIG_ENV, Config
from pyfix.common.getopt import GetoptError, iter_getopt
from pyfix.common.clean_env import clean_env, import_env
from pyfix.common.std_fds import open_standard_fds
from pyfix.common.user_acl import check_user_acl_byuid
from pyfix.common.valid_hostname import valid_hostname, valid_ipv4_hostaddr, \
    valid_ipv6_hostaddr
from pyfix.maps import mkmap
from pyfix.queue.mail_queue import queue_id_ok

from pyfix.commands.postqueue_show import fatal_status, showq_client
from pyfix.commands.queue_tools import EX_NOPERM, EX_OSERR, EX_SOFTWARE, \
    EX_UNAVAILABLE, EX_USAGE, Stdout, getopt_complaint

PROGNAME = "postqueue"
OPTSTRING = "c:fi:jps:v"
USAGE = ("usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p"
         " | postqueue -s site")

MODE_DEFAULT, MODE_MAILQ_LIST, MODE_FLUSH_QUEUE, MODE_FLUSH_SITE, MODE_FLUSH_FILE, \
    MODE_JSON_LIST = range(6)

QMGR_FLUSH_TRIGGER = b"FADI"    # flush dead destinations, scan all, deferred, incoming
PICKUP_TRIGGER = b"W"
DRAIN_SECONDS = 2


# -- the queue listing ---------------------------------------------------------------------

def owner_uid(config):
    try:
        return pwd.getpwnam(config.get("mail_owner")).pw_uid
    except KeyError:
        return -1


def check_acl(config, param, uid, what):
    if uid != 0 and uid != owner_uid(config):
        who = check_user_acl_byuid(param, config.get(param) or "", uid)
        if who is not None:
            fatal_status(EX_NOPERM, "User %s(%d) is not allowed to %s" % (who, uid, what))


def connect_public(service):
    """A blocking connection to public/<service> (relative to the queue directory)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect("public/" + service)
    except OSError:
        sock.close()
        raise
    return sock


def show_queue_mode(config, mode):
    uid = os.getuid()
    check_acl(config, "authorized_mailq_users", uid, "view the mail queue")
    service = config.get("showq_service_name")
    mail_name = config.get("mail_name")
    out = Stdout()
    long_ids = config.get_bool("enable_long_queue_ids")
    try:
        sock = connect_public(service)
    except OSError as exc:
        error = exc
    else:
        with sock:
            stream = attr.AttrStream(sock, "public/%s socket" % service,
                                     config.get_time("ipc_timeout"))
            showq_client(mode == MODE_JSON_LIST, stream, out, long_ids)
        return
    reason = "Connect to the %s %s service: %s" % (mail_name, service, msg.strerror(error))
    if isinstance(error, PermissionError):
        fatal_status(EX_SOFTWARE, reason)
    if os.geteuid() == 0:
        msg.warn("Mail system is down -- accessing queue directly (%s)" % reason)
        run_showq_directly(config, mode, out, long_ids)
        return
    fatal_status(EX_UNAVAILABLE, "Queue report unavailable - mail system is down (%s)"
                 % reason)


def run_showq_directly(config, mode, out, long_ids):
    """Run showq as a child that writes the listing to us (`showq -u -S`), as Postfix's
    postqueue does for root when the mail system is down. The child is forked, not
    executed: it is pyfix's showq module."""
    showq_path = "%s/%s" % (config.get("daemon_directory"), config.get("showq_service_name"))
    argv = [showq_path, "-u", "-S"] + ["-v"] * msg.verbose
    try:
        ours, theirs = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
    except OSError:
        fatal_status(EX_OSERR, "Error running %s" % showq_path)
    if pid == 0:
        _showq_child(ours, theirs, argv)
    theirs.close()
    with ours:
        stream = attr.AttrStream(ours, showq_path, config.get_time("ipc_timeout"))
        showq_client(mode == MODE_JSON_LIST, stream, out, long_ids)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        fatal_status(EX_SOFTWARE, "Error running %s" % showq_path)


def _showq_child(ours, theirs, argv):
    status = 1
    try:
        ours.close()
        os.dup2(theirs.fileno(), 1)
        theirs.close()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        # The daemon logs as showq, to the mail log only.
        del msg._outputs[:]
        from pyfix.daemons import showq
        from pyfix.daemons.skeleton.server import run_daemon
        sys.argv = list(argv)
        status = run_daemon(showq.main, argv)
    except BaseException:           # never return into postqueue's code
        status = 1
    finally:
        os._exit(status)


# -- flushing ------------------------------------------------------------------------------

class Triggers:
    """mail_trigger() requests whose peers we wait for before exiting (event_drain())."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.pending = []

    def trigger(self, service, data):
        """0, or -1 when the service cannot be reached."""
        path = "public/" + service
        try:
            st = os.stat(path)
        except OSError as exc:
            msg.warn("unable to look up %s: %s" % (path, msg.strerror(exc)))
            return -1
        if stat.S_ISFIFO(st.st_mode):
            return self._fifo(path, data)
        if stat.S_ISSOCK(st.st_mode):
            return self._unix(path, data)
        msg.warn("%s is not a socket or a fifo" % path)
        return -1

    def _fifo(self, path, data):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError as exc:
            if msg.verbose:
                msg.info("fifo_trigger: open %s: %s" % (path, msg.strerror(exc)))
            return -1
        try:
            os.write(fd, data)
        except OSError as exc:
            if msg.verbose:
                msg.warn("fifo_trigger: write %s: %s" % (path, msg.strerror(exc)))
        finally:
            os.close(fd)
        return 0

    def _unix(self, path, data):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(path)
        except OSError as exc:
            sock.close()
            if msg.verbose:
                msg.warn("unix_trigger: connect to %s: %s" % (path, msg.strerror(exc)))
            return -1
        try:
            sock.sendall(data + b"\0")
        except OSError as exc:
            if msg.verbose:
                msg.warn("unix_trigger: write to %s: %s" % (path, msg.strerror(exc)))
        self.pending.append(sock)
        return 0

    def drain(self, seconds):
        deadline = time.monotonic() + seconds
        while self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(self.pending, [], [], left)
            for sock in ready:
                try:
                    data = sock.recv(100)
                except OSError:
                    data = b""
                if not data:
                    sock.close()
                    self.pending.remove(sock)
        for sock in self.pending:
            sock.close()
        self.pending = []


def flush_queue(config):
    check_acl(config, "authorized_flush_users", os.getuid(), "flush the mail queue")
    triggers = Triggers(config.get_time("trigger_timeout"))
    if triggers.trigger(config.get("queue_service_name"), QMGR_FLUSH_TRIGGER) < 0:
        fatal_status(EX_UNAVAILABLE, "Cannot flush mail queue - mail system is down")
    if triggers.trigger(config.get("pickup_service_name"), PICKUP_TRIGGER) < 0:
        fatal_status(EX_UNAVAILABLE, "Cannot flush mail queue - mail system is down")
    triggers.drain(DRAIN_SECONDS)


def flush_site(config, site):
    check_acl(config, "authorized_flush_users", os.getuid(), "flush the mail queue")
    flush_clnt.flush_init(config)
    status = flush_clnt.flush_send_site(site)
    if status == FLUSH_STAT_OK:
        return 0
    if status == FLUSH_STAT_BAD:
        fatal_status(EX_USAGE, 'Invalid request: "%s"' % site)
    if status == FLUSH_STAT_FAIL:
        fatal_status(EX_UNAVAILABLE, "Cannot flush mail queue - mail system is down")
    if status == FLUSH_STAT_DENY:
        fatal_status(EX_UNAVAILABLE,
                     'Flush service is not configured for destination "%s"' % site)
    fatal_status(EX_SOFTWARE, "Unknown flush server reply status %d" % status)


def flush_file(config, queue_id):
    check_acl(config, "authorized_flush_users", os.getuid(), "flush the mail queue")
    flush_clnt.flush_init(config)
    status = flush_clnt.flush_send_file(queue_id)
    if status == FLUSH_STAT_OK:
        return 0
    if status == FLUSH_STAT_BAD:
        fatal_status(EX_USAGE, 'Invalid request: "%s"' % queue_id)
    if status == FLUSH_STAT_FAIL:
        fatal_status(EX_UNAVAILABLE, "Cannot flush mail queue - mail system is down")
    fatal_status(EX_SOFTWARE, "Unexpected flush server reply status %d" % status)


# -- main ----------------------------------------------------------------------------------

def valid_mailhost_literal(text):
    if not text.startswith("["):
        return False
    end = text.find("]")
    if end < 0 or end + 1 != len(text) or end - 1 >= 46:
        return False
    addr = text[1:end]
    if addr[:5].lower() == "ipv6:":
        return valid_ipv6_hostaddr(addr[5:])
    return valid_ipv4_hostaddr(addr)


def _cut100(text):
    return text[:100] + ("..." if len(text.encode("utf-8", "surrogateescape")) > 100 else "")


def usage():
    fatal_status(EX_USAGE, USAGE)


def parse_args(argv):
    mode = MODE_DEFAULT
    site = queue_id = None
    try:
        for letter, value in iter_getopt(argv[1:], OPTSTRING):
            if letter is None:
                if value:
                    usage()
                break
            if letter == "c":
                os.environ[CONFIG_ENV] = value
            elif letter == "v":
                if os.geteuid() == 0:
                    msg.verbose += 1
            else:
                if mode != MODE_DEFAULT:
                    usage()
                mode = {"f": MODE_FLUSH_QUEUE, "i": MODE_FLUSH_FILE, "j": MODE_JSON_LIST,
                        "p": MODE_MAILQ_LIST, "s": MODE_FLUSH_SITE}[letter]
                if letter == "i":
                    queue_id = value
                elif letter == "s":
                    site = value
    except GetoptError as exc:
        getopt_complaint(PROGNAME, exc)
        usage()
    return mode, site, queue_id


def run(argv):
    os.umask(0o022)
    open_standard_fds(EX_UNAVAILABLE)
    maillog.init(maillog.mail_task(PROGNAME), None, stderr=PROGNAME)
    mode, site, queue_id = parse_args(argv)
    config = Config.load()
    maillog.init(maillog.mail_task(PROGNAME, config), config)
    msg.utf8_enable = config.get_bool("smtputf8_enable")
    mkmap.configure(config)
    clean_env(import_env(config))
    queue_dir = config.get("queue_directory")
    try:
        os.chdir(queue_dir)
    except OSError as exc:
        fatal_status(EX_UNAVAILABLE, "chdir %s: %s" % (queue_dir, msg.strerror(exc)))
    if site is not None:
        valid = valid_mailhost_literal(site) if site.startswith("[") \
            else valid_hostname(site)
        if not valid:
            fatal_status(EX_USAGE, 'Cannot flush mail queue - invalid destination: "%s"'
                         % _cut100(site))
    if queue_id is not None and not queue_id_ok(queue_id):
        fatal_status(EX_USAGE, 'Cannot flush queue ID - invalid name: "%s"'
                     % _cut100(queue_id))
    if mode in (MODE_MAILQ_LIST, MODE_JSON_LIST):
        show_queue_mode(config, mode)
    elif mode == MODE_FLUSH_SITE:
        flush_site(config, site)
    elif mode == MODE_FLUSH_FILE:
        flush_file(config, queue_id)
    elif mode == MODE_FLUSH_QUEUE:
        flush_queue(config)
    else:
        usage()
    return 0


def main(argv=None):
    argv = sys.argv if argv is None else argv
    try:
        return run(argv)
    except msg.Fatal:
        return EX_UNAVAILABLE
    except KeyboardInterrupt:
        return 1
    finally:
        try:
            sys.stdout.flush()
        except OSError:
            pass


def show_queue(config_dir=None, json=False, verbose=0):
    """`postqueue [-c config_dir] -p` (or -j): the queue listing on stdout; returns the
    exit status. This is what sendmail -bp and mailq run."""
    argv = ["mailq"]
    if config_dir:
        argv += ["-c", config_dir]
    argv.append("-j" if json else "-p")
    argv += ["-v"] * verbose
    return main(argv)


def mailq(config_dir=None, verbose=0):
    return show_queue(config_dir, False, verbose)


if __name__ == "__main__":
    sys.exit(main())

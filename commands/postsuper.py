"""postsuper(1): queue maintenance (Postfix's src/postsuper/postsuper.c).

    postsuper [-psSv] [-c config_dir] [-d queue_id] [-e queue_id] [-f queue_id]
              [-h queue_id] [-H queue_id] [-r queue_id] [directory ...]

-d deletes, -h puts on hold, -H releases from hold, -r requeues (back through pickup and
cleanup), -e force-expires, -f force-expires and releases. Each takes a queue ID, `-` for
IDs read from standard input (one a line), or `ALL` (exactly so; `all` is a queue ID).
-s checks the queue structure: files in the wrong hash subdirectory are moved, stray
directories and non-files removed, and with -S (or after a change back from long queue
IDs) file names that no longer match their inode number are renamed, with their
bounce, defer and trace logfiles, in two passes. -p removes temporary files older than a
week. Without an action postsuper does -s and -p. The directory arguments limit the work
to those queues; the default is defer, bounce, maildrop, incoming, active, deferred, hold
and flush.

Repair comes first (-s, -S, -p, over the whole queue), then the actions in the order of
the command line; a message named by ID is never touched after names changed to match
inode numbers. Each message is reported (`<ID>: removed`, `placed on hold`, `released
from hold`, `requeued`, `expired`), then a summary per kind of action, `N message(s)`, on
stderr and in the mail log. All file work is done as mail_owner. The walk over the
queue (repair and the ALL operations) and the file operations are postsuper_walk.py's.

Difference from Postfix: as in pyfix's postfix(1), an ordinary user may run postsuper
(development and test instances, where that user owns the queue): there is then no
superuser check and no change of user.
"""

import os
import pwd
import signal
import sys
import time

from pyfix.common import maillog, msg
from pyfix.common.config import CONFIG_ENV, Config
from pyfix.common.getopt import GetoptError, iter_getopt
from pyfix.common.strings import CHARS_COMMA_SP, tokens
from pyfix.queue.mail_queue import ACTIVE, BOUNCE, DEFER, DEFERRED, FLUSH, HOLD, INCOMING, \
    MAILDROP, QueueLayout, queue_id_ok
from pyfix.queue.scan import OPEN_YES, mail_open_ok

from pyfix.commands.postsuper_walk import ACTION_DEFAULT, ACTION_DELETE_ALL, \
    ACTION_DELETE_ONE, ACTION_EXP_REL_ALL, ACTION_EXP_REL_ONE, ACTION_EXPIRE_ALL, \
    ACTION_EXPIRE_ONE, ACTION_HOLD_ALL, ACTION_HOLD_ONE, ACTION_PURGE, ACTION_RELEASE_ALL, \
    ACTION_RELEASE_ONE, ACTION_REQUEUE_ALL, ACTION_REQUEUE_ONE, ACTION_STRUCT, \
    ACTION_STRUCT_RED, ACTIONS_BY_QUEUE_ID, ACTIONS_FOR_REPAIR, LOG_QUEUES, QueueWalk, \
    message_queue
from pyfix.common.clean_env import import_env, update_env
from pyfix.common.std_fds import open_standard_fds
from pyfix.commands.queue_tools import getopt_complaint

OPTSTRING = "c:d:e:f:h:H:pr:sSv"


# letter -> (action for one ID, action for ALL)
ID_ACTIONS = {"d": (ACTION_DELETE_ONE, ACTION_DELETE_ALL),
              "e": (ACTION_EXPIRE_ONE, ACTION_EXPIRE_ALL),
              "f": (ACTION_EXP_REL_ONE, ACTION_EXP_REL_ALL),
              "h": (ACTION_HOLD_ONE, ACTION_HOLD_ALL),
              "H": (ACTION_RELEASE_ONE, ACTION_RELEASE_ALL),
              "r": (ACTION_REQUEUE_ONE, ACTION_REQUEUE_ALL)}

# Logfile directories come first, so that they are in order before message files are
# renamed to match their inode numbers.
DEFAULT_QUEUES = (DEFER, BOUNCE, MAILDROP, INCOMING, ACTIVE, DEFERRED, HOLD, FLUSH)

USAGE = ("usage: %s [-c config_dir] [-d queue_id (delete)] [-e queue_id (expire)]"
         " [-f queue_id (expire and/or un-hold)] [-h queue_id (hold)]"
         " [-H queue_id (un-hold)] [-p (purge temporary files)] [-r queue_id (requeue)]"
         " [-s (structure fix)] [-S (redundant structure fix)][-v (verbose)] [queue...]")


class Postsuper(QueueWalk):
    """The per-message actions and the counters; the queue walk is QueueWalk's."""

    def __init__(self, config, progname):
        self.config = config
        self.progname = progname
        self.layout = QueueLayout(config)
        self.long_ids = self.layout.long_ids
        self.hash_queue_names = tokens(config.get("hash_queue_names") or "", CHARS_COMMA_SP)
        self.hash_depth = config.get_int("hash_queue_depth")
        self.requeued = self.held = self.released = self.deleted = self.expired = 0
        self.inode_fixed = self.inode_mismatch = self.position_mismatch = 0

    # -- actions on one message -------------------------------------------------------------


    def _check_id(self, queue_id):
        if not queue_id_ok(queue_id):
            msg.warn("invalid mail queue id: %s" % queue_id)
            return False
        return True

    def delete_one(self, queues, queue_id):
        if not self._check_id(queue_id):
            return
        found = False
        for _ in range(2):
            for queue in queues:
                if not message_queue(queue):
                    continue
                status, _, path = mail_open_ok(self.layout, queue, queue_id)
                if status != OPEN_YES:
                    continue
                for log_queue in LOG_QUEUES:
                    self.postremove(self.layout.path(log_queue, queue_id))
                if self.postremove(path) == 0:
                    found = True
                    msg.info("%s: removed" % queue_id)
                    break
            if found:
                break
        self.deleted += found

    def requeue_one(self, queues, queue_id):
        if not self._check_id(queue_id):
            return
        found = False
        for _ in range(2):
            for queue in queues:
                if queue == MAILDROP or not message_queue(queue):
                    continue
                status, _, old_path = mail_open_ok(self.layout, queue, queue_id)
                if status != OPEN_YES:
                    continue
                new_path = self.layout.path(MAILDROP, queue_id)
                if self.postrename(old_path, new_path) == 0:
                    now = time.time()
                    try:
                        os.utime(new_path, (int(now), int(now)))
                    except OSError as exc:
                        msg.warn("%s: reset time stamps: %s" % (new_path, msg.strerror(exc)))
                    msg.info("%s: requeued" % queue_id)
                    found = True
                    break
            if found:
                break
        self.requeued += found

    def hold_one(self, queues, queue_id):
        if not self._check_id(queue_id):
            return
        found = False
        for _ in range(2):
            for queue in queues:
                if queue in (MAILDROP, HOLD) or not message_queue(queue):
                    continue
                status, _, old_path = mail_open_ok(self.layout, queue, queue_id)
                if status != OPEN_YES:
                    continue
                if self.postrename(old_path, self.layout.path(HOLD, queue_id)) == 0:
                    msg.info("%s: placed on hold" % queue_id)
                    found = True
                    break
            if found:
                break
        self.held += found

    def release_one(self, queues, queue_id):
        if not self._check_id(queue_id):
            return
        found = False
        for queue in queues:
            if queue != HOLD:
                continue
            status, _, old_path = mail_open_ok(self.layout, queue, queue_id)
            if status != OPEN_YES:
                continue
            if self.postrename(old_path, self.layout.path(DEFERRED, queue_id)) == 0:
                msg.info("%s: released from hold" % queue_id)
                found = True
                break
        self.released += found

    def expire_one(self, queues, queue_id):
        if not self._check_id(queue_id):
            return
        found = False
        for _ in range(2):
            for queue in queues:
                if not message_queue(queue) or queue == MAILDROP:
                    continue
                status, _, path = mail_open_ok(self.layout, queue, queue_id)
                if status != OPEN_YES:
                    continue
                if self.postexpire(path) == 0:
                    found = True
                    msg.info("%s: expired" % queue_id)
                    break
            if found:
                break
        self.expired += found

    def exp_rel_one(self, queues, queue_id):
        self.expire_one(queues, queue_id)
        self.release_one(queues, queue_id)

    def operate_stream(self, operator, queues):
        """Each line of standard input is a queue ID (without the newline)."""
        stdin = sys.stdin.buffer
        while True:
            line = stdin.readline()
            if not line:
                return
            if line.endswith(b"\n"):
                line = line[:-1]
            operator(queues, line.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))

    def interrupted(self):
        if self.inode_mismatch > 0 or self.inode_fixed > 0 or self.position_mismatch > 0:
            msg.warn("OPERATION INCOMPLETE -- RERUN COMMAND TO FIX THE QUEUE FIRST")


def _plural(count):
    return "" if count == 1 else "s"


def parse_actions(argv, progname):
    """The first pass over the options: the set of actions (and -c, -v)."""
    action = 0
    try:
        for letter, value in iter_getopt(argv[1:], OPTSTRING):
            if letter is None:
                return action, value
            if letter == "c":
                if not value.startswith("/"):
                    msg.fatal("-c requires absolute pathname")
                os.environ[CONFIG_ENV] = value
            elif letter in ID_ACTIONS:
                one, every = ID_ACTIONS[letter]
                action |= every if value == "ALL" else one
            elif letter == "p":
                action |= ACTION_PURGE
            elif letter == "S":
                action |= ACTION_STRUCT_RED | ACTION_STRUCT
            elif letter == "s":
                action |= ACTION_STRUCT
            elif letter == "v":
                msg.verbose += 1
    except GetoptError as exc:
        getopt_complaint(progname, exc)
        msg.fatal(USAGE % progname)


def set_ugid(config):
    """Become mail_owner (user, group and the group list), when root."""
    if os.geteuid() != 0 and os.getuid() != 0:
        return
    name = config.get("mail_owner")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        msg.fatal("unknown mail_owner user: %s" % name)
    try:
        os.setgid(entry.pw_gid)
    except OSError as exc:
        msg.fatal("setgid(%d): %s" % (entry.pw_gid, msg.strerror(exc)))
    try:
        os.setgroups([entry.pw_gid])
    except OSError as exc:
        msg.fatal("setgroups(1, &%d): %s" % (entry.pw_gid, msg.strerror(exc)))
    try:
        os.setuid(entry.pw_uid)
    except OSError as exc:
        msg.fatal("setuid(%d): %s" % (entry.pw_uid, msg.strerror(exc)))


class _Interrupted(Exception):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def run(argv, state_holder):
    os.umask(0o022)
    open_standard_fds()
    if maillog.safe_getenv("MAIL_VERBOSE"):
        msg.verbose = 1
    progname = argv[0]
    slash = progname.rfind("/")
    if slash >= 0 and progname[slash + 1:]:
        progname = progname[slash + 1:]
    maillog.init(maillog.mail_task(progname), None, stderr=progname, fallback=True)
    if maillog.unsafe():
        msg.fatal("this postfix command must not run as a set-uid process")
    action, queues = parse_actions(argv, progname)
    config = Config.load()
    update_env(import_env(config))
    maillog.init(maillog.mail_task(progname, config), config, fallback=True)
    msg.utf8_enable = config.get_bool("smtputf8_enable")
    queue_dir = config.get("queue_directory")
    try:
        os.chdir(queue_dir)
    except OSError as exc:
        msg.fatal("chdir %s: %s" % (queue_dir, msg.strerror(exc)))
    set_ugid(config)
    sup = Postsuper(config, progname)
    state_holder.append(sup)
    _signals()
    if action == 0:
        action = ACTION_DEFAULT
    queues = list(queues) if queues else list(DEFAULT_QUEUES)

    if action & ACTIONS_FOR_REPAIR:
        sup.super(queues, action & ACTIONS_FOR_REPAIR)
    if sup.inode_mismatch > 0:
        sup.super(queues, action & ACTIONS_FOR_REPAIR)
    if action & ACTIONS_BY_QUEUE_ID and (sup.inode_mismatch > 0 or sup.inode_fixed > 0):
        msg.error("QUEUE FILE NAMES WERE CHANGED TO MATCH INODE NUMBERS")
        msg.fatal("CHECK YOUR QUEUE IDS AND RE-ISSUE THE COMMAND")

    operators = {"d": (sup.delete_one, ACTION_DELETE_ALL),
                 "e": (sup.expire_one, ACTION_EXPIRE_ALL),
                 "f": (sup.exp_rel_one, ACTION_EXP_REL_ALL),
                 "h": (sup.hold_one, ACTION_HOLD_ALL),
                 "H": (sup.release_one, ACTION_RELEASE_ALL),
                 "r": (sup.requeue_one, ACTION_REQUEUE_ALL)}
    for letter, value in iter_getopt(argv[1:], OPTSTRING):
        if letter is None:
            break
        if letter not in operators:
            continue
        operator, every = operators[letter]
        if value == "ALL":
            sup.super(queues, every)
        elif value == "-":
            sup.operate_stream(operator, queues)
        else:
            operator(queues, value)

    if action & (ACTION_REQUEUE_ONE | ACTION_REQUEUE_ALL):
        msg.info("Requeued: %d message%s" % (sup.requeued, _plural(sup.requeued)))
    if action & (ACTION_DELETE_ONE | ACTION_DELETE_ALL):
        msg.info("Deleted: %d message%s" % (sup.deleted, _plural(sup.deleted)))
    if action & (ACTION_EXPIRE_ONE | ACTION_EXPIRE_ALL | ACTION_EXP_REL_ONE
                 | ACTION_EXP_REL_ALL):
        msg.info("Force-expired: %d message%s" % (sup.expired, _plural(sup.expired)))
    if action & (ACTION_HOLD_ONE | ACTION_HOLD_ALL):
        msg.info("Placed on hold: %d message%s" % (sup.held, _plural(sup.held)))
    if action & (ACTION_RELEASE_ONE | ACTION_RELEASE_ALL | ACTION_EXP_REL_ONE
                 | ACTION_EXP_REL_ALL):
        msg.info("Released from hold: %d message%s" % (sup.released, _plural(sup.released)))
    if sup.inode_fixed > 0:
        msg.info("Renamed to match inode number: %d message%s"
                 % (sup.inode_fixed, _plural(sup.inode_fixed)))
    if sup.inode_mismatch > 0 or sup.inode_fixed > 0:
        msg.warn("QUEUE FILE NAMES WERE CHANGED TO MATCH INODE NUMBERS")
    return 0


def _on_signal(signum, frame):
    raise _Interrupted(signum)


def _signals():
    """SIGINT and SIGQUIT always, SIGTERM and SIGHUP unless the parent ignores them:
    interrupted work is reported before the program exits with the signal number."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGQUIT, _on_signal)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, _on_signal)


def _ignore_signals():
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(signum, signal.SIG_IGN)
        except (OSError, ValueError):
            pass


def main(argv=None):
    argv = sys.argv if argv is None else argv
    holder = []
    try:
        return run(argv, holder)
    except msg.Fatal as stop:
        _ignore_signals()
        if holder:
            holder[0].interrupted()
        return stop.code if isinstance(stop.code, int) else 1
    except _Interrupted as stop:
        _ignore_signals()
        if holder:
            holder[0].interrupted()
        return stop.signum


if __name__ == "__main__":
    sys.exit(main())

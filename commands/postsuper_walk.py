"""The queue-wide half of postsuper(1) (Postfix's src/postsuper/postsuper.c: super(),
fix_queue_id() and the post*() file operations).

One walk over the queue directories does the repair work and the mass operations: files
in the wrong hash subdirectory are moved, subdirectories no longer wanted and other
directories removed, non-files and (-p) temporary files older than a week deleted, and
(-s, -S) message file names that do not match their inode number renamed, logfiles
first, to `<new ID>#FIX`, which a second pass takes off. With ALL the same walk deletes,
requeues, expires, holds or releases every message. Entries come in readdir order, as
Postfix's walk sees them.
"""

import os
import stat
import time

from pyfix.common import msg
from pyfix.common.safe_open import safe_open
from pyfix.queue.mail_queue import ACTIVE, BOUNCE, DEFER, DEFERRED, FLUSH, HOLD, INCOMING, \
    LONG_INUM_SEP, LONG_TIME_PAD, LONG_USEC_PAD, MAILDROP, MODE_COMPLETE, MODE_EXPIRED, \
    SHORT_USEC_PAD, TRACE, file_id, make_dirs, queue_id_ok, safe_strtoul
from pyfix.queue.scan import ScanDir

MAX_TEMP_AGE = 7 * 24 * 60 * 60
SUFFIX = "#FIX"

# What postsuper was asked to do (postsuper.c's ACTION_* bits).
ACTION_STRUCT = 1 << 0
ACTION_PURGE = 1 << 1
ACTION_DELETE_ONE = 1 << 2
ACTION_DELETE_ALL = 1 << 3
ACTION_REQUEUE_ONE = 1 << 4
ACTION_REQUEUE_ALL = 1 << 5
ACTION_HOLD_ONE = 1 << 6
ACTION_HOLD_ALL = 1 << 7
ACTION_RELEASE_ONE = 1 << 8
ACTION_RELEASE_ALL = 1 << 9
ACTION_STRUCT_RED = 1 << 10
ACTION_EXPIRE_ONE = 1 << 11
ACTION_EXPIRE_ALL = 1 << 12
ACTION_EXP_REL_ONE = 1 << 13
ACTION_EXP_REL_ALL = 1 << 14

ACTION_DEFAULT = ACTION_STRUCT | ACTION_PURGE
ACTIONS_BY_QUEUE_ID = (ACTION_DELETE_ONE | ACTION_REQUEUE_ONE | ACTION_HOLD_ONE
                       | ACTION_RELEASE_ONE | ACTION_EXPIRE_ONE | ACTION_EXP_REL_ONE)
ACTIONS_BY_WILDCARD = (ACTION_DELETE_ALL | ACTION_REQUEUE_ALL | ACTION_HOLD_ALL
                       | ACTION_RELEASE_ALL | ACTION_EXPIRE_ALL | ACTION_EXP_REL_ALL)
ACTIONS_FOR_REPAIR = ACTION_PURGE | ACTION_STRUCT | ACTION_STRUCT_RED

RECURSE = True
# name -> (expected owner permissions, descend into subdirectories). Maildrop is never
# descended into: it is writable by others.
QUEUE_INFO = {MAILDROP: (MODE_COMPLETE, False), INCOMING: (MODE_COMPLETE, RECURSE),
              ACTIVE: (MODE_COMPLETE, RECURSE), DEFERRED: (MODE_COMPLETE, RECURSE),
              HOLD: (MODE_COMPLETE, RECURSE), TRACE: (0o600, RECURSE),
              DEFER: (0o600, RECURSE), BOUNCE: (0o600, RECURSE), FLUSH: (0o600, RECURSE)}
LOG_QUEUES = (BOUNCE, DEFER, TRACE)


def find_queue_info(queue_name):
    info = QUEUE_INFO.get(queue_name)
    if info is None:
        msg.fatal("invalid directory name: %s" % queue_name)
    return info


def message_queue(queue_name):
    return find_queue_info(queue_name)[0] == MODE_COMPLETE


def ready_message(st):
    return st.st_mode & stat.S_IRWXU == MODE_COMPLETE


def _strtoul16(text):
    """(value, error) as strtoul(text, &end, 16) and a check that end is the end."""
    pos = 0
    while pos < len(text) and text[pos] in " \t\n\v\f\r":
        pos += 1
    if text[pos:pos + 1] in ("+", "-"):
        pos += 1
    if text[pos:pos + 2].lower() == "0x" and _ishex(text[pos + 2:pos + 3]):
        pos += 2
    start = pos
    while pos < len(text) and _ishex(text[pos]):
        pos += 1
    if pos == start:
        return 0, text != ""
    value = int(text[start:pos], 16)
    if value >= 2 ** 64:
        return 2 ** 64 - 1, True
    if text[:start].strip(" \t\n\v\f\r").startswith("-"):
        value = (-value) % 2 ** 64
    return value, pos != len(text)


def _ishex(ch):
    return ch != "" and ch in "0123456789abcdefABCDEF"


def get_inum(name):
    """MQID_GET_INUM(): (inode number, long form, error) claimed by a queue file name."""
    sep = name.rfind(LONG_INUM_SEP)
    if sep >= LONG_TIME_PAD:
        text = name[sep + 1:]
        if text == "":
            return 0, True, False
        value = safe_strtoul(text, 51)
        if value is None or value >= 2 ** 64:
            return value or 0, True, True
        return value, True, False
    value, error = _strtoul16(name[SHORT_USEC_PAD:])
    return value, False, error


class QueueWalk:
    """The queue-wide half of postsuper: the file operations and the walk over the
    queue directories. A subclass provides layout, long_ids, hash_queue_names,
    hash_depth and the counters."""

    # -- file operations ----------------------------------------------------------------------

    @staticmethod
    def postremove(path):
        try:
            os.remove(path)
        except FileNotFoundError:
            return -1
        except OSError as exc:
            msg.fatal("remove file %s: %s" % (path, msg.strerror(exc)))
        if msg.verbose:
            msg.info("removed file %s" % path)
        return 0

    @staticmethod
    def postexpire(path):
        opened = safe_open(path, os.O_RDWR, 0)
        if opened.fd is None:
            if opened.errno != 2:
                msg.warn("expire file %s: %s" % (path, opened.why))
            return -1
        try:
            st = os.fstat(opened.fd)
            if not ready_message(st) or st.st_mode & MODE_EXPIRED:
                return -1
            try:
                os.fchmod(opened.fd, stat.S_IMODE(st.st_mode | MODE_EXPIRED))
            except OSError as exc:
                msg.warn("expire file %s: cannot set permission: %s"
                         % (path, msg.strerror(exc)))
                return -1
            return 0
        finally:
            os.close(opened.fd)

    @staticmethod
    def postrename(old, new):
        try:
            os.rename(old, new)
        except FileNotFoundError:
            try:
                make_dirs(os.path.dirname(new))
                os.rename(old, new)
            except FileNotFoundError:
                return -1
            except OSError as exc:
                msg.fatal("rename file %s as %s: %s" % (old, new, msg.strerror(exc)))
        except OSError as exc:
            msg.fatal("rename file %s as %s: %s" % (old, new, msg.strerror(exc)))
        if msg.verbose:
            msg.info("renamed file %s as %s" % (old, new))
        return 0

    @staticmethod
    def postrmdir(path):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            return -1
        except OSError as exc:
            msg.fatal("remove directory %s: %s" % (path, msg.strerror(exc)))
        if msg.verbose:
            msg.info("remove directory %s" % path)
        return 0

    # -- structure checks and mass operations -------------------------------------------------

    def fix_queue_id(self, actual_path, actual_queue, actual_id, st):
        """Rename a message (logfiles first) to a name that matches its inode number, with
        the #FIX suffix that the second pass removes."""
        sep = actual_id.rfind(LONG_INUM_SEP)
        if sep < LONG_TIME_PAD:
            new_id = actual_id[:SHORT_USEC_PAD] + file_id(st.st_ino, False)
        elif self.long_ids:
            new_id = actual_id[:sep] + LONG_INUM_SEP + file_id(st.st_ino, True)
        else:
            usec = safe_strtoul(actual_id[sep - LONG_USEC_PAD:sep], 52) or 0
            new_id = "%05X" % usec + file_id(st.st_ino, False)
        for log_queue in LOG_QUEUES:
            self.postrename(self.layout.path(log_queue, actual_id),
                            self.layout.path(log_queue, new_id) + SUFFIX)
        return self.postrename(actual_path, self.layout.path(actual_queue, new_id) + SUFFIX)

    def super(self, queues, action):
        for queue_name in queues:
            if msg.verbose:
                msg.info("queue: %s" % queue_name)
            perms, recurse = find_queue_info(queue_name)
            is_message_queue = perms == MODE_COMPLETE
            wanted_depth = self.hash_depth if queue_name in self.hash_queue_names else 0
            if wanted_depth > 0 and not recurse:
                msg.fatal("%s queue must not be hashed" % queue_name)
            scan = ScanDir(queue_name)
            actual_depth = 0
            try:
                while True:
                    path = scan.next()
                    if path is None:
                        if actual_depth == 0:
                            break
                        if actual_depth > wanted_depth:
                            self.postrmdir(scan.path())
                        scan.pop()
                        actual_depth -= 1
                        continue
                    if len(path) == 1 and recurse:
                        actual_depth += 1
                        scan.push(path)
                        continue
                    action = self.one_file(queue_name, is_message_queue, scan.path(), path,
                                           action)
            finally:
                scan.close()

    def one_file(self, queue_name, is_message_queue, directory, path, action):
        """What super() does with one directory entry; returns the (possibly narrowed)
        action mask."""
        actual_path = "%s/%s" % (directory, path)
        try:
            st = os.lstat(actual_path)
        except OSError:
            return action
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(actual_path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                msg.warn("remove subdirectory %s: %s" % (actual_path, msg.strerror(exc)))
            else:
                if msg.verbose:
                    msg.info("remove subdirectory %s" % actual_path)
            return action
        if action & ACTION_DELETE_ALL:
            if self.postremove(actual_path) == 0 and is_message_queue and ready_message(st):
                self.deleted += 1
            return action
        if not stat.S_ISREG(st.st_mode) or (
                action & ACTION_PURGE and is_message_queue and not ready_message(st)
                and time.time() > st.st_mtime + MAX_TEMP_AGE):
            self.postremove(actual_path)
            return action
        if action & ACTION_STRUCT and path.endswith(SUFFIX):
            path = path[:-len(SUFFIX)]
            if not queue_id_ok(path):
                msg.warn("bogus file name: %s" % actual_path)
                return action
            if is_message_queue:
                inum, _, error = get_inum(path)
                if error:
                    msg.warn("bogus file name: %s" % actual_path)
                    return action
                if inum != st.st_ino:
                    msg.warn("name/inode mismatch: %s" % actual_path)
                    return action
            wanted_path = self.layout.path(queue_name, path)
            if self.postrename(actual_path, wanted_path) < 0:
                return action
            if is_message_queue:
                self.inode_fixed += 1
            actual_path = wanted_path
        if not queue_id_ok(path):
            msg.warn("bogus file name: %s" % actual_path)
            return action
        if action & ACTION_STRUCT and is_message_queue:
            inum, long_name, error = get_inum(path)
            if error:
                msg.warn("bogus file name: %s" % actual_path)
                return action
            if (long_name and not self.long_ids) or (
                    inum != st.st_ino and (not long_name or action & ACTION_STRUCT_RED)):
                self.inode_mismatch += 1
                action &= ~ACTIONS_BY_WILDCARD
                self.fix_queue_id(actual_path, queue_name, path, st)
                return action
        if action & ACTION_REQUEUE_ALL and is_message_queue and queue_name != MAILDROP:
            if self.postrename(actual_path, self.layout.path(MAILDROP, path)) == 0:
                self.requeued += 1
            return action
        if action & (ACTION_EXPIRE_ALL | ACTION_EXP_REL_ALL) and is_message_queue \
                and ready_message(st) and queue_name != MAILDROP \
                and self.postexpire(actual_path) == 0:
            self.expired += 1
        if action & ACTION_HOLD_ALL and is_message_queue \
                and queue_name not in (MAILDROP, HOLD):
            if self.postrename(actual_path, self.layout.path(HOLD, path)) == 0:
                self.held += 1
            return action
        if action & (ACTION_RELEASE_ALL | ACTION_EXP_REL_ALL) and queue_name == HOLD:
            if self.postrename(actual_path, self.layout.path(DEFERRED, path)) == 0:
                self.released += 1
            return action
        if action & ACTION_STRUCT:
            wanted_path = self.layout.path(queue_name, path)
            if actual_path != wanted_path:
                self.position_mismatch += 1
                self.postrename(actual_path, wanted_path)
        return action

"""Queue directories and queue files (Postfix's global/mail_queue.c, file_id.c,
safe_ultostr.c and util/dir_forest.c).

A queue file is created under a temporary name (`<queue>/<usec>.<pid>`), its inode number
becomes part of the queue ID, and it is renamed to `<queue>/[<hash dirs>/]<ID>`. Short IDs
are five hex digits of microseconds plus the inode in hex; long IDs (enable_long_queue_ids)
are seconds and microseconds in a vowel-free base 52, a `z`, and the inode in base 51.
Queues listed in hash_queue_names are spread over hash_queue_depth levels of one-character
subdirectories (for long IDs taken from the microseconds, as hex). A file is complete when
its owner permission bits are rwx (0700): readers skip anything else, so a file that is
still being written is never taken for a message.
"""

import os
import re
import stat
import time

from pyfix.common import msg

INCOMING = "incoming"
ACTIVE = "active"
DEFERRED = "deferred"
HOLD = "hold"
MAILDROP = "maildrop"
CORRUPT = "corrupt"
SAVED = "saved"
BOUNCE = "bounce"
DEFER = "defer"
TRACE = "trace"
FLUSH = "flush"

MODE_EMBRYONIC = 0o600           # being written
MODE_COMPLETE = 0o700            # owner rwx: ready
MODE_EXPIRED = 0o010             # group x: force-expired (postsuper -e)
MODE_THROTTLE_HINT = 0o040       # group r: flush hint

SAFE_CHARS = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
LONG_SEC_PAD = 6
LONG_USEC_PAD = 4
LONG_TIME_PAD = LONG_SEC_PAD + LONG_USEC_PAD
LONG_INUM_SEP = "z"
SHORT_USEC_PAD = 5
VALID_HOSTNAME_LEN = 255


def safe_ultostr(value, base, pad):
    digits = []
    while True:
        digits.append(SAFE_CHARS[value % base])
        value //= base
        if not value:
            break
    text = "".join(reversed(digits))
    return text.rjust(pad, "0")


def safe_strtoul(text, base):
    """The value of text in the safe alphabet, or None when it is not well-formed."""
    value = 0
    for ch in text:
        digit = SAFE_CHARS.find(ch)
        if digit < 0 or digit >= base:
            return None
        value = value * base + digit
    return value if text else None


def file_id(inode, long_ids):
    return safe_ultostr(inode, 51, 0) if long_ids else "%X" % inode


def make_queue_id(seconds, usec, inode, long_ids):
    if long_ids:
        return "%s%s%s%s" % (safe_ultostr(seconds, 52, LONG_SEC_PAD),
                             safe_ultostr(usec, 52, LONG_USEC_PAD), LONG_INUM_SEP,
                             file_id(inode, True))
    return "%05X%s" % (usec, file_id(inode, False))


def long_id_separator(queue_id):
    """Position of the `z` of a long queue ID, or -1 for a short one."""
    pos = queue_id.rfind(LONG_INUM_SEP)
    return pos if pos >= LONG_TIME_PAD else -1


def queue_id_inode(queue_id):
    """The inode number a queue ID claims, or None when the ID does not encode one."""
    sep = long_id_separator(queue_id)
    if sep >= 0:
        return safe_strtoul(queue_id[sep + 1:], 51)
    try:
        return int(queue_id[SHORT_USEC_PAD:], 16)
    except ValueError:
        return None


_QUEUE_ID_CHARS = re.compile(r"[A-Za-z0-9_]+")
_QUEUE_NAME_CHARS = re.compile(r"[A-Za-z0-9]+")


def queue_id_ok(queue_id):
    """mail_queue_id_ok(): 1-255 characters, letters, digits or `_`."""
    return len(queue_id) <= VALID_HOSTNAME_LEN and \
        _QUEUE_ID_CHARS.fullmatch(queue_id) is not None


def queue_name_ok(name):
    return len(name) <= 100 and _QUEUE_NAME_CHARS.fullmatch(name) is not None


def dir_forest(name, depth):
    """`a/b/` for the first depth characters of name, `_` where it is shorter."""
    parts = []
    for n in range(depth):
        ch = name[n] if n < len(name) else "_"
        if not ch.isprintable() or ch in "./":
            msg.panic("dir_forest: invalid pathname: %s" % name)
        parts.append(ch + "/")
    return "".join(parts)


class QueueLayout:
    """Where the files of each queue live, per hash_queue_names and hash_queue_depth."""

    def __init__(self, config):
        self.hashed = {name.lower() for name in config.get_list("hash_queue_names")}
        self.depth = config.get_int("hash_queue_depth")
        self.long_ids = config.get_bool("enable_long_queue_ids")

    def queue_dir(self, queue_name, queue_id):
        """mail_queue_dir(): `<queue>/` plus the hash subdirectories for this ID."""
        if not queue_name_ok(queue_name):
            msg.panic("mail_queue_dir: bad queue name: %s" % queue_name)
        if not queue_id_ok(queue_id):
            msg.panic("mail_queue_dir: bad queue id: %s" % queue_id)
        path = queue_name + "/"
        if queue_name.lower() in self.hashed:
            sep = long_id_separator(queue_id)
            if sep >= 0:
                usec = safe_strtoul(queue_id[sep - LONG_USEC_PAD:sep], 52) or 0
                queue_id = "%05X" % usec
            path += dir_forest(queue_id, self.depth)
        return path

    def path(self, queue_name, queue_id):
        """mail_queue_path(): relative to the queue directory (the daemons' cwd)."""
        return self.queue_dir(queue_name, queue_id) + queue_id

    def enter(self, queue_name, mode=MODE_EMBRYONIC):
        """mail_queue_enter(): a new file in queue_name; returns (file object, queue ID,
        arrival time). The caller writes it, then commit() makes it complete."""
        pid = os.getpid()
        while True:
            now = time.time()
            usec = int(now * 1_000_000) % 1_000_000
            temp = "%s/%d.%d" % (queue_name, usec, pid)
            try:
                fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
                break
            except (FileExistsError, IsADirectoryError):
                continue
            except OSError as exc:
                msg.warn("mail_queue_enter: create file %s: %s" % (temp, msg.strerror(exc)))
                time.sleep(10)
        inode = os.fstat(fd).st_ino
        for count in range(1002):
            now = time.time()
            seconds = int(now)
            usec = int(now * 1_000_000) % 1_000_000
            queue_id = make_queue_id(seconds, usec, inode, self.long_ids)
            final = self.path(queue_name, queue_id)
            if not os.path.exists(final):
                try:
                    os.rename(temp, final)
                    return os.fdopen(fd, "r+b"), queue_id, (seconds, usec)
                except FileNotFoundError:
                    make_dirs(os.path.dirname(final))
                    continue
                except OSError as exc:
                    msg.warn("mail_queue_enter: rename %s to %s: %s"
                             % (temp, final, msg.strerror(exc)))
        msg.fatal("mail_queue_enter: rename %s to %s: giving up" % (temp, final))

    def rename(self, queue_id, old_queue, new_queue):
        """mail_queue_rename(): move a file between queues, creating hash dirs as needed.
        Returns False (errno in OSError) when the file is gone."""
        old = self.path(old_queue, queue_id)
        new = self.path(new_queue, queue_id)
        try:
            os.rename(old, new)
        except FileNotFoundError:
            if not os.path.exists(old):
                raise
            make_dirs(os.path.dirname(new))
            os.rename(old, new)
        return True

    def remove(self, queue_name, queue_id):
        os.unlink(self.path(queue_name, queue_id))


def commit(stream):
    """Make a written queue file complete: flush, mode 0700, fsync, close — in that order,
    so that a crash leaves either an incomplete file (never delivered) or a complete one."""
    stream.flush()
    fd = stream.fileno()
    os.fchmod(fd, MODE_COMPLETE)
    os.fsync(fd)
    stream.close()


def is_complete(mode):
    """A file readers may touch: owner permission bits exactly rwx."""
    return mode & stat.S_IRWXU == stat.S_IRWXU


def make_dirs(path, mode=0o700):
    os.makedirs(path, mode=mode, exist_ok=True)

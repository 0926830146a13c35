"""postdrop(1): put one message into the maildrop queue (Postfix's src/postdrop/postdrop.c).

    postdrop [-rv] [-c config_dir]

sendmail(1) runs `postdrop -r` and writes the message to its standard input as queue-file
records; postdrop answers on standard output in Postfix's attr0 protocol:
`protocol=postdrop_protocol, queue_id=<id>` as soon as the file exists, and
`status=<cleanup status>, reason=<text>` at the end. In between it copies the records
into maildrop/<id>, checking them as Postfix does:

- only the record types of a submission pass, segment by segment: envelope `MFSRVAin`,
  content `XLN`, extracted `EAR` (the first letter of each set ends its segment); any
  other type, a malformed record or one longer than line_length_limit ends the program
  with `fatal: uid=N: ...` and removes the file;
- the file starts with postdrop's own `T` record (the caller's time is not trusted);
- `A` records pass only for the attributes a submission may carry (encoding 7bit/8bit,
  the DSN attributes, create_time, rewrite_context local/remote, trace_flags); others
  are dropped with a warning;
- every `S` record is checked against local_login_sender_maps for the submitting user
  (maps/login_sender_match.py), and there must be a sender and a recipient (else
  status 1, "internal protocol error").

The file is created with mode 0644 and becomes 0744 when it is complete (flushed, owner
execute bit set, fsynced, closed): pickup(8) takes only files whose owner bits are rwx
and reads files of other users through the world-read bit. Then `W` wakes
public/$pickup_service_name. End of input before the `E` record cancels the submission
(the file is removed, exit 0); so do SIGHUP, SIGINT, SIGQUIT and SIGTERM.

Privilege: Postfix installs postdrop set-gid `postdrop` so that any user can write the
maildrop directory (postfix:postdrop 1730). A Python program cannot be set-gid (the
kernel ignores the bit on scripts), so pyfix ships a small set-gid launcher
(commands/setgid/, see the README); this module behaves as Postfix's
postdrop does when it runs set-gid: a non-default -c directory must be listed in the
default main.cf (alternate_config_directories), -v counts only for root, the
environment is reduced to import_environment, and the program name is not taken from
argv[0].

The exit status is the cleanup status (0 = success), 1 after a fatal error.
"""

import errno
import os
import pwd
import resource
import signal
import sys
import time

from pyfix.common import config as config_mod
from pyfix.common import maillog, msg
from pyfix.common.config import CONFIG_ENV, Config, MAIN_CF, MainCf
from pyfix.common.getopt import GetoptError, posix_getopt
from pyfix.common.readlline import ReadError, logical_lines, read_text
from pyfix.common.clean_env import clean_env, import_env
from pyfix.common.std_fds import open_standard_fds
from pyfix.common.user_acl import check_user_acl_byuid
from pyfix.common.strings import CHARS_COMMA_SP, split_nameval, tokens
from pyfix.queue import cleanup_user, record as rec
from pyfix.queue.cleanup_user import (STAT_BAD, STAT_NOPERM, STAT_OK, STAT_SIZE,
                                      STAT_WRITE)
from pyfix.queue.mail_queue import MAILDROP, QueueLayout
from pyfix.queue.mail_stream import TRIGGER_WAKEUP, mail_trigger

PROGNAME = "postdrop"
USAGE = "usage: %s [-c config_dir] [-v]" % PROGNAME

PROTO_POSTDROP = "postdrop_protocol"
MAIL_CLASS_PUBLIC = "public"

# The record types of a submission, one string per segment (rec_type.h REC_TYPE_POST_*).
SEGMENTS = (b"MFSRVAin", b"XLN", b"EAR", b"")

# Mode bits added to a maildrop file: world-readable, so that pickup can read files of
# other users (mail_stream_file(..., 0444)).
MAILDROP_MODE = 0o444

# Attributes a submission may carry (besides encoding and rewrite_context, which are
# checked by value): the DSN ones and create_time (rec_attr_map()), trace_flags.
FREE_ATTRIBUTES = ("envelope_id", "notify_flags", "dsn_orig_rcpt", "ret_flags",
                   "create_time", "trace_flags")


def cleanup_strerror(status):
    try:
        return cleanup_user.strerror(status)
    except ValueError:
        msg.panic("cleanup_strerror: unknown status %u" % status)


# -- start-up shared with the other set-gid programs -------------------------------------------

def check_config_dir(config_dir):
    """mail_conf_checkdir(): a set-gid program (or sendmail -C run by a user) takes a
    non-default configuration directory only when the default main.cf names it in
    alternate_config_directories or multi_instance_directories. (The default is
    /etc/postfix, or the directory compiled into pyfix's set-gid launcher.)"""
    path = os.path.join(config_mod.DEFAULT_CONFIG_DIR, MAIN_CF)
    try:
        text = read_text(path)
    except ReadError as exc:
        msg.fatal("read file %s: %s" % (path, msg.strerror(exc)))
    except OSError as exc:
        msg.fatal("open file %s: %s" % (path, msg.strerror(exc)))
    for line, _, _ in logical_lines(text, path):
        name, value, err = split_nameval(line)
        if not err and name in ("alternate_config_directories", "multi_instance_directories"):
            if config_dir in tokens(value, CHARS_COMMA_SP):
                return
    msg.error("unauthorized configuration directory name: %s" % config_dir)
    msg.fatal('specify "alternate_config_directories = %s" or '
              '"multi_instance_directories = %s" in %s' % (config_dir, config_dir, path))


def read_config():
    """mail_conf_read(): main.cf of $MAIL_CONFIG (checked when running set-gid)."""
    default = config_mod.DEFAULT_CONFIG_DIR
    config_dir = os.environ.get(CONFIG_ENV) or default
    if config_dir != default and maillog.unsafe():
        check_config_dir(config_dir)
    config = Config(MainCf.read(os.path.join(config_dir, MAIN_CF)), config_dir)
    config.explicit.setdefault("config_directory", config_dir)
    msg.utf8_enable = config.get_bool("smtputf8_enable")
    return config


def limit_file_size(config):
    """Stop run-away submissions: the file size limit becomes message_size_limit."""
    limit = config.get_long("message_size_limit")
    if limit <= 0:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft == resource.RLIM_INFINITY or soft > limit:
        try:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        except (ValueError, OSError) as exc:
            msg.fatal("setrlimit: %s" % msg.strerror(exc))


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


# -- the local sender check --------------------------------------------------------------------

def check_login_sender(config, uid, sender):
    """check_login_sender_acl(): (status, reason), whether this user may use this
    envelope sender."""
    if "\0" in sender:
        return STAT_BAD, "NUL in FROM record"
    maps_text = config.get("local_login_sender_maps")
    if maps_text == "static:*":
        return STAT_OK, ""
    from pyfix.maps import login_sender_match as lsm
    name = user_name(uid) or "uid:%d" % uid
    found = lsm.login_sender_match(
        config, "local_login_sender_maps", maps_text, config.get("recipient_delimiter"),
        config.get("empty_address_local_login_sender_maps_lookup_key"), "*", name, sender)
    if found == lsm.LSM_STAT_FOUND:
        return STAT_OK, ""
    if found == lsm.LSM_STAT_NOTFOUND:
        return STAT_NOPERM, "not authorized to use sender='%s'" % sender
    return STAT_WRITE, "local_login_sender_maps table lookup error for '%s'" % maps_text


# -- the program --------------------------------------------------------------------------------

class Drop:
    """The maildrop file being written; remove() is safe from a signal handler."""

    def __init__(self):
        self.path = None
        self.stream = None

    def remove(self):
        path, self.path = self.path, None
        if path:
            try:
                os.remove(path)
            except OSError:
                pass


_drop = Drop()


def _on_signal(signum, frame):
    # Nested calls are stopped by ignoring the signals first (the SIGINT disposition
    # is the flag, as in Postfix).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        return
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    _drop.remove()
    os._exit(signum)


def setup_signals():
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGQUIT, _on_signal)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, _on_signal)


def parse_args(argv):
    try:
        options, _ = posix_getopt(argv[1:], "c:rv")
    except GetoptError as exc:
        sys.stderr.write("%s: %s\n" % (PROGNAME, exc))
        sys.stderr.flush()
        msg.fatal(USAGE)
    for letter, value in options:
        if letter == "c":
            os.environ[CONFIG_ENV] = value
        elif letter == "v":
            if os.geteuid() == 0:
                msg.verbose += 1


def write_out(data):
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


def attr_list(pairs):
    data = bytearray()
    for name, value in pairs:
        data += name.encode() + b"\0" + str(value).encode("utf-8", "surrogateescape") + b"\0"
    return bytes(data + b"\0")


def finish_file(stream):
    """mail_stream_finish_file(): flush, time stamp, mode 0744, fsync, close; the
    cleanup status (0, or a write / size error)."""
    try:
        stream.flush()
        fd = stream.fileno()
        os.utime(fd)
        os.fchmod(fd, 0o700 | MAILDROP_MODE)
        os.fsync(fd)
    except OSError as exc:
        try:
            stream.close()
        except OSError:
            pass
        return (STAT_SIZE if exc.errno == errno.EFBIG else STAT_WRITE), exc
    try:
        stream.close()
    except OSError as exc:
        return (STAT_SIZE if exc.errno == errno.EFBIG else STAT_WRITE), exc
    return STAT_OK, None


def copy_records(config, uid, reader, out):
    """Copy the submission; (status, reason), or (None, None) when the input ends
    before the `E` record."""
    status = STAT_OK
    reason = ""
    from_count = rcpt_count = 0
    segments = iter(SEGMENTS)
    expected = next(segments)
    validate = True
    while True:
        rec_type, payload = reader.get_raw()
        if rec_type is rec.EOF:
            return None, None
        if payload is None:                     # rec.ERROR
            msg.fatal("uid=%d: malformed input" % uid)
        # (Postfix looks the type up with strchr(), which also finds a 0 byte.)
        if rec_type not in expected and rec_type != b"\0":
            msg.fatal("uid=%d: unexpected record type: %d" % (uid, rec_type[0]))
        if rec_type[0] == expected[0]:
            expected = next(segments)
        if rec_type == rec.TIME:
            continue
        if rec_type == rec.FROM:
            sender = payload.decode("utf-8", "surrogateescape")
            check, why = check_login_sender(config, uid, sender)
            if check:
                status |= check
                reason = why
            from_count += 1
        elif rec_type == rec.RCPT:
            rcpt_count += 1
        elif rec_type == rec.ATTR:
            text = payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            name, value, err = split_nameval(text)
            if err:
                msg.warn("uid=%d: ignoring malformed record: %s: %.200s" % (uid, err, text))
                continue
            if (name == "encoding" and value in ("7bit", "8bit", "")) \
                    or name in FREE_ATTRIBUTES \
                    or (name == "rewrite_context" and value in ("local", "remote")):
                out.write(rec.encode(rec.ATTR, "%s=%s" % (name, value)))
            else:
                msg.warn("uid=%d: ignoring attribute record: %.200s=%.200s"
                         % (uid, name, value))
            continue
        if status != STAT_OK or not out.write(rec.encode(rec_type, payload)):
            # Read the rest of the input before answering, or the client sees SIGPIPE.
            while rec_type != rec.END:
                rec_type, payload = reader.get_raw()
                if rec_type is rec.EOF:
                    break
                if payload is None:
                    msg.fatal("uid=%d: malformed input" % uid)
            validate = False
            break
        if rec_type == rec.END:
            break
    if validate and (from_count == 0 or rcpt_count == 0):
        status |= STAT_BAD
    return status, reason


def run(argv):
    os.umask(0o022)
    open_standard_fds()
    msg.init_stderr(PROGNAME)
    maillog.init(maillog.mail_task(PROGNAME), None)
    parse_args(argv)
    config = read_config()
    maillog.init(maillog.mail_task(PROGNAME, config), config)
    limit_file_size(config)
    clean_env(import_env(config))
    queue_directory = config.get("queue_directory")
    try:
        os.chdir(queue_directory)
    except OSError as exc:
        msg.fatal("chdir %s: %s" % (queue_directory, msg.strerror(exc)))
    if msg.verbose:
        msg.info("chdir %s" % queue_directory)
    setup_signals()
    uid = os.getuid()
    trigger_timeout = config.get_time("trigger_timeout", unit="s")
    line_limit = config.get_int("line_length_limit")

    denied = check_user_acl_byuid("authorized_submit_users",
                            config.get("authorized_submit_users"), uid)
    if denied is not None:
        msg.fatal("User %s(%d) is not allowed to submit mail" % (denied, uid))

    start_ns = time.time_ns()
    layout = QueueLayout(config)
    stream, queue_id, _ = layout.enter(MAILDROP, 0o600 | MAILDROP_MODE)
    _drop.stream = stream
    _drop.path = layout.path(MAILDROP, queue_id)
    if msg.verbose:
        msg.info("open %s" % _drop.path)
    write_out(attr_list((("protocol", PROTO_POSTDROP), ("queue_id", queue_id))))

    out = _BufferedRecords(stream)
    out.write(rec.encode(rec.TIME, "%d %d" % (start_ns // 10**9, start_ns // 1000 % 10**6)))
    stdin = os.fdopen(0, "rb", closefd=False)
    reader = rec.RecordReader(stdin, "stdin", maxsize=line_limit)
    status, reason = copy_records(config, uid, reader, out)
    if status is None:                          # end of input: the request is cancelled
        try:
            stream.close()
        except OSError:
            pass
        path, _drop.path = _drop.path, None
        try:
            os.remove(path)
        except OSError as exc:
            msg.warn("uid=%d: remove %s: %s" % (uid, path, msg.strerror(exc)))
        else:
            if msg.verbose:
                msg.info("remove %s" % path)
        return 0

    if status != STAT_OK:
        # As Postfix does, the unfinished file stays behind (never complete, so pickup
        # ignores it); only a fatal error or a signal removes it.
        try:
            stream.close()
        except OSError:
            pass
    else:
        write_error = out.flush_error()
        if write_error is not None:
            status = STAT_SIZE if write_error.errno == errno.EFBIG else STAT_WRITE
            error = write_error
            try:
                stream.close()
            except OSError:
                pass
        else:
            status, error = finish_file(stream)
        if status != STAT_OK:
            msg.warn("uid=%d: %s" % (uid, msg.strerror(error)))
            _drop.remove()
        else:
            mail_trigger(MAIL_CLASS_PUBLIC, config.get("pickup_service_name"), TRIGGER_WAKEUP,
                         trigger_timeout)
    _drop.path = None
    write_out(attr_list((("status", status),
                         ("reason", reason if status != STAT_OK else ""))))
    return status


class _BufferedRecords:
    """Writes to the queue file; the first write error is kept (write() says whether
    all went well so far)."""

    def __init__(self, stream):
        self.stream = stream
        self.error = None

    def write(self, data):
        if self.error is None:
            try:
                self.stream.write(data)
            except OSError as exc:
                self.error = exc
        return self.error is None

    def flush_error(self):
        if self.error is None:
            try:
                self.stream.flush()
            except OSError as exc:
                self.error = exc
        return self.error


def main():
    try:
        return run(sys.argv)
    except msg.Fatal as exc:
        _drop.remove()
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        _drop.remove()
        return 1


if __name__ == "__main__":
    sys.exit(main())

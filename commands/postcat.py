"""postcat(1): show the contents of queue files (Postfix's src/postcat/postcat.c).

    postcat [-bdehoqv] [-c config_dir] [-s offset] [files...]

Without -e, -h or -b all three parts are shown: the envelope records (`*** ENVELOPE
RECORDS file ***` and each record as `name: value`), the message header and the body.
-q takes queue IDs and looks for them in maildrop, incoming, active, deferred, hold and
saved; without file names the queue file is read from standard input. -o prints each
record's offset, -d its type as a number, -s starts reading at an offset, -v shows the
records Postfix normally hides (pointers, padding) and marks text records, -r (with -v)
does not follow pointer records.

The output is Postfix's, byte for byte: record names from rec_type.c, times in asctime()
format, the header/body boundary found the way postcat finds it, and the shortcuts that
skip over parts that are not printed (the size record tells where the content starts and
ends). Diagnostics go to standard error only, named after argv[0] as invoked. Output
is flushed where Postfix flushes it, and what Postfix would still hold in its buffer at
exit is dropped as Postfix drops it.

Differences from Postfix: a time too large for localtime() shows as `(null)`, where
Postfix's postcat crashes (asctime(NULL)); with -v, Postfix's configuration library
reports its work on stderr, pyfix's does not; a directory on standard input stops the
Python runtime before postcat starts (a named directory is handled as Postfix does).
"""

import errno
import os
import signal
import sys
import time

from pyfix.common import msg
from pyfix.common.config import CONFIG_ENV, Config
from pyfix.common.getopt import GetoptError, iter_getopt
from pyfix.common.strings import split_nameval
from pyfix.queue import record as rec
from pyfix.queue.mail_queue import HOLD, INCOMING, ACTIVE, DEFERRED, MAILDROP, SAVED, \
    QueueLayout, queue_id_ok

from pyfix.common.clean_env import import_env, update_env
from pyfix.common.std_fds import open_standard_fds
from pyfix.commands.queue_tools import Stdout, getopt_complaint
from pyfix.commands.postcat_input import fd_stream, open_file

OPTSTRING = "bc:dehoqrs:v"

FLAG_SEARCH_QUEUE = 1 << 0
FLAG_PRINT_OFFSET = 1 << 1
FLAG_PRINT_ENV = 1 << 2
FLAG_PRINT_HEADER = 1 << 3
FLAG_PRINT_BODY = 1 << 4
FLAG_PRINT_RTYPE_DEC = 1 << 5
FLAG_PRINT_RTYPE_SYM = 1 << 6
FLAG_RAW = 1 << 7
MASK_PRINT_TEXT = FLAG_PRINT_HEADER | FLAG_PRINT_BODY
MASK_PRINT_ALL = FLAG_PRINT_ENV | MASK_PRINT_TEXT

STATE_ENV, STATE_HEADER, STATE_BODY = 0, 1, 2

QUEUE_NAMES = (MAILDROP, INCOMING, ACTIVE, DEFERRED, HOLD, SAVED)

USAGE = ("usage: %s [-b (body text)] [-c config_dir] [-d (decimal record type)]"
         " [-e (envelope records)] [-h (header text)] [-q (access queue)] [-v]"
         " [file(s)...]")


def _cstr(data):
    """A payload as printf("%s") shows it: up to the first NUL."""
    return data.split(b"\0", 1)[0]


def _atol(data):
    text = data.lstrip(b" \t\n\v\f\r")
    sign = 1
    if text[:1] in (b"+", b"-"):
        sign = -1 if text[:1] == b"-" else 1
        text = text[1:]
    end = 0
    while end < len(text) and 48 <= text[end] <= 57:
        end += 1
    return sign * int(text[:end]) if end else 0


def _scan_two_longs(data):
    """sscanf(data, "%ld %ld"): (number of conversions, first, second)."""
    values = []
    pos = 0
    for _ in range(2):
        while pos < len(data) and data[pos] in b" \t\n\v\f\r":
            pos += 1
        start = pos
        if pos < len(data) and data[pos] in b"+-":
            pos += 1
        digits = pos
        while pos < len(data) and 48 <= data[pos] <= 57:
            pos += 1
        if pos == digits:
            break
        values.append(int(data[start:pos]))
    return values


def _asctime(seconds):
    try:
        return time.asctime(time.localtime(seconds)).encode() + b"\n"
    except (OverflowError, OSError, ValueError):
        return b"(null)\n"


def is_header(data):
    """is_header(): a header label (printable ASCII, optional blanks) and a colon."""
    state = 0
    for ch in data:
        if ch == 58:                    # ':'
            return state in (1, 2)
        if ch in (32, 9):
            if state == 1:
                state = 2
            if state == 2:
                continue
            return False
        if ch == 0 or ch > 127 or ch < 32 or ch == 127:
            return False
        if state == 0:
            state = 1
        if state == 1:
            continue
        return False
    return False


class Postcat:
    def __init__(self, flags, start_offset, out):
        self.flags = flags
        self.start_offset = start_offset
        self.out = out
        self.path_text = ""
        # Output is held as in Postfix's VSTREAM_OUT buffer and goes out only where
        # postcat calls vstream_fflush(): what is still pending when the program ends
        # (normally or with a fatal error) is lost, as in Postfix, which never flushes
        # VSTREAM_OUT at exit (the envelope banner of an empty file, the newline that
        # ends an unterminated last body line when only -h/-b is given).
        self.pending = bytearray()
        # Passing flushed output on at once only matters when stdout and stderr are the
        # same file (their lines must interleave as Postfix's do).
        self.sync = _same_file(1, 2)

    def write(self, data):
        self.pending += data

    def fflush(self):
        if self.pending:
            self.out.write(bytes(self.pending))
            self.pending.clear()
        if self.sync:
            self.out.flush()

    def warn(self, text):
        msg.warn(text)

    def fatal(self, text):
        msg.fatal(text)

    def marker(self, offset, rec_type, text, path):
        line = b""
        if self.flags & FLAG_PRINT_OFFSET:
            line += b"%9d " % (offset % 2 ** 64)
        if self.flags & FLAG_PRINT_RTYPE_DEC:
            line += b"%3d " % rec_type[0]
        line += b"*** %s %s ***\n" % (text, path)
        self.write(line)
        self.fflush()

    def record_line(self, offset, rec_type, value):
        line = b""
        if self.flags & FLAG_PRINT_OFFSET:
            line += b"%9d " % (offset % 2 ** 64)
        if self.flags & FLAG_PRINT_RTYPE_DEC:
            line += b"%3d " % rec_type[0]
        line += b"%s: %s\n" % (rec.rec_type_name(rec_type).encode(), _cstr(value))
        self.write(line)

    def tell(self, stream):
        try:
            return stream.tell()
        except OSError:
            return -1

    def show(self, stream, path, is_stdin=False):
        """postcat() on one open stream; path is VSTREAM_PATH (bytes)."""
        flags = self.flags
        verbose = msg.verbose
        path_text = path.decode("utf-8", "surrogateescape")
        if self.start_offset > 0:
            # Standard input is skipped by reading, even when it is a file
            # (postcat compares the stream with VSTREAM_IN, not its seekability).
            if is_stdin:
                count = 0
                while count < self.start_offset:
                    data = stream.read(min(self.start_offset - count, 65536))
                    if not data:
                        self.fatal("%s: skip %d bytes failed after %d"
                                   % (path_text, self.start_offset, count))
                    count += len(data)
            else:
                try:
                    stream.seek(self.start_offset)
                except (OSError, ValueError) as exc:
                    self.fatal("%s: seek to %d: %s"
                               % (path_text, self.start_offset, msg.strerror(exc)))
        reader = rec.RecordReader(stream, path_text)
        if self.start_offset == 0:
            first = stream.read(1)
            if first:
                # strchr(REC_TYPE_ENVELOPE, ch) also finds the string's terminating
                # NUL: a file that starts with a zero byte passes.
                if first not in rec.ENVELOPE_TYPES and first != b"\0":
                    self.warn("%s: input is not a valid queue file" % path_text)
                    return
                reader = rec.RecordReader(_Unread(stream, first), path_text)
        if self.start_offset == 0 and flags & FLAG_PRINT_ENV:
            self.write(b"*** ENVELOPE RECORDS %s ***\n" % path)
        state = STATE_ENV
        do_print = flags & FLAG_PRINT_ENV
        data_offset = data_size = -1
        prev_type = None
        offset = 0
        while True:
            if flags & FLAG_PRINT_OFFSET:
                offset = self.tell(reader.stream)
            if verbose:
                rec_type, buf = reader.get_raw()
            else:
                rec_type, buf = reader.get(follow_pointers=True, skip_padding=True,
                                           seek_end=True)
            if rec_type is rec.EOF:
                break
            if buf is None:
                self.fatal("record read error")
            if rec_type in (rec.CONT, rec.NORM):
                if state == STATE_HEADER and flags & MASK_PRINT_TEXT \
                        and prev_type != rec.CONT \
                        and not (is_header(_cstr(buf)) or buf[:1] in (b" ", b"\t")):
                    state = STATE_BODY
                    do_print = flags & FLAG_PRINT_BODY
                    if not do_print and not flags & FLAG_PRINT_ENV:
                        break
                    if not do_print and flags & FLAG_PRINT_ENV and data_offset >= 0 \
                            and data_size >= 0:
                        self._seek(reader, data_offset + data_size)
            elif rec_type == rec.MESG:
                if state != STATE_ENV:
                    self.warn("%s: out-of-order message content marker" % path_text)
                if flags & FLAG_PRINT_ENV:
                    self.marker(offset, rec_type, b"MESSAGE CONTENTS", path)
                if not flags & MASK_PRINT_TEXT and data_offset >= 0 and data_size >= 0:
                    self._seek(reader, data_offset + data_size)
                state = STATE_HEADER
                do_print = flags & FLAG_PRINT_HEADER
                continue
            elif rec_type == rec.XTRA:
                if state not in (STATE_HEADER, STATE_BODY):
                    self.warn("%s: out-of-order extracted segment marker" % path_text)
                if do_print and prev_type == rec.CONT:
                    self.write(b"\n")
                if flags & FLAG_PRINT_ENV:
                    self.marker(offset, rec_type, b"HEADER EXTRACTED", path)
                state = STATE_ENV
                do_print = flags & FLAG_PRINT_ENV
                if not do_print:
                    break
                continue
            elif rec_type == rec.END:
                if state != STATE_ENV:
                    self.warn("%s: out-of-order message end marker" % path_text)
                if flags & FLAG_PRINT_ENV:
                    self.marker(offset, rec_type, b"MESSAGE FILE END", path)
                if flags & FLAG_RAW:
                    continue
                break
            elif rec_type == rec.PTR:
                if do_print:
                    self.record_line(offset, rec_type, buf)
                    self.fflush()
                if not flags & FLAG_RAW and not reader.goto(buf):
                    self.fatal("bad pointer record, or input is not seekable")
                continue
            elif rec_type == rec.SIZE:
                if do_print:
                    self.record_line(offset, rec_type, buf)
                    self.fflush()
                if data_size >= 0 or data_offset >= 0:
                    self.warn("file contains multiple size records")
                else:
                    values = _scan_two_longs(_cstr(buf))
                    if values:
                        data_size = values[0]
                    if len(values) > 1:
                        data_offset = values[1]
                    if len(values) != 2 or data_offset <= 0 or data_size <= 0:
                        self.warn("invalid size record: %.100s"
                                  % _cstr(buf).decode("utf-8", "surrogateescape"))
                    if not flags & FLAG_PRINT_ENV:
                        self._seek(reader, data_offset)
                        state = STATE_HEADER
                        do_print = flags & FLAG_PRINT_HEADER
                continue
            if not do_print:
                continue
            self.print_record(offset, rec_type, buf, state, verbose)
            if rec_type == rec.CONT and (state == STATE_ENV or verbose
                                         or flags & FLAG_PRINT_OFFSET):
                rec_type = 0
            prev_type = rec_type
            self.fflush()           # in case the next record is broken

    def _seek(self, reader, where):
        try:
            if where < 0:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            reader.stream.seek(where)
        except (OSError, ValueError) as exc:
            self.fatal("seek error: %s" % msg.strerror(exc))

    def print_record(self, offset, rec_type, buf, state, verbose):
        line = b""
        if self.flags & FLAG_PRINT_OFFSET:
            line += b"%9d " % (offset % 2 ** 64)
        if self.flags & FLAG_PRINT_RTYPE_DEC:
            line += b"%3d " % rec_type[0]
        name = rec.rec_type_name(rec_type).encode()
        if rec_type == rec.TIME:
            line += b"%s: %s" % (name, _asctime(_atol(buf)))
        elif rec_type == rec.WARN:
            line += b"%s: %s" % (name, _asctime(_atol(buf)))
        elif rec_type == rec.CONT:
            if state == STATE_ENV:
                line += b"%s: " % name
            elif verbose:
                line += b"unterminated_text: "
            line += buf
            if state == STATE_ENV or verbose or self.flags & FLAG_PRINT_OFFSET:
                line += b"\n"
        elif rec_type == rec.NORM:
            if verbose:
                line += b"%s: " % name
            line += buf + b"\n"
        elif rec_type == rec.DTXT:
            line += b"%s: " % name + buf + b"\n"
        elif rec_type == rec.ATTR:
            text = _cstr(buf).decode("utf-8", "surrogateescape")
            attr_name, attr_value, err = split_nameval(text)
            if err:
                self.write(line)
                self.warn("%s: malformed attribute: %s: %.100s"
                          % (self.path_text, err, text))
                return
            if attr_name == "create_time":
                line += b"create_time: " + _asctime(_atol(attr_value.encode()))
            else:
                line += b"%s: %s=%s\n" % (name, attr_name.encode("utf-8", "surrogateescape"),
                                          attr_value.encode("utf-8", "surrogateescape"))
        else:
            line += b"%s: %s\n" % (name, _cstr(buf))
        self.write(line)


def _same_file(fd1, fd2):
    try:
        st1, st2 = os.fstat(fd1), os.fstat(fd2)
    except OSError:
        return False
    return (st1.st_dev, st1.st_ino) == (st2.st_dev, st2.st_ino)


class _Unread:
    """A stream with one byte pushed back (vstream_ungetc())."""

    def __init__(self, stream, data):
        self.stream = stream
        self.pending = data

    def read(self, size=-1):
        if self.pending:
            if size == 0:
                return b""
            data, self.pending = self.pending, b""
            if size < 0:
                return data + self.stream.read()
            return data + (self.stream.read(size - 1) if size > 1 else b"")
        return self.stream.read(size)

    def tell(self):
        return self.stream.tell() - len(self.pending)

    def seek(self, offset, whence=0):
        self.pending = b""
        return self.stream.seek(offset, whence)


def parse_args(argv):
    flags = 0
    start_offset = 0
    try:
        for letter, value in iter_getopt(argv[1:], OPTSTRING):
            if letter is None:
                return flags, start_offset, value
            if letter == "b":
                flags |= FLAG_PRINT_BODY
            elif letter == "c":
                os.environ[CONFIG_ENV] = value
            elif letter == "d":
                flags |= FLAG_PRINT_RTYPE_DEC
            elif letter == "e":
                flags |= FLAG_PRINT_ENV
            elif letter == "h":
                flags |= FLAG_PRINT_HEADER
            elif letter == "o":
                flags |= FLAG_PRINT_OFFSET
            elif letter == "q":
                flags |= FLAG_SEARCH_QUEUE
            elif letter == "r":
                flags |= FLAG_RAW
            elif letter == "s":
                if not value or not all("0" <= ch <= "9" for ch in value):
                    msg.fatal("bad offset: %s" % value)
                # atol() saturates at LONG_MAX
                start_offset = min(_atol(value.encode()), 2 ** 63 - 1)
            elif letter == "v":
                msg.verbose += 1
    except GetoptError as exc:
        getopt_complaint(argv[0], exc)
        msg.fatal(USAGE % argv[0])


def run(argv):
    open_standard_fds()
    msg.init_stderr(argv[0])
    flags, start_offset, args = parse_args(argv)
    if not flags & MASK_PRINT_ALL:
        flags |= MASK_PRINT_ALL
    config = Config.load()
    update_env(import_env(config))
    out = Stdout()
    cat = Postcat(flags, start_offset, out)
    try:
        if not args:
            cat.path_text = "stdin"
            cat.show(fd_stream(0, closefd=False), b"stdin", is_stdin=True)
        elif flags & FLAG_SEARCH_QUEUE:
            queue_dir = config.get("queue_directory")
            try:
                os.chdir(queue_dir)
            except OSError as exc:
                msg.fatal("chdir %s: %s" % (queue_dir, msg.strerror(exc)))
            layout = QueueLayout(config)
            for queue_id in args:
                if not queue_id_ok(queue_id):
                    msg.fatal("bad mail queue ID: %s" % queue_id)
                stream, path, error = None, None, None
                for _ in range(2):
                    for queue in QUEUE_NAMES:
                        path = layout.path(queue, queue_id)
                        try:
                            stream = open_file(path)
                            break
                        except OSError as exc:
                            error = exc
                    if stream is not None:
                        break
                if stream is None:
                    msg.fatal("open queue file %s: %s" % (queue_id, msg.strerror(error)))
                cat.path_text = path
                cat.show(stream, path.encode("utf-8", "surrogateescape"))
                _close(stream, queue_id)
        else:
            for name in args:
                try:
                    stream = open_file(name)
                except OSError as exc:
                    msg.fatal("open %s: %s" % (name, msg.strerror(exc)))
                cat.path_text = name
                cat.show(stream, name.encode("utf-8", "surrogateescape"))
                _close(stream, name)
    finally:
        out.flush()
    return 0


def _close(stream, name):
    error = stream.close()
    if error is not None:
        msg.warn("close %s: %s" % (name, msg.strerror(error)))


def main(argv=None):
    argv = sys.argv if argv is None else argv
    # A reader that goes away (postcat ... | head) ends postcat as it ends Postfix's,
    # which leaves SIGPIPE at its default.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return run(argv)
    except msg.Fatal as stop:
        return stop.code if isinstance(stop.code, int) else 1
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())

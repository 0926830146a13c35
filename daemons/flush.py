"""flush(8): the fast flush service (Postfix's src/flush/flush.c).

It keeps, for each destination in fast_flush_domains, a logfile
$queue_directory/flush/<site> with the queue IDs of the mail deferred for it (delivery
agents add them through flush_add() when they defer a recipient), so that ETRN and
`postqueue -s site` deliver that mail without a scan of the whole deferred queue. A
site's file name is the site in ASCII (IDNA), lowercased, every character but a letter
or digit made `_`. Requests (common/flush_clnt.py is the client):

    add site queue_id   append the queue ID to the site's logfile
    send_site site      move the listed messages from deferred to incoming (qmgr first
                        forgets dead destinations: trigger F), truncate the logfile,
                        wake qmgr (trigger I)
    send_file queue_id  the same for one message, marked to be unthrottled by qmgr
    rfrsh (or master's wakeup trigger)
                        do a send_site, without the qmgr wakeups, for each non-empty
                        logfile unread for fast_flush_refresh_time; delete empty ones
                        unchanged for fast_flush_purge_time
    purge               refresh every logfile

The answer is `status` (0 ok, 3 bad request, 4 not an eligible site, -1 failure).
A logfile is locked while it is appended to or flushed, so that concurrent flush
processes lose nothing.
"""

import errno
import os
import select
import socket
import stat
import time

from pyfix.common import attr, msg
from pyfix.common.flush_clnt import FLUSH_STAT_BAD, FLUSH_STAT_DENY, FLUSH_STAT_FAIL, \
    FLUSH_STAT_OK, PROTO_FLUSH, REQ_ADD, REQ_PURGE, REQ_REFRESH, REQ_SEND_FILE, \
    REQ_SEND_SITE, fast_flush_domains
from pyfix.common.safe_open import safe_open
from pyfix.common.trigger import TRIGGER_REQ_WAKEUP
from pyfix.common.valid_hostname import valid_hostname
from pyfix.queue import lock
from pyfix.queue.mail_queue import DEFERRED, FLUSH, INCOMING, MODE_COMPLETE, \
    MODE_THROTTLE_HINT, QueueLayout, queue_id_ok
from pyfix.queue.mail_stream import mail_trigger
from pyfix.queue.scan import mail_queue_open, scan_queue

from pyfix.daemons.skeleton.single import single_server_main

# How a logfile is flushed: only refreshed, or as a real delivery request that first
# makes qmgr forget dead destinations (UNTHROTTLE_BEFORE) or that marks each message
# for qmgr to unthrottle (UNTHROTTLE_AFTER).
REFRESH_ONLY = 0
UNTHROTTLE_BEFORE = 1 << 0
UNTHROTTLE_AFTER = 1 << 1

QMGR_REQ_FLUSH_DEAD = b"F"
QMGR_REQ_SCAN_INCOMING = b"I"


class Flush:
    def __init__(self):
        self.domains = None
        self.layout = None
        self.queue_service = "qmgr"
        self.refresh_time = 12 * 3600
        self.purge_time = 7 * 86400
        self.ipc_timeout = 3600

    def pre_init(self, server):
        config = server.config
        self.domains = fast_flush_domains(config)
        self.layout = QueueLayout(config)
        self.queue_service = config.get("queue_service_name")
        self.refresh_time = config.get_time("fast_flush_refresh_time")
        self.purge_time = config.get_time("fast_flush_purge_time")
        self.ipc_timeout = config.get_time("ipc_timeout")
        "\u00e4".encode("idna")     # load the codecs (idna, punycode) before the
                                    # privilege drop makes the Python install unreadable

    # -- site names -----------------------------------------------------------------------

    @staticmethod
    def site_to_path(site):
        """flush_site_to_path(): a harmless file name, or None (not convertible)."""
        ascii_site = midna_domain_to_ascii(site)
        if ascii_site is None:
            return None
        return "".join(ch.lower() if ch.isascii() and ch.isalnum() else "_"
                       for ch in ascii_site)

    def _eligible_path(self, site):
        """The site's logfile name; else the status that refuses the request."""
        if not self.domains.match(site):
            return None, FLUSH_STAT_FAIL if self.domains.error else FLUSH_STAT_DENY
        path = self.site_to_path(site)
        if path is None:
            return None, FLUSH_STAT_DENY
        if msg.verbose:
            msg.info("site %s to path %s" % (site, path))
        return path, FLUSH_STAT_OK

    # -- add --------------------------------------------------------------------------------

    def add_service(self, site, queue_id):
        if msg.verbose:
            msg.info("flush_add_service: site %s queue_id %s" % (site, queue_id))
        path, status = self._eligible_path(site)
        return status if path is None else self.add_path(path, queue_id)

    def add_path(self, path, queue_id):
        myname = "flush_add_path"
        if not queue_id_ok(path):
            return FLUSH_STAT_BAD
        try:
            log = mail_queue_open(self.layout, FLUSH, path,
                                  os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
        except OSError as exc:
            msg.fatal("%s: open fast flush logfile %s: %s" % (myname, path, msg.strerror(exc)))
        with log:
            _lock(log, lock.EXCLUSIVE, myname, "lock", path)
            try:
                log.write(queue_id.encode() + b"\n")
                log.flush()
            except OSError as exc:
                msg.warn("write fast flush logfile %s: %s" % (path, msg.strerror(exc)))
            _lock(log, lock.UNLOCK, myname, "unlock", path)
        return FLUSH_STAT_OK

    # -- send_site, send_file ---------------------------------------------------------------

    def send_service(self, site, how):
        if msg.verbose:
            msg.info("flush_send_service: site %s" % site)
        path, status = self._eligible_path(site)
        return status if path is None else self.send_path(path, how)

    def one_file(self, queue_id, when, how):
        """flush_one_file(): move one message from deferred to incoming with fresh time
        stamps; 1 when something was achieved, 0 when the message is gone."""
        myname = "flush_one_file"
        queue_name = DEFERRED
        while True:
            path = self.layout.path(queue_name, queue_id)
            try:
                os.utime(path, (when, when))
                break
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    msg.warn("%s: update %s time stamps: %s"
                             % (myname, path, msg.strerror(exc)))
            if queue_name == INCOMING:
                return 0
            queue_name = INCOMING
        if how & UNTHROTTLE_AFTER and not self._mark_unthrottle(queue_id, queue_name, path):
            return 0
        if queue_name != INCOMING:
            try:
                self.layout.rename(queue_id, queue_name, INCOMING)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    msg.warn("%s: rename from %s to %s: %s"
                             % (path, queue_name, INCOMING, msg.strerror(exc)))
        return 1

    def _mark_unthrottle(self, queue_id, queue_name, path):
        """Set the group read bit that asks qmgr to unthrottle the message's transport
        and destination (fchmod() of a safe_open()ed file, never chmod() by name)."""
        myname = "flush_one_file"
        while True:
            result = safe_open(path, os.O_RDWR)
            if result.fd is not None:
                break
            if result.errno != errno.ENOENT:
                msg.warn("%s: open %s: %s" % (myname, path, result.why))
            if result.errno != errno.ENOENT or queue_name == INCOMING:
                return False
            queue_name = INCOMING
            path = self.layout.path(queue_name, queue_id)
        try:
            mode = os.fstat(result.fd).st_mode
            if mode & MODE_COMPLETE != MODE_COMPLETE:
                return False
            try:
                os.fchmod(result.fd, stat.S_IMODE(mode) | MODE_THROTTLE_HINT)
            except OSError as exc:
                msg.warn("%s: fchmod %s: %s" % (myname, path, msg.strerror(exc)))
        finally:
            os.close(result.fd)
        return True

    def send_path(self, path, how):
        """flush_send_path(): flush one logfile."""
        myname = "flush_send_path"
        if not queue_id_ok(path):
            return FLUSH_STAT_BAD
        try:
            log = mail_queue_open(self.layout, FLUSH, path, os.O_RDWR, 0o600)
        except FileNotFoundError:
            return FLUSH_STAT_OK            # no mail queued for this site
        except OSError as exc:
            msg.fatal("%s: open fast flush logfile %s: %s" % (myname, path, msg.strerror(exc)))
        with log:
            _lock(log, lock.EXCLUSIVE, myname, "lock", path)
            if how & UNTHROTTLE_BEFORE:
                mail_trigger("public", self.queue_service, QMGR_REQ_FLUSH_DEAD)
            count = self._flush_listed(log, path, how)
            if count > 0:
                try:
                    log.truncate(0)
                except OSError as exc:
                    msg.fatal("%s: truncate fast flush logfile %s: %s"
                              % (myname, path, msg.strerror(exc)))
            try:
                os.utime(log.fileno())          # the noatime work-around: mark it read
            except OSError:
                pass
            _lock(log, lock.UNLOCK, myname, "unlock", path)
        if count > 0:
            if msg.verbose:
                msg.info("%s: requesting delivery for logfile %s" % (myname, path))
            mail_trigger("public", self.queue_service, QMGR_REQ_SCAN_INCOMING)
        return FLUSH_STAT_OK

    def _flush_listed(self, log, path, how):
        """Flush each listed queue ID. Like Postfix's loop this counts the lines as
        well as the files moved: any line makes the logfile truncated. Postfix's
        duplicate filter never filters (it stores null values, which its lookup takes
        for "absent"), so a repeated ID is simply looked up again; so is it here."""
        when = int(time.time())
        count = 0
        log.seek(0)
        lines = log.read().split(b"\n")
        if lines[-1] == b"":
            lines.pop()                 # the last line's newline; an unfinished one counts
        for line in lines:
            queue_id = line.decode("ascii", "replace")
            count += 1
            if not queue_id_ok(queue_id):
                msg.warn('bad queue id "%.30s..." in fast flush logfile %s' % (queue_id, path))
                continue
            if msg.verbose:
                msg.info("flush_send_path: logfile %s: update queue file %s time stamps"
                         % (path, queue_id))
            count += self.one_file(queue_id, when, how)
        return count

    def send_file_service(self, queue_id):
        if not queue_id_ok(queue_id):
            return FLUSH_STAT_BAD
        if msg.verbose:
            msg.info("flush_send_file_service: requesting delivery for queue_id %s"
                     % queue_id)
        if self.one_file(queue_id, int(time.time()), UNTHROTTLE_AFTER) > 0:
            mail_trigger("public", self.queue_service, QMGR_REQ_SCAN_INCOMING)
        return FLUSH_STAT_OK

    # -- refresh, purge -----------------------------------------------------------------------

    def refresh_service(self, max_age):
        """Flush the non-empty logfiles unread for max_age seconds; delete the empty
        ones unchanged for fast_flush_purge_time."""
        myname = "flush_refresh_service"
        now = int(time.time())          # whole seconds, as Postfix compares them
        for site_path in scan_queue(FLUSH):
            if not queue_id_ok(site_path):
                continue
            path = self.layout.path(FLUSH, site_path)
            try:
                st = os.stat(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    msg.warn("%s: stat %s: %s" % (myname, path, msg.strerror(exc)))
                elif msg.verbose:
                    msg.info("%s: %s: %s" % (myname, path, msg.strerror(exc)))
                continue
            if st.st_size == 0:
                if int(st.st_mtime) + self.purge_time < now:
                    try:
                        os.unlink(path)
                    except OSError as exc:
                        msg.warn("remove logfile %s: %s" % (path, msg.strerror(exc)))
                    else:
                        if msg.verbose:
                            msg.info("%s: unlink %s, empty and unchanged for %d days"
                                     % (myname, path, self.purge_time // 86400))
                elif msg.verbose:
                    msg.info("%s: skip logfile %s - empty log" % (myname, site_path))
            elif int(st.st_atime) + max_age < now:
                if msg.verbose:
                    msg.info("%s: flush logfile %s" % (myname, site_path))
                self.send_path(site_path, REFRESH_ONLY)
            elif msg.verbose:
                msg.info("%s: skip logfile %s, unread for <%d hours(s) "
                         % (myname, site_path, max_age // 3600))
        return FLUSH_STAT_OK

    # -- the protocol -------------------------------------------------------------------------

    def receive_request(self, stream):
        """flush_request_receive(): the request name, or None. A master wakeup is a
        short string (`W`, maybe a NUL); a client sends an attribute list."""
        sock = stream.sock
        # A trigger client may be gone already: pyfix's master closes its wakeup
        # connection right after the `W` (Postfix's waits for the server to hang up,
        # and Postfix's flush fails the request when the announcement cannot be
        # written). The request that was sent is served all the same.
        stream.send([("protocol", PROTO_FLUSH)])
        if not select.select([sock], [], [], self.ipc_timeout)[0]:
            msg.warn("timeout while waiting for data from %s" % stream.path)
            return None
        try:
            count = len(sock.recv(1024, socket.MSG_PEEK))
        except OSError as exc:
            msg.warn("cannot examine read buffer of %s: %s" % (stream.path, msg.strerror(exc)))
            return None
        if count <= 2:
            data, terminated = stream.get_null()
            if not terminated and not data:
                msg.warn("end-of-input while reading request from %s: %s"
                         % (stream.path, os.strerror(0)))
                return None
            return data.decode("ascii", "replace")
        count, values = stream.scan([(attr.STR, "request")], attr.FLAG_MORE | attr.FLAG_STRICT)
        return values["request"] if count == 1 else None

    def service(self, conn, server):
        if server.argv:
            msg.fatal("unexpected command-line argument: %s" % server.argv[0])
        stream = attr.AttrStream(conn, "flush socket", self.ipc_timeout)
        request = self.receive_request(stream)
        status = FLUSH_STAT_BAD
        if request is None:
            stream.send([("status", status)])
        elif request == REQ_ADD:
            count, values = stream.scan([(attr.STR, "site"), (attr.STR, "queue_id")],
                                        attr.FLAG_STRICT)
            if count == 2 and queue_id_ok(values["queue_id"]):
                status = self.add_service(values["site"], values["queue_id"])
            stream.send([("status", status)])
        elif request == REQ_SEND_SITE:
            count, values = stream.scan([(attr.STR, "site")], attr.FLAG_STRICT)
            if count == 1:
                status = self.send_service(values["site"], UNTHROTTLE_BEFORE)
            stream.send([("status", status)])
        elif request == REQ_SEND_FILE:
            count, values = stream.scan([(attr.STR, "queue_id")], attr.FLAG_STRICT)
            if count == 1:
                status = self.send_file_service(values["queue_id"])
            stream.send([("status", status)])
        elif request in (REQ_REFRESH, TRIGGER_REQ_WAKEUP.decode()):
            stream.send([("status", FLUSH_STAT_OK)])
            self.refresh_service(self.refresh_time)
        elif request == REQ_PURGE:
            stream.send([("status", FLUSH_STAT_OK)])
            self.refresh_service(0)


_midna_cache = {}
MIDNA_CACHE_SIZE = 256


def midna_domain_to_ascii(name):
    """midna_domain_to_ascii(): the ASCII form of a domain name (UTS 46 folds case),
    which must pass valid_hostname(); None with Postfix's warning otherwise. Results
    are cached, so a process warns once per name, as Postfix's ctable does."""
    if name in _midna_cache:
        return _midna_cache[name]
    myname = "midna_domain_to_ascii_create"
    result = None
    if any("\udc80" <= ch <= "\udcff" for ch in name):       # undecodable bytes
        msg.warn('%s: Problem translating domain "%.100s" to ASCII form: %s'
                 % (myname, name, "malformed UTF-8"))
    else:
        errors = _uts46_ascii_errors(name) if name.isascii() else None
        try:
            if errors:
                raise UnicodeError(",".join(errors))
            result = name.lower() if name.isascii() else name.encode("idna").decode("ascii")
        except (UnicodeError, LookupError) as exc:
            msg.warn('%s: Problem translating domain "%.100s" to ASCII form: %s'
                     % (myname, name, exc))
        else:
            if not valid_hostname(result):
                msg.warn('%s: Problem translating domain "%.100s" to ASCII form: %s'
                         % (myname, name, "malformed ASCII label(s)"))
                result = None
    if len(_midna_cache) >= MIDNA_CACHE_SIZE:
        _midna_cache.clear()
    _midna_cache[name] = result
    return result


def _uts46_ascii_errors(name):
    """The UIDNA_ERROR_* names that ICU's UTS 46 ToASCII (non-transitional, without
    STD3 rules, as Postfix calls it) reports for an ASCII name, in Postfix's order."""
    labels = name.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()                    # the root label of a trailing dot
    checks = (
        ("UIDNA_ERROR_EMPTY_LABEL", any(not label for label in labels)),
        ("UIDNA_ERROR_LABEL_TOO_LONG", any(len(label) > 63 for label in labels)),
        ("UIDNA_ERROR_DOMAIN_NAME_TOO_LONG", len(".".join(labels)) > 253),
        ("UIDNA_ERROR_LEADING_HYPHEN", any(label.startswith("-") for label in labels)),
        ("UIDNA_ERROR_TRAILING_HYPHEN", any(label.endswith("-") for label in labels)),
        ("UIDNA_ERROR_HYPHEN_3_4", any(label[2:4] == "--" and
                                       not label.lower().startswith("xn--")
                                       for label in labels)),
    )
    return [error for error, found in checks if found]


def _lock(log, operation, myname, what, path):
    try:
        lock.myflock(log.fileno(), operation)
    except OSError as exc:
        msg.fatal("%s: %s fast flush logfile %s: %s" % (myname, what, path, msg.strerror(exc)))


def main(argv):
    flush = Flush()
    single_server_main(argv, flush.service, unlimited=True, pre_init=flush.pre_init)

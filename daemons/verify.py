"""verify(8): the address verification service (Postfix's src/verify/verify.c, with the
cache of util/dict_cache.c and the probe sender of global/verify_sender_addr.c).

One process (master.cf `verify unix - - n - 1 verify`) keeps, per address, what the
last probe found, in address_verify_map (Debian: btree:$data_directory/verify_cache, a
read-write table opened through maps/, so it survives a restart) or, when that is
empty, in memory. smtpd's reject_unverified_* ask (`query`); the delivery agents that
handle a probe report (`update`); common/verify_clnt.py is the client and describes the
protocol. An entry is "status:probed:updated:text" (status DEL_RCPT_STAT_OK, DEFER,
BOUNCE or TODO; probed: when the outstanding probe was sent, 0 if none; updated: when
the last result arrived, 0 if never).

A query for an unknown, malformed or expired address answers TODO ("Address
verification in progress"); a query for an address whose result is older than the
refresh time (address_verify_positive/negative_refresh_time) or unknown sends a probe,
at most one per 1000 seconds per address (the `probed` time stamp): an empty message
from make_verify_sender_addr() to the address, posted to cleanup with
DEL_REQ_FLAG_MTA_VRFY, which qmgr and the delivery agents turn into an update instead of
a delivery. The probe goes in without waiting for cleanup's verdict (Postfix's
post_mail_fclose_async()): cleanup itself sends `update` for a probe that it expands to
several recipients. A failed probe never clobbers a cached OK before it expires. Without
address_verify_negative_cache a failed address is not remembered. Every
address_verify_cache_cleanup_interval the cache is swept of expired entries
(`cache btree:/var/lib/postfix/verify_cache full cleanup: retained=3 dropped=1 entries`).
With -v each lookup, update and probe is logged (GOT / PUT / PROBE lines, as Postfix).
"""

import fcntl
import os
import time

from pyfix.common import attr, msg
from pyfix.common.rewrite_clnt import Rewriter
from pyfix.common.verify_clnt import (DEL_RCPT_STAT_BOUNCE, DEL_RCPT_STAT_DEFER,
                                      DEL_RCPT_STAT_OK, DEL_RCPT_STAT_TODO, PROTO_VERIFY,
                                      REQ_QUERY, REQ_UPDATE, VRFY_STAT_BAD, VRFY_STAT_OK,
                                      signed)
from pyfix.daemons.bounce.post_mail import MAIL_SRC_MASK_VERIFY, PostMail
from pyfix.maps import dict as dict_module
from pyfix.queue import record as R
from pyfix.queue.bounce_clnt import DEL_REQ_FLAG_MTA_VRFY

from pyfix.daemons.skeleton.multi import ClientStreams, multi_server_main

PROBE_TTL = 1000                # a probe without an answer after this is presumed lost
LAST_CLEANUP_KEY = "_LAST_CACHE_CLEANUP_COMPLETED_"
CLEANUP_TIMER = "verify-cache-cleanup"
IN_PROGRESS = "Address verification in progress"
OPEN_FLAGS = (dict_module.FLAG_DUP_REPLACE | dict_module.FLAG_SYNC_UPDATE
              | dict_module.FLAG_OPEN_LOCK | dict_module.FLAG_UTF8_REQUEST)
_SAFE_CHARS = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
_VALID_STATUS = (DEL_RCPT_STAT_OK, DEL_RCPT_STAT_DEFER, DEL_RCPT_STAT_BOUNCE,
                 DEL_RCPT_STAT_TODO)


# -- the table entries ----------------------------------------------------------------------

def make_entry(status, probed, updated, text):
    return "%d:%d:%d:%s" % (status, probed, updated, text)


def parse_entry(raw):
    """(status, probed, updated, text), or None (with Postfix's warning) if malformed."""
    fields = raw.split(":", 3)
    if len(fields) == 4 and all(f.isdigit() and f.isascii() for f in fields[:3]):
        status, probed, updated = (int(f) for f in fields[:3])
        if status in _VALID_STATUS and (probed or updated):
            return status, probed, updated, fields[3]
    msg.warn("bad address verify table entry: %.100s" % raw)
    return None


def stat2name(status):
    if status == DEL_RCPT_STAT_OK:
        return "deliverable"
    if status in (DEL_RCPT_STAT_DEFER, DEL_RCPT_STAT_BOUNCE):
        return "undeliverable"
    return None


# -- the probe sender -------------------------------------------------------------------------

def safe_ultostr(value, base):
    """util/safe_ultostr.c without padding: digits with no vowels."""
    digits = ""
    while True:
        value, digit = divmod(value, base)
        digits = _SAFE_CHARS[digit] + digits
        if value == 0:
            return digits


def make_verify_sender_addr(config, rewriter, now):
    """global/verify_sender_addr.c: address_verify_sender with, for a non-zero
    address_verify_sender_ttl, the time slot appended to its local part; in canonical
    form. The null sender stays null."""
    sender = config.get("address_verify_sender")
    if not sender or sender == "<>":
        return ""
    if sender.startswith("@"):
        msg.fatal('parameter address_verify_sender: value "%s" must not start with \'@\''
                  % sender)
    at = sender.find("@")
    if at >= 0 and at == len(sender) - 1:
        msg.fatal('parameter address_verify_sender: value "%s" must not end with \'@\''
                  % sender)
    ttl = config.get_time("address_verify_sender_ttl")
    if ttl > 0:
        local, domain = (sender[:at], sender[at:]) if at >= 0 else (sender, "")
        sender = local + safe_ultostr(int(now) // ttl, 31) + domain
    return rewriter.rewrite_internal("local", sender)


# -- the cache (dict_cache) ----------------------------------------------------------------

_REDIRECT_TYPES = ("hash", "btree", "dbm", "lmdb", "cdb", "sdbm", "dbz")


def data_redirect_map(config, spec):
    """global/data_redirect.c: a file-based table in a directory that mail_owner does not
    own moves to data_directory (with two warnings), so that the daemon never updates
    files in root-owned directories."""
    map_type, colon, path = spec.partition(":")
    if not colon:
        map_type, path = config.get("default_database_type"), spec
    if map_type not in _REDIRECT_TYPES:
        return spec
    import pwd
    owner = config.get("mail_owner")
    directory = os.path.dirname(path) or "."
    try:
        redirect = os.stat(directory).st_uid != pwd.getpwnam(owner).pw_uid
    except (OSError, KeyError):
        redirect = False
    if not redirect:
        return "%s:%s" % (map_type, path)
    data_dir = config.get("data_directory")
    msg.warn("request to update table %s in non-%s directory %s" % (spec, owner, directory))
    msg.warn("redirecting the request to %s-owned data_directory %s" % (owner, data_dir))
    return "%s:%s/%s" % (map_type, data_dir, os.path.basename(path))


class VerifyCache:
    """A read-write table with a periodic sweep of stale entries."""

    def __init__(self, spec):
        self.name = spec
        self.verbose = False            # DICT_CACHE_FLAG_VERBOSE: -v with a cleanup run
        self.table = dict_module.dict_open(spec, os.O_CREAT | os.O_RDWR, OPEN_FLAGS)
        self._open_lock()

    def _open_lock(self):
        """dict_open()'s DICT_FLAG_OPEN_LOCK: a table that is not safe for several
        writers stays locked exclusively while this process has it (another verify, or
        postmap, must wait); a multi-writer table (lmdb) locks each access instead."""
        table = self.table
        if table.flags & dict_module.FLAG_MULTI_WRITER:
            table.flags = (table.flags & ~dict_module.FLAG_OPEN_LOCK) | dict_module.FLAG_LOCK
            return
        lock_fd = getattr(table, "lock_fd", None)
        if lock_fd is None or lock_fd < 0:
            return
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            msg.fatal("%s: unable to get exclusive lock: %s" % (self.name, msg.strerror(exc)))

    def _failed(self, what, key):
        if self.table.error:
            msg.warn("%s: cache %s for '%s' failed due to error" % (self.name, what, key))

    def lookup(self, key):
        value = self.table.lookup(key)
        if value is None:
            self._failed("lookup", key)
        if self.verbose:
            msg.info("dict_cache_lookup: key=%s value=%s"
                     % (key, value if value is not None else
                        "error" if self.table.error else "(not found)"))
        return value

    def update(self, key, value):
        if self.verbose:
            msg.info("dict_cache_update: key=%s value=%s" % (key, value))
        self.table.update(key, value)
        self._failed("update", key)

    def delete(self, key):
        self.table.delete(key)
        self._failed("delete", key)

    def last_cleanup(self):
        value = self.table.lookup(LAST_CLEANUP_KEY)
        return int(value) if value and value.isdigit() else None

    def sweep(self, keep):
        """One full cleanup run: drop the entries keep(key, value) rejects, each one
        after the next entry was read (dict_cache's delete-behind)."""
        retained = dropped = 0
        if self.verbose:
            msg.info("dict_cache_clean_event: start %s cache cleanup" % self.name)
        entries = [item for item in self.table.items() if item[0] != LAST_CLEANUP_KEY]
        behind = None
        for key, value in entries + [(None, None)]:
            if self.verbose:
                msg.info("dict_cache_sequence: key=%s value=%s"
                         % (key or "(not found)", value if key else "(not found)"))
            if behind is not None:
                if self.verbose:
                    msg.info("dict_cache_sequence: delete-behind key=%s value=%s" % behind)
                self.table.delete(behind[0])
                behind = None
            if key is None:
                break
            if keep(key, value):
                retained += 1
            else:
                dropped += 1
                behind = (key, value)
            if self.verbose:
                msg.info("dict_cache_clean_event: %s %s cache entry for %s"
                         % ("drop" if behind else "keep", self.name, key))
        if self.verbose:
            msg.info("dict_cache_clean_event: done %s cache cleanup scan" % self.name)
        msg.info("cache %s full cleanup: retained=%d dropped=%d entries"
                 % (self.name, retained, dropped))
        self.table.update(LAST_CLEANUP_KEY, "%d" % int(time.time()))

    def close(self):
        self.table.close()


# -- the service ------------------------------------------------------------------------------

class Verify:
    def __init__(self):
        self.cache = None
        self.config = None
        self.rewriter = None
        self.clients = ClientStreams(PROTO_VERIFY)
        self.posting = {}               # probes whose cleanup verdict is still due
        self.pos_exp = self.pos_try = self.neg_exp = self.neg_try = 0
        self.neg_cache = True
        self.scan_interval = 0
        self.server = None

    def pre_init(self, server):
        """Open the cache as mail_owner (never create root-owned files), before the
        privilege drop, so that the table's code is loaded while it is readable."""
        config = self.config = server.config
        spec = config.get("address_verify_map")
        self.pos_exp = config.get_time("address_verify_positive_expire_time")
        self.pos_try = config.get_time("address_verify_positive_refresh_time")
        self.neg_exp = config.get_time("address_verify_negative_expire_time")
        self.neg_try = config.get_time("address_verify_negative_refresh_time")
        self.neg_cache = config.get_bool("address_verify_negative_cache")
        self.scan_interval = config.get_time("address_verify_cache_cleanup_interval")
        self.rewriter = Rewriter(config)
        saved = _become_owner(config)
        mask = os.umask(0o022)
        try:
            self.cache = VerifyCache(data_redirect_map(config, spec) if spec
                                     else "internal:verify")
        finally:
            os.umask(mask)
            _restore(saved)

    def post_init(self, server):
        self.server = server
        if not self.config.get("address_verify_map"):
            server.max_use = 0              # the cache lives in this process only
            server.max_idle = 0
        if self.scan_interval > 0:
            self.cache.verbose = bool(msg.verbose)
            last = self.cache.last_cleanup()
            delay = 0 if last is None else last + self.scan_interval - int(time.time())
            delay = min(max(delay, 0), self.scan_interval)
            if msg.verbose and delay > 0:
                msg.info("%s cache cleanup will start after %ds" % (self.cache.name, delay))
            server.events.request_timer(CLEANUP_TIMER, self.cleanup_event, delay)

    def on_exit(self, server):
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    # -- expiry -------------------------------------------------------------------------

    def _expired(self, status, updated, now):
        if status == DEL_RCPT_STAT_OK:
            return updated + self.pos_exp < now
        return updated + self.neg_exp < now

    def _refresh_needed(self, status, updated, now):
        if status == DEL_RCPT_STAT_OK:
            return updated + self.pos_try < now
        return updated + self.neg_try < now

    def cleanup_event(self):
        now = int(time.time())

        def keep(key, raw):
            entry = parse_entry(raw)
            return entry is not None and (now - entry[1] < PROBE_TTL
                                          or not self._expired(entry[0], entry[2], now))
        self.cache.sweep(keep)
        self.server.events.request_timer(CLEANUP_TIMER, self.cleanup_event,
                                         self.scan_interval)

    # -- the protocol ----------------------------------------------------------------------

    def service(self, conn, server):
        if server.argv:
            msg.fatal("unexpected command-line argument: %s" % server.argv[0])
        stream = self.clients.stream(conn, "verify socket",
                                     server.config.get_time("ipc_timeout"))
        # One request per wake-up, as Postfix: what a client sent after a request that
        # was not understood stays unread until the client sends more.
        count, values = stream.scan([(attr.STR, "request")],
                                    attr.FLAG_MORE | attr.FLAG_STRICT)
        if count == 1:
            self.dispatch(stream, values["request"])
        if stream.eof:
            server.disconnect(conn)

    def dispatch(self, stream, request):
        if request == REQ_UPDATE:
            self.update_service(stream)
        elif request == REQ_QUERY:
            self.query_service(stream)
        else:
            msg.warn('unrecognized request: "%s", ignored' % request)
            stream.send([("status", VRFY_STAT_BAD)])

    def update_service(self, stream):
        count, values = stream.scan([(attr.STR, "address"), (attr.INT, "recipient_status"),
                                     (attr.STR, "reason")], attr.FLAG_STRICT)
        if count != 3:
            return
        addr = values["address"].replace(":", "_")
        status = signed(values["recipient_status"])
        if stat2name(status) is None:
            msg.warn("bad recipient status %d for recipient %s" % (status, addr))
            stream.send([("status", VRFY_STAT_BAD)])
            return
        # A failed probe does not clobber an OK address before it expires: the
        # address is probed again upon the next query.
        raw = None if status == DEL_RCPT_STAT_OK else self.cache.lookup(addr)
        if raw is None or _status_of(raw) != DEL_RCPT_STAT_OK:
            updated = int(time.time())
            text = msg.printable(values["reason"], "?")
            if msg.verbose:
                msg.info("PUT %s status=%d probed=0 updated=%d text=%s"
                         % (addr, status, updated, text))
            self.cache.update(addr, make_entry(status, 0, updated, text))
        stream.send([("status", VRFY_STAT_OK)])

    def query_service(self, stream):
        count, values = stream.scan([(attr.STR, "address")], attr.FLAG_STRICT)
        if count != 1:
            return
        now = int(time.time())
        addr = values["address"].replace(":", "_")
        raw = self.cache.lookup(addr)
        entry = parse_entry(raw) if raw is not None else None
        if entry is None or (now - entry[1] > PROBE_TTL
                             and self._expired(entry[0], entry[2], now)):
            entry = (DEL_RCPT_STAT_TODO, 0, 0, IN_PROGRESS)
            if raw is not None and not self.neg_cache:
                self.cache.delete(addr)
        status, probed, updated, text = entry
        if msg.verbose:
            msg.info("GOT %s status=%d probed=%d updated=%d text=%s"
                     % (addr, status, probed, updated, text))
        stream.send([("status", VRFY_STAT_OK), ("recipient_status", status),
                     ("reason", text)])
        if now - probed > PROBE_TTL and self._refresh_needed(status, updated, now):
            self.probe(addr, status, now, updated, text)

    def probe(self, addr, status, now, updated, text):
        """Send a probe; remember when (if the entry is to be kept at all)."""
        if msg.verbose:
            msg.info("PROBE %s status=%d probed=%d updated=%d" % (addr, status, now, updated))
        sender = make_verify_sender_addr(self.config, self.rewriter, now)
        post = PostMail.open_nowait(self.config, sender, addr, 0,
                                    trace_flags=DEL_REQ_FLAG_MTA_VRFY,
                                    source_class=MAIL_SRC_MASK_VERIFY)
        if post is not None:
            # A probe needs no content: it is never delivered, deferred or bounced.
            self.close_async(post.client)
        if updated != 0 or self.neg_cache:
            if msg.verbose:
                msg.info("PUT %s status=%d probed=%d updated=%d text=%s"
                         % (addr, status, now, updated, text))
            self.cache.update(addr, make_entry(status, now, updated, text))

    def close_async(self, client):
        """post_mail_fclose_async(): end the probe and do not wait for cleanup's verdict
        (cleanup may be waiting for us: it reports aliased probes with `update`)."""
        client.put(R.XTRA, b"")
        client.put(R.END, b"")
        if not client.flush():
            client.close()
            return
        fd = client.sock.fileno()
        self.posting[fd] = client

        def verdict(unused_fd, unused_event):
            self.server.events.disable(fd)
            self.posting.pop(fd, None)
            client.close()              # the status does not matter, as in Postfix
        self.server.events.enable_read(fd, verdict)


def _status_of(raw):
    """STATUS_FROM_RAW_ENTRY(): atoi() of the entry."""
    digits = ""
    for char in raw.lstrip():
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else 0


def _become_owner(config):
    """SAVE_AND_SET_EUGID(mail_owner) when root; what _restore() needs."""
    if os.geteuid() != 0:
        return None
    import pwd
    entry = pwd.getpwnam(config.get("mail_owner"))
    saved = (os.geteuid(), os.getegid())
    os.setegid(entry.pw_gid)
    os.seteuid(entry.pw_uid)
    return saved


def _restore(saved):
    if saved is not None:
        os.seteuid(saved[0])
        os.setegid(saved[1])


def main(argv):
    verify = Verify()
    multi_server_main(argv, verify.service, solitary=True, pre_init=verify.pre_init,
                      post_init=verify.post_init, post_accept=verify.clients.announce,
                      pre_disconnect=verify.clients.forget, on_exit=verify.on_exit)

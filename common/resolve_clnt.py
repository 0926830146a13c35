"""The client of trivial-rewrite's resolve service (Postfix's global/resolve_clnt.c).

resolve(klass, sender, address) asks private/$rewrite_service_name with the attribute
protocol (request=resolve or verify, sender, address -> flags, transport, nexthop,
recipient, flags) and returns a ResolveReply. The address is in internal (unquoted)
form. As in Postfix:
  - the connection is kept for further requests, closed after ipc_idle seconds without
    use or ipc_ttl seconds of age, and when the server asks for it (first flags != 0);
  - a one-entry cache of 30 seconds answers a repeated (class, sender, address);
  - a failed exchange is logged (`problem talking to service rewrite: ...`) and retried
    every second until it succeeds (pass `attempts` to give up: the call then returns
    None), and so is an answer with a null transport or recipient.

smtpd (reject_unauth_destination), cleanup and qmgr use it; the RESOLVE_* bits below
are those of resolve_clnt.h.
"""

import errno
import os
import socket
import time

from pyfix.common import attr, msg

RESOLVE_REGULAR = "resolve"
RESOLVE_VERIFY = "verify"
RESOLVE_NULL_FROM = ""
PROTO_TRIVIAL = "trivial_rewrite_protocol"

FLAG_FINAL = 1 << 0             # final delivery
FLAG_ROUTED = 1 << 1            # routed destination (`%`, `!` or `@` in the local-part)
FLAG_ERROR = 1 << 2             # bad destination syntax
FLAG_FAIL = 1 << 3              # request failed (a table lookup error): try again
CLASS_LOCAL = 1 << 8            # mydestination, inet_interfaces, proxy_interfaces
CLASS_ALIAS = 1 << 9            # virtual_alias_domains
CLASS_VIRTUAL = 1 << 10         # virtual_mailbox_domains
CLASS_RELAY = 1 << 11           # relay_domains
CLASS_DEFAULT = 1 << 12         # everything else: reject_unauth_destination says no
CLASS_FINAL = CLASS_LOCAL | CLASS_ALIAS | CLASS_VIRTUAL
CLASS_MASK = CLASS_FINAL | CLASS_RELAY | CLASS_DEFAULT
CACHE_TTL = 30

FLAG_NAMES = ((FLAG_FINAL, "final"), (FLAG_ROUTED, "routed"), (FLAG_ERROR, "error"),
              (FLAG_FAIL, "fail"))
CLASS_NAMES = ((CLASS_LOCAL, "local"), (CLASS_ALIAS, "alias"), (CLASS_VIRTUAL, "virtual"),
               (CLASS_RELAY, "relay"), (CLASS_DEFAULT, "default"))


class ResolveReply:
    """RESOLVE_REPLY: where an address goes."""

    __slots__ = ("transport", "nexthop", "recipient", "flags")

    def __init__(self, transport="", nexthop="", recipient="", flags=0):
        self.transport, self.nexthop, self.recipient, self.flags = \
            transport, nexthop, recipient, flags

    def copy(self):
        return ResolveReply(self.transport, self.nexthop, self.recipient, self.flags)

    def describe(self):
        """The flags as resolve_clnt's verbose log shows them."""
        return "flags=%s class=%s" % (
            "".join(name for bit, name in FLAG_NAMES if self.flags & bit),
            "".join(name for bit, name in CLASS_NAMES if self.flags & bit))

    def __eq__(self, other):
        return isinstance(other, ResolveReply) and \
            (self.transport, self.nexthop, self.recipient, self.flags) == \
            (other.transport, other.nexthop, other.recipient, other.flags)

    def __repr__(self):
        return "ResolveReply(%r, %r, %r, %d)" % (self.transport, self.nexthop,
                                                 self.recipient, self.flags)


class ResolveClient:
    """resolve_clnt() with its connection and its one-entry cache."""

    def __init__(self, config, service_dir="private"):
        self.service = config.get("rewrite_service_name") or "rewrite"
        self.path = os.path.join(service_dir, self.service)
        self.timeout = config.get_time("ipc_timeout")
        self.idle_limit = config.get_time("ipc_idle")
        self.ttl_limit = config.get_time("ipc_ttl")
        self.sock = self.stream = None
        self.opened = self.last_used = 0.0
        self.cache = None           # (class, sender, address, reply, expires)

    # -- the connection (clnt_stream.c) ------------------------------------------------------

    def _access(self):
        now = time.monotonic()
        if self.stream is not None and (now - self.last_used > self.idle_limit
                                        or now - self.opened > self.ttl_limit):
            self.close()
        if self.stream is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            stream = attr.AttrStream(sock, self.path + " socket", self.timeout)
            count, _ = stream.scan([(attr.STREQ, "protocol", PROTO_TRIVIAL)],
                                   attr.FLAG_STRICT)
            if count < 0 or (count == 0 and stream.eof):
                sock.close()
                raise OSError(errno.EPROTO, "bad protocol handshake")
            self.sock, self.stream, self.opened = sock, stream, now
        self.last_used = now
        return self.stream

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = self.stream = None

    # -- requests -------------------------------------------------------------------------

    def _exchange(self, klass, sender, address):
        """One request; (server_flags, ResolveReply), or an OSError."""
        stream = self._access()
        if not stream.send([("request", klass), ("sender", sender), ("address", address)]):
            raise OSError(errno.EPIPE, "Broken pipe")
        # The reply holds `flags` twice (the server's, then the address's): two scans.
        count, head = stream.scan([(attr.INT, "flags")], attr.FLAG_STRICT | attr.FLAG_MORE)
        if count == 1:
            count, values = stream.scan([(attr.STR, "transport"), (attr.STR, "nexthop"),
                                         (attr.STR, "recipient"), (attr.INT, "flags")],
                                        attr.FLAG_STRICT)
            count = count + 1 if count >= 0 else count
        if count != 5:
            raise OSError(0, "Success")
        return head["flags"], ResolveReply(values["transport"], values["nexthop"],
                                           values["recipient"], values["flags"])

    def resolve(self, klass, sender, address, attempts=None):
        """The ResolveReply for address (None only when attempts ran out)."""
        now = time.time()
        cache = self.cache
        if cache is not None and now < cache[4] and address and cache[:3] == \
                (klass, sender, address):
            if msg.verbose:
                self._log("resolve_clnt: cached", sender, address, cache[3])
            return cache[3].copy()
        count = 0
        while True:
            count += 1
            try:
                server_flags, reply = self._exchange(klass, sender, address)
            except OSError as exc:
                if msg.verbose or count > 1 or exc.errno not in (0, errno.EPIPE,
                                                                 errno.ENOENT, None):
                    msg.warn("problem talking to service %s: %s"
                             % (self.service, exc.strerror or msg.strerror(exc)))
            else:
                if msg.verbose:
                    self._log("resolve_clnt", sender, address, reply)
                if server_flags:
                    self.close()
                if not reply.transport:
                    msg.warn("resolve_clnt: null transport result for: <%s>" % address)
                elif not reply.recipient and address:
                    msg.warn("resolve_clnt: null recipient result for: <%s>" % address)
                else:
                    break
            self.close()
            if attempts is not None and count >= attempts:
                return None
            time.sleep(1)
        self.cache = (klass, sender, address, reply.copy(), time.time() + CACHE_TTL)
        return reply

    @staticmethod
    def _log(prefix, sender, address, reply):
        msg.info("%s: `%s' -> `%s' -> transp=`%s' host=`%s' rcpt=`%s' %s"
                 % (prefix, sender, address, reply.transport, reply.nexthop,
                    reply.recipient, reply.describe()))

    def query_from(self, sender, address, attempts=None):
        """resolve_clnt_query_from()"""
        return self.resolve(RESOLVE_REGULAR, sender, address, attempts)

    def verify_from(self, sender, address, attempts=None):
        """resolve_clnt_verify_from()"""
        return self.resolve(RESOLVE_VERIFY, sender, address, attempts)

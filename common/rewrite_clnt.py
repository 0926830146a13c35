"""Address rewriting to canonical form: trivial-rewrite's rules and the client of its
`rewrite` service (Postfix's trivial-rewrite/rewrite.c and global/rewrite_clnt.c).

The rules, for an address in external (quoted) form, in the `local` context (myorigin,
mydomain) or the `remote` one (remote_header_rewrite_domain for both):
  - the empty address and a lone `@` stay (become) empty;
  - a source route `@a,@b:user@c` loses its route;
  - without `@`: `host!user` becomes `user@host` (swap_bangpath), else `user%host`
    becomes `user@host` (allow_percent_hack), else `@$myorigin` is appended
    (append_at_myorigin);
  - a domain without a dot gets `.$mydomain` (append_dot_mydomain);
  - a trailing dot after the domain is removed.

Rewriter.rewrite() asks the trivial-rewrite service (private/$rewrite_service_name,
attribute protocol: request=rewrite, rule, address -> flags, address) when master runs
one, as Postfix's cleanup does, and otherwise applies the same rules in this process
(pyfix's trivial-rewrite daemon serves them from this module too). A one-entry cache of
30 seconds sits in front of the service, as in Postfix.
"""

import errno
import os
import socket
import time

from pyfix.common import attr, msg, tok822
from pyfix.common.quote_822 import quote_822_local, unquote_822_local

RULE_LOCAL = "local"
RULE_REMOTE = "remote"
REWRITE_ADDR = "rewrite"
PROTO_TRIVIAL = "trivial_rewrite_protocol"
CACHE_TTL = 30
_FALLBACK_ERRORS = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK)


class RewriteRules:
    """The rewriting parameters of one process (RWR_CONTEXT)."""

    def __init__(self, config):
        self.swap_bangpath = config.get_bool("swap_bangpath")
        self.percent_hack = config.get_bool("allow_percent_hack")
        self.append_at_myorigin = config.get_bool("append_at_myorigin")
        self.append_dot_mydomain = config.get_bool("append_dot_mydomain")
        remote = config.get("remote_header_rewrite_domain") or ""
        self.contexts = {
            RULE_LOCAL: (config.get("myorigin") or "", config.get("mydomain") or ""),
            RULE_REMOTE: (remote, remote),
        }

    def rewrite_tree(self, context, tree):
        """rewrite_tree(): rewrite the ADDR node tree in place."""
        origin, domain_name = self.contexts[context]
        head, tail = tree.head, tree.tail
        if head is None:
            return
        if head is tail and tail.type == tok822.QSTRING and tail.text == "":
            return
        if head is tail and tail.type == ord("@"):
            tok822.sub_keep_before(tree, tail)
            tok822.sub_append(tree, tok822.Token(tok822.QSTRING, ""))
            return
        if tree.head.type == ord("@"):
            colon = tok822.find_type(tree.head, ord(":"))
            if colon is not None and colon is not tree.tail:
                tok822.sub_keep_after(tree, colon)
        if tok822.rfind_type(tree.tail, ord("@")) is None:
            bang = tok822.find_type(tree.head, ord("!")) if self.swap_bangpath else None
            percent = tok822.rfind_type(tree.tail, ord("%")) if self.percent_hack else None
            if bang is not None:
                tok822.sub_keep_before(tree, bang)
                local = tok822.cut_after(bang)
                tok822.sub_prepend(tree, tok822.Token(ord("@")))
                if local is not None:
                    tok822.sub_prepend(tree, local)
            elif percent is not None:
                percent.type = ord("@")
            elif self.append_at_myorigin and origin:
                tok822.sub_append(tree, tok822.Token(ord("@")))
                tok822.sub_append(tree, tok822.scan_linked(origin)[0])
        if self.append_dot_mydomain and domain_name:
            domain = tok822.rfind_type(tree.tail, ord("@"))
            if domain is not None and domain is not tree.tail \
                    and tok822.find_type(domain, tok822.DOMLIT) is None \
                    and tok822.find_type(domain, ord(".")) is None:
                tok822.sub_append(tree, tok822.Token(ord(".")))
                tok822.sub_append(tree, tok822.scan_linked(domain_name)[0])
        tail = tree.tail
        if tail is not None and tail.type == ord(".") and tail.prev is not None \
                and tail.prev.type not in (ord("."), ord("@")):
            tok822.sub_keep_before(tree, tail)

    def rewrite_addr(self, context, address):
        """The rewrite service's answer for an external-form address (rewrite_proto())."""
        if not address:
            msg.warn("rewrite_addr: null address")
            return address
        tree = tok822.scan_addr(address)
        self.rewrite_tree(context, tree)
        return tok822.externalize_tree(tree)


class Rewriter:
    """rewrite_clnt(): rewrite through the service, or in-process when there is none."""

    def __init__(self, config):
        self.rules = RewriteRules(config)
        self.service = config.get("rewrite_service_name") or "rewrite"
        self.timeout = config.get_time("ipc_timeout")
        self.sock = None
        self.stream = None
        self.cache = None           # (rule, address, result, expires)

    def _path(self):
        return os.path.join("private", self.service)

    def _connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self._path())
        except OSError:
            sock.close()
            raise
        stream = attr.AttrStream(sock, self._path() + " socket", self.timeout)
        count, _ = stream.scan([(attr.STREQ, "protocol", PROTO_TRIVIAL)], attr.FLAG_STRICT)
        if count < 0 or stream.eof and count == 0:
            sock.close()
            raise OSError(errno.EPROTO, "bad handshake")
        self.sock, self.stream = sock, stream

    def _close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = self.stream = None

    def _ask(self, rule, address):
        """The service's answer, None when there is no service."""
        for attempt in range(2):
            if self.stream is None:
                try:
                    self._connect()
                except OSError as exc:
                    if exc.errno in _FALLBACK_ERRORS:
                        return None
                    msg.warn("problem talking to service %s: %s"
                             % (self.service, msg.strerror(exc)))
                    time.sleep(1)
                    continue
            ok = self.stream.send([("request", REWRITE_ADDR), ("rule", rule),
                                   ("address", address)])
            if ok:
                count, values = self.stream.scan([(attr.INT, "flags"), (attr.STR, "address")],
                                                 attr.FLAG_STRICT)
                if count == 2:
                    if values["flags"]:
                        self._close()
                    return values["address"]
            if attempt:
                msg.warn("problem talking to service %s" % self.service)
            self._close()
        return None

    def rewrite(self, rule, address):
        """The canonical external form of an external-form address."""
        now = time.time()
        if self.cache and self.cache[0] == rule and self.cache[1] == address \
                and now < self.cache[3]:
            return self.cache[2]
        result = self._ask(rule, address or "")
        if result is None:
            result = self.rules.rewrite_addr(rule, address)
        self.cache = (rule, address, result, now + CACHE_TTL)
        return result

    def rewrite_internal(self, rule, address):
        """rewrite_clnt_internal(): the same for internal (unquoted) forms."""
        return unquote_822_local(self.rewrite(rule, quote_822_local(address)))

    def rewrite_tree(self, rule, tree):
        """cleanup_rewrite_tree(): rewrite an ADDR node; True when it changed."""
        before = tok822.externalize_tree(tree.head)
        after = self.rewrite(rule, before)
        head, tail = tok822.scan_linked(after)
        tok822.set_sub_list(tree, head, tail)
        return after != before

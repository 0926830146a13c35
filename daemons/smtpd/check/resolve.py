"""Address classes for the restrictions (Postfix's smtpd/smtpd_resolve.c over
global/rewrite_clnt.c and resolve_clnt.c).

An address is first rewritten in the `local` context (user -> user@$myorigin, ...),
then resolved by trivial-rewrite's resolve service into transport, nexthop, recipient
and flags (RESOLVE_FLAG_*, RESOLVE_CLASS_*); the recipient is case-folded. Both requests
go to the trivial-rewrite service (private/rewrite) through common/rewrite_clnt.py and
common/resolve_clnt.py. Answers are cached per (sender, address) for the life of the
process, as smtpd's 100-entry ctable does. An answer with RESOLVE_FLAG_FAIL (a table
lookup error in trivial-rewrite) becomes `451 4.3.0 <addr>: Temporary lookup failure`.
"""

import os
from collections import OrderedDict

from pyfix.common.resolve_clnt import FLAG_FAIL, ResolveClient, ResolveReply
from pyfix.common.rewrite_clnt import Rewriter

_CACHE_SIZE = 100


class _Rewriter(Rewriter):
    """rewrite_clnt() on the rewrite service of a given directory (smtpd runs in the
    queue directory; a test points it at another one)."""

    def __init__(self, config, directory):
        super().__init__(config)
        self.directory = directory

    def _path(self):
        return os.path.join(self.directory, self.service)


class SmtpdResolver:
    """smtpd_resolve_addr(): rewrite in the local context, resolve, case-fold; cached."""

    def __init__(self, config, directory=None):
        if directory is None:
            directory = os.path.join(config.get("queue_directory") or ".", "private")
        self.rewriter = _Rewriter(config, directory)
        self.client = ResolveClient(config, directory)
        self.cache = OrderedDict()

    def _resolve(self, sender, address):
        sender = self.rewriter.rewrite_internal("local", sender) if sender else sender
        query = self.rewriter.rewrite_internal("local", address)
        reply = self.client.query_from(sender, query)
        return ResolveReply(reply.transport, reply.nexthop, reply.recipient.lower(),
                            reply.flags)

    def resolve(self, sender, address):
        key = (sender or "", address)
        reply = self.cache.get(key)
        if reply is not None:
            self.cache.move_to_end(key)
            return reply
        reply = self._resolve(sender or "", address)
        if not reply.flags & FLAG_FAIL:
            self.cache[key] = reply
            if len(self.cache) > _CACHE_SIZE:
                self.cache.popitem(last=False)
        return reply

"""The `rewrite` request: an address to canonical form (Postfix's trivial-rewrite/rewrite.c,
rewrite_proto()).

The rules themselves (source routes, bang paths, the percent hack, @$myorigin,
.$mydomain, the trailing dot) live in pyfix.common.rewrite_clnt.RewriteRules, shared
with the in-process fallback of the rewrite client, so that both give one answer. The
request names the rule set: `local` (myorigin, mydomain) or `remote`
(remote_header_rewrite_domain).
"""

from pyfix.common import attr, msg, tok822
from pyfix.common.rewrite_clnt import RULE_LOCAL, RULE_REMOTE


# Answers already given: the rules are a function of main.cf alone (no table is
# consulted, nothing is logged), which a process reads once, so that the same address in
# the same context always gets the same answer; mail repeats its addresses (the envelope
# sender and the From: header, one recipient in many messages). Bounded, and kept for
# one RewriteRules object only.
_MEMO_LIMIT = 1000
_memo = {"rules": None, "results": {}}


def rewrite_addr(rules, context, address):
    """The canonical external form of an external-form address."""
    if msg.verbose:                 # -v logs each rewrite step, every time
        return _rewrite_addr(rules, context, address)
    if _memo["rules"] is not rules:
        _memo["rules"] = rules
        _memo["results"] = {}
    results = _memo["results"]
    key = (context, address)
    result = results.get(key)
    if result is None:
        result = _rewrite_addr(rules, context, address)
        if len(results) >= _MEMO_LIMIT:
            results.clear()
        results[key] = result
    return result


def _rewrite_addr(rules, context, address):
    tree = tok822.scan_addr(address)
    if tree.head is None:
        msg.panic("rewrite_tree: empty tree")
    rules.rewrite_tree(context, tree)
    return tok822.externalize_tree(tree)


def rewrite_proto(stream, rules, server_flags=0):
    """Read rule and address, send flags and the result; -1 on a protocol error."""
    count, req = stream.scan([(attr.STR, "rule"), (attr.STR, "address")], attr.FLAG_STRICT)
    if count != 2:
        return -1
    rule, address = req["rule"], req["address"]
    if rule not in (RULE_LOCAL, RULE_REMOTE):
        msg.warn("unknown context: %s" % rule)
        return -1
    if not address:
        msg.warn("rewrite_addr: null address")
        result = address
    else:
        result = rewrite_addr(rules, rule, address)
    if msg.verbose:
        msg.info("`%s' `%s' -> `%s'" % (rule, address, result))
    if not stream.send([("flags", server_flags), ("address", result)]):
        msg.warn("write rewrite reply: %s" % "Broken pipe")
        return -1
    return 0

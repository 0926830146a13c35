"""Address canonicalization through trivial-rewrite (Postfix's cleanup_rewrite.c).

The three entry points differ in the form of the address: external (quoted) text,
internal (unquoted) text, or an ADDR node of a parsed header. Each returns the new
address (or, for a tree, whether it changed).
"""

from pyfix.common.quote_822 import quote_822_local, unquote_822_local


def rewrite_external(state, context, address):
    return state.settings.rewriter.rewrite(context, address)


def rewrite_internal(state, context, address):
    return unquote_822_local(rewrite_external(state, context, quote_822_local(address)))


def rewrite_tree(state, context, tree):
    return state.settings.rewriter.rewrite_tree(context, tree)

"""One-to-many address mapping: virtual_alias_maps (Postfix's cleanup_map1n.c).

The address list is expanded in place, breadth first: each address is looked up and
replaced by its first result, the other results are appended; an address that expands
to itself is expanded only once. More than virtual_alias_expansion_limit addresses,
more than virtual_alias_recursion_limit rounds for one address, or a result longer than
virtual_alias_address_length_limit give up on the expansion: the original address is
kept and the message is deferred (CLEANUP_STAT_DEFER, "4.6.0 Alias expansion error");
a table error does the same with CLEANUP_STAT_WRITE.
"""

from pyfix.common import msg
from pyfix.maps.addr_map import mail_addr_map
from pyfix.queue import cleanup_user as cu

from pyfix.daemons.cleanup.state import BeenHere

EXPANSION_ERROR = "4.6.0 Alias expansion error"


def map1n_internal(state, address, maps, propagate):
    """The expansion of address (internal form), as a list."""
    settings = state.settings
    argv = [address]
    been_here = BeenHere(0, True)

    def give_up(why, status):
        msg.warn("%s: %s -- message not accepted, try again later" % (state.queue_id, why))
        state.errs |= status
        state.reason = EXPANSION_ERROR
        return [address]

    arg = 0
    while arg < len(argv):
        if len(argv) > settings.virt_expan_limit:
            return give_up("unreasonable %s map expansion size for %s"
                           % (maps.title, address), cu.STAT_DEFER)
        count = 0
        while True:
            if been_here.check(argv[arg]):
                break
            if count >= settings.virt_recur_limit:
                return give_up("unreasonable %s map nesting for %s" % (maps.title, address),
                               cu.STAT_DEFER)
            lookup = mail_addr_map(maps, argv[arg], propagate, settings.address_rules,
                                   settings.rewriter)
            if lookup is not None:
                saved_lhs = argv[arg]
                for i, result in enumerate(lookup):
                    if len(result.encode("utf-8", "surrogateescape")) \
                            > settings.virt_addrlen_limit:
                        return give_up("unreasonable %s result %.300s..."
                                       % (maps.title, result), cu.STAT_DEFER)
                    if i == 0:
                        argv[arg] = result
                    else:
                        argv.append(result)
                    if saved_lhs.lower() == result.lower():
                        been_here.been_here(saved_lhs)
            elif maps.error:
                msg.warn("%s: %s map lookup problem for %s -- message not accepted, "
                         "try again later" % (state.queue_id, maps.title, address))
                state.errs |= cu.STAT_WRITE
                state.reason = EXPANSION_ERROR
                return [address]
            else:
                break
            count += 1
        arg += 1
    return argv

"""trivial-rewrite(8): the address rewriting and resolving service (Postfix's
src/trivial-rewrite).

A multi-server daemon on private/rewrite. Each new client first gets the protocol
announcement (protocol=trivial_rewrite_protocol); then every request is an attribute
list whose `request` is:
  - `rewrite` (rule, address): the address in canonical form (rewrite.py);
  - `resolve` or `verify` (sender, address): transport, nexthop, recipient and the
    RESOLVE_* flags (resolve.py), with the regular or the address_verify_* parameter
    set (context.py) and transport_maps (transport.py).
Replies start with the server flags, always 0 here. Clients keep their connection, so
the process checks every 10 seconds whether a table file changed and then exits
(`table ... has changed -- restarting`) for master to start a fresh one.
"""

from pyfix.common import attr, msg
from pyfix.common.resolve_clnt import PROTO_TRIVIAL, RESOLVE_REGULAR, RESOLVE_VERIFY
from pyfix.common.rewrite_clnt import REWRITE_ADDR, RewriteRules

from pyfix.daemons.skeleton.multi import ClientStreams, multi_server_main
from pyfix.daemons.skeleton.server import ServerExit
from pyfix.daemons.trivial_rewrite.context import REGULAR_NAMES, VERIFY_NAMES, \
    ResolveContext
from pyfix.daemons.trivial_rewrite.resolve import Resolver
from pyfix.daemons.trivial_rewrite.rewrite import rewrite_proto
from pyfix.maps.dict import changed_name

TABLE_CHECK_TIMER = "check_table_stats"
TABLE_CHECK_PERIOD = 10
SERVER_FLAGS = 0


class TrivialRewrite:
    """The state of one trivial-rewrite process."""

    def __init__(self):
        self.rules = None
        self.resolver = None
        self.contexts = {}
        self.clients = ClientStreams(PROTO_TRIVIAL)
        self.timeout = None

    def pre_init(self, server):
        """pre_jail_init(): the rules, the domain lists and every table."""
        config = server.config
        # Load the IDNA codec now: after the jail (chroot, mail_owner) its modules may be
        # out of reach, and resolving a UTF-8 domain needs it.
        "\u00e4.example".encode("idna")
        self.timeout = config.get_time("ipc_timeout")
        self.rules = RewriteRules(config)
        self.resolver = Resolver(config, self.rules)
        rules = self.resolver.address_rules
        self.contexts = {RESOLVE_REGULAR: ResolveContext(config, REGULAR_NAMES, rules),
                         RESOLVE_VERIFY: ResolveContext(config, VERIFY_NAMES, rules)}
        rules.resolve_local_init()

    def post_init(self, server):
        """post_jail_init(): the transport wildcards, then the table watch."""
        for context in self.contexts.values():
            context.post_init(server.config)
        self._check_table_stats(server)

    def _check_table_stats(self, server):
        table = changed_name()
        if table is not None:
            msg.info("table %s has changed -- restarting" % table)
            raise ServerExit(0)
        server.events.request_timer(TABLE_CHECK_TIMER,
                                    lambda: self._check_table_stats(server),
                                    TABLE_CHECK_PERIOD)

    # -- requests -------------------------------------------------------------------------

    def service(self, conn, server):
        """rewrite_service(): answer the requests waiting on one client connection."""
        if server.argv:
            msg.fatal("unexpected command-line argument: %s" % server.argv[0])
        stream = self.clients.stream(conn, "%s socket" % server.name, self.timeout)
        while True:
            if self.serve_one(stream) < 0:
                server.disconnect(conn)
                return
            # Input already buffered will not make the socket readable again.
            if not stream.pending():
                return

    def serve_one(self, stream):
        """One request; -1 means drop the client (protocol error or end of input)."""
        count, values = stream.scan([(attr.STR, "request")],
                                    attr.FLAG_STRICT | attr.FLAG_MORE)
        if count != 1:
            return -1
        command = values["request"]
        if command == REWRITE_ADDR:
            return rewrite_proto(stream, self.rules, SERVER_FLAGS)
        if command in self.contexts:
            return self.resolve_proto(self.contexts[command], stream)
        msg.warn("bad command %.30s" % msg.printable(command))
        return -1

    def resolve_proto(self, context, stream):
        count, req = stream.scan([(attr.STR, "sender"), (attr.STR, "address")],
                                 attr.FLAG_STRICT)
        if count != 2:
            return -1
        sender, query = req["sender"], req["address"]
        result = self.resolver.resolve_addr(context, sender, query)
        if msg.verbose:
            msg.info("`%s' -> `%s' -> (`%s' `%s' `%s' `%d')"
                     % (sender, query, result.channel, result.nexthop, result.recipient,
                        result.flags))
        if not stream.send(result.reply(SERVER_FLAGS)):
            msg.warn("write resolver reply: Broken pipe")
            return -1
        return 0


def main(argv):
    daemon = TrivialRewrite()
    multi_server_main(argv, daemon.service, pre_init=daemon.pre_init,
                      post_init=daemon.post_init, post_accept=daemon.clients.announce,
                      pre_disconnect=daemon.clients.forget)

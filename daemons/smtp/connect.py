"""Finding and connecting to the servers of a delivery request (Postfix's
smtp/smtp_connect.c).

The nexthop is a list of destinations (`domain`, `[host]`, `host:port`, `[addr]:port`,
and for LMTP `inet:host:port` or `unix:/path`), followed by smtp_fallback_relay. Each
destination's servers (addr.py) are tried in turn until every recipient is dealt
with: a server that cannot be reached or that refuses to talk leaves the recipients
for the next one (`connect to host[addr]:port: Connection refused` is logged); the
last server's failure, or the last lookup failure, defers or bounces the rest.
"""

import socket
import time

from pyfix.common import msg
from pyfix.common.host_port import host_port
from pyfix.common.known_tcp_ports import filter_known_tcp_port, known_tcp_ports

from pyfix.daemons.smtp import addr as smtp_addr
from pyfix.daemons.smtp import proto, reuse
from pyfix.daemons.smtp.session import Session

SMTP_PORT = 25


def smtp_connect(state):
    """Deliver the request (smtp_connect()); the request status for qmgr."""
    destination = state.request.nexthop
    if state.lmtp and destination.startswith("unix:"):
        connect_local(state, destination[5:])
    else:
        if state.lmtp and destination.startswith("inet:"):
            destination = destination[5:]
        connect_inet(state, destination, state.params.get("tcp_port"))
    if state.left() > 0:
        state.final_server = True
        state.sess_fail()
        state.rcpt_cleanup()
        if state.left() > 0:
            msg.panic("smtp_connect: left-over recipients")
    return state.status


def parse_destination(params, destination, def_service):
    """(host, port) of one destination (smtp_parse_destination())."""
    host, service, err = host_port(destination, None, def_service)
    if err:
        msg.fatal("%s in server description: %s" % (err, destination))
    service = filter_known_tcp_port(_known_ports(params), service)
    if service.isdigit():
        port = int(service)
        if port >= 65536 or port == 0:
            msg.fatal("bad network port: %s for destination: %s" % (service, destination))
        return host, port
    try:
        return host, socket.getservbyname(service, "tcp")
    except OSError:
        msg.fatal("unknown service: %s/tcp" % service)


def _known_ports(params):
    """The known_tcp_ports table, parsed (and its warnings logged) once per process, as
    Postfix's config_known_tcp_ports() does at start-up."""
    table = getattr(params, "known_tcp_ports", None)
    if table is None:
        table = params.known_tcp_ports = known_tcp_ports(params.config)
    return table


def dns_enabled(params):
    level = params.get("dns_support_level")
    if level:
        return level != "disabled"
    return not params.config.get_bool("disable_dns_lookups")


def connect_inet(state, nexthop, def_service):
    """smtp_connect_inet(): each destination, each of its server addresses."""
    params = state.params
    why = state.why
    if not params.families:
        why.simple("4.4.4", "all network protocols are disabled")
        return
    sites = [word for word in nexthop.replace(",", " ").split()]
    if not sites:
        msg.panic('null destination: "%s"' % nexthop)
    non_fallback = len(sites)
    sites += params.get_list("fallback_relay")
    index = 0
    for index, dest in enumerate(sites):
        if state.left() == 0:
            break
        state.first_nexthop = index == 0
        if index == len(sites) - 1:
            state.final_nexthop = True
        domain, port = parse_destination(params, dest, def_service)
        if port == 465 and params.config.get_bool("helpful_warnings") \
                and not params.get_bool("tls_wrappermode"):
            msg.info('SMTPS wrappermode (TCP port 465) requires setting "%s = yes", '
                     'and "%s = encrypt" (or stronger)'
                     % (params.name("tls_wrappermode"), params.name("tls_security_level")))
        if not params.lmtp:
            state.loop_detect = port == SMTP_PORT
            lookup_mx = dns_enabled(params) and not dest.startswith("[")
        else:
            lookup_mx = False
        if lookup_mx:
            addr_list, i_am_mx = smtp_addr.domain_addr(params, domain, state.loop_detect,
                                                       why)
            if i_am_mx:
                state.final_nexthop = True
        else:
            addr_list = smtp_addr.host_addr(params, domain, state.loop_detect, why)
        if not addr_list and why.status == "5.4.6":
            state.final_nexthop = True
        if addr_list and state.first_nexthop:
            reuse.cache_policy(state, domain)
            if state.conn_load or state.conn_store:
                state.cache_nexthop = dest
        _try_addresses(state, dest, addr_list, port)
        if state.final_nexthop:
            break
    else:
        index = len(sites)
    if state.left() > 0:
        if not why.has_dsn():
            why.simple("4.3.0", "server unavailable or unable to receive mail")
        elif not why.is_soft():
            if index >= non_fallback and index < len(sites):
                msg.warn("%s configuration problem" % params.name("fallback_relay"))
                why.status = "4.3.5"
            elif not params.lmtp and sites[0] == params.relayhost:
                msg.warn("relayhost configuration problem")
                why.status = "4.3.5"


def _try_addresses(state, dest, addr_list, port):
    params = state.params
    limit = params.get_int("mx_address_limit")
    session_limit = params.get_int("mx_session_limit")
    best_pref = addr_list[0].pref if addr_list else None
    addr_count = sess_count = 0
    used = set()
    if addr_list and state.conn_load:
        session = reuse.find_dest(state, dest)
        if session is not None:
            used.add(session.addr)
            addr_count = sess_count = 1
            session.best_mx = True
            if state.final_nexthop and (len(addr_list) == 1 or limit == 1
                                        or session_limit == 1):
                state.final_server = True
            state.session = session
            proto.smtp_xfer(state)
            cleanup_session(state)
    for position, addr in enumerate(addr_list):
        if state.left() == 0 or addr_count == limit and limit > 0:
            break
        if addr.addr in used:
            continue
        addr_count += 1
        last = position == len(addr_list) - 1 or addr_count == limit
        session = None
        if state.conn_load:
            session = reuse.find_endp(state, addr.addr, port)
        if session is None:
            session = connect_addr(state, addr, port)
        if session is None:
            msg.info(state.why.reason)
        else:
            session.best_mx = addr.pref == best_pref
            if state.final_nexthop and last:
                state.final_server = True
            state.session = session
            if not session.from_cache and proto.smtp_helo(state) != 0:
                if not session.broken:
                    proto.smtp_quit(state)
            else:
                sess_count += 1
                if sess_count == session_limit:
                    last = True
                if state.final_nexthop and last:
                    state.final_server = True
                proto.smtp_xfer(state)
            cleanup_session(state)
        if last:
            break


def cleanup_session(state):
    """smtp_cleanup_session(): hand the session to scache or close it, and leave
    only the kept recipients."""
    session = state.session
    if session.cached and reuse.may_cache(state, session):
        reuse.save(state, session, state.cache_nexthop)
    else:
        session.close()
    state.session = None
    state.rcpt_cleanup()
    stats = state.request.stats
    stats.conn_setup_done = (0, 0)
    stats.deliver_done = (0, 0)
    stats.reuse_count = 0


def _new_session(state, sock, host, addr, port):
    params = state.params
    session = Session(params.config, params.service, params.lmtp, state.request.nexthop,
                      host, addr, port, sock, state.request.sender)
    session.helo_name = params.helo_name
    session.expire_time = time.time() + params.get_time("connection_reuse_time_limit")
    return session


def connect_addr(state, addr, port):
    """A TCP connection to one address (smtp_connect_addr(), smtp_connect_sock());
    None with state.why set when it failed."""
    params = state.params
    why = state.why
    sock = socket.socket(addr.family, socket.SOCK_STREAM)
    bind_name = "bind_address6" if addr.family == socket.AF_INET6 else "bind_address"
    bind_addr = params.get(bind_name)
    if bind_addr:
        bind_addr = bind_addr.strip("[]")
        try:
            sock.bind((bind_addr, 0))
        except OSError as exc:
            msg.warn("smtp_connect_addr: bind %s: %s" % (bind_addr, msg.strerror(exc)))
            if params.get_bool("bind_address_enforce"):
                why.simple("4.4.0", "server configuration error")
                sock.close()
                return None
    timeout = params.get_time("connect_timeout")
    try:
        sock.settimeout(timeout if timeout > 0 else None)
        sock.connect((addr.addr, port))
    except (OSError, socket.timeout) as exc:
        error = "Connection timed out" if isinstance(exc, socket.timeout) \
            else msg.strerror(exc)
        why.simple("4.4.1", "connect to %s[%s]:%d: %s" % (addr.host, addr.addr, port,
                                                         error))
        sock.close()
        return None
    if addr.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return _new_session(state, sock, addr.host, addr.addr, port)


def connect_local(state, path):
    """LMTP over a unix-domain socket (smtp_connect_local())."""
    params = state.params
    why = state.why
    if params.get("fallback_relay"):
        msg.warn('ignoring "%s = %s" setting for non-TCP connections'
                 % (params.name("fallback_relay"), params.get("fallback_relay")))
    reuse.cache_policy(state, path)
    if state.conn_load or state.conn_store:
        state.cache_nexthop = path
    state.final_server = True
    session = reuse.find_dest(state, path) if state.conn_load else None
    if session is not None:
        state.session = session
        proto.smtp_xfer(state)
        cleanup_session(state)
        return
    if len(path.encode()) >= 108:
        msg.warn("unix-domain name too long: %s" % path)
        why.simple("4.3.5", "Server configuration error")
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    timeout = params.get_time("connect_timeout")
    try:
        sock.settimeout(timeout if timeout > 0 else None)
        sock.connect(path)
    except (OSError, socket.timeout) as exc:
        error = "Connection timed out" if isinstance(exc, socket.timeout) \
            else msg.strerror(exc)
        why.simple("4.4.1", "connect to %s[%s]: %s" % (params.myhostname, path, error))
        sock.close()
        return
    session = _new_session(state, sock, params.myhostname, path, 0)
    state.session = session
    if proto.smtp_helo(state) != 0:
        if not session.broken:
            proto.smtp_quit(state)
    else:
        proto.smtp_xfer(state)
    cleanup_session(state)


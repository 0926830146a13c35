"""Connection reuse through the scache(8) service (Postfix's smtp/smtp_reuse.c,
smtp_key.c and the passivate/activate part of smtp_session.c).

When the request or smtp_connection_cache_destinations allows it, a session that ends
cleanly is not closed with QUIT but handed to scache under two labels: the endpoint
(service, address, port) and, for the first nexthop, the destination (service,
nexthop). A later delivery to the same destination or server takes it back, probes
it with RSET, and skips the greeting and EHLO; its deliveries are logged with
`conn_use=N`. Sessions with TLS are never cached (their state cannot be handed over),
nor sessions past smtp_connection_reuse_count_limit / smtp_connection_reuse_time_limit.
"""

import json
import socket
import time

from pyfix.common import msg
from pyfix.common.scache_clnt import ScacheClient
from pyfix.maps.match_list import string_list
from pyfix.queue.deliver_request import DEL_REQ_FLAG_CONN_LOAD, DEL_REQ_FLAG_CONN_STORE

from pyfix.daemons.smtp.session import Session, SessionFailure

_cache = {"client": None, "destinations": None}


def init(params):
    """The scache client of this process, when any caching is configured."""
    config = params.config
    if params.get("connection_cache_destinations"):
        _cache["destinations"] = string_list(params.name("connection_cache_destinations"),
                                             params.get("connection_cache_destinations"))
    if params.get("connection_cache_destinations") \
            or params.get_bool("connection_cache_on_demand"):
        _cache["client"] = ScacheClient(config.get("connection_cache_service_name"),
                                        config.get_time("connection_cache_protocol_timeout"),
                                        config.get_time("ipc_idle"),
                                        config.get_time("ipc_ttl"))


def cache_policy(state, dest):
    """smtp_cache_policy(): may this delivery load and/or store sessions."""
    state.conn_load = state.conn_store = False
    if _cache["client"] is None:
        return
    destinations = _cache["destinations"]
    if destinations is not None and destinations.match(dest):
        state.conn_load = state.conn_store = True
    elif state.params.get_bool("connection_cache_on_demand"):
        state.conn_load = bool(state.request.flags & DEL_REQ_FLAG_CONN_LOAD)
        state.conn_store = bool(state.request.flags & DEL_REQ_FLAG_CONN_STORE)


def dest_label(state, nexthop):
    return "%s:%s" % (state.params.service, nexthop)


def endp_label(state, addr, port):
    return "%s:%s:%d" % (state.params.service, addr, port)


def is_expired(state, session):
    limit = state.params.get_int("connection_reuse_count_limit")
    return session.expire_time < time.time() \
        or (limit > 0 and session.reuse_count >= limit)


def may_cache(state, session):
    """THIS_SESSION_IS_CACHED and not expired: end the transaction without QUIT."""
    return state.conn_store and session.reusable and not session.broken \
        and not session.write_failed and session.tls is None \
        and not is_expired(state, session)


def save(state, session, nexthop):
    """smtp_save_session(): hand the open connection to scache."""
    params = state.params
    ttl = params.get_time("connection_cache_time_limit")
    endp = endp_label(state, session.addr, session.port)
    props = json.dumps({"host": session.host, "addr": session.addr, "port": session.port,
                        "features": session.features, "esmtp": session.esmtp,
                        "ehlo_lines": session.ehlo_lines, "size_limit": session.size_limit,
                        "reuse_count": session.reuse_count,
                        "expire_time": session.expire_time, "family": session.sock.family})
    fd = session.sock.detach()
    if nexthop is not None:
        _cache["client"].save_dest(ttl, dest_label(state, nexthop), "", endp)
    _cache["client"].save_endp(ttl, endp, props, fd)


def _activate(state, fd, props_text, label):
    """smtp_session_activate() and the RSET probe of smtp_reuse_common()."""
    try:
        props = json.loads(props_text)
        sock = socket.socket(props["family"], socket.SOCK_STREAM, fileno=fd)
    except (ValueError, KeyError, TypeError, OSError):
        msg.warn("smtp_reuse_common: bad cached session attribute for %s" % label)
        _close_fd(fd)
        return None
    params = state.params
    session = Session(params.config, params.service, params.lmtp, state.request.nexthop,
                      props["host"], props["addr"], props["port"], sock,
                      state.request.sender)
    session.helo_name = params.helo_name
    session.features = props["features"]
    session.esmtp = props["esmtp"]
    session.ehlo_lines = props["ehlo_lines"]
    session.size_limit = props["size_limit"]
    session.reuse_count = props["reuse_count"] + 1
    session.expire_time = props["expire_time"]
    session.from_cache = True
    session.timeout = params.get_time("rset_timeout")
    session.where = "sending RSET probe"
    try:
        reply = session.command("RSET")
    except SessionFailure:
        session.close()
        return None
    if reply.code // 100 != 2:
        session.close()
        return None
    return session


def _close_fd(fd):
    try:
        socket.socket(fileno=fd).close()
    except OSError:
        pass


def find_dest(state, nexthop):
    """smtp_reuse_nexthop(): a cached session for the destination, or None."""
    label = dest_label(state, nexthop)
    fd, _, props = _cache["client"].find_dest(label)
    if fd < 0:
        return None
    return _activate(state, fd, props, label)


def find_endp(state, addr, port):
    """smtp_reuse_addr(): a cached session with this server, or None."""
    label = endp_label(state, addr, port)
    fd, props = _cache["client"].find_endp(label)
    if fd < 0:
        return None
    return _activate(state, fd, props, label)

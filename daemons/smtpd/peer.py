"""Who is the client (Postfix's smtpd/smtpd_peer.c): printable address, port, the
verified host name and the name statuses that the access restrictions test.

The name is the reverse (PTR) name of the address when that name resolves forward to
the same address; otherwise it is `unknown` with a warning, as Postfix logs
`hostname <name> does not resolve to address <addr>`.
"""

import ipaddress
import socket

from pyfix.common import msg
from pyfix.common.valid_hostname import valid_hostaddr, valid_hostname

from pyfix.daemons.smtpd.state import (
    AF_INET, AF_INET6, CLIENT_ATTR_UNKNOWN, SMTPD_PEER_CODE_FORGED, SMTPD_PEER_CODE_OK,
    SMTPD_PEER_CODE_PERM, SMTPD_PEER_CODE_TEMP)

_TEMP_AI_ERRORS = (socket.EAI_AGAIN, socket.EAI_MEMORY, getattr(socket, "EAI_SYSTEM", -11))


def peer_init(state, sock, config):
    """smtpd_peer_init(): fill in the client identity from the connected socket."""
    try:
        peer = sock.getpeername()
        local = sock.getsockname()
    except OSError:
        peer = local = None
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not peer:
        _not_inet(state)
        return
    addr, port = peer[0], peer[1]
    family = sock.family
    if family == socket.AF_INET6:
        mapped = ipaddress.IPv6Address(addr.split("%")[0]).ipv4_mapped
        if mapped is not None:
            addr, family = str(mapped), socket.AF_INET
    state.addr = addr
    state.port = str(port)
    state.dest_addr = local[0]
    state.dest_port = str(local[1])
    if family == socket.AF_INET6:
        state.addr_family = AF_INET6
        state.rfc_addr = "IPv6:" + addr
    else:
        state.addr_family = AF_INET
        state.rfc_addr = addr
    _hostname(state, family, config)
    state.namaddr = _namaddr(state, config)


def _not_inet(state):
    """smtpd_peer_not_inet(): a local (unix-domain) client such as sendmail -bs."""
    state.name = state.reverse_name = "localhost"
    state.addr = "127.0.0.1"
    state.rfc_addr = "127.0.0.1"
    state.port = "0"
    state.addr_family = socket.AF_UNIX
    state.name_status = state.reverse_name_status = SMTPD_PEER_CODE_OK
    state.namaddr = "localhost[127.0.0.1]"


def _namaddr(state, config):
    if config.get_bool("smtpd_client_port_logging"):
        return "%s[%s]:%s" % (state.name, state.addr, state.port)
    return "%s[%s]" % (state.name, state.addr)


def _reverse(addr):
    """sockaddr_to_hostname(): the PTR name, or an EAI error code."""
    try:
        name, _ = socket.getnameinfo((addr, 0), socket.NI_NAMEREQD)
    except socket.gaierror as exc:
        return None, exc.errno
    if not valid_hostname(name) or valid_hostaddr(name):
        # Postfix refuses numeric and malformed names (myaddrinfo.c).
        return None, socket.EAI_NONAME
    return name, 0


def _hostname(state, family, config):
    if not config.get_bool("smtpd_peername_lookup"):
        _unknown(state, SMTPD_PEER_CODE_PERM)
        return
    name, err = _reverse(state.addr)
    if name is None:
        _unknown(state, SMTPD_PEER_CODE_TEMP if err in _TEMP_AI_ERRORS
                 else SMTPD_PEER_CODE_PERM)
        return
    state.name = state.reverse_name = name
    state.name_status = state.reverse_name_status = SMTPD_PEER_CODE_OK
    try:
        infos = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        msg.warn("hostname %s does not resolve to address %s: %s"
                 % (name, state.addr, exc.strerror))
        _reject_name(state, SMTPD_PEER_CODE_TEMP if exc.errno in _TEMP_AI_ERRORS
                     else SMTPD_PEER_CODE_FORGED)
        return
    # The same text is the same address; only other spellings need parsing.
    if any(info[4][0] == state.addr for info in infos):
        return
    want = ipaddress.ip_address(state.addr)
    for info in infos:
        try:
            if ipaddress.ip_address(info[4][0].split("%")[0]) == want:
                return
        except ValueError:
            continue
    msg.warn("hostname %s does not resolve to address %s" % (name, state.addr))
    _reject_name(state, SMTPD_PEER_CODE_FORGED)


def _unknown(state, code):
    state.name = state.reverse_name = CLIENT_ATTR_UNKNOWN
    state.name_status = state.reverse_name_status = code


def _reject_name(state, code):
    state.name = CLIENT_ATTR_UNKNOWN
    state.name_status = code

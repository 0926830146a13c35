"""Listening endpoints of master.cf services (Postfix's master_listen.c and util/*_listen.c).

master creates every endpoint itself, before any child exists, and hands the descriptors
to the children: unix and pass sockets under private/ or public/ (relative to the queue
directory, mode 0666, the directory's mode being the access control), unix-dgram sockets,
FIFOs (mode 0622) and TCP sockets, one per inet address. When master runs as root the
local endpoints are created as mail_owner. Errors are fatal, worded as Postfix's.
"""

import contextlib
import os
import socket
import stat

from pyfix.common import msg

FIFO_MODE = 0o622
SOCKET_MODE = 0o666


@contextlib.contextmanager
def as_user(uid, gid):
    """set_eugid(): create files as mail_owner, then become root again (root only)."""
    if os.geteuid() != 0 or uid is None:
        yield
        return
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def _remove_stale(path, fatal_prefix=""):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        msg.fatal("%sremove %s: %s" % (fatal_prefix, path, msg.strerror(exc)))


def _local_socket(path, kind, backlog=None, fatal_prefix=""):
    if len(path.encode()) >= 108:
        msg.fatal("%sunix-domain name too long: %s" % (fatal_prefix, path))
    try:
        sock = socket.socket(socket.AF_UNIX, kind)
    except OSError as exc:
        msg.fatal("%ssocket: %s" % (fatal_prefix, msg.strerror(exc)))
    _remove_stale(path)
    try:
        sock.bind(path)
    except OSError as exc:
        msg.fatal("bind: %s: %s" % (path, msg.strerror(exc)))
    try:
        os.chmod(path, SOCKET_MODE)
    except OSError as exc:
        msg.fatal("chmod socket %s: %s" % (path, msg.strerror(exc)))
    if backlog is not None:
        try:
            sock.listen(backlog)
        except OSError as exc:
            msg.fatal("listen: %s" % msg.strerror(exc))
    sock.setblocking(False)
    return sock.detach()


def unix_listen(path, backlog):
    return _local_socket(path, socket.SOCK_STREAM, backlog)


def unix_dgram_listen(path):
    return _local_socket(path, socket.SOCK_DGRAM, fatal_prefix="unix_dgram_listen: ")


def fifo_listen(path, mode=FIFO_MODE):
    _remove_stale(path, "fifo_listen: ")
    try:
        os.mkfifo(path, mode)
    except OSError as exc:
        msg.fatal("fifo_listen: create fifo %s: %s" % (path, msg.strerror(exc)))
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError as exc:
        msg.fatal("fifo_listen: open %s: %s" % (path, msg.strerror(exc)))
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        msg.fatal("fifo_listen: not a fifo: %s" % path)
    os.fchmod(fd, mode)
    return fd


def inet_listen(family, address, port, backlog):
    """A listening TCP socket on one address (IPv6 sockets are IPv6-only, as in Postfix)."""
    try:
        port_number = int(port) if port.isdigit() else socket.getservbyname(port, "tcp")
    except OSError as exc:
        msg.fatal("%s:%s: %s" % (address, port, exc))
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        msg.fatal("socket: %s" % msg.strerror(exc))
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port_number))
    except OSError as exc:
        msg.fatal("bind %s port %s: %s" % (address, port_number, msg.strerror(exc)))
    try:
        sock.listen(backlog)
    except OSError as exc:
        msg.fatal("listen: %s" % msg.strerror(exc))
    sock.setblocking(False)
    return sock.detach()


def inet_port(service):
    """The port part of an inet service's internal name (`25`, `[127.0.0.1]:2525`)."""
    if service.name.startswith("["):
        return service.name.rsplit(":", 1)[1]
    return service.name


def listen_service(service, backlog, owner):
    """Create the endpoints of one service; return their descriptors (close-on-exec)."""
    uid, gid = owner
    if service.type == "inet":
        port = inet_port(service)
        return [inet_listen(item.family, item.address, port, backlog)
                for item in service.listen_addresses]
    with as_user(uid, gid):
        if service.type in ("unix", "pass"):
            return [unix_listen(service.name, backlog)]
        if service.type == "unix-dgram":
            return [unix_dgram_listen(service.name)]
        if service.type == "fifo":
            return [fifo_listen(service.name)]
    msg.panic("listen_service: unknown service type: %s" % service.type)

"""The address verification client (Postfix's global/verify_clnt.c): the one client of
the verify(8) service, for smtpd's reject_unverified_* (query) and for the delivery
agents' probe results (update, through queue/bounce_clnt.py's verify_append).

The client keeps one connection to private/$address_verify_service_name (Postfix's
clnt_stream); the service announces `protocol=address_verification_prrotocol` (sic)
when it accepts a connection. Requests and answers are attr0 lists:

    request=query  address=A                          -> status, recipient_status, reason
    request=update address=A recipient_status=N reason=T  -> status

status is VRFY_STAT_OK (0), VRFY_STAT_FAIL (-1) or VRFY_STAT_BAD (-2) (the request's
fate); recipient_status is DEL_RCPT_STAT_OK/DEFER/BOUNCE/TODO (the address's).
A service that is not in master.cf (no socket) is a request failure at once (-1), so
that smtpd answers "address verification problem" (Postfix would instead wait for the
socket, ten seconds apart, and give up after eleven attempts). Where Postfix retries a
broken connection forever, one second apart, this client gives up after three attempts
and reports a failure, so that a caller never hangs.
"""

import errno
import os
import socket
import time

from pyfix.common import attr, msg

PROTO_VERIFY = "address_verification_prrotocol"       # sic, as Postfix spells it
REQ_QUERY = "query"
REQ_UPDATE = "update"

VRFY_STAT_OK = 0
VRFY_STAT_FAIL = -1
VRFY_STAT_BAD = -2

DEL_RCPT_STAT_OK = 0
DEL_RCPT_STAT_DEFER = 1
DEL_RCPT_STAT_BOUNCE = 2
DEL_RCPT_STAT_TODO = 3

_ATTEMPTS = 3
_NO_SERVICE = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK)

_settings = {"address_verify_service_name": "verify", "ipc_timeout": 3600,
             "ipc_idle": 5}
_conn = {"sock": None, "stream": None, "used": 0.0}


def configure(config):
    _settings["address_verify_service_name"] = config.get("address_verify_service_name")
    _settings["ipc_timeout"] = config.get_time("ipc_timeout")
    _settings["ipc_idle"] = config.get_time("ipc_idle")


def signed(value):
    """An attr INT travels unsigned: -1 arrives as 4294967295."""
    return value - 2 ** 32 if value >= 2 ** 31 else value


def _close():
    if _conn["sock"] is not None:
        _conn["sock"].close()
    _conn["sock"] = _conn["stream"] = None


def _stream():
    """The open connection (clnt_stream_access), reconnecting after ipc_idle."""
    if _conn["stream"] is not None and time.time() - _conn["used"] > _settings["ipc_idle"]:
        _close()
    if _conn["stream"] is None:
        path = os.path.join("private", _settings["address_verify_service_name"])
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            stream = attr.AttrStream(sock, path + " socket", _settings["ipc_timeout"])
            count, _ = stream.scan([(attr.STREQ, "protocol", PROTO_VERIFY)],
                                   attr.FLAG_STRICT)
            if count != 0 or stream.eof:         # a matched STREQ is not counted
                raise OSError(errno.EPROTO, "protocol error")
        except OSError:
            sock.close()
            raise
        _conn["sock"], _conn["stream"] = sock, stream
    _conn["used"] = time.time()
    return _conn["stream"]


def _request(attrs, wanted, warn_missing):
    """Send one request and scan the answer: the values, or None on failure. A missing
    service is warned about only when warn_missing (the delivery side always did)."""
    service = _settings["address_verify_service_name"]
    for count in range(1, _ATTEMPTS + 1):
        try:
            stream = _stream()
            if stream.send(attrs):
                got, values = stream.scan(wanted, attr.FLAG_MISSING)
                if got == len(wanted):
                    return values
            error = OSError(errno.EPIPE, "Broken pipe")
        except OSError as exc:
            if exc.errno in _NO_SERVICE:
                _close()
                if warn_missing:
                    msg.warn("problem talking to service %s: %s"
                             % (service, msg.strerror(exc)))
                return None
            error = exc
        if count > 1 or error.errno not in (errno.EPIPE, 0):
            msg.warn("problem talking to service %s: %s" % (service, msg.strerror(error)))
        _close()
        if count < _ATTEMPTS:
            time.sleep(1)
    return None


def verify_clnt_query(address):
    """(request status, address status, reason) for an address."""
    values = _request([("request", REQ_QUERY), ("address", address)],
                      [(attr.INT, "status"), (attr.INT, "recipient_status"),
                       (attr.STR, "reason")], False)
    if values is None:
        return VRFY_STAT_FAIL, DEL_RCPT_STAT_TODO, ""
    return (signed(values["status"]), signed(values["recipient_status"]),
            values["reason"])


def verify_clnt_update(address, status, why):
    """One `update` request: the request status, VRFY_STAT_FAIL when the service
    cannot be reached."""
    values = _request([("request", REQ_UPDATE), ("address", address),
                       ("recipient_status", status), ("reason", why)],
                      [(attr.INT, "status")], True)
    if values is None:
        return VRFY_STAT_FAIL
    return signed(values["status"])

"""check_policy_service: the SMTPD policy delegation protocol (Postfix's smtpd_check.c
check_policy_service over util/attr_clnt.c and auto_clnt.c; SMTPD_POLICY_README).

The request is `name=value` lines and an empty line, over a connection that is kept
open between requests (closed after smtpd_policy_service_max_idle idle seconds, after
max_ttl seconds, or after request_limit requests); the server answers `action=...`
lines and an empty line. The action is an access(5) action. A server that cannot be
reached or does not answer within smtpd_policy_service_timeout is tried
smtpd_policy_service_try_limit times, smtpd_policy_service_retry_delay apart; then the
default action applies (smtpd_policy_service_default_action). `{inet:host:port,
timeout=10s, default_action=DUNNO}` overrides the parameters for one server.
"""

import os
import socket
import time

from pyfix.common import msg
from pyfix.common.config import conv_time
from pyfix.common.strings import CHARS_BRACE, CHARS_COMMA_SP, split_nameval, tokens_quoted

DEFAULT_ACTION = "451 4.3.5 Server configuration problem"
_OVERRIDES_TIME = ("timeout", "max_idle", "max_ttl", "retry_delay")
_OVERRIDES_INT = ("request_limit", "try_limit")
_OVERRIDES_STR = ("default_action", "policy_context")


class PolicyError(Exception):
    pass


class PolicyClient:
    """One policy server endpoint with its settings and its open connection."""

    def __init__(self, config, spec):
        self.settings = {name: config.get_time("smtpd_policy_service_" + name)
                         for name in _OVERRIDES_TIME}
        self.settings.update({name: config.get_int("smtpd_policy_service_" + name)
                              for name in _OVERRIDES_INT})
        self.settings.update({name: config.get("smtpd_policy_service_" + name)
                              for name in _OVERRIDES_STR})
        self.name = self._parse(spec)
        transport, _, endpoint = self.name.partition(":")
        if transport not in ("inet", "unix") or not endpoint:
            transport, endpoint = "inet", self.name
        self.transport = transport
        self.endpoint = endpoint
        self.queue_directory = config.get("queue_directory") or "."
        self.sock = None
        self.reader = None
        self.opened = 0.0
        self.used = 0.0
        self.count = 0

    def _parse(self, spec):
        if not spec.startswith("{"):
            return spec
        if not spec.endswith("}"):
            msg.fatal("policy service syntax error: %s" % spec)
        items = tokens_quoted(spec[1:-1], CHARS_COMMA_SP, CHARS_BRACE)
        if not items:
            msg.fatal('empty policy service: "%s"' % spec)
        for item in items[1:]:
            if item.startswith("{") and item.endswith("}"):
                item = item[1:-1].strip()
            name, value, err = split_nameval(item)
            if err:
                msg.fatal('malformed option: %s: "...%s..."' % (err, item))
            if name in _OVERRIDES_TIME:
                seconds = conv_time(value, "s")
                if seconds is None:
                    msg.fatal("%s: bad time value or unit: %s" % (name, value))
                self.settings[name] = seconds
            elif name in _OVERRIDES_INT:
                if not value.lstrip("-").isdigit():
                    msg.fatal("bad numerical configuration: %s = %s" % (name, value))
                self.settings[name] = int(value)
            elif name in _OVERRIDES_STR:
                self.settings[name] = value
            else:
                msg.fatal('unknown option: "%s = %s"' % (name, value))
        return items[0]

    @property
    def default_action(self):
        return self.settings["default_action"]

    @property
    def context(self):
        return self.settings["policy_context"]

    # -- the connection (auto_clnt) ----------------------------------------------------------

    def _connect(self):
        timeout = self.settings["timeout"] or None
        if self.transport == "unix":
            path = self.endpoint if os.path.isabs(self.endpoint) else \
                os.path.join(self.queue_directory, self.endpoint)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target = path
        else:
            host, _, port = self.endpoint.rpartition(":")
            host = host.strip("[]")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            target = (host, int(port))
        sock.settimeout(timeout)
        try:
            sock.connect(target)
        except OSError as exc:
            sock.close()
            msg.warn("connect to %s: %s" % (self.endpoint, msg.strerror(exc)))
            raise PolicyError(msg.strerror(exc))
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.opened = time.monotonic()
        self.count = 0

    def close(self):
        if self.reader is not None:
            self.reader.close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self.reader = None

    def _stale(self):
        now = time.monotonic()
        idle, ttl = self.settings["max_idle"], self.settings["max_ttl"]
        return (idle and now - self.used >= idle) or (ttl and now - self.opened >= ttl)

    def _exchange(self, attrs):
        if self.sock is not None and self._stale():
            self.close()
        if self.sock is None:
            self._connect()
        payload = "".join("%s=%s\n" % (name, value) for name, value in attrs) + "\n"
        try:
            self.sock.sendall(payload.encode("utf-8", "surrogateescape"))
            answer = {}
            while True:
                line = self.reader.readline(65536)
                if not line:
                    raise PolicyError("Connection reset by peer" if not answer
                                      else "premature end-of-input")
                text = line.rstrip(b"\n").decode("utf-8", "surrogateescape")
                if not text:
                    break
                name, _, value = text.partition("=")
                answer.setdefault(name, value)
        except socket.timeout:
            raise PolicyError("Connection timed out")
        except OSError as exc:
            raise PolicyError(msg.strerror(exc))
        self.used = time.monotonic()
        if "action" not in answer:
            msg.warn("missing attribute %s in input from %s" % ("action", self.endpoint))
            raise PolicyError("Application error")
        self.count += 1
        limit = self.settings["request_limit"]
        if limit and self.count >= limit:
            self.close()
        return answer["action"]

    def request(self, attrs):
        """The server's action, or None when it could not be had."""
        tries = 0
        while True:
            try:
                return self._exchange(attrs)
            except PolicyError as exc:
                reason = str(exc)
            self.close()
            tries += 1
            limit = self.settings["try_limit"]
            if limit and tries >= limit or reason not in ("Broken pipe", "Connection reset by peer",
                                                          "No such file or directory"):
                msg.warn("problem talking to server %s: %s" % (self.endpoint, reason))
            if limit and tries >= limit:
                return None
            time.sleep(self.settings["retry_delay"])


def policy_attributes(state, context, stress):
    """The request, in Postfix's order."""
    where = "DATA" if state.where == "BDAT" else state.where
    tls = state.tls_context
    rcpt_count = state.rcpt_count if where.upper() in ("DATA", "BDAT", "END-OF-MESSAGE") \
        else 0
    size = getattr(state, "act_size", 0) or state.msg_size or 0

    def tls_value(name, empty=""):
        value = getattr(tls, name, None) if tls is not None else None
        return value if value else empty
    trusted = tls is not None and getattr(tls, "peer_status", 0) & 2
    return [
        ("request", "smtpd_access_policy"),
        ("protocol_state", where),
        ("protocol_name", state.protocol or ""),
        ("client_address", state.addr),
        ("client_name", state.name),
        ("client_port", state.port),
        ("reverse_client_name", state.reverse_name),
        ("server_address", getattr(state, "dest_addr", "") or ""),
        ("server_port", getattr(state, "dest_port", "") or ""),
        ("helo_name", state.helo_name or ""),
        ("sender", state.sender or ""),
        ("recipient", state.recipient or ""),
        ("recipient_count", rcpt_count),
        ("queue_id", state.queue_id or ""),
        ("instance", state.instance),
        ("size", size),
        ("etrn_domain", getattr(state, "check_etrn_name", None) or ""),
        ("stress", stress),
        ("sasl_method", state.sasl_method or ""),
        ("sasl_username", state.sasl_username or ""),
        ("sasl_sender", state.sasl_sender or ""),
        ("ccert_subject", tls_value("peer_CN") if trusted else ""),
        ("ccert_issuer", tls_value("issuer_CN") if trusted else ""),
        ("ccert_fingerprint", tls_value("peer_cert_fprint")),
        ("ccert_pubkey_fingerprint", tls_value("peer_pkey_fprint")),
        ("encryption_protocol", tls_value("protocol")),
        ("encryption_cipher", tls_value("cipher_name")),
        ("encryption_keysize", tls_value("cipher_usebits", 0)),
        ("policy_context", context),
    ]

"""The smtp/lmtp client's TLS: the per-destination policy (Postfix's
smtp/smtp_tls_policy.c), STARTTLS and SMTPS wrapper mode (smtp_proto.c smtp_helo() and
smtp_start_tls()) and the handshake with its certificate checks and log lines
(tls/tls_client.c, tls_verify.c, tls_misc.c tls_log_summary()), on Python's ssl module.

Levels: none, may, encrypt, verify, secure (peer names from smtp_tls_verify_cert_match
/ smtp_tls_secure_cert_match or the policy's match=, checked by OpenSSL as in Postfix),
fingerprint (smtp_tls_fingerprint_cert_match or match=), dane and dane-only. pyfix's
resolver gives no DNSSEC-validated answers, so DANE behaves as Postfix does without
DNSSEC lookups: `dane` warns and falls back to `may`, `dane-only` is a configuration
problem (the mail is deferred).

The per-site table is smtp_tls_policy_maps (smtp_tls_per_site is the legacy one, still
honoured). Parameter names follow the service: lmtp_tls_* in LMTP mode.
"""

import hashlib
import socket
import ssl

from pyfix.common import msg
from pyfix.daemons.smtp.session import SessionFailure
from pyfix.daemons.smtp import smtp_sasl, smtp_tls_ossl as ossl
from pyfix.daemons.smtpd.tls import _VERSION_INDEX, protocol_range
from pyfix.daemons.smtp.smtp_tls_policy import (
    CHARS_COMMA_SP, ENCRYPT, FPRINT, INVALID, MAY, NONE, SECURE, VERIFY, must_match,
    pre_init, required, session_policy, settings, split_words)

__all__ = ("pre_init", "session_policy", "wrap_if_wrappermode", "starttls_if_needed",
           "HandshakeFailure")


class HandshakeFailure(SessionFailure):
    """`Cannot start TLS: handshake failure`. With retry_plaintext the caller may try the
    same server again without TLS (Postfix's RETRY_AS_PLAINTEXT at level may)."""

    def __init__(self, text, retry_plaintext):
        super().__init__("4.7.5", text, True)
        self.retry_plaintext = retry_plaintext


class TlsState:
    """What session.tls holds after a handshake (Postfix's TLS_SESS_STATE)."""

    def __init__(self, level, namaddr):
        self.level = level
        self.namaddr = namaddr
        self.protocol = self.cipher_name = None
        self.cipher_usebits = self.cipher_algbits = 0
        self.peer_cert_present = self.trusted = self.matched = self.secured = False
        self.peer_CN = self.issuer_CN = ""
        self.session_reused = False
        self.signature = None

    def summary(self):
        """tls_log_summary(TLS_ROLE_CLIENT, TLS_USAGE_NEW)."""
        trust = ("Anonymous" if not self.peer_cert_present else "Verified" if self.secured
                 else "Trusted" if self.trusted else "Untrusted")
        line = ("%s TLS connection %s to %s: %s with cipher %s (%d/%d bits)"
                % (trust, "reused" if self.session_reused else "established", self.namaddr,
                   self.protocol, self.cipher_name, self.cipher_usebits, self.cipher_algbits))
        if self.signature:
            line += _signature_text(*self.signature)
        return line


def _signature_text(kex, server, client):
    text = ""
    name, curve, bits = kex
    if name:
        text += " key-exchange %s" % name
        if curve:
            text += " (%s)" % curve
        elif bits > 0:
            text += " (%d bits)" % bits
    for role, (name, curve, bits, digest) in (("server", server), ("client", client)):
        if name:
            text += " %s-signature %s" % (role, name)
            if curve:
                text += " (%s)" % curve
            elif bits > 0:
                text += " (%d bits)" % bits
            if digest:
                text += " %s-digest %s" % (role, digest)
    return text


# ---- the connection -------------------------------------------------------------------------

def wrap_if_wrappermode(session, policy):
    """The socket to talk SMTP on: with smtp_tls_wrappermode the TLS handshake comes
    first (SMTPS), else the plain session.sock."""
    if not policy.wrappermode:
        return session.sock
    if policy.level == INVALID:
        raise SessionFailure(*policy.why)
    if policy.level < ENCRYPT:
        prefix = settings(session).prefix
        msg.warn('%stls_wrappermode requires "%stls_security_level = encrypt" (or '
                 'stronger)' % (prefix, prefix))
        raise SessionFailure("4.7.5", "client TLS configuration problem")
    _start_tls(session, policy)
    return session.sock


def starttls_if_needed(session, policy):
    """After EHLO: send STARTTLS when the server offers it and the policy allows it
    (may and above), do the handshake (then the caller sends EHLO again) and return
    True; fail when the policy requires TLS and it is not there."""
    if policy.level == INVALID:
        raise SessionFailure(*policy.why)
    if session.tls is not None:
        return False
    conf = settings(session)
    offered = "STARTTLS" in session.features
    if offered and conf.config.get_bool(conf.prefix + "tls_note_starttls_offer") \
            and policy.level <= NONE:
        msg.info("Host offered STARTTLS: [%s]" % session.host)
    context = conf.context() if policy.level >= MAY else None
    if offered and context is not None:
        session.where = "receiving the STARTTLS response"
        reply = session.command("STARTTLS")
        if reply.code // 100 == 2:
            # Postfix parsed AUTH in the EHLO reply that is now dropped (and warned
            # about unusable mechanisms then): the same warnings, once per EHLO.
            smtp_sasl.ehlo_auth_warnings(session)
            _start_tls(session, policy)
            return True
        session.features.pop("STARTTLS", None)
        offered = False
        if required(policy.level):
            raise SessionFailure(reply.dsn, "TLS is required, but host %s refused to start "
                                 "TLS: %s" % (session.namaddr, reply.text),
                                 reply.code // 100 != 5)
    if required(policy.level):
        if not offered:
            raise SessionFailure("4.7.4", "TLS is required, but was not offered by host %s"
                                 % session.namaddr)
        if context is None:
            raise SessionFailure("4.7.5", "TLS is required, but our TLS engine is "
                                 "unavailable")
        msg.warn("smtp_helo: TLS is required but unavailable, don't know why")
        raise SessionFailure("4.7.0", "TLS is required, but unavailable")
    return False


def _start_tls(session, policy):
    """smtp_start_tls() and tls_client_start(): the handshake, the certificate checks,
    the summary line; sets session.sock and session.tls."""
    conf = settings(session)
    namaddr = session.namaddrport
    if session.pending_input():
        # Nothing may be buffered across the handshake (vstream_fpurge()).
        session._buffer = b""
    protocols = _protocol_limits(policy.protocols or "")
    if protocols is None:
        msg.warn('%s: Invalid TLS protocol list "%s": aborting TLS session'
                 % (namaddr, policy.protocols))
        raise _handshake_failure(session, policy)
    sslsock, checks = _handshake(conf, session, policy, protocols, namaddr)
    state = TlsState(policy.level, namaddr)
    cipher = sslsock.cipher()
    state.protocol = sslsock.version()
    state.cipher_name = cipher[0]
    state.cipher_usebits = state.cipher_algbits = cipher[2]
    state.session_reused = sslsock.session_reused
    _check_certificate(state, sslsock, checks, policy, conf)
    if checks is not None and checks.available:
        try:
            state.signature = checks.signature_params()
        except (OSError, ValueError):
            state.signature = None
    if conf.loglevel >= 1:
        msg.info(state.summary())
    session.sock = sslsock
    session.tls = state
    if must_match(state.level) and not state.matched:
        raise SessionFailure("4.7.5", "Server certificate not verified")


def _handshake(conf, session, policy, protocols, namaddr):
    context = conf.context()
    ciphers = _cipher_list(conf, policy)
    if context is None or ciphers is None:
        if ciphers is None:
            msg.warn('invalid %s value: "%s"' % (conf.prefix + ("tls_mandatory_ciphers"
                     if required(policy.level) else "tls_ciphers"), policy.grade))
        raise _handshake_failure(session, policy)
    if not ossl.SSL_LIB:
        context = _fallback_context(conf, policy, protocols, ciphers)
    sni = _sni_name(session, policy)
    try:
        sslsock = context.wrap_socket(session.sock, server_hostname=sni or None,
                                      do_handshake_on_connect=False)
    except (OSError, ValueError, ssl.SSLError) as exc:
        msg.info("SSL_connect error to %s: %s" % (namaddr, exc))
        raise _handshake_failure(session, policy)
    # The SSL socket owns the descriptor now: the caller closes it, whatever happens.
    session.sock = sslsock
    checks = ossl.OsslSession(sslsock)
    if checks.available:
        # Per-session protocols and ciphers, on the SSL object as Postfix sets them;
        # OpenSSL security level 0 (Postfix's client context: anonymous ciphers allowed),
        # 1 when the certificate must match.
        if not checks.configure(protocols, ciphers, 1 if must_match(policy.level) else 0,
                                conf.config.get_int(conf.prefix + "tls_scert_verifydepth")):
            msg.warn("invalid cipher list: %s" % ciphers)
            raise _handshake_failure(session, policy)
        if policy.level in (VERIFY, SECURE):
            if checks.add_namechecks(_match_names(session, policy, namaddr)) == 0:
                msg.warn("%s: could not configure peer name checks" % namaddr)
                checks.must_fail = True
        elif policy.level == FPRINT:
            digest = conf.config.get(conf.prefix + "tls_fingerprint_digest")
            usable = checks.enable_fingerprints(policy.tlsa, digest, namaddr)
            if usable < 0:
                msg.warn("%s: error enabling fingerprint certificate validation"
                         % namaddr)
                raise _handshake_failure(session, policy)
            if usable == 0:
                msg.warn("%s: all fingerprints unusable" % namaddr)
                checks.must_fail = True
    try:
        sslsock.settimeout(conf.config.get_time(conf.prefix + "starttls_timeout"))
        sslsock.do_handshake()
    except ssl.SSLError as exc:
        msg.info("SSL_connect error to %s: -1" % namaddr)
        msg.warn("TLS library problem: %s" % _ssl_error_text(exc))
        raise _handshake_failure(session, policy)
    except socket.timeout:
        msg.info("SSL_connect error to %s: Connection timed out" % namaddr)
        raise _handshake_failure(session, policy)
    except OSError as exc:
        if exc.errno:
            msg.info("SSL_connect error to %s: %s" % (namaddr, msg.strerror(exc)))
        else:
            msg.info("SSL_connect error to %s: lost connection" % namaddr)
        raise _handshake_failure(session, policy)
    return sslsock, checks


def _handshake_failure(session, policy):
    """`Cannot start TLS: handshake failure`. retry_plaintext says whether Postfix's
    PLAINTEXT_FALLBACK_OK_AFTER_STARTTLS_FAILURE can hold: level may (not SMTPS) and no
    SASL password for this server; the caller adds the condition it knows: a trace-only
    request, or mail that waited minimal_backoff_time before it became active."""
    retry = policy.level == MAY and not policy.wrappermode \
        and not smtp_sasl.has_credentials(session)
    return HandshakeFailure("Cannot start TLS: handshake failure", retry)


def _ssl_error_text(exc):
    reason = (exc.reason or str(exc)).lower().replace("_", " ")
    return "error:%s:%s" % (exc.library or "SSL routines", reason)


def _fallback_context(conf, policy, protocols, ciphers):
    """Without OpenSSL's per-session calls: a context of its own for this policy."""
    cached = getattr(policy, "_context", None)
    if cached is not None:
        return cached
    context = conf.new_context()
    if context is None:
        return conf.context()
    low, high = protocols
    if low is not None:
        context.minimum_version = low
    if high is not None:
        context.maximum_version = high
    try:
        context.set_ciphers(ciphers + (":@SECLEVEL=1" if must_match(policy.level)
                                       else ":@SECLEVEL=0"))
    except ssl.SSLError:
        msg.warn("invalid cipher list: %s" % ciphers)
    policy._context = context
    return context


def _cipher_list(conf, policy):
    """tls_set_ciphers(): the grade's cipher list and the exclusions."""
    grade = (policy.grade or "medium").lower()
    if grade not in ("export", "low", "medium", "high", "null"):
        return None
    ciphers = conf.config.get("tls_%s_cipherlist" % grade)
    for item in split_words(policy.exclusions or "", CHARS_COMMA_SP + ":"):
        ciphers += ":!" + item
    return ciphers


def _protocol_limits(text):
    """(lowest, highest) TLSVersion of a protocol list, or None when the list is
    invalid (tls_proto_mask_lims())."""
    for word in text.replace(",", " ").replace(":", " ").split():
        bare = word.lstrip("!<=>")
        if bare.lower() not in _VERSION_INDEX:
            return None
    return protocol_range(text)


def _sni_name(session, policy):
    sni = policy.sni
    if not sni:
        return None
    if sni == "hostname":
        return session.host
    if sni == "nexthop":
        return tls_nexthop(session)
    return sni


def tls_nexthop(session):
    """The next-hop domain without brackets or port (session->tls_nexthop)."""
    dest = session.nexthop or ""
    if dest.startswith("["):
        return dest[1:].split("]", 1)[0]
    host, sep, port = dest.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host
    return dest


def _match_names(session, policy, namaddr):
    """add_namechecks(): the names the certificate must match."""
    names = []
    for name in policy.matchargv or ():
        if name.lower() == "nexthop":
            names.append(tls_nexthop(session))
        elif name.lower() == "dot-nexthop":
            names.append("." + tls_nexthop(session))
        elif name.lower() == "hostname":
            names.append(session.host)
        elif name.startswith("."):
            if len(name) == 1:
                msg.warn('%s: ignoring invalid match name: "."' % namaddr)
                continue
            names.append(name)
        else:
            names.append(name)
    return names


def _check_certificate(state, sslsock, checks, policy, conf):
    """verify_extract_name(): trust and name match of the server certificate."""
    der = sslsock.getpeercert(binary_form=True)
    if not der:
        return
    state.peer_cert_present = True
    if checks is None or not checks.available:
        if policy.level == FPRINT:
            state.trusted = state.matched = state.secured = _fingerprint_match(
                der, policy, conf)
        return
    if checks.verify_result() == ossl.X509_V_OK and not checks.must_fail:
        state.trusted = True
        if must_match(state.level):
            state.matched = state.secured = True
    log_untrusted = must_match(state.level) or conf.log_untrusted
    if not state.matched and log_untrusted:
        _log_verify_error(checks, state.namaddr)


def _fingerprint_match(der, policy, conf):
    """The fingerprint level without OpenSSL's DANE calls: the certificate digest."""
    algorithm = conf.config.get(conf.prefix + "tls_fingerprint_digest").lower()
    try:
        digest = hashlib.new(algorithm, der).digest()
    except ValueError:
        return False
    return any(selector == 0 and data == digest
               for _, selector, _, data in policy.tlsa)


def _log_verify_error(checks, namaddr):
    """tls_log_verify_error()."""
    err, depth = checks.error, checks.depth
    purpose = "CA" if depth > 0 else "server"
    if err == ossl.X509_V_OK:
        err = checks.verify_result()
        if err == ossl.X509_V_OK:
            return
    if err == ossl.X509_V_ERR_CERT_UNTRUSTED:
        msg.info("certificate verification failed for %s: not trusted by local or TLSA "
                 "policy" % namaddr)
    elif err == ossl.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        msg.info("certificate verification failed for %s: self-signed certificate"
                 % namaddr)
    elif err in (ossl.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                 ossl.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN):
        msg.info("certificate verification failed for %s: untrusted issuer %s"
                 % (namaddr, _printable(checks.error_issuer or "<unknown>")))
    elif err in (ossl.X509_V_ERR_CERT_NOT_YET_VALID,
                 ossl.X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD):
        msg.info("%s certificate verification failed for %s: certificate not yet valid"
                 % (purpose, namaddr))
    elif err in (ossl.X509_V_ERR_CERT_HAS_EXPIRED,
                 ossl.X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD):
        msg.info("%s certificate verification failed for %s: certificate has expired"
                 % (purpose, namaddr))
    elif err == ossl.X509_V_ERR_INVALID_PURPOSE:
        msg.info("certificate verification failed for %s: not designated for use as a "
                 "%s certificate" % (namaddr, purpose))
    elif err == ossl.X509_V_ERR_CERT_CHAIN_TOO_LONG:
        msg.info("certificate verification failed for %s: certificate chain longer "
                 "than limit(%d)" % (namaddr, depth - 1))
    else:
        msg.info("%s certificate verification failed for %s: num=%d:%s"
                 % (purpose, namaddr, err, checks.error_string(err)))


def _printable(text):
    return "".join(ch if " " <= ch < "\x7f" else "?" for ch in text)

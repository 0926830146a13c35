"""The OpenSSL calls that the smtp client's TLS needs and Python's ssl module does not
offer (Postfix's tls/tls_client.c add_namechecks(), tls_verify.c
tls_verify_certificate_callback() and tls_misc.c tls_get_signature_params()), made
through ctypes on the very libssl that Python's _ssl module uses.

Why: Postfix completes the handshake whatever the certificate, then decides on the
verification result (so that it can log `Untrusted TLS connection ...` and `server
certificate not verified` with the exact reason). Python's ssl module either verifies and
aborts the handshake, or does not verify at all. With the SSL object's own calls the
chain and the peer names are checked by OpenSSL inside the handshake exactly as in
Postfix: SSL_add1_host() with X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, a verify callback
that records the first error and accepts, then SSL_get_verify_result().

Everything here degrades gracefully: without the library calls (another Python build),
OsslSession.available is False and the caller falls back to Python's own verification.
"""

import ctypes
import ctypes.util

NID_UNDEF = 0
EVP_PKEY_RSA = 6
EVP_PKEY_DH = 28
EVP_PKEY_EC = 408
TLS1_3_VERSION = 0x0304
SSL_CTRL_GET_PEER_SIGNATURE_NID = 108
SSL_CTRL_GET_PEER_TMP_KEY = 109
SSL_CTRL_GET_SIGNATURE_NID = 132
SSL_CTRL_SET_MIN_PROTO_VERSION = 123
SSL_CTRL_SET_MAX_PROTO_VERSION = 124
X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS = 0x4
SSL_VERIFY_NONE = 0

# X509_V_ERR_* codes that tls_log_verify_error() names.
X509_V_OK = 0
X509_V_ERR_UNSPECIFIED = 1
DANE_FLAG_NO_DANE_EE_NAMECHECKS = 1
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
X509_V_ERR_CERT_NOT_YET_VALID = 9
X509_V_ERR_CERT_HAS_EXPIRED = 10
X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD = 13
X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD = 14
X509_V_ERR_CERT_CHAIN_TOO_LONG = 22
X509_V_ERR_INVALID_PURPOSE = 26
X509_V_ERR_CERT_UNTRUSTED = 27

VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)

# The offset of `SSL *ssl` in CPython's PySSLSocket: PyObject_HEAD, then the socket
# weak reference (Modules/_ssl.c, unchanged from 3.7 to 3.13).
_SSL_POINTER_OFFSET = ctypes.sizeof(ctypes.c_ssize_t) + 2 * ctypes.sizeof(ctypes.c_void_p)


def _load():
    try:
        ssl_lib = ctypes.CDLL(ctypes.util.find_library("ssl") or "libssl.so.3")
        crypto = ctypes.CDLL(ctypes.util.find_library("crypto") or "libcrypto.so.3")
    except OSError:
        return None, None
    vp, c_int, c_long = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    signatures = (
        (ssl_lib, "SSL_set_hostflags", None, [vp, ctypes.c_uint]),
        (ssl_lib, "SSL_add1_host", c_int, [vp, ctypes.c_char_p]),
        (ssl_lib, "SSL_get_verify_result", c_long, [vp]),
        (ssl_lib, "SSL_set_verify", None, [vp, c_int, VERIFY_CALLBACK]),
        (ssl_lib, "SSL_get0_peername", ctypes.c_char_p, [vp]),
        (ssl_lib, "SSL_ctrl", c_long, [vp, c_int, c_long, vp]),
        (ssl_lib, "SSL_version", c_int, [vp]),
        (ssl_lib, "SSL_get_fd", c_int, [vp]),
        (ssl_lib, "SSL_set_cipher_list", c_int, [vp, ctypes.c_char_p]),
        (ssl_lib, "SSL_set_security_level", None, [vp, c_int]),
        (ssl_lib, "SSL_set_verify_depth", None, [vp, c_int]),
        (ssl_lib, "SSL_get_SSL_CTX", vp, [vp]),
        (ssl_lib, "SSL_CTX_dane_enable", c_int, [vp]),
        (ssl_lib, "SSL_CTX_dane_mtype_set", c_int, [vp, vp, ctypes.c_uint8, ctypes.c_uint8]),
        (ssl_lib, "SSL_dane_enable", c_int, [vp, ctypes.c_char_p]),
        (ssl_lib, "SSL_dane_set_flags", ctypes.c_ulong, [vp, ctypes.c_ulong]),
        (ssl_lib, "SSL_dane_tlsa_add", c_int, [vp, ctypes.c_uint8, ctypes.c_uint8,
                                               ctypes.c_uint8, ctypes.c_char_p,
                                               ctypes.c_size_t]),
        (ssl_lib, "SSL_get1_peer_certificate", vp, [vp]),
        (ssl_lib, "SSL_get_certificate", vp, [vp]),
        (crypto, "X509_free", None, [vp]),
        (crypto, "X509_get0_pubkey", vp, [vp]),
        (crypto, "X509_get_issuer_name", vp, [vp]),
        (crypto, "X509_NAME_oneline", ctypes.c_char_p, [vp, ctypes.c_char_p, c_int]),
        (crypto, "X509_STORE_CTX_get_error", c_int, [vp]),
        (crypto, "X509_STORE_CTX_set_error", None, [vp, c_int]),
        (crypto, "EVP_get_digestbyname", vp, [ctypes.c_char_p]),
        (crypto, "X509_STORE_CTX_get_error_depth", c_int, [vp]),
        (crypto, "X509_STORE_CTX_get_current_cert", vp, [vp]),
        (crypto, "X509_verify_cert_error_string", ctypes.c_char_p, [c_long]),
        (crypto, "EVP_PKEY_get_id", c_int, [vp]),
        (crypto, "EVP_PKEY_get_bits", c_int, [vp]),
        (crypto, "EVP_PKEY_type", c_int, [c_int]),
        (crypto, "EVP_PKEY_free", None, [vp]),
        (crypto, "EVP_PKEY_get_group_name", c_int,
         [vp, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]),
        (crypto, "OBJ_nid2sn", ctypes.c_char_p, [c_int]),
    )
    try:
        for lib, name, restype, argtypes in signatures:
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
    except AttributeError:
        return None, None
    return ssl_lib, crypto


SSL_LIB, CRYPTO = _load()


def ssl_pointer(sslsock):
    """The SSL * of a Python SSLSocket, checked: it must be bound to the socket's file
    descriptor (else None: an unknown CPython layout)."""
    sslobj = getattr(sslsock, "_sslobj", None)
    if SSL_LIB is None or sslobj is None:
        return None
    pointer = ctypes.c_void_p.from_address(id(sslobj) + _SSL_POINTER_OFFSET).value
    if not pointer or SSL_LIB.SSL_get_fd(pointer) != sslsock.fileno():
        return None
    return pointer


def _text(raw):
    return raw.decode("ascii", "replace") if raw else ""


class OsslSession:
    """The Postfix-style certificate checks on one client SSLSocket, set up after
    wrap_socket(do_handshake_on_connect=False) and read after the handshake."""

    def __init__(self, sslsock):
        self.ssl = ssl_pointer(sslsock)
        self.available = self.ssl is not None
        self.error = X509_V_OK          # the first verification error, its depth and the
        self.depth = 0                  # issuer of the certificate it was about
        self.error_issuer = None
        self.must_fail = False          # no peer names could be set: never matched
        self._callback = VERIFY_CALLBACK(self._verify_callback)
        if self.available:
            SSL_LIB.SSL_set_verify(self.ssl, SSL_VERIFY_NONE, self._callback)

    def _verify_callback(self, ok, store_ctx):
        """tls_verify_certificate_callback(): note the first error, always go on; when
        the trust settings could not be loaded (must_fail), fail with an unspecified
        error at the end."""
        if self.must_fail:
            if CRYPTO.X509_STORE_CTX_get_error_depth(store_ctx) == 0:
                CRYPTO.X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_UNSPECIFIED)
                self.error, self.depth = X509_V_ERR_UNSPECIFIED, 0
            return 1
        if not ok and self.error == X509_V_OK:
            self.error = CRYPTO.X509_STORE_CTX_get_error(store_ctx)
            self.depth = CRYPTO.X509_STORE_CTX_get_error_depth(store_ctx)
            cert = CRYPTO.X509_STORE_CTX_get_current_cert(store_ctx)
            if cert:
                buf = ctypes.create_string_buffer(2048)
                CRYPTO.X509_NAME_oneline(CRYPTO.X509_get_issuer_name(cert), buf, len(buf))
                self.error_issuer = buf.value.decode("latin-1")
        return 1

    def configure(self, versions, ciphers, security_level, verify_depth):
        """The per-session protocol range, cipher list, security level and certificate
        chain depth (tls_client_init(), tls_client_start()); False when OpenSSL refuses
        the cipher list."""
        SSL_LIB.SSL_set_verify_depth(self.ssl, verify_depth + 1)
        low, high = versions
        for control, version in ((SSL_CTRL_SET_MIN_PROTO_VERSION, low),
                                 (SSL_CTRL_SET_MAX_PROTO_VERSION, high)):
            if version is not None:
                SSL_LIB.SSL_ctrl(self.ssl, control, int(version), None)
        SSL_LIB.SSL_set_security_level(self.ssl, security_level)
        return bool(SSL_LIB.SSL_set_cipher_list(self.ssl, ciphers.encode("ascii", "replace")))

    def enable_fingerprints(self, tlsa, digest_name, namaddr):
        """The fingerprint level as synthetic DANE-EE records (tls_client.c
        tls_auth_enable() and tls_dane.c tls_dane_enable()): the private-use matching
        type 255 is the fingerprint digest. Returns the number of usable records;
        warns about each unusable one as Postfix does."""
        ctx = SSL_LIB.SSL_get_SSL_CTX(self.ssl)
        digest = CRYPTO.EVP_get_digestbyname(digest_name.encode("ascii", "replace"))
        if not ctx or not digest or SSL_LIB.SSL_CTX_dane_enable(ctx) <= 0 \
                or SSL_LIB.SSL_CTX_dane_mtype_set(ctx, digest, 255, 1) <= 0 \
                or SSL_LIB.SSL_dane_enable(self.ssl, None) <= 0:
            return -1
        SSL_LIB.SSL_dane_set_flags(self.ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS)
        usable = 0
        for usage, selector, mtype, data in tlsa:
            if SSL_LIB.SSL_dane_tlsa_add(self.ssl, usage, selector, mtype, data,
                                         len(data)) > 0:
                usable += 1
            else:
                _tlsa_carp(namaddr, "unusable TLSA RR", usage, selector, mtype, data)
        return usable

    def add_namechecks(self, names):
        """SSL_add1_host() for each name (a leading dot: sub-domains); the number
        of names OpenSSL accepted."""
        SSL_LIB.SSL_set_hostflags(self.ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS)
        count = 0
        for name in names:
            if SSL_LIB.SSL_add1_host(self.ssl, name.encode("ascii", "replace")):
                count += 1
        return count

    def verify_result(self):
        return SSL_LIB.SSL_get_verify_result(self.ssl)

    def peername(self):
        return _text(SSL_LIB.SSL_get0_peername(self.ssl))

    def error_string(self, code):
        return _text(CRYPTO.X509_verify_cert_error_string(code))

    def signature_params(self):
        """tls_get_signature_params() for the client: (kex_name, kex_curve, kex_bits,
        server sig name, curve, bits, digest); TLS 1.3 only, else None."""
        if SSL_LIB.SSL_version(self.ssl) < TLS1_3_VERSION:
            return None
        kex = self._kex()
        server = (None, None, 0, None)
        cert = SSL_LIB.SSL_get1_peer_certificate(self.ssl)
        if cert:
            name, curve, bits = _sig_key(CRYPTO.X509_get0_pubkey(cert))
            nid = ctypes.c_int(NID_UNDEF)
            digest = None
            if SSL_LIB.SSL_ctrl(self.ssl, SSL_CTRL_GET_PEER_SIGNATURE_NID, 0,
                                ctypes.byref(nid)) and nid.value != NID_UNDEF:
                digest = _text(CRYPTO.OBJ_nid2sn(nid.value))
            server = (name, curve, bits, digest)
            CRYPTO.X509_free(cert)
        client = (None, None, 0, None)
        nid = ctypes.c_int(NID_UNDEF)
        if SSL_LIB.SSL_ctrl(self.ssl, SSL_CTRL_GET_SIGNATURE_NID, 0, ctypes.byref(nid)):
            local = SSL_LIB.SSL_get_certificate(self.ssl)
            if local:
                name, curve, bits = _sig_key(CRYPTO.X509_get0_pubkey(local))
                digest = _text(CRYPTO.OBJ_nid2sn(nid.value)) if nid.value else None
                client = (name, curve, bits, digest)
        return kex, server, client

    def _kex(self):
        pkey = ctypes.c_void_p()
        if not SSL_LIB.SSL_ctrl(self.ssl, SSL_CTRL_GET_PEER_TMP_KEY, 0, ctypes.byref(pkey)) \
                or not pkey.value:
            return (None, None, 0)
        try:
            nid = CRYPTO.EVP_PKEY_get_id(pkey)
            if nid == EVP_PKEY_DH:
                return ("DHE", None, CRYPTO.EVP_PKEY_get_bits(pkey))
            if nid == EVP_PKEY_EC:
                return ("ECDHE", _group_name(pkey), 0)
            return (_text(CRYPTO.OBJ_nid2sn(CRYPTO.EVP_PKEY_type(nid))), None, 0)
        finally:
            CRYPTO.EVP_PKEY_free(pkey)


def _tlsa_carp(namaddr, what, usage, selector, mtype, data):
    """tlsa_carp(): long data shows its first and last bytes only."""
    from pyfix.common import msg
    head, tail = 32, 32
    if len(data) > head + tail:
        text = data[:head].hex().upper() + "..." + data[-tail:].hex().upper()
    else:
        text = data.hex().upper() or "..."
    msg.warn("%s: %s: %u %u %u %s" % (namaddr, what, usage, selector, mtype, text))


def _group_name(pkey):
    buf = ctypes.create_string_buffer(80)
    if CRYPTO.EVP_PKEY_get_group_name(pkey, buf, len(buf), None):
        return buf.value.decode("ascii", "replace")
    return None


def _sig_key(pkey):
    """(name, curve, bits) of a certificate key, as Postfix names TLS 1.3 signatures."""
    if not pkey:
        return (None, None, 0)
    nid = CRYPTO.EVP_PKEY_type(CRYPTO.EVP_PKEY_get_id(pkey))
    if nid == NID_UNDEF:
        return (None, None, 0)
    if nid == EVP_PKEY_RSA:
        return ("RSA-PSS", None, CRYPTO.EVP_PKEY_get_bits(pkey))
    if nid == EVP_PKEY_EC:
        return ("ECDSA", _group_name(pkey), 0)
    return (_text(CRYPTO.OBJ_nid2sn(nid)), None, 0)

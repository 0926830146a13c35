"""The smtp/lmtp client's TLS policy (Postfix's smtp/smtp_tls_policy.c): the global
level (smtp_tls_security_level, or the legacy smtp_use_tls / smtp_enforce_tls), the
per-destination table smtp_tls_policy_maps (or the legacy smtp_tls_per_site), the
protocols, cipher grade and exclusions, the certificate match names, and DANE without
DNSSEC. One TlsPolicy per next-hop, host and port, cached for the process.
"""

import ssl

from pyfix.common import msg
from pyfix.common.valid_hostname import valid_hostname
from pyfix.maps.dict import FLAG_FOLD_FIX, FLAG_LOCK, FLAG_UTF8_REQUEST
from pyfix.maps.maps import Maps

INVALID, NOTFOUND, NONE, MAY, ENCRYPT, FPRINT, HALF_DANE, DANE, DANE_ONLY, VERIFY, SECURE = \
    range(-2, 9)
LEVEL_NAMES = {NONE: "none", MAY: "may", ENCRYPT: "encrypt", FPRINT: "fingerprint",
               HALF_DANE: "halfdane", DANE: "dane", DANE_ONLY: "dane-only",
               VERIFY: "verify", SECURE: "secure"}
LEVEL_CODES = {name: code for code, name in LEVEL_NAMES.items() if code != HALF_DANE}
CHARS_COMMA_SP = ", \t\r\n"


def required(level):
    return level > MAY


def must_match(level):
    return level > ENCRYPT


class TlsPolicy:
    """The TLS policy of one next-hop and host (Postfix's SMTP_TLS_POLICY)."""

    def __init__(self, level):
        self.level = level
        self.wrappermode = False
        self.protocols = None
        self.grade = None
        self.exclusions = None
        self.matchargv = None
        self.sni = None
        self.conn_reuse = False
        self.why = None                 # (dsn, text) of an invalid policy
        self.tlsa = []                  # fingerprint level: (usage, selector, mtype, data)

    @property
    def level_name(self):
        return LEVEL_NAMES.get(self.level, "invalid" if self.level == INVALID else "unknown")

    def mark_invalid(self, dsn="4.7.5", text="client TLS configuration problem"):
        self.level = INVALID
        self.why = (dsn, text)


# ---- settings of the process ---------------------------------------------------------------

class ClientSettings:
    """The per-process TLS settings of the smtp or lmtp client (tls_client_init() and
    smtp_tls_list_init()), built on first use."""

    def __init__(self, config, lmtp):
        self.config = config
        self.prefix = "lmtp_" if lmtp else "smtp_"
        self.lmtp = lmtp
        get = self.get
        self.wrappermode = config.get_bool(self.prefix + "tls_wrappermode")
        self.loglevel = _loglevel(get("tls_loglevel"))
        # TLS_LOG_UNTRUSTED: only by name (`smtp_tls_loglevel = 1, untrusted`).
        self.log_untrusted = "untrusted" in get("tls_loglevel").replace(",", " ").split()
        self.policy_maps = None
        self.per_site = None
        if get("tls_policy_maps"):
            self.policy_maps = Maps(self.prefix + "tls_policy_maps", get("tls_policy_maps"),
                                    FLAG_LOCK | FLAG_FOLD_FIX | FLAG_UTF8_REQUEST)
            if get("tls_per_site"):
                msg.warn("%s ignored when %s is not empty."
                         % (self.prefix + "tls_per_site", self.prefix + "tls_policy_maps"))
        elif get("tls_per_site"):
            self.per_site = Maps(self.prefix + "tls_per_site", get("tls_per_site"),
                                 FLAG_LOCK | FLAG_FOLD_FIX | FLAG_UTF8_REQUEST)
        self.global_level = self._global_level()
        self._context = None
        self._context_built = False
        self.cache = {}

    def get(self, suffix):
        return self.config.get(self.prefix + suffix)

    def _global_level(self):
        text = self.get("tls_security_level")
        if text:
            level = LEVEL_CODES.get(text.lower(), INVALID)
            if level == INVALID:
                msg.fatal('Invalid TLS level "%s"' % text)
            return level
        if self.config.get_bool(self.prefix + "enforce_tls"):
            return VERIFY if self.config.get_bool(self.prefix + "tls_enforce_peername") \
                else ENCRYPT
        return MAY if self.config.get_bool(self.prefix + "use_tls") else NONE

    def context(self):
        """The client SSL_CTX (CA file/path, client certificate), or None when the TLS
        engine is unavailable (unreadable certificate files, as tls_client_init())."""
        if not self._context_built:
            self._context_built = True
            self._context = self.new_context(warn=True)
        return self._context

    def new_context(self, warn=False):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        # Verification happens, but never aborts the handshake: Postfix decides later
        # (smtp_tls_ossl installs the verify callback on each connection).
        context.verify_mode = ssl.CERT_NONE
        context.options |= ssl.OP_NO_COMPRESSION
        cafile, capath = self.get("tls_CAfile"), self.get("tls_CApath")
        try:
            if cafile or capath:
                context.load_verify_locations(cafile or None, capath or None)
        except (OSError, ssl.SSLError) as exc:
            if warn:
                msg.warn('cannot load Certification Authority data, %s="%s": disabling '
                         'TLS support' % (("CAfile", cafile) if cafile else ("CApath", capath)))
                msg.warn("TLS library problem: %s" % exc)
            return None
        chain = self.config.get_list(self.prefix + "tls_chain_files")
        cert = self.get("tls_cert_file")
        try:
            if chain:
                for path in chain:
                    context.load_cert_chain(path)
            elif cert:
                context.load_cert_chain(cert, self.get("tls_key_file") or cert)
        except (OSError, ssl.SSLError) as exc:
            if warn:
                msg.warn("cannot load certificate and key from %s: %s"
                         % (" ".join(chain) if chain else cert, exc))
                msg.warn("TLS library problem: %s" % exc)
            return None
        return context


def _loglevel(text):
    """The numeric smtp_tls_loglevel (names as tls_log_mask(): routine=1, debug=2)."""
    names = {"none": 0, "routine": 1, "debug": 2, "ssl-expert": 3, "ssl-developer": 4}
    level = 0
    for word in text.replace(",", " ").split():
        if word.isdigit():
            level = max(level, int(word))
        elif word in names:
            level = max(level, names[word])
        elif word == "summary":
            level = max(level, 1)
    return level


_settings = {}


def pre_init(config, lmtp=False):
    """tls_client_init() and smtp_tls_list_init() before the privilege drop: the policy
    tables are opened and the certificate and key files read now."""
    conf = settings(_ConfigOnly(config, lmtp))
    if conf.global_level > NONE or conf.policy_maps or conf.per_site \
            or conf.wrappermode:
        conf.context()
    return conf


class _ConfigOnly:
    def __init__(self, config, lmtp):
        self.config = config
        self.lmtp = lmtp


def settings(session):
    key = (id(session.config), bool(session.lmtp))
    found = _settings.get(key)
    if found is None or found.config is not session.config:
        found = _settings[key] = ClientSettings(session.config, session.lmtp)
    return found


# ---- the policy (smtp_tls_policy.c) ---------------------------------------------------------

def session_policy(session):
    """The TLS policy for this session's next-hop and server (policy_create(), cached
    by next-hop, host and port as smtp_tls_policy_cache_query())."""
    conf = settings(session)
    key = (session.nexthop, session.host, session.port)
    policy = conf.cache.get(key)
    if policy is None:
        policy = conf.cache[key] = _policy_create(conf, session)
    if policy.level == INVALID:
        msg.warn("TLS policy lookup for %s/%s: %s" % (session.nexthop, session.host,
                                                      policy.why[1]))
    return policy


def _policy_create(conf, session):
    policy = TlsPolicy(conf.global_level)
    policy.wrappermode = conf.wrappermode
    policy.conn_reuse = conf.config.get_bool(conf.prefix + "tls_connection_reuse")
    dest = session.nexthop or ""
    host = session.host or ""
    site_level = NOTFOUND
    if conf.policy_maps:
        site_level = _policy_lookup(conf, policy, dest)
    elif conf.per_site:
        site_level = _site_lookup(conf, policy, NOTFOUND, dest, "next-hop destination")
        if site_level != INVALID and dest.lower() != host.lower():
            site_level = _site_lookup(conf, policy, site_level, host, "server hostname")
        if site_level == MAY and policy.level > MAY:
            site_level = policy.level
    if site_level == INVALID:
        if policy.why is None:
            policy.mark_invalid()
        policy.level = INVALID
        return policy
    if site_level != NOTFOUND:
        policy.level = site_level
    if policy.level in (DANE, DANE_ONLY):
        _dane_init(conf, policy, session)
        if policy.level == INVALID:
            return policy
    if policy.level > NONE and policy.protocols is None:
        policy.protocols = conf.get("tls_protocols" if policy.level == MAY
                                    else "tls_mandatory_protocols")
    if policy.level > NONE and policy.sni is None:
        sni = conf.get("tls_servername")
        if not sni or sni in ("hostname", "nexthop") or valid_hostname(sni):
            policy.sni = sni
        else:
            msg.warn('"%s = %s" specifies an invalid hostname'
                     % (conf.prefix + "tls_servername", sni))
            policy.mark_invalid()
            return policy
    _set_cipher_grade(conf, policy)
    if policy.level == FPRINT and not policy.tlsa:
        add_fingerprints(policy, conf.get("tls_fingerprint_cert_match"), CHARS_COMMA_SP)
        if not policy.tlsa:
            msg.warn("nexthop domain %s: configured at fingerprint security level, but "
                     "with no fingerprints to match." % dest)
            policy.mark_invalid()
    elif policy.level in (VERIFY, SECURE) and policy.matchargv is None:
        policy.matchargv = split_words(conf.get("tls_verify_cert_match" if policy.level == VERIFY
                                           else "tls_secure_cert_match"),
                                  CHARS_COMMA_SP + ":")
    return policy


def split_words(text, separators):
    words, word = [], ""
    for ch in text or "":
        if ch in separators:
            if word:
                words.append(word)
            word = ""
        else:
            word += ch
    if word:
        words.append(word)
    return words


def add_fingerprints(policy, text, separators):
    """tls_dane_add_fpt_digests(): each fingerprint (hex, colons allowed) becomes two
    private-use TLSA records, for the public key and for the certificate, prepended
    as Postfix does (which decides the order of the `unusable TLSA RR` warnings)."""
    for value in split_words(text, separators):
        if len(value) > 3 * 64:
            msg.warn("malformed fingerprint value: %.100s..." % value)
            continue
        raw = _hex_decode_colon(value)
        if raw is None:
            msg.warn("malformed fingerprint value: %.384s" % value)
            continue
        policy.tlsa[:0] = [(3, 1, 255, raw), (3, 0, 255, raw)]


def _hex_decode_colon(text):
    """hex_decode_opt(HEX_DECODE_FLAG_ALLOW_COLON): pairs of hex digits, each pair but
    the last optionally followed by a colon."""
    out = bytearray()
    pos = 0
    while pos < len(text):
        pair = text[pos:pos + 2]
        if len(pair) != 2 or any(ch not in "0123456789abcdefABCDEF" for ch in pair):
            return None
        out.append(int(pair, 16))
        pos += 2
        if pos < len(text) and text[pos] == ":":
            pos += 1
            if pos == len(text):
                return None
    return bytes(out) if out else None


def _site_lookup(conf, policy, site_level, name, site_class):
    """tls_site_lookup(): the legacy smtp_tls_per_site table."""
    found = conf.per_site.find(name)
    if found is not None:
        word = found.upper()
        if word == "NONE":
            return NONE if site_level <= MAY else site_level
        if word == "MAY":
            return MAY if site_level < NONE else site_level
        if word == "MUST_NOPEERMATCH":
            return max(site_level, ENCRYPT)
        if word == "MUST":
            return max(site_level, VERIFY)
        msg.warn("%s: unknown TLS policy '%s' for %s %s"
                 % (conf.per_site.title, found, site_class, name))
        policy.mark_invalid()
        return INVALID
    if conf.per_site.error:
        msg.warn('%s: %s "%s": per-site table lookup error'
                 % (conf.per_site.title, site_class, name))
        policy.mark_invalid("4.3.0", "Temporary lookup error")
        return INVALID
    return site_level


def _policy_lookup(conf, policy, dest):
    """tls_policy_lookup(): the destination, then its parent domains (.example.com)."""
    site_level = _policy_lookup_one(conf, policy, dest)
    if not valid_hostname(dest):
        return site_level
    name = dest
    while site_level == NOTFOUND:
        dot = name.find(".", 1)
        if dot < 0:
            break
        name = name[dot:]
        site_level = _policy_lookup_one(conf, policy, name)
    return site_level


def _policy_lookup_one(conf, policy, name):
    maps = conf.policy_maps
    where = '%s, next-hop destination "%s"' % (maps.title, name)
    found = maps.find(name)
    if found is None:
        if maps.error:
            msg.warn("%s: policy table lookup error" % where)
            return INVALID
        return NOTFOUND
    words = split_words(found, CHARS_COMMA_SP)
    if not words:
        msg.warn("%s: invalid empty policy" % where)
        return INVALID
    level = LEVEL_CODES.get(words[0].lower(), INVALID)
    if level == INVALID:
        msg.warn('%s: invalid security level "%s"' % (where, words[0]))
        return INVALID
    if level < MAY:
        for word in words[1:]:
            msg.warn('%s: ignoring attribute "%s" with TLS disabled' % (where, word))
        return level
    for word in words[1:]:
        if not _policy_attribute(policy, level, where, word):
            return INVALID
    return level


def _policy_attribute(policy, level, where, word):
    """One name=value of a policy table entry; False (with Postfix's warning) when it
    makes the policy invalid."""
    name, eq, value = word.partition("=")
    name = name.strip().lower()
    value = value.strip()
    if not eq:
        msg.warn('%s: malformed attribute/value pair "%s": missing \'=\' after attribute name'
                 % (where, word))
        return False
    once = {"ciphers": "grade", "protocols": "protocols", "servername": "sni",
            "exclude": "exclusions"}
    if name in once:
        if name == "ciphers" and not value:
            msg.warn('%s: attribute "%s" has empty value' % (where, name))
            return False
        if getattr(policy, once[name]) is not None:
            msg.warn('%s: attribute "%s" is specified multiple times' % (where, name))
            return False
        if name == "servername" and not valid_hostname(value):
            msg.warn('%s: "%s=%s" specifies an invalid hostname' % (where, name, value))
            return False
        setattr(policy, once[name], value)
        return True
    if name == "match":
        if not value:
            msg.warn('%s: attribute "%s" has empty value' % (where, name))
            return False
        if level == FPRINT:
            add_fingerprints(policy, value, "|")
        elif level in (VERIFY, SECURE):
            policy.matchargv = (policy.matchargv or []) + split_words(value, ":")
        else:
            msg.warn('%s: attribute "%s" invalid at security level "%s"'
                     % (where, name, LEVEL_NAMES.get(level, "unknown")))
            return False
        return True
    if name == "connection_reuse":
        if value.lower() not in ("yes", "no"):
            msg.warn('%s: attribute "%s" has bad value: "%s"' % (where, name, value))
            return False
        policy.conn_reuse = value.lower() == "yes"
        return True
    if name == "tafile":
        # Trust-anchor files need OpenSSL's DANE API, which Python does not expose.
        msg.warn('%s: attribute "%s" is not supported by pyfix' % (where, name))
        return False
    msg.warn('%s: invalid attribute name: "%s"' % (where, name))
    return False


def _set_cipher_grade(conf, policy):
    """set_cipher_grade(): the cipher grade and exclusions of the level."""
    if policy.level in (INVALID, NONE):
        return
    mand_exclude = also_exclude = ""
    if policy.level == MAY:
        policy.grade = policy.grade or conf.get("tls_ciphers")
    else:
        policy.grade = policy.grade or conf.get("tls_mandatory_ciphers")
        mand_exclude = conf.get("tls_mandatory_exclude_ciphers")
        also_exclude = "eNULL" if policy.level == ENCRYPT else "aNULL"
    if policy.exclusions is None:
        policy.exclusions = " ".join(
            item for item in (conf.get("tls_exclude_ciphers"), mand_exclude) if item)
    policy.exclusions = " ".join(item for item in (policy.exclusions, also_exclude) if item)


def _dane_init(conf, policy, session):
    """dane_init() without DNSSEC: pyfix's resolver validates nothing, which is
    Postfix's `dnssec lookups disabled` case (smtp_dns_support_level != dnssec) or, with
    dnssec configured, an insecure answer: `dane` becomes `may`, `dane-only` fails."""
    dest = session.nexthop
    name = LEVEL_NAMES[policy.level]
    if not session.port:
        msg.warn('%s: the "dane" security level is invalid for delivery via unix-domain '
                 'sockets' % dest)
        policy.mark_invalid()
        return
    if conf.config.get(conf.prefix + "dns_support_level") != "dnssec":
        text = "%s: %s configured with dnssec lookups disabled" % (dest, name)
        msg.warn(text)
        if policy.level == DANE:
            policy.level = MAY
        else:
            policy.mark_invalid()
        return
    # DNSSEC asked for, but no validated answer is available: the TLSA records are as
    # good as absent (`no TLSA records found`).
    if policy.level == DANE:
        policy.level = MAY
    else:
        policy.mark_invalid("4.7.5", "no TLSA records found")

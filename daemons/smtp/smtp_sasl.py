"""The smtp/lmtp client's SASL authentication (Postfix's smtp/smtp_sasl_glue.c,
smtp_sasl_proto.c and xsasl/xsasl_cyrus_client.c with Cyrus SASL's client plug-ins).

When smtp_sasl_auth_enable is on and the server announces AUTH, the user name and
password come from smtp_sasl_password_maps (`user:password`), looked up with the sender
address (smtp_sender_dependent_authentication, SMTP only), then the server's host
name, then the next-hop destination as written (`[relay.example]:587`). Without an
entry the client goes on without AUTH. The server's mechanisms, filtered by
smtp_sasl_mechanism_filter, are matched against the security options of the
connection (smtp_sasl_security_options, smtp_sasl_tls_security_options after STARTTLS,
smtp_sasl_tls_verified_security_options with a verified certificate), and the best
mechanism is chosen as Cyrus SASL chooses: CRAM-MD5, then PLAIN, then LOGIN, then
ANONYMOUS. A 5XX reply to AUTH is deferred (4XX) with smtp_sasl_auth_soft_bounce.

The mechanisms are implemented here: they are a few lines each (RFC 4616, the LOGIN
draft, RFC 2195, RFC 4505), and no SASL client library is installed for Python here;
their bytes on the wire are those Debian's Postfix sends through Cyrus SASL (PLAIN
with an empty authorization identity, LOGIN without an initial response). Passwords
are never logged, not even with -v.
"""

import base64
import binascii
import hashlib
import hmac
import socket

from pyfix.common import msg
from pyfix.common.name_mask import FLAG_RETURN, name_mask
from pyfix.daemons.smtp.session import SessionFailure
from pyfix.maps.addr_find import AddressRules, mail_addr_find
from pyfix.maps.dict import FLAG_FOLD_FIX, FLAG_LOCK, FLAG_UTF8_REQUEST
from pyfix.maps.maps import Maps
from pyfix.maps.match_list import string_list

SEC_NOPLAINTEXT = 0x0001
SEC_NOACTIVE = 0x0002
SEC_NODICTIONARY = 0x0004
SEC_FORWARD_SECRECY = 0x0008
SEC_NOANONYMOUS = 0x0010
SEC_MUTUAL_AUTH = 0x0040
SECURITY_OPTIONS = (("noplaintext", SEC_NOPLAINTEXT), ("noactive", SEC_NOACTIVE),
                    ("nodictionary", SEC_NODICTIONARY),
                    ("forward_secrecy", SEC_FORWARD_SECRECY),
                    ("noanonymous", SEC_NOANONYMOUS), ("mutual_auth", SEC_MUTUAL_AUTH))

MAX_STEPS = 100
LINE_MAX = 512


# ---- the mechanisms (Cyrus SASL's client plug-ins) -----------------------------------------

class Mechanism:
    """One client mechanism: first() gives the initial response (bytes or None), step()
    answers a decoded server challenge."""

    name = ""
    security_flags = 0

    def __init__(self, username, password):
        self.username = username.encode("utf-8", "surrogateescape")
        self.password = password.encode("utf-8", "surrogateescape")
        self.steps = 0

    def first(self):
        return None

    def step(self, challenge):
        raise SaslError("SASL(-1): generic failure: unexpected server challenge")


class SaslError(Exception):
    pass


class Plain(Mechanism):
    """RFC 4616: [authzid] NUL authcid NUL passwd; Cyrus leaves authzid empty when it
    is the user name."""
    name = "PLAIN"
    security_flags = SEC_NOANONYMOUS

    def first(self):
        return b"\0" + self.username + b"\0" + self.password


class Login(Mechanism):
    """The LOGIN mechanism: the user name, then the password, each on request."""
    name = "LOGIN"
    security_flags = SEC_NOANONYMOUS

    def step(self, challenge):
        self.steps += 1
        if self.steps == 1:
            return self.username
        if self.steps == 2:
            return self.password
        return super().step(challenge)


class CramMd5(Mechanism):
    """RFC 2195: the user name, a space, and HMAC-MD5(password, challenge) in hex."""
    name = "CRAM-MD5"
    security_flags = SEC_NOPLAINTEXT | SEC_NOANONYMOUS

    def step(self, challenge):
        self.steps += 1
        if self.steps > 1:
            return super().step(challenge)
        digest = hmac.new(self.password, challenge, hashlib.md5).hexdigest()
        return self.username + b" " + digest.encode("ascii")


class Anonymous(Mechanism):
    """RFC 4505, as Cyrus's client sends it: anonymous@ and the host name."""
    name = "ANONYMOUS"
    security_flags = SEC_NOPLAINTEXT

    def first(self):
        return b"anonymous@" + socket.gethostname().encode("ascii", "replace")


# Cyrus orders its client mechanisms by their security properties (mech_compare());
# with Debian's plug-ins PLAIN comes before LOGIN whatever the server's order.
MECHANISMS = (CramMd5, Plain, Login, Anonymous)


def choose_mechanism(server_mechs, security_flags):
    """sasl_client_start()'s choice: the first of ours that the server offers and that
    has every property the security options ask for."""
    offered = {name.upper() for name in server_mechs}
    for mech in MECHANISMS:
        if mech.name in offered and not (security_flags & ~mech.security_flags):
            return mech
    return None


# ---- the process settings ---------------------------------------------------------------------

class SaslSettings:
    """smtp_sasl_initialize(): the password table, the mechanism filter."""

    def __init__(self, config, lmtp):
        self.config = config
        self.prefix = prefix = "lmtp_" if lmtp else "smtp_"
        self.lmtp = lmtp
        self.enable = config.get_bool(prefix + "sasl_auth_enable")
        self.passwd_maps = self.mech_filter = None
        if not self.enable:
            return
        maps_text = config.get(prefix + "sasl_password_maps")
        if not maps_text:
            msg.fatal("specify a password table via the `%ssasl_password_maps' "
                      "configuration parameter" % prefix)
        self.passwd_maps = Maps(prefix + "sasl_password_maps", maps_text,
                                FLAG_LOCK | FLAG_FOLD_FIX | FLAG_UTF8_REQUEST)
        sasl_type = config.get(prefix + "sasl_type")
        if sasl_type != "cyrus":
            msg.warn("unsupported SASL client implementation: %s" % sasl_type)
            msg.fatal("SASL library initialization")
        filter_text = config.get(prefix + "sasl_mechanism_filter")
        if filter_text:
            # Postfix names the smtp_ parameter here in LMTP mode too (VAR_SMTP_SASL_MECHS).
            self.mech_filter = string_list("smtp_sasl_mechanism_filter", filter_text)
        self.sender_auth = not lmtp and config.get_bool("smtp_sender_dependent_authentication")
        self.addr_rules = AddressRules(config) if self.sender_auth else None
        self.soft_bounce = config.get_bool(prefix + "sasl_auth_soft_bounce")


_settings = {}


def settings(session):
    key = (id(session.config), bool(session.lmtp))
    found = _settings.get(key)
    if found is None or found.config is not session.config:
        found = _settings[key] = SaslSettings(session.config, session.lmtp)
    return found


def pre_init(config, lmtp=False):
    """smtp_sasl_initialize() before the privilege drop: the password tables are opened
    now, as they are usually readable by root only (/etc/postfix/sasl_passwd)."""
    return settings(_ConfigOnly(config, lmtp))


class _ConfigOnly:
    def __init__(self, config, lmtp):
        self.config = config
        self.lmtp = lmtp


# ---- the EHLO AUTH keyword (smtp_sasl_helo_auth) --------------------------------------------

def server_mechanisms(session, conf):
    """The mechanism list from EHLO: `AUTH` and the old `AUTH=` form merged, then the
    mechanism filter; None when the server announced no AUTH at all."""
    features = session.features
    lists = []
    for key, value in features.items():
        if key == "AUTH":
            lists.append(value)
        elif key.startswith("AUTH="):
            lists.append((key[5:] + " " + value).strip())
    if not lists:
        return None
    chosen = None
    for words in lists:
        mech_list = _filter(conf, words)
        if chosen is None:
            if mech_list:
                chosen = mech_list
            elif words:
                msg.warn("%s offered no supported AUTH mechanisms: '%s'"
                         % (session.namaddrport, words))
            else:
                msg.warn("%s offered null AUTH mechanism list" % session.namaddrport)
        elif mech_list and chosen.lower() != mech_list.lower():
            chosen = chosen + " " + mech_list
    return chosen or ""


def ehlo_auth_warnings(session):
    """The warnings smtp_sasl_helo_auth() gives for an EHLO reply whose AUTH list is
    not used (the one before STARTTLS)."""
    conf = settings(session)
    if conf.enable:
        server_mechanisms(session, conf)


def _filter(conf, words):
    """sasl_mech_filter()."""
    if conf.mech_filter is None or not words:
        return words
    kept = []
    for mech in words.split():
        if conf.mech_filter.match(mech):
            kept.append(mech)
        elif conf.mech_filter.error:
            msg.fatal("sasl_mech_filter: SASL mechanism filter failed for: '%s'" % mech)
    return " ".join(kept)


# ---- authentication ---------------------------------------------------------------------------

def authenticate_if_needed(session):
    """AUTH before MAIL (smtp_sasl_helo_login()): when enabled, announced by the server
    and a password is on file. Raises SessionFailure when authentication fails."""
    conf = settings(session)
    if not conf.enable:
        return None
    mech_list = server_mechanisms(session, conf)
    if mech_list is None:
        return None
    credentials = passwd_lookup(session, conf)
    if credentials is None:
        return None
    if not mech_list:
        raise SessionFailure("4.7.0", "SASL authentication failed: server %s offered no "
                             "compatible authentication mechanisms for this type of "
                             "connection security" % session.namaddr)
    options_name = conf.prefix + _security_options_name(session)
    options = session.config.get(options_name)
    flags = 0
    if options.strip(", \t\r\n"):
        flags = name_mask("SASL security options", SECURITY_OPTIONS, options, FLAG_RETURN)
        if flags == 0:
            msg.warn("bad per-session SASL security properties")
            msg.fatal("SASL per-connection initialization failed")
    authenticate(session, conf, mech_list, flags, *credentials)
    return None


def _security_options_name(session):
    tls = session.tls
    if tls is None:
        return "sasl_security_options"
    if getattr(tls, "matched", False):
        return "sasl_tls_verified_security_options"
    return "sasl_tls_security_options"


def has_credentials(session):
    """HAVE_SASL_CREDENTIALS: SASL is on and the table has a password for this server."""
    conf = settings(session)
    if not conf.enable:
        return False
    try:
        return passwd_lookup(session, conf) is not None
    except SessionFailure:
        return False


def passwd_lookup(session, conf):
    """smtp_sasl_passwd_lookup(): (username, password) or None."""
    maps = conf.passwd_maps
    value = None
    # The table answers with the password: keep it out of -v logging (Postfix logs it).
    saved, msg.verbose = msg.verbose, 0
    try:
        if conf.sender_auth and session.sender:
            value = mail_addr_find(maps, session.sender, conf.addr_rules).value
        for key in (session.host, session.nexthop):
            if value is not None or maps.error:
                break
            value = maps.find(key)
    finally:
        msg.verbose = saved
    if value is None:
        if maps.error:
            msg.warn("%s: %s lookup error" % (getattr(session, "queue_id", ""), maps.title))
            raise SessionFailure("4.3.0", "local data error while talking to %s"
                                 % session.namaddr)
        return None
    username, _, password = value.partition(":")
    return username, password


def authenticate(session, conf, mech_list, flags, username, password):
    """smtp_sasl_authenticate(): the AUTH exchange."""
    mech_class = choose_mechanism(mech_list.split(), flags)
    if mech_class is None:
        # Cyrus SASL's own complaint, then Postfix's reason.
        msg.warn("SASL authentication failure: No worthy mechs found")
        raise _cannot_authenticate(session, "no mechanism available")
    mech = mech_class(username, password)
    initial = mech.first()
    encoded = base64.b64encode(initial).decode("ascii") if initial is not None else ""
    # Postfix's smtp_helo() stage covers AUTH: a lost connection is "... while
    # performing the EHLO handshake".
    session.where = "performing the %s handshake" % ("LHLO" if session.lmtp else "EHLO")
    if encoded and len(mech.name) + len(encoded) + 8 <= LINE_MAX:
        reply = _send_secret(session, "AUTH %s %s" % (mech.name, encoded),
                             "AUTH %s" % mech.name)
        encoded = ""
    else:
        reply = session.command("AUTH %s" % mech.name)
    steps = 0
    while reply.code // 100 == 3:
        steps += 1
        if steps > MAX_STEPS:
            raise SessionFailure("4.3.0", "SASL authentication failed; authentication "
                                 "protocol loop with server %s" % session.namaddr)
        challenge = reply.lines[-1][4:] if reply.lines else ""
        if encoded:
            # The initial response was too long for the AUTH line: send it now.
            if challenge:
                raise SessionFailure("4.7.0", "SASL authentication failed; non-empty "
                                     "initial %s challenge from server %s: %s"
                                     % (mech.name, session.namaddr, encoded))
            answer = encoded
            encoded = ""
        else:
            answer = _next_answer(session, mech, challenge)
        reply = _send_secret(session, answer, "(SASL response)")
    if reply.code // 100 != 2:
        dsn = reply.dsn
        if conf.soft_bounce and reply.code // 100 == 5:
            dsn = "4" + dsn[1:]
        raise SessionFailure(dsn, "SASL authentication failed; server %s said: %s"
                             % (session.namaddr, reply.text), dsn[0] != "5")


def _next_answer(session, mech, challenge):
    """xsasl_cyrus_client_next(): decode the challenge, let the mechanism answer."""
    try:
        decoded = base64.b64decode(challenge.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _cannot_authenticate(session, "SASL(-5): bad protocol / cancel: "
                                   "Can't decode base64") from None
    try:
        answer = mech.step(decoded)
    except SaslError as exc:
        raise _cannot_authenticate(session, str(exc)) from None
    return base64.b64encode(answer).decode("ascii")


def _cannot_authenticate(session, reason):
    return SessionFailure("4.7.0", "SASL authentication failed; cannot authenticate to "
                          "server %s: %s" % (session.namaddr, reason))


def _send_secret(session, line, shown):
    """Send a line that holds credentials: with -v only `shown` is logged."""
    saved = msg.verbose
    if saved:
        msg.info("> %s: %s" % (session.namaddrport, shown))
    msg.verbose = 0
    try:
        session.send_line(line)
    finally:
        msg.verbose = saved
    return session.read_reply()

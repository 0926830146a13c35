"""The parameters of the smtp or lmtp process (Postfix's smtp/smtp_params.c,
lmtp_params.c and the VAR_LMTP_SMTP() naming of smtp.h).

The same code reads `smtp_<name>` when it runs as smtp and `lmtp_<name>` when it runs
as lmtp; two names differ in more than the prefix (smtp_helo_name is lmtp_lhlo_name,
smtp_helo_timeout is lmtp_lhlo_timeout).
"""

from pyfix.common import hostinfo

_LMTP_NAMES = {"helo_name": "lmtp_lhlo_name", "helo_timeout": "lmtp_lhlo_timeout",
               "discard_ehlo_keywords": "lmtp_discard_lhlo_keywords"}
_current = None


class SmtpParams:
    """The settings of this process: p.get("connect_timeout") reads smtp_connect_timeout
    or lmtp_connect_timeout; the common ones are attributes."""

    def __init__(self, config, service, lmtp):
        self.config = config
        self.service = service
        self.lmtp = lmtp
        self.prefix = "lmtp_" if lmtp else "smtp_"
        self._values = {}
        self.myhostname = config.get("myhostname")
        self.helo_name = self.get("helo_name")
        self.relayhost = config.get("relayhost")
        self.soft_bounce = config.get_bool("soft_bounce")
        self.families = hostinfo.inet_families(config.get("inet_protocols"))
        self._own = None

    def name(self, short):
        if self.lmtp and short in _LMTP_NAMES:
            return _LMTP_NAMES[short]
        return self.prefix + short

    # Values are converted once per process, as Postfix reads its parameters once at
    # start-up; a list is copied, so that a caller may change its own.
    def _cached(self, kind, short, convert):
        key = (kind, short)
        try:
            return self._values[key]
        except KeyError:
            value = self._values[key] = convert(self.name(short))
            return value

    def get(self, short):
        return self._cached("str", short, self.config.get)

    def get_bool(self, short):
        return self._cached("bool", short, self.config.get_bool)

    def get_int(self, short):
        return self._cached("int", short, self.config.get_int)

    def get_time(self, short):
        return self._cached("time", short, self.config.get_time)

    def get_list(self, short):
        return list(self._cached("list", short, self.config.get_list))

    def own_addresses(self):
        """The addresses of this host for loop detection: inet_interfaces and
        proxy_interfaces (own_inet_addr_list(), proxy_inet_addr_list())."""
        if self._own is None:
            own = [str(a) for a, _ in hostinfo.own_interfaces(
                self.config.get("inet_interfaces"), self.families)]
            for host in self.config.get_list("proxy_interfaces"):
                own += [str(a) for a in hostinfo._host_addresses(host, self.families)]
            self._own = set(own)
        return self._own


def init(server):
    global _current
    _current = SmtpParams(server.config, server.name, server.progname == "lmtp")
    return _current


def current():
    return _current

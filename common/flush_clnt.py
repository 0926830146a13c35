"""The client of the fast flush service flush(8) (Postfix's global/flush_clnt.c over
mail_command_client.c).

    flush_init(config)              before use, in a daemon's init (it reads
                                    fast_flush_domains and opens its tables)
    flush_add(site, queue_id)       mail for site is queued as queue_id (defer_append)
    flush_send_site(site)           deliver the mail queued for site (ETRN, postqueue -s)
    flush_send_file(queue_id)       deliver one message (postqueue -i)
    flush_refresh(), flush_purge()  house keeping

Each returns FLUSH_STAT_OK, FLUSH_STAT_BAD (the server rejected a parameter),
FLUSH_STAT_DENY (the site is not in fast_flush_domains, or the service is off) or
FLUSH_STAT_FAIL (the service could not be reached, with a warning). flush_add and
flush_send_site check fast_flush_domains here first and do not bother the server with
a site that is not eligible, as Postfix's client does.

Each request is one short session on public/<flush_service_name>: the server announces
`protocol=queue_flush_protocol`, the client sends `request` and its parameters, the
server answers `status`.
"""

import os
import socket

from pyfix.common import attr, msg
from pyfix.common.compat_level import compat_level_from_string
from pyfix.maps.match_list import MATCH_FLAG_NONE, MATCH_FLAG_PARENT, MATCH_FLAG_RETURN, \
    domain_list

PROTO_FLUSH = "queue_flush_protocol"

REQ_ADD = "add"
REQ_SEND_SITE = "send_site"
REQ_SEND_FILE = "send_file"
REQ_REFRESH = "rfrsh"
REQ_PURGE = "purge"

FLUSH_STAT_FAIL = -1
FLUSH_STAT_OK = 0
FLUSH_STAT_BAD = 3
FLUSH_STAT_DENY = 4

_state = {"domains": None, "domains_text": "", "service": "flush", "ipc_timeout": 3600,
          "warn_compat": False}


def parent_style(config, name):
    """match_parent_style(): MATCH_FLAG_PARENT when name is listed in
    parent_domain_matches_subdomains."""
    return MATCH_FLAG_PARENT if name in config.get_list("parent_domain_matches_subdomains") \
        else MATCH_FLAG_NONE


def fast_flush_domains(config):
    """The fast_flush_domains list as Postfix's client and server build it."""
    return domain_list("fast_flush_domains", config.get("fast_flush_domains"),
                       MATCH_FLAG_RETURN | parent_style(config, "fast_flush_domains"))


def flush_init(config):
    """flush_init(): read the settings; call it before dropping privileges."""
    _state["domains"] = fast_flush_domains(config)
    _state["domains_text"] = config.get("fast_flush_domains")
    _state["service"] = config.get("flush_service_name")
    _state["ipc_timeout"] = config.get_time("ipc_timeout")
    _state["warn_compat"] = warn_compat_break_flush_domains(config)


def warn_compat_break_flush_domains(config):
    """Below compatibility level 2, with neither relay_domains nor fast_flush_domains
    in main.cf, the list is the old default $mydestination: Postfix says so each time
    it uses it (mail_params.c)."""
    level = compat_level_from_string(config.get("compatibility_level"), msg.warn)
    return level < compat_level_from_string("2", msg.panic) \
        and "relay_domains" not in config.explicit \
        and "fast_flush_domains" not in config.explicit


def initialized():
    return _state["domains"] is not None


def service_name():
    return _state["service"]


def mail_command_client(service, attrs):
    """One request to public/<service>: its status, or FLUSH_STAT_FAIL with a warning
    naming the stage that failed (mail_command_client())."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect("public/" + service)
        except OSError as exc:
            msg.warn("connect to public/%s: %s" % (service, msg.strerror(exc)))
            return FLUSH_STAT_FAIL
        path = "public/%s socket" % service
        stream = attr.AttrStream(sock, path, _state["ipc_timeout"])
        count, _ = stream.scan([(attr.STREQ, "protocol", PROTO_FLUSH)], attr.FLAG_STRICT)
        if count != 0:
            msg.warn("read %s: %s" % (path, os.strerror(0)))
            return FLUSH_STAT_FAIL
        if not stream.send(attrs):
            msg.warn("write %s: %s" % (path, os.strerror(0)))
            return FLUSH_STAT_FAIL
        count, values = stream.scan([(attr.INT, "status")], attr.FLAG_STRICT)
        if count != 1:
            msg.warn("write/read %s: %s" % (path, os.strerror(0)))
            return FLUSH_STAT_FAIL
    finally:
        sock.close()
    status = values["status"]
    return status - 2 ** 32 if status >= 2 ** 31 else status


def _eligible_request(site, attrs, what):
    """Send attrs when site is in fast_flush_domains; DENY when it is not, FAIL when
    the list could not be searched."""
    domains = _state["domains"]
    if domains is None:
        msg.panic("missing flush client initialization")
    if domains.match(site):
        if _state["warn_compat"]:
            msg.info('using backwards-compatible default setting relay_domains='
                     '$mydestination to %s for domain "%s"' % (what, site))
        return mail_command_client(_state["service"], attrs)
    return FLUSH_STAT_FAIL if domains.error else FLUSH_STAT_DENY


def _verbose_result(text, status):
    if msg.verbose:
        msg.info("%s status %d" % (text, status))
    return status


def flush_add(site, queue_id):
    """Tell the flush service that mail for site is queued as queue_id."""
    if msg.verbose:
        msg.info("flush_add: site %s id %s" % (site, queue_id))
    status = _eligible_request(site, [("request", REQ_ADD), ("site", site),
                                      ("queue_id", queue_id)],
                               "update fast-flush logfile")
    return _verbose_result("flush_add: site %s id %s" % (site, queue_id), status)


def flush_send_site(site):
    """Ask for delivery of all mail queued for site."""
    if msg.verbose:
        msg.info("flush_send_site: site %s" % site)
    status = _eligible_request(site, [("request", REQ_SEND_SITE), ("site", site)],
                               "flush mail")
    return _verbose_result("flush_send_site: site %s" % site, status)


def flush_send_file(queue_id):
    """Ask for delivery of one message (the service needs no fast_flush_domains)."""
    if msg.verbose:
        msg.info("flush_send_file: queue_id %s" % queue_id)
    status = mail_command_client(_state["service"], [("request", REQ_SEND_FILE),
                                                     ("queue_id", queue_id)])
    return _verbose_result("flush_send_file: queue_id %s" % queue_id, status)


def _house_keeping(name, request):
    if msg.verbose:
        msg.info(name)
    if not _state["domains_text"]:
        status = FLUSH_STAT_DENY            # the service is turned off
    else:
        status = mail_command_client(_state["service"], [("request", request)])
    return _verbose_result(name + ":", status)


def flush_refresh():
    """Refresh the logfiles that were not read for fast_flush_refresh_time."""
    return _house_keeping("flush_refresh", REQ_REFRESH)


def flush_purge():
    """Refresh all logfiles (expensive)."""
    return _house_keeping("flush_purge", REQ_PURGE)

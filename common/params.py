"""The parameter registry: every main.cf parameter Postfix 3.7 knows, with its raw default and type.

One table for every process. Daemons read typed values through pyfix.common.config, which
takes defaults from here; postconf prints them. The raw defaults are Debian's build of
Postfix 3.7.11 (param_table.py), so `postconf -d` of pyfix and of Debian's Postfix agree.

Kinds (from the Postfix table a parameter lives in):
  str, raw (never $-expanded), bool, int, long (sizes), time (with a default unit),
  nint/nbool (integer or boolean whose default may hold $name), fn (computed at run time:
  myhostname, mydomain, mynetworks), and the per-process readonly parameters process_name,
  process_id and service_name. Lists are str parameters; config.get_list() splits them.

Service parameters (`<transport>_destination_concurrency_limit` ...) exist only for the
services master.cf defines; service_parameters() names them.
"""

from dataclasses import dataclass

from pyfix.common.param_table import BUILTIN_PARAMETERS

# Node flags, as postconf(1) classifies parameters.
RAW = 1 << 0
BUILTIN = 1 << 1
SERVICE = 1 << 2
USER = 1 << 3
LEGACY = 1 << 4
READONLY = 1 << 5
DBMS = 1 << 6
CLASS_MASK = BUILTIN | SERVICE | USER


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: str          # raw text as `postconf -d` prints it; "" for fn/readonly kinds
    min: int = 0
    max: int = 0
    flags: int = BUILTIN


# Computed at run time; pyfix.common.hostinfo holds the computations.
FUNCTION_PARAMETERS = ("myhostname", "mydomain", "mynetworks")

# Per-process values that main.cf must not set (postconf warns "read-only parameter").
READONLY_PARAMETERS = ("process_name", "service_name", "process_id")

# Names kept for old configurations: accepted without the unused-parameter warning, but not
# listed by postconf unless set.
LEGACY_PARAMETERS = (
    "virtual_maps", "fallback_relay", "authorized_verp_clients",
    "smtpd_client_connection_limit_exceptions", "postscreen_dnsbl_ttl",
    "postscreen_blacklist_action", "postscreen_dnsbl_whitelist_threshold",
    "postscreen_whitelist_interfaces", "lmtp_per_record_deadline",
    "smtp_per_record_deadline", "smtpd_per_record_deadline", "tlsproxy_client_level",
    "tlsproxy_client_policy",
)

# Per-service parameters of the delivery agents: suffix -> the global parameter that is
# its default (postconf_service.c). pipe(8) adds `_time_limit`; spawn(8) has only that.
_TRANSPORT_SUFFIXES = (
    ("_recipient_limit", "default_recipient_limit"),
    ("_extra_recipient_limit", "default_extra_recipient_limit"),
    ("_recipient_refill_limit", "default_recipient_refill_limit"),
    ("_recipient_refill_delay", "default_recipient_refill_delay"),
    ("_delivery_slot_cost", "default_delivery_slot_cost"),
    ("_delivery_slot_loan", "default_delivery_slot_loan"),
    ("_delivery_slot_discount", "default_delivery_slot_discount"),
    ("_minimum_delivery_slots", "default_minimum_delivery_slots"),
    ("_initial_destination_concurrency", "initial_destination_concurrency"),
    ("_destination_concurrency_limit", "default_destination_concurrency_limit"),
    ("_destination_recipient_limit", "default_destination_recipient_limit"),
    ("_destination_concurrency_positive_feedback",
     "default_destination_concurrency_positive_feedback"),
    ("_destination_concurrency_negative_feedback",
     "default_destination_concurrency_negative_feedback"),
    ("_destination_concurrency_failed_cohort_limit",
     "default_destination_concurrency_failed_cohort_limit"),
    ("_destination_rate_delay", "default_destination_rate_delay"),
    ("_transport_rate_delay", "default_transport_rate_delay"),
)
_TIME_LIMIT = (("_time_limit", "command_time_limit"),)
SERVICE_SUFFIXES = {
    "local": _TRANSPORT_SUFFIXES, "error": _TRANSPORT_SUFFIXES,
    "virtual": _TRANSPORT_SUFFIXES, "smtp": _TRANSPORT_SUFFIXES,
    "lmtp": _TRANSPORT_SUFFIXES, "pipe": _TIME_LIMIT + _TRANSPORT_SUFFIXES,
    "spawn": _TIME_LIMIT,
}

# The parameters whose behavior pyfix implements today. Each part that lands adds the
# names it reads; the rest are known (postconf shows them) but have no effect yet.
IMPLEMENTED = frozenset((
    "config_directory", "compatibility_level", "myhostname", "mydomain", "mynetworks",
    "mynetworks_style", "inet_interfaces", "inet_protocols", "process_name", "process_id",
    "service_name",
))


def _build():
    table = {}
    for name, kind, default, low, high in BUILTIN_PARAMETERS:
        table[name] = Param(name, kind, default, low, high,
                            BUILTIN | (RAW if kind == "raw" else 0))
    for name in FUNCTION_PARAMETERS:
        table[name] = Param(name, "fn", "")
    for name in READONLY_PARAMETERS:
        table[name] = Param(name, "readonly", "", flags=BUILTIN | READONLY)
    return table


BUILTIN_TABLE = _build()


def lookup(name):
    """The Param of a built-in parameter, or None."""
    return BUILTIN_TABLE.get(name)


def service_parameter_default(name):
    """The default of a per-service parameter such as `relay_destination_rate_delay`.

    Daemons ask only for the transports master.cf defines, so any name with a delivery
    agent's suffix gets the matching global default (`$default_destination_rate_delay`).
    """
    # The longest suffix decides: `smtp_destination_recipient_limit` is not a
    # `_recipient_limit`.
    matches = [(len(suffix), default) for suffix, default in _TIME_LIMIT + _TRANSPORT_SUFFIXES
               if name.endswith(suffix) and len(name) > len(suffix)]
    return "$" + max(matches)[1] if matches else None


def service_parameters(service, command):
    """(name, default) of the per-service parameters that a master.cf entry creates.

    `command` is the basename of the entry's program (smtp, local, pipe, ...).
    """
    return [(service + suffix, "$" + default)
            for suffix, default in SERVICE_SUFFIXES.get(command, ())]

"""Service patterns such as master_service_disable (global/match_service.c).

A pattern is `name/type` or just `type`, compared case-insensitively with a service's
`name/type`; leading `!` characters negate, and the first pattern that matches decides.
The pre-2.x form `name.type` (no `/`) is read as `name/type`.
"""

from pyfix.common import msg
from pyfix.common.strings import CHARS_COMMA_SP, tokens


def match_service_init(patterns):
    """The pattern list of a comma/space separated setting."""
    return [_compat_pattern(item) for item in tokens(patterns, CHARS_COMMA_SP)]


def _compat_pattern(pattern):
    if "/" not in pattern and "." in pattern:
        head, _, tail = pattern.rpartition(".")
        return head + "/" + tail
    return pattern


def match_service_match(patterns, name_type):
    """Whether `name/type` is selected by the pattern list."""
    if not patterns:
        return False
    _, slash, service_type = name_type.rpartition("/")
    if not slash or not service_type:
        msg.panic('match_service_match: malformed service: "%s"; need "name/type" format'
                  % name_type)
    for pattern in patterns:
        match = True
        while pattern.startswith("!"):
            pattern = pattern[1:]
            match = not match
        subject = name_type if "/" in pattern else service_type
        if subject.lower() == pattern.lower():
            return match
    return False

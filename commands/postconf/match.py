"""Service, field and parameter patterns of `postconf -M/-F/-P` (postconf_match.c).

A pattern is `name[/type[/field-or-parameter]]`; each part is a literal or `*` on its own.
Missing trailing parts default to `*`. Field names are the eight master.cf column names.
"""

from pyfix.common import msg
from pyfix.common.master_cf import FIELD_NAMES

WILDCARD = "*"
FIELD_WILDCARD = -1          # the `*` field: every column
SEPARATOR = "/"


def parse_service_pattern(pattern, min_parts, max_parts):
    """The parts of pattern padded with `*` to max_parts, or None when it is malformed."""
    # A leading '/' would otherwise vanish in the split below, as empty parts do.
    if pattern.startswith(SEPARATOR):
        return None
    parts = [part for part in pattern.split(SEPARATOR) if part]
    if not min_parts <= len(parts) <= max_parts:
        return None
    # `*` is a wildcard only all by itself; `sm*` is refused rather than taken literally.
    if any(part != WILDCARD and WILDCARD in part for part in parts):
        return None
    return parts + [WILDCARD] * (max_parts - len(parts))


def match_string(pattern, text):
    return pattern == WILDCARD or pattern == text


def match_service(pattern, name, service_type):
    """Whether pattern (its first two parts) matches a master.cf entry's name and type."""
    return match_string(pattern[0], name) and match_string(pattern[1], service_type)


def parse_field_pattern(name):
    """The column index of a field name, or FIELD_WILDCARD for `*` (case-sensitive)."""
    if name == WILDCARD:
        return FIELD_WILDCARD
    if name in FIELD_NAMES:
        return FIELD_NAMES.index(name)
    msg.fatal('invalid service attribute name: "%s"' % name)


def field_name(field):
    return WILDCARD if field == FIELD_WILDCARD else FIELD_NAMES[field]

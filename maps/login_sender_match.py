"""Match a login name and a sender address against (login name, sender patterns) tables
(Postfix's global/login_sender_match.c, with strip_addr_internal() and mystrtokdq()).

The tables map a login name to a list of sender patterns, split on commas and spaces
but not between double quotes. A pattern matches:

- `@domain`: the sender's `@domain` part (case-insensitive);
- the wildcard pattern (postdrop's is `*`): any sender;
- the null-sender pattern (postdrop's empty_address_local_login_sender_maps_lookup_key):
  the empty sender;
- anything else: the sender without its address extension (recipient_delimiter,
  minus the addresses strip_addr never changes), in external (quoted) form,
  case-insensitively.

postdrop(1) uses it for local_login_sender_maps.
"""

from pyfix.common.quote_822 import quote_822_local
from pyfix.common.strings import CHARS_COMMA_SP
from pyfix.maps.dict import FLAG_FOLD_FIX, FLAG_LOCK, FLAG_UTF8_REQUEST
from pyfix.maps.maps import Maps

# login_sender_match() results; a table error gives the table's ERR_RETRY/ERR_CONFIG.
LSM_STAT_FOUND = 1
LSM_STAT_NOTFOUND = 0


def dq_tokens(text, separators=CHARS_COMMA_SP):
    """mystrtokdq(): tokens that do not split between double quotes."""
    out = []
    pos = 0
    length = len(text)
    while pos < length:
        while pos < length and text[pos] in separators:
            pos += 1
        if pos >= length:
            break
        start = pos
        in_quotes = False
        while pos < length:
            ch = text[pos]
            if ch == "\\":
                pos += 1
                if pos >= length:
                    break
            elif ch == '"':
                in_quotes = not in_quotes
            elif not in_quotes and ch in separators:
                break
            pos += 1
        out.append(text[start:pos])
        pos += 1
    return out


def strip_extension(addr, delimiters, config):
    """strip_addr_internal(): the address without its extension, or None."""
    if not delimiters or not any(ch in delimiters for ch in addr):
        return None
    at = addr.rfind("@")
    local, domain = (addr[:at], addr[at:]) if at >= 0 else (addr, "")
    lower = local.lower()
    if lower in ("postmaster", "mailer-daemon") \
            or lower == config.get("double_bounce_sender").lower():
        return None
    if "-" in delimiters and config.get_bool("owner_request_special") \
            and (lower.startswith("owner-") or (len(local) > 8 and lower.endswith("-request"))):
        return None
    end = 0
    while end < len(local) and local[end] not in delimiters:
        end += 1
    if end == 0 or end == len(local):
        return None
    return local[:end] + domain


def login_sender_match(config, title, map_names, ext_delimiters, null_sender, wildcard,
                       login_name, sender):
    """LSM_STAT_FOUND when one of login_name's patterns matches sender, LSM_STAT_NOTFOUND
    when none does (or login_name has no entry), else the table error."""
    maps = Maps(title, map_names, FLAG_LOCK | FLAG_FOLD_FIX | FLAG_UTF8_REQUEST)
    patterns = maps.find(login_name)
    if patterns is None:
        return maps.error
    stripped = None
    for pattern in dq_tokens(patterns):
        if pattern.startswith("@"):
            at = sender.rfind("@")
            if at >= 0 and pattern.lower() == sender[at:].lower():
                return LSM_STAT_FOUND
        elif pattern.lower() == wildcard.lower():
            return LSM_STAT_FOUND
        elif pattern.lower() == null_sender.lower():
            if not sender:
                return LSM_STAT_FOUND
        else:
            if stripped is None:
                bare = strip_extension(sender, ext_delimiters, config)
                stripped = quote_822_local(sender if bare is None else bare)
            if pattern.lower() == stripped.lower():
                return LSM_STAT_FOUND
    return LSM_STAT_NOTFOUND

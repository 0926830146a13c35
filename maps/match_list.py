"""Lists of patterns that parameters such as mydestination and relay_domains hold
(Postfix's util/match_list.c and match_ops.c; string_list, domain_list).

Each item is a literal, `!item` (negated: a match makes the whole list answer no),
`/file/name` (more items, read from the file), or `type:table` (a match when the table
has the string as a key). Strings are compared case-folded. A host name matches a domain
pattern exactly, and its parent domains too: `example.com` matches `sub.example.com` when
the parameter is listed in parent_domain_matches_subdomains (MATCH_FLAG_PARENT), else
only `.example.com` does. The first item that matches decides.
"""

import os

from pyfix.common import msg
from pyfix.common.strings import CHARS_BRACE, CHARS_COMMA_SP, tokens_quoted

from pyfix.maps.dict import ERR_NONE, FLAG_FIXED, FLAG_LOCK, FLAG_UTF8_REQUEST, \
    SurrogateDict, open_table

MATCH_FLAG_NONE = 0
MATCH_FLAG_PARENT = 1 << 0
MATCH_FLAG_RETURN = 1 << 1
DICT_FLAGS = FLAG_LOCK | FLAG_UTF8_REQUEST


def is_table(pattern):
    """MATCH_DICTIONARY(): `type:name`, where type has no `/` or `[`."""
    colon = pattern.find(":")
    return colon > 0 and "/" not in pattern[:colon] and "[" not in pattern[:colon] \
        and pattern[0] != "["


class MatchList:
    """One parameter's pattern list; match(string) says yes or no, error says why not."""

    def __init__(self, title, text, flags=MATCH_FLAG_NONE, kind="string"):
        self.title = title
        self.flags = flags
        self.kind = kind
        self.error = ERR_NONE
        self.patterns = []            # (positive, pattern or Dict)
        self._parse(text or "", True)

    def _parse(self, text, positive):
        for item in tokens_quoted(text, CHARS_COMMA_SP, CHARS_BRACE):
            if item.startswith("#"):
                msg.warn("%s: comment at end of line is not supported: %s" % (self.title, item))
                break
            match = positive
            while item.startswith("!"):
                match = not match
                item = item[1:]
            if not item:
                msg.fatal("%s: no pattern after '!'" % self.title)
            if item.startswith("/"):
                self._parse_file(item, match)
            elif is_table(item):
                self.patterns.append((match, open_table(item, os.O_RDONLY, DICT_FLAGS)))
            else:
                self.patterns.append((match, item.lower()))

    def _parse_file(self, path, match):
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.readlines()
        except OSError as exc:
            self.patterns.append((match, SurrogateDict(
                "non-existent", path, os.O_RDONLY, DICT_FLAGS,
                "open file %s: %s" % (path, msg.strerror(exc)))))
            return
        for line in lines:
            if not line.startswith("#"):
                self._parse(line, match)

    def match(self, string):
        self.error = ERR_NONE
        folded = string.lower()
        for positive, pattern in self.patterns:
            matcher = self._match_host if self.kind == "domain" else self._match_string
            if matcher(folded, pattern):
                return positive
            if self.error != ERR_NONE:
                return False
        return False

    def _table_error(self, table):
        self.error = table.error
        msg.warn("%s: %s:%s: table lookup problem" % (self.title, table.type, table.name))
        return False

    def _match_string(self, string, pattern):
        if not isinstance(pattern, str):
            if pattern.lookup(string) is not None:
                return True
            return self._table_error(pattern) if pattern.error else False
        return string == pattern

    def _match_host(self, name, pattern):
        if not isinstance(pattern, str):
            return self._match_host_table(name, pattern)
        if name == pattern:
            return True
        if self.flags & MATCH_FLAG_PARENT:
            return name.endswith("." + pattern)
        return pattern.startswith(".") and len(name) > len(pattern) \
            and name.endswith(pattern)

    def _match_host_table(self, name, table):
        entry = name
        first = True
        while entry:
            if first or table.flags & FLAG_FIXED:
                if table.lookup(entry) is not None:
                    return True
                if table.error:
                    return self._table_error(table)
            first = False
            dot = entry.find(".", 1)
            if dot < 0:
                break
            entry = entry[dot + 1:] if self.flags & MATCH_FLAG_PARENT else entry[dot:]
        return False


def string_list(title, text, flags=MATCH_FLAG_NONE):
    return MatchList(title, text, flags, "string")


def domain_list(title, text, flags=MATCH_FLAG_NONE):
    return MatchList(title, text, flags, "domain")

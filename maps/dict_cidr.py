"""cidr: tables, network address patterns (Postfix's util/dict_cidr.c and cidr_match.c).

    192.168.0.0/16     result       an IPv4 or IPv6 network; `[...]` around it is allowed
    10.1.2.3           result       a bare address is the network of all bits
    !192.168.0.0/16    result       a rule for addresses outside the network
    if 10.0.0.0/8  ...  endif       (nestable; `if !net`)

The key is parsed with inet_pton() (IPv6 when it contains a colon) and compared in binary
with each rule in order; the first match wins. A network with host bits set is refused with
Postfix's `non-null host address bits ... perhaps you should use ... instead` warning.
The file is read once (inline `cidr:{ {rule}, ... }` too); like Postfix, a changed file is
seen by new processes only. Addresses are parsed and printed with the C library's
inet_pton()/inet_ntop(), as Postfix does, so that the same texts are accepted.
"""

import os
import socket

from pyfix.common import msg
from pyfix.common.readlline import logical_lines
from pyfix.common.strings import SPACE, trim_trailing
from pyfix.maps import dict_file
from pyfix.maps.dict import FLAG_PATTERN, FLAG_SRC_RHS_IS_FILE, Dict, SurrogateDict
from pyfix.maps.dict_stream import StreamError, dict_stream_open

OP_MATCH, OP_IF, OP_ENDIF = 1, 2, 3


def _isalnum(ch):
    return ch.isascii() and ch.isalnum()


def _c_atoi(digits):
    value = min(int(digits), 2 ** 63 - 1) & 0xFFFFFFFF
    return value - 2 ** 32 if value >= 2 ** 31 else value


def _keyword(text, word):
    size = len(word)
    head = text[:size]
    return head.isascii() and head.lower() == word and (len(text) == size or not _isalnum(text[size]))


def _pton(family, text):
    try:
        return socket.inet_pton(family, text)
    except (OSError, ValueError, UnicodeError):
        return None


def _family_of(text):
    return socket.AF_INET6 if ":" in text else socket.AF_INET


def mask_bytes(byte_count, bits):
    """Netmask of `bits` leading ones (mask_addr() on an all-ones address)."""
    full = (1 << (byte_count * 8)) - 1
    value = full ^ ((1 << (byte_count * 8 - bits)) - 1) if bits else 0
    return value.to_bytes(byte_count, "big")


class CidrError(Exception):
    pass


class CidrPattern:
    """One parsed network (CIDR_MATCH)."""
    __slots__ = ("op", "family", "net", "mask", "match", "value", "lineno", "end")

    def matches(self, family, addr):
        """addr: the key's address as an integer."""
        if self.family != family:
            return False
        return ((addr & self.mask) == self.net) == bool(self.match)


def cidr_match_parse(pattern, match):
    """Parse `addr`, `addr/len`, `[addr]/len` or `[addr/len]`; CidrError with Postfix's text."""
    after = None
    if pattern.startswith("["):
        pattern = pattern[1:]
        if "]" not in pattern:
            raise CidrError("missing ']' character after \"[%s\"" % pattern)
        pattern, _, after = pattern.partition("]")
        if after[:1] != "/":
            if after:
                raise CidrError('garbage after "[%s]"' % pattern)
            after = None
    if after is not None:
        slash, mask = "/", after[1:]
    else:
        head, slash, mask = pattern.partition("/")
        if slash:
            pattern = head
    entry = CidrPattern()
    entry.family = _family_of(pattern)
    byte_count = 16 if entry.family == socket.AF_INET6 else 4
    if slash:
        bit_count = byte_count * 8
        error = None
        if not (mask and mask.isascii() and mask.isdigit()):
            error = "bad mask value"
        else:
            shift = _c_atoi(mask) & 0xFF            # stored in an unsigned char
            if shift > bit_count:
                error = "bad mask length"
            else:
                net = _pton(entry.family, pattern)
                if net is None:
                    error = "bad network value"
        if error:
            raise CidrError('%s in "%s/%s"' % (error, pattern, mask))
        entry.mask = mask_bytes(byte_count, shift)
        if any(n & ~m & 0xFF for n, m in zip(net, entry.mask)):
            fixed = bytes(n & m for n, m in zip(net, entry.mask))
            raise CidrError('non-null host address bits in "%s/%s", '
                            'perhaps you should use "%s/%d" instead'
                            % (pattern, mask, socket.inet_ntop(entry.family, fixed), shift))
        entry.net = int.from_bytes(net, "big")
        entry.mask = int.from_bytes(entry.mask, "big")
    else:
        net = _pton(entry.family, pattern)
        if net is None:
            raise CidrError('bad address pattern: "%s"' % pattern)
        entry.net = int.from_bytes(net, "big")
        entry.mask = (1 << (8 * byte_count)) - 1
    entry.op = OP_MATCH
    entry.match = match
    entry.end = None
    return entry


def _negations(text, pos=0):
    match = 1
    while pos < len(text):
        if text[pos] == "!":
            match = 1 - match
        elif text[pos] not in SPACE:
            break
        pos += 1
    return match, pos


class _Block:
    """A run of plain (not negated) rules, indexed so that a lookup costs one dictionary
    probe per prefix length instead of one comparison per rule; the answer is the first
    matching rule in file order, as a rule-by-rule scan would find."""

    def __init__(self, rules, start, end):
        self.end = end
        self.by_family = {}
        for index in range(start, end):
            rule = rules[index]
            by_mask = self.by_family.setdefault(rule.family, {})
            nets = by_mask.setdefault(rule.mask, {})
            nets.setdefault(rule.net, index)
        self.by_family = {family: list(by_mask.items())
                          for family, by_mask in self.by_family.items()}

    def search(self, family, addr):
        best = None
        for mask, nets in self.by_family.get(family, ()):
            index = nets.get(addr & mask)
            if index is not None and (best is None or index < best):
                best = index
        return best


_MIN_BLOCK = 8


def _index_blocks(rules):
    """{first index: _Block} for each long run of plain positive match rules."""
    blocks = {}
    start = None
    for index, rule in enumerate(rules + [None]):
        plain = rule is not None and rule.op == OP_MATCH and rule.match
        if plain and start is None:
            start = index
        elif not plain and start is not None:
            if index - start >= _MIN_BLOCK:
                blocks[start] = _Block(rules, start, index)
            start = None
    return blocks


class CidrDict(Dict):
    type = "cidr"

    def __init__(self, name, open_flags, dict_flags):
        super().__init__(name, open_flags, dict_flags | FLAG_PATTERN)
        self.rules = []
        self.blocks = {}

    def parse_rule(self, line, lineno, nesting):
        if _keyword(line, "if"):
            match, pos = _negations(line, 2)
            if pos >= len(line):
                raise CidrError("no address pattern")
            entry = cidr_match_parse(trim_trailing(line[pos:]), match)
            entry.op = OP_IF
            value = ""
        elif _keyword(line, "endif"):
            pos = 5
            while pos < len(line) and line[pos] in SPACE:
                pos += 1
            if pos < len(line):
                raise CidrError("garbage after ENDIF")
            if nesting == 0:
                raise CidrError("ENDIF without IF")
            entry = CidrPattern()
            entry.op = OP_ENDIF
            value = ""
        else:
            match, pos = _negations(line)
            end = pos
            while end < len(line) and line[end] not in SPACE:
                end += 1
            pattern = line[pos:end]
            rest = line[end + 1:]
            start = 0
            while start < len(rest) and rest[start] in SPACE:
                start += 1
            value = trim_trailing(rest[start:])
            if not pattern:
                raise CidrError("no address pattern")
            entry = cidr_match_parse(pattern, match)
            if not value:
                raise CidrError("no lookup result")
        if self.flags & FLAG_SRC_RHS_IS_FILE:
            try:
                value = dict_file.file_to_b64(value)
            except dict_file.DictFileError as exc:
                raise CidrError(str(exc)) from None
        entry.value = value
        entry.lineno = lineno
        return entry

    def load(self, source):
        stack = []
        for line, lineno, _ in logical_lines(source.text, self.name):
            nul = line.find("\0")
            if nul >= 0:
                line = line[:nul]
            try:
                rule = self.parse_rule(line, lineno, len(stack))
            except CidrError as exc:
                msg.warn("cidr map %s, line %d: %s: skipping this rule"
                         % (self.name, lineno, exc))
                continue
            if rule.op == OP_IF:
                stack.append(rule)
            elif rule.op == OP_ENDIF:
                stack.pop().end = len(self.rules)
            self.rules.append(rule)
        while stack:
            msg.warn("cidr map %s, line %d: IF has no matching ENDIF"
                     % (self.name, stack.pop().lineno))
        self.blocks = _index_blocks(self.rules)

    def _lookup(self, key):
        if msg.verbose:
            msg.info("dict_cidr_lookup: %s: %s" % (self.name, key))
        nul = key.find("\0")
        if nul >= 0:
            key = key[:nul]
        family = _family_of(key)
        addr = _pton(family, key)
        if addr is None:
            return None
        addr = int.from_bytes(addr, "big")
        rules, blocks = self.rules, self.blocks
        index, count = 0, len(rules)
        while index < count:
            block = blocks.get(index)
            if block is not None:
                found = block.search(family, addr)
                if found is not None:
                    return rules[found].value
                index = block.end
                continue
            rule = rules[index]
            index += 1
            if rule.op == OP_MATCH:
                if rule.matches(family, addr):
                    return rule.value
            elif rule.op == OP_IF:
                if rule.matches(family, addr):
                    continue
                if rule.end is None:
                    return None
                index = rule.end + 1
        return None


def open_cidr(name, open_flags, dict_flags):
    if open_flags != os.O_RDONLY:
        return SurrogateDict("cidr", name, open_flags, dict_flags,
                             "cidr:%s map requires O_RDONLY access mode" % name)
    try:
        source = dict_stream_open("cidr", name)
    except StreamError as exc:
        return SurrogateDict("cidr", name, open_flags, dict_flags, str(exc))
    if source.read_error is not None:
        msg.fatal("cidr map %s: read error: %s" % (name, msg.strerror(source.read_error)))
    table = CidrDict(name, open_flags, dict_flags)
    table.owner_uid = source.owner_uid
    table.load(source)
    return table

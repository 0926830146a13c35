"""RFC 822 tokens: the lexical scan and the two ways back to text (Postfix's
global/tok822_parse.c: tok822_scan, tok822_internalize, tok822_externalize).

scan() turns text into a flat list of tokens: atoms, quoted strings, comments (nesting,
kept with their parentheses), domain literals, and the operator characters
`|%!()<>@,;:\\".[]` one per token. Whitespace separates tokens and is dropped; inside
atoms, quoted strings and domain literals a backslash takes the next character literally,
and tab, CR and LF become spaces. An atom that came to contain a space, a control
character or an operator (through backslashes) is a quoted string.

internalize() joins tokens without quoting (the form Postfix keeps addresses in);
externalize() quotes strings and literals again (the form written to files and the
wire). Both put one space between adjacent words, after commas and before `<`.

Tokens also form Postfix's linked parse trees (tok822_tree.c): each Token has prev/next
links, and an ADDR token holds its tokens as a sub-list (head/tail, with owner links
back). parse() groups a header value into ADDR nodes from right to left as
tok822_parse() does (missing commas added, comments moved aside, named groups);
grep() lists the ADDR nodes; externalize_tree()/internalize_tree() turn a tree back
into text with the TOK822_STR_* flags. cleanup uses these to rewrite the addresses in
From:, To: and the other address headers, and to split table results into addresses.
"""

from pyfix.common.quote_822 import QUOTE_FLAG_8BITCLEAN, quote_822_local

ATOM = 256
QSTRING = 257
COMMENT = 258
DOMLIT = 259
ADDR = 260
STARTGRP = 261
MINTOK = ATOM

STR_NONE = 0
STR_WIPE = 1 << 0
STR_TERM = 1 << 1
STR_LINE = 1 << 2
STR_TRNC = 1 << 3
STR_DEFL = STR_WIPE | STR_TERM
STR_HEAD = STR_TERM | STR_LINE | STR_TRNC
MAX_NONADDR_LENGTH = 250

OPCHAR = '|%!()<>@,;:\\".[]'
SPACE_TAB_CR_LF = " \t\r\n"
_WORDS = (ATOM, QSTRING, COMMENT, DOMLIT)


class Token:
    __slots__ = ("type", "text", "prev", "next", "head", "tail", "owner")

    def __init__(self, kind, text=""):
        self.type = kind
        self.text = text
        self.prev = self.next = self.head = self.tail = self.owner = None

    def __repr__(self):
        name = {ATOM: "ATOM", QSTRING: "QSTRING", COMMENT: "COMMENT", DOMLIT: "DOMLIT"}
        return "Token(%s, %r)" % (name.get(self.type, repr(chr(self.type))), self.text)


def _collect(text, pos, stop):
    """Characters from pos up to one in `stop` (a backslash escapes the next one)."""
    out = []
    length = len(text)
    while pos < length:
        ch = text[pos]
        if ch == "\\":
            pos += 1
            if pos >= length:
                break
            ch = text[pos]
        elif stop(ch):
            break
        out.append(" " if ch in SPACE_TAB_CR_LF else ch)
        pos += 1
    return "".join(out), pos


def _comment(text, pos):
    """A comment after its `(`: nested parentheses and backslash pairs kept as is."""
    out = ["("]
    level = 1
    length = len(text)
    while pos < length:
        ch = text[pos]
        out.append(ch)
        pos += 1
        if ch == "(":
            level += 1
        elif ch == ")":
            level -= 1
            if level == 0:
                break
        elif ch == "\\":
            if pos >= length:
                break
            out.append(text[pos])
            pos += 1
    return "".join(out), pos


def _is_atom_end(ch):
    return ch in SPACE_TAB_CR_LF or ch in OPCHAR


def _quote_atom(token):
    for ch in token.text:
        if ch == " " or ord(ch) < 32 or ord(ch) == 127 or ch in OPCHAR:
            token.type = QSTRING
            return


def scan(text, limit=0):
    """tok822_scan(): the token list of text (which ends at a NUL, as a C string); with
    a limit > 0, at most that many tokens."""
    nul = text.find("\0")
    if nul >= 0:
        text = text[:nul]
    tokens = []
    pos = 0
    length = len(text)
    while pos < length and not (limit > 0 and len(tokens) >= limit):
        ch = text[pos]
        pos += 1
        if ch in SPACE_TAB_CR_LF:
            continue
        if ch == "(":
            body, pos = _comment(text, pos)
            token = Token(COMMENT, body)
        elif ch in "[\"":
            close = "]" if ch == "[" else '"'
            body, pos = _collect(text, pos, lambda c, close=close: c == close)
            if pos < length:
                pos += 1
            token = Token(DOMLIT if ch == "[" else QSTRING, body)
        elif ch != "\\" and ch in OPCHAR:
            token = Token(ord(ch))
        else:
            body, pos = _collect(text, pos - 1, _is_atom_end)
            token = Token(ATOM, body)
            _quote_atom(token)
        tokens.append(token)
    return tokens


def _space_after(tokens, i):
    """tok822_append_space() for tokens[i] in a flat list."""
    if i + 1 >= len(tokens):
        return False
    this, after = tokens[i].type, tokens[i + 1].type
    if this == ord(",") or after == ord("<"):
        return True
    return this in _WORDS and after in _WORDS


def internalize(tokens):
    """tok822_internalize(): the tokens as text, without quotes."""
    out = []
    for i, token in enumerate(tokens):
        if token.type in (ATOM, QSTRING, COMMENT):
            out.append(token.text)
        elif token.type == DOMLIT:
            out.append("[" + token.text + "]")
        else:
            out.append(chr(token.type))
        if _space_after(tokens, i):
            out.append(" ")
    return "".join(out)


def _quoted(text, specials):
    return "".join("\\" + ch if ch in specials else ch for ch in text)


def externalize(tokens):
    """tok822_externalize(): the tokens as text, strings and literals quoted."""
    out = []
    for i, token in enumerate(tokens):
        kind = token.type
        if kind == ord(","):
            out.append(", ")
            continue
        if kind in (ATOM, COMMENT):
            out.append(token.text)
        elif kind == QSTRING:
            out.append('"' + _quoted(token.text, '"\\\r\n') + '"')
        elif kind == DOMLIT:
            out.append("[" + _quoted(token.text, "\\\r\n") + "]")
        else:
            out.append(chr(kind))
        if _space_after(tokens, i):
            out.append(" ")
    return "".join(out)


# -- linked lists and trees (tok822_tree.c, tok822_find.c) ------------------------------------

def link(tokens):
    """Chain a token list; returns (head, tail), or (None, None) for no tokens."""
    for left, right in zip(tokens, tokens[1:]):
        left.next = right
        right.prev = left
    return (tokens[0], tokens[-1]) if tokens else (None, None)


def scan_linked(text, limit=0):
    """tok822_scan_limit(): (head, tail) of the linked token list of text."""
    return link(scan(text, limit))


def chain(head):
    """The tokens of a linked list, head first."""
    while head is not None:
        yield head
        head = head.next


def append(t1, t2):
    """tok822_append(): insert list t2 after t1; returns the end of the inserted list."""
    after = t1.next
    t1.next = t2
    t2.prev = t1
    t2.owner = t1.owner
    while t2.next is not None:
        t2 = t2.next
        t2.owner = t1.owner
    t2.next = after
    if after is not None:
        after.prev = t2
    return t2


def prepend(t1, t2):
    """tok822_prepend(): insert list t2 before t1; returns the end of the inserted list."""
    before = t1.prev
    if before is not None:
        before.next = t2
    t2.prev = before
    t2.owner = t1.owner
    while t2.next is not None:
        t2 = t2.next
        t2.owner = t1.owner
    t2.next = t1
    t1.prev = t2
    return t2


def cut_before(tp):
    before = tp.prev
    if before is not None:
        before.next = None
        tp.prev = None
    return before


def cut_after(tp):
    after = tp.next
    if after is not None:
        after.prev = None
        tp.next = None
    return after


def unlink(tp):
    before, after = tp.prev, tp.next
    if before is not None:
        before.next = after
    if after is not None:
        after.prev = before
    tp.prev = tp.next = None
    return before


def _adopt(t1, t2):
    t1.head = t2
    t2.owner = t1
    while t2.next is not None:
        t2 = t2.next
        t2.owner = t1
    t1.tail = t2
    return t2


def sub_append(t1, t2):
    """tok822_sub_append(): append list t2 to the sub-list of t1."""
    if t1.head is not None:
        t1.tail = append(t1.tail, t2)
        return t1.tail
    return _adopt(t1, t2)


def sub_prepend(t1, t2):
    if t1.head is not None:
        end = prepend(t1.head, t2)
        t1.head = t2
        return end
    return _adopt(t1, t2)


def sub_keep_before(t1, t2):
    """Cut the sub-list of t1 before t2; returns the tail of the part cut off."""
    tail = t1.tail
    t1.tail = cut_before(t2)
    if t1.tail is None:
        t1.head = None
    return tail


def sub_keep_after(t1, t2):
    """Cut the sub-list of t1 after t2; returns the head of the part cut off."""
    head = t1.head
    t1.head = cut_after(t2)
    if t1.head is None:
        t1.tail = None
    return head


def set_sub_list(t1, head, tail):
    """Replace the sub-list of t1 (what tok822_free_tree() + assignment does)."""
    t1.head, t1.tail = head, tail
    for tp in chain(head):
        tp.owner = t1


def find_type(head, kind):
    tp = head
    while tp is not None and tp.type != kind:
        tp = tp.next
    return tp


def rfind_type(tail, kind):
    tp = tail
    while tp is not None and tp.type != kind:
        tp = tp.prev
    return tp


def grep(tree, kind=0):
    """tok822_grep(): the top-level tokens of that type (0: all)."""
    return [tp for tp in chain(tree) if kind == 0 or tp.type == kind]


# -- parsing (tok822_parse.c) -------------------------------------------------------------

_DO_WORD = 1 << 0
_DO_GROUP = 1 << 1
_ADD_COMMA = ord(",")
_NO_MISSING_COMMA = 0


def _group(left, right, sync_type):
    """Put the tokens strictly between left and right under a new ADDR node."""
    if left is not right:
        first = left.next
        if first is not right:
            cut_before(right)
            cut_before(first)
            group = Token(ADDR)
            sub_append(group, first)
            append(left, group)
            append(group, right)
            if sync_type:
                append(left, Token(sync_type))
    return left


def _move_comment(tp, right):
    before = unlink(tp)
    return before, prepend(right, tp)


def parse(text, limit=0):
    """tok822_parse_limit(): the head of the parse tree of an address list, or None."""
    first, last = scan_linked(text, limit)
    if first is None:
        return None
    head = Token(0)
    tail = Token(0)
    head.next, first.prev = first, head
    last.next, tail.prev = tail, last
    state = _DO_WORD
    right = tail
    tp = tail.prev
    while tp.type:
        kind = tp.type
        if kind == COMMENT:
            tp, right = _move_comment(tp, right)
            continue
        if kind == ord(";"):
            right = _group(tp, right, _ADD_COMMA)
            state = _DO_GROUP | _DO_WORD
        elif kind == ord(":") and state & _DO_GROUP:
            tp.type = STARTGRP
            _group(tp, right, _NO_MISSING_COMMA)
            while tp.type and tp.type != ord(","):
                tp = tp.prev
            right = tp
            continue
        elif kind == ord(">"):
            right = _group(tp, right, _ADD_COMMA)
            while tp.type and tp.type != ord("<"):
                if tp.type == COMMENT:
                    tp, right = _move_comment(tp, right)
                    continue
                tp = tp.prev
            _group(tp, right, _NO_MISSING_COMMA)
            while tp.type and (tp.type > 0xFF or chr(tp.type) not in ">;,:"):
                tp = tp.prev
            right = tp
            state |= _DO_WORD
            continue
        elif kind in (ATOM, QSTRING, DOMLIT):
            if not state & _DO_WORD:
                right = _group(tp, right, _ADD_COMMA).next
            state &= ~_DO_WORD
        elif kind == ord(","):
            right = _group(tp, right, _NO_MISSING_COMMA)
            state |= _DO_WORD
        else:
            state |= _DO_WORD
        tp = tp.prev
    _group(tp, right, _NO_MISSING_COMMA)
    result = head.next if head.next is not tail else None
    cut_before(head.next)
    cut_before(tail)
    return result


def scan_addr(text):
    """tok822_scan_addr(): one ADDR node holding the tokens of an external address.

    As in Postfix the tokens get no owner, so that internalizing them puts a space
    between adjacent words: `foo bar@x` stays `"foo bar"@x`, `u@foo[1.2.3.4]` becomes
    `u@foo [1.2.3.4]` (trivial-rewrite's answers)."""
    tree = Token(ADDR)
    tree.head, tree.tail = scan_linked(text)
    return tree


# -- trees back to text -------------------------------------------------------------------

_NON_OPERATORS = (ATOM, QSTRING, COMMENT, DOMLIT, ADDR)


def _tree_space_after(tp):
    """tok822_append_space(): no space inside an address, else as between words."""
    after = tp.next
    if after is None or tp.owner is not None:
        return False
    if tp.type in (ord(","), STARTGRP) or after.type == ord("<"):
        return True
    return tp.type in _NON_OPERATORS and after.type in _NON_OPERATORS


def internalize_tree(tree, flags=STR_NONE):
    """tok822_internalize() of a linked list or tree."""
    out = []
    for tp in chain(tree):
        kind = tp.type
        if kind == ord(","):
            out.append(",")
            if flags & STR_LINE:
                out.append("\n")
                continue
        elif kind == ADDR:
            out.append(internalize_tree(tp.head))
        elif kind in (COMMENT, ATOM, QSTRING):
            out.append(tp.text)
        elif kind == DOMLIT:
            out.append("[" + tp.text + "]")
        elif kind == STARTGRP:
            out.append(":")
        else:
            out.append(chr(kind))
        if _tree_space_after(tp):
            out.append(" ")
    return "".join(out)


def _quote_address(tree):
    return quote_822_local(internalize_tree(tree), QUOTE_FLAG_8BITCLEAN)


def externalize_tree(tree, flags=STR_NONE):
    """tok822_externalize() of a linked list or tree. With STR_TRNC an address
    expression with more than 250 characters of comments and phrases is cut down to
    `<address>`, as Postfix (and Sendmail) do."""
    out = []
    size = 0
    start = addr = None
    addr_len = 0

    def emit(text):
        nonlocal size
        out.append(text)
        size += len(text)

    def enforce():
        nonlocal size
        if addr is not None and size - addr_len > start + MAX_NONADDR_LENGTH:
            text = "".join(out)
            from pyfix.common import msg
            msg.warn("stripping too many comments from address: %.100s..."
                     % msg.printable(text[start:]))
            kept = text[:start] + "<" + (_quote_address(addr.head) if addr.head else "") \
                + ">"
            out[:] = [kept]
            size = len(kept)

    if flags & STR_TRNC:
        start, addr, addr_len = 0, None, 0
    for tp in chain(tree):
        kind = tp.type
        if kind == ord(","):
            if flags & STR_TRNC:
                enforce()
            emit(",\n" if flags & STR_LINE else ", ")
            if flags & STR_TRNC:
                start, addr, addr_len = size, None, 0
            continue
        if kind == ADDR:
            addr = tp
            text = _quote_address(tp.head)
            addr_len = len(text)
            emit(text)
        elif kind in (ATOM, COMMENT):
            emit(tp.text)
        elif kind == QSTRING:
            emit('"' + _quoted(tp.text, '"\\\r\n') + '"')
        elif kind == DOMLIT:
            emit("[" + _quoted(tp.text, "\\\r\n") + "]")
        elif kind == STARTGRP:
            emit(":")
        elif kind == ord("<"):
            if tp.next is not None and tp.next.type == ord(">"):
                addr = tp
                addr_len = 0
            emit("<")
        else:
            emit(chr(kind))
        if _tree_space_after(tp):
            emit(" ")
    if flags & STR_TRNC:
        enforce()
    return "".join(out)

"""The MIME parser that turns message records into header and body callbacks (Postfix's
global/mime_state.c, with header_token.c and is_header.c).

update(rec_type, text) takes the message one record at a time (REC_TYPE_NORM for a line,
REC_TYPE_CONT for a piece of a longer one, REC_TYPE_END at the end) and calls back:

  head_out(header_class, header_info, text, offset)  one logical header (continuation
                              lines joined with "\\n"); header_class is PRIMARY, MULTIPART
                              (after a boundary) or NESTED (an attached message/rfc822)
  head_end()                  after the primary headers
  body_out(rec_type, text, offset)  one body record
  body_end()                  at REC_TYPE_END
  err_print(err_flag, text)   a MIME_ERR_* problem, once per kind (REPORT options)

With MIME_OPT_DISABLE_MIME Content-Type headers are not interpreted: everything after
the primary headers is body. Otherwise multipart boundaries (nested up to
mime_nesting_limit) start new header blocks and message/rfc822 parts have headers of
their own. MIME_OPT_DOWNGRADE rewrites 8-bit body content as quoted-printable. Text is
str with undecodable bytes as surrogate escapes; 8-bit tests look at the byte values.
"""

from pyfix.common.header_opts import (HDR_CONTENT_TRANSFER_ENCODING, HDR_CONTENT_TYPE,
                                      header_opts_find)

REC_TYPE_NORM = ord("N")
REC_TYPE_CONT = ord("L")
REC_TYPE_END = ord("E")

OPT_NONE = 0
OPT_DOWNGRADE = 1 << 0
OPT_REPORT_8BIT_IN_7BIT_BODY = 1 << 1
OPT_REPORT_8BIT_IN_HEADER = 1 << 2
OPT_REPORT_ENCODING_DOMAIN = 1 << 3
OPT_RECURSE_ALL_MESSAGE = 1 << 4
OPT_REPORT_TRUNC_HEADER = 1 << 5
OPT_DISABLE_MIME = 1 << 6
OPT_REPORT_NESTING = 1 << 7

ERR_NESTING = 1 << 0
ERR_TRUNC_HEADER = 1 << 1
ERR_8BIT_IN_HEADER = 1 << 2
ERR_8BIT_IN_7BIT_BODY = 1 << 3
ERR_ENCODING_DOMAIN = 1 << 4

ERROR_DETAIL = (
    (ERR_NESTING, "5.6.0", "MIME nesting exceeds safety limit"),
    (ERR_TRUNC_HEADER, "5.6.0", "message header length exceeds safety limit"),
    (ERR_8BIT_IN_HEADER, "5.6.0", "improper use of 8-bit data in message header"),
    (ERR_8BIT_IN_7BIT_BODY, "5.6.0", "improper use of 8-bit data in message body"),
    (ERR_ENCODING_DOMAIN, "5.6.0", "invalid message/* or multipart/* encoding domain"),
)

HDR_PRIMARY = 1
HDR_MULTIPART = 2
HDR_NESTED = 3
STATE_BODY = HDR_NESTED + 1

CTYPE_OTHER, CTYPE_TEXT, CTYPE_MESSAGE, CTYPE_MULTIPART = range(4)
STYPE_OTHER, STYPE_PLAIN, STYPE_RFC822, STYPE_PARTIAL, STYPE_EXTERN_BODY, STYPE_GLOBAL = \
    range(6)

ENC_QP = 1
ENC_BASE64 = 2
ENC_7BIT = 7
ENC_8BIT = 8
ENC_BINARY = 9
ENCODINGS = (("7bit", ENC_7BIT, ENC_7BIT), ("8bit", ENC_8BIT, ENC_8BIT),
             ("binary", ENC_BINARY, ENC_BINARY), ("base64", ENC_BASE64, ENC_7BIT),
             ("quoted-printable", ENC_QP, ENC_7BIT))

ENCODING_NAMES = {encoding: name for name, encoding, _ in ENCODINGS}

CONTENT_TYPE_LEN = len("content-type")
CONTENT_TRANSFER_ENCODING_LEN = len("content-transfer-encoding")

TOK_TOKEN = 256
TOK_QSTRING = 257
LEX_822_SPECIALS = '()<>@,;:\\".[]'
RFC2045_TSPECIALS = '()<>@,;:\\"/[]?='
SPACE_TAB_CR_LF = " \t\r\n"


def error_text(err_flags):
    """mime_state_error(): the text of the first error in err_flags."""
    return next(text for code, _, text in ERROR_DETAIL if code & err_flags)


def error_detail(err_flags):
    """mime_state_detail(): (dsn status, text) of the first error in err_flags."""
    return next((status, text) for code, status, text in ERROR_DETAIL if code & err_flags)


def is_cntrl(ch):
    code = ord(ch)
    return code < 32 or code == 127


def has_8bit(text):
    return not text.isascii()


def is_header(text):
    """is_header_buf(): the length of the header name when text starts a header, else 0.
    Whitespace may come between the name and the colon."""
    length = 0
    in_space = False
    for ch in text:
        if ch == ":":
            return length
        if ch in " \t":
            if length == 0:
                return 0
            in_space = True
            continue
        if ord(ch) > 126 or is_cntrl(ch) or in_space:
            return 0
        length += 1
    return 0


def header_token(text, pos, max_tokens, specials=LEX_822_SPECIALS, terminator=None):
    """header_token(): ([(type, value)] up to max_tokens, new position), or (None, pos)
    at the end of text. Comments are skipped; with a terminator, scanning stops after
    it (and reads past max_tokens up to it)."""
    tokens = []
    length = len(text)
    ch = ""
    while pos < length and (terminator is not None or len(tokens) < max_tokens):
        ch = text[pos]
        pos += 1
        if ch in SPACE_TAB_CR_LF:
            continue
        if ch == terminator:
            break
        if ch == "(":
            pos = _skip_comment(text, pos)
        elif ch == '"':
            value, pos = _quoted_string(text, pos)
            if len(tokens) < max_tokens:
                tokens.append((TOK_QSTRING, value))
        elif ch in specials or is_cntrl(ch):
            if len(tokens) < max_tokens:
                tokens.append((ord(ch), ch))
        else:
            end = pos
            while end < length and text[end] not in SPACE_TAB_CR_LF \
                    and not is_cntrl(text[end]) and text[end] not in specials:
                end += 1
            if len(tokens) < max_tokens:
                tokens.append((TOK_TOKEN, text[pos - 1:end]))
            pos = end
    if not tokens and (pos >= length and ch != terminator or ch == ""):
        return None, pos
    return tokens, pos


def _skip_comment(text, pos):
    level = 1
    while pos < len(text):
        ch = text[pos]
        pos += 1
        if ch == "(":
            level += 1
        elif ch == ")":
            level -= 1
            if level == 0:
                break
        elif ch == "\\":
            if pos >= len(text):
                break
            pos += 1
    return pos


def _quoted_string(text, pos):
    out = []
    while pos < len(text):
        ch = text[pos]
        pos += 1
        if ch == '"':
            break
        if ch == "\n":
            while out and out[-1] in SPACE_TAB_CR_LF:
                out.pop()
            continue
        if ch == "\\":
            if pos >= len(text):
                break
            ch = text[pos]
            pos += 1
        out.append(ch)
    return "".join(out), pos


def _token_is(token, word):
    return token[0] == TOK_TOKEN and token[1].lower() == word


class Boundary:
    __slots__ = ("def_ctype", "def_stype", "boundary")

    def __init__(self, def_ctype, def_stype, boundary):
        self.def_ctype = def_ctype
        self.def_stype = def_stype
        self.boundary = boundary


class MimeState:
    """One message being parsed (mime_state_alloc)."""

    def __init__(self, flags, head_out=None, head_end=None, body_out=None, body_end=None,
                 err_print=None, header_limit=102400, max_depth=100, bound_len=2048):
        self.static_flags = flags
        self.head_out = head_out
        self.head_end = head_end
        self.body_out = body_out
        self.body_end = body_end
        self.err_print = err_print
        self.header_limit = header_limit
        self.max_depth = max_depth
        self.bound_len = bound_len
        self.err_flags = 0
        self.body_offset = 0
        self.head_offset = 0
        self.output = []              # the header being collected, or QP output
        self.output_len = 0
        self.prev_rec_type = 0
        self.stack = []               # innermost boundary last
        self.nesting_level = -1
        self._set_state(HDR_PRIMARY, CTYPE_TEXT, STYPE_PLAIN, ENC_7BIT, ENC_7BIT)

    # -- small helpers -------------------------------------------------------------------

    def _set_state(self, state, ctype=None, stype=None, encoding=None, domain=None):
        self.curr_state = state
        if ctype is not None:
            self.curr_ctype, self.curr_stype = ctype, stype
            self.curr_encoding, self.curr_domain = encoding, domain
        if state == STATE_BODY:
            self.body_offset = 0
        else:
            self.head_offset = 0

    def _report(self, err_type, text):
        if not self.err_flags & err_type:
            if self.err_print is not None:
                self.err_print(err_type, text)
            self.err_flags |= err_type

    def _buffer(self):
        return "".join(self.output)

    def _append(self, text):
        self.output.append(text)
        self.output_len += len(text)

    def _reset(self):
        self.output = []
        self.output_len = 0

    def _head_out(self, info, length):
        if self.head_out is not None:
            self.head_out(self.curr_state, info, self._buffer(), self.head_offset)
            self.head_offset += length + 1

    def _body_out(self, rec_type, text):
        if self.body_out is not None:
            self.body_out(rec_type, text, self.body_offset)
            self.body_offset += len(text) + 1

    # -- header interpretation -------------------------------------------------------------

    def _content_type(self, header):
        pos = CONTENT_TYPE_LEN + 1
        tokens, pos = header_token(header, pos, 3, RFC2045_TSPECIALS, ";")
        if not tokens:
            self.curr_ctype = CTYPE_OTHER
            return
        subtype = tokens[2] if len(tokens) >= 3 and tokens[1][0] == ord("/") else None
        if _token_is(tokens[0], "text"):
            self.curr_ctype = CTYPE_TEXT
            self.curr_stype = STYPE_PLAIN if subtype and _token_is(subtype, "plain") \
                else STYPE_OTHER
        elif _token_is(tokens[0], "message"):
            self.curr_ctype = CTYPE_MESSAGE
            self.curr_stype = STYPE_OTHER
            for word, stype in (("rfc822", STYPE_RFC822), ("partial", STYPE_PARTIAL),
                                ("external-body", STYPE_EXTERN_BODY),
                                ("global", STYPE_GLOBAL)):
                if subtype and _token_is(subtype, word):
                    self.curr_stype = stype
                    break
        elif _token_is(tokens[0], "multipart"):
            self.curr_ctype = CTYPE_MULTIPART
            if subtype and _token_is(subtype, "digest"):
                defaults = (CTYPE_MESSAGE, STYPE_RFC822)
            else:
                defaults = (CTYPE_TEXT, STYPE_PLAIN)
            self._boundaries(header, pos, defaults)

    def _boundaries(self, header, pos, defaults):
        while True:
            tokens, pos = header_token(header, pos, 3, RFC2045_TSPECIALS, ";")
            if tokens is None:
                return
            if len(tokens) >= 3 and _token_is(tokens[0], "boundary") \
                    and tokens[1][0] == ord("="):
                if self.nesting_level > self.max_depth:
                    if self.static_flags & OPT_REPORT_NESTING:
                        self._report(ERR_NESTING, header)
                else:
                    self.nesting_level += 1
                    self.stack.append(Boundary(defaults[0], defaults[1],
                                               tokens[2][1][:self.bound_len]))

    def _content_encoding(self, header):
        tokens, _ = header_token(header, CONTENT_TRANSFER_ENCODING_LEN + 1, 1)
        if tokens and tokens[0][0] == TOK_TOKEN:
            word = tokens[0][1].lower()
            for name, encoding, domain in ENCODINGS:
                if word == name:
                    self.curr_encoding, self.curr_domain = encoding, domain
                    break

    def _flush_header(self, length):
        """Interpret and hand out the header collected so far."""
        header = self._buffer()
        info = header_opts_find(header)
        if not self.static_flags & OPT_DISABLE_MIME and info is not None:
            if info.type == HDR_CONTENT_TYPE:
                self._content_type(header)
            elif info.type == HDR_CONTENT_TRANSFER_ENCODING:
                self._content_encoding(header)
        if self.static_flags & OPT_REPORT_8BIT_IN_HEADER \
                and not self.err_flags & ERR_8BIT_IN_HEADER and has_8bit(header):
            self._report(ERR_8BIT_IN_HEADER, header)
        if (info is None or info.type != HDR_CONTENT_TRANSFER_ENCODING
                or not self.static_flags & OPT_DOWNGRADE or self.curr_domain == ENC_7BIT):
            self._head_out(info, length)
        self.prev_rec_type = 0
        self._reset()

    # -- the state machine -------------------------------------------------------------

    def update(self, rec_type, text):
        """mime_state_update(): one record; returns the error flags so far."""
        is_text = rec_type in (REC_TYPE_NORM, REC_TYPE_CONT)
        if not is_text and self.prev_rec_type == REC_TYPE_CONT:
            self.update(REC_TYPE_NORM, "")
        if self.curr_state != STATE_BODY:
            if self._header_state(rec_type, text, is_text):
                self.prev_rec_type = rec_type
                return self.err_flags
        self._body_state(rec_type, text, is_text)
        self.prev_rec_type = rec_type
        return self.err_flags

    def _header_state(self, rec_type, text, is_text):
        """A header record; True when it was consumed, False to go on as body."""
        if self.output_len > 0:
            if is_text and (self.prev_rec_type == REC_TYPE_CONT or text[:1] in (" ", "\t")):
                if self.output_len < self.header_limit:
                    if self.prev_rec_type != REC_TYPE_CONT:
                        self._append("\n")
                    self._append(text)
                elif self.static_flags & OPT_REPORT_TRUNC_HEADER:
                    self._report(ERR_TRUNC_HEADER, self._buffer())
                return True
            self._flush_header(len(text))
        if is_text:
            name_len = is_header(text)
            if name_len > 0:
                rest = text[name_len:].lstrip(" \t")
                self._append(text[:name_len] + rest)
                return True
        self._end_of_headers(text)
        if is_text:
            self._first_body_line(text)
        else:
            self._set_state(STATE_BODY)
        return False

    def _end_of_headers(self, text):
        if self.static_flags & OPT_DOWNGRADE and self.curr_domain != ENC_7BIT:
            if (self.curr_ctype == CTYPE_MESSAGE and self.curr_stype != STYPE_GLOBAL) \
                    or self.curr_ctype == CTYPE_MULTIPART:
                encoding = "7bit"
            else:
                encoding = "quoted-printable"
            self._reset()
            self._append("Content-Transfer-Encoding: %s" % encoding)
            self._head_out(None, len(text))
            self._reset()
        if self.curr_state == HDR_PRIMARY and self.head_end is not None:
            self.head_end()
        if self.static_flags & OPT_REPORT_ENCODING_DOMAIN:
            self._check_encoding_domain()

    def _check_encoding_domain(self):
        name = ENCODING_NAMES.get(self.curr_encoding, "unknown")
        if self.curr_ctype == CTYPE_MESSAGE:
            if self.curr_stype in (STYPE_PARTIAL, STYPE_EXTERN_BODY):
                if self.curr_domain != ENC_7BIT:
                    self._report(ERR_ENCODING_DOMAIN, name)
            elif self.curr_stype == STYPE_RFC822:
                if self.curr_encoding != self.curr_domain:
                    self._report(ERR_ENCODING_DOMAIN, name)
        elif self.curr_ctype == CTYPE_MULTIPART:
            if self.curr_encoding != self.curr_domain:
                self._report(ERR_ENCODING_DOMAIN, name)

    def _first_body_line(self, text):
        if text == "":
            self.body_offset = 0
            if self.curr_ctype == CTYPE_MESSAGE:
                if self.curr_stype == STYPE_RFC822 or (
                        self.curr_stype == STYPE_GLOBAL
                        and (not self.static_flags & OPT_DOWNGRADE
                             or self.curr_domain == ENC_7BIT)):
                    self._set_state(HDR_NESTED, CTYPE_TEXT, STYPE_PLAIN, ENC_7BIT, ENC_7BIT)
                else:
                    self._set_state(STATE_BODY)
            elif self.curr_ctype == CTYPE_MULTIPART:
                self._set_state(STATE_BODY, CTYPE_OTHER, STYPE_OTHER, ENC_7BIT, ENC_7BIT)
            else:
                self._set_state(STATE_BODY)
        else:
            if self.curr_state == HDR_PRIMARY:
                self._body_out(REC_TYPE_NORM, "")
            self._set_state(STATE_BODY)

    def _body_state(self, rec_type, text, is_text):
        if not is_text:
            if self.body_end is not None:
                self.body_end()
            return
        if self.static_flags & OPT_REPORT_8BIT_IN_7BIT_BODY \
                and self.curr_encoding == ENC_7BIT \
                and not self.err_flags & ERR_8BIT_IN_7BIT_BODY and has_8bit(text):
            self._report(ERR_8BIT_IN_7BIT_BODY, text)
        if self.stack and self.prev_rec_type != REC_TYPE_CONT and len(text) > 2 \
                and text.startswith("--"):
            self._boundary_line(text)
        if self.static_flags & OPT_DOWNGRADE and self.curr_domain != ENC_7BIT:
            self._downgrade(rec_type, text)
        else:
            self._body_out(rec_type, text)

    def _boundary_line(self, text):
        for depth in range(len(self.stack) - 1, -1, -1):
            bound = self.stack[depth]
            if text.startswith(bound.boundary, 2):
                while len(self.stack) > depth + 1:
                    self._pop()
                if text.startswith("--", 2 + len(bound.boundary)):
                    self._pop()
                    self._set_state(STATE_BODY, CTYPE_OTHER, STYPE_OTHER, ENC_7BIT, ENC_7BIT)
                else:
                    self._set_state(HDR_MULTIPART, bound.def_ctype, bound.def_stype,
                                    ENC_7BIT, ENC_7BIT)
                return

    def _pop(self):
        self.stack.pop()
        self.nesting_level -= 1

    def _downgrade(self, rec_type, text):
        """8-bit body content as quoted-printable, lines of at most 76 characters."""
        for code in text.encode("utf-8", "surrogateescape"):
            if self.output_len > 72:
                self._append("=")
                self._body_out(REC_TYPE_NORM, self._buffer())
                self._reset()
            if (code < 32 and code != 9) or code == 61 or code > 126:
                self._append("=%02X" % code)
            else:
                self._append(chr(code))
        if rec_type == REC_TYPE_NORM:
            buffer = self._buffer()
            if buffer and buffer[-1] in " \t":
                buffer = buffer[:-1] + "=%02X" % ord(buffer[-1])
            self._body_out(REC_TYPE_NORM, buffer)
            self._reset()

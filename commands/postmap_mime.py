"""postmap -h / -b / -m with `-q -`: standard input is a message, and its header lines
or body lines are the lookup keys, as header_checks and body_checks see them (the MIME
callbacks of Postfix's postmap.c).

-h looks up each logical header (continuation lines joined with newlines) of the primary
header block, then stops reading; -b looks up each body line (the empty line that ends
the headers included); -m parses MIME structure, so that -h also sees the headers of
attachments and attached messages and -b skips them. Without -m, MIME headers are not
interpreted.
"""

from pyfix.common import mime_state as mime
from pyfix.common import msg
from pyfix.commands import table_tool as tool
from pyfix.commands.table_tool import OUT, c_string

FLAG_HEADER_KEY = 1 << 2
FLAG_BODY_KEY = 1 << 3
FLAG_MIME_KEY = 1 << 4
FLAG_FULL_KEY = FLAG_BODY_KEY | FLAG_MIME_KEY

# header_size_limit, mime_nesting_limit, mime_boundary_length_limit
limits = {"header_limit": 102400, "max_depth": 100, "bound_len": 2048}


def configure(config):
    limits["header_limit"] = config.get_int("header_size_limit")
    limits["max_depth"] = config.get_int("mime_nesting_limit")
    limits["bound_len"] = config.get_int("mime_boundary_length_limit")


class KeyState:
    """The callbacks' shared state (POSTMAP_KEY_STATE)."""

    def __init__(self, tables):
        self.tables = tables
        self.header_done = False
        self.found = False

    def body(self, _rec_type, text, _offset):
        key = c_string(text)
        tables = self.tables
        for index in range(len(tables.tables)):
            table = tables.get(index)
            value = table.lookup(key)
            if value is not None:
                if value == "":
                    tool.warn_empty_result(table.type, table.name, key)
                OUT.write("%s\t%s\n" % (key, value))
                self.found = True
                break
            if table.error:
                msg.fatal("table %s:%s: query error: %s"
                          % (table.type, table.name, tool.errno_text(table)))

    def header(self, _header_class, _header_info, text, offset):
        self.body(0, text, offset)

    def head_end(self):
        self.header_done = True


def message_queries(tables, postmap_flags):
    """Look up the keys of the message on standard input; True if any was found."""
    state = KeyState(tables)
    engine = mime.MimeState(
        0 if postmap_flags & FLAG_MIME_KEY else mime.OPT_DISABLE_MIME,
        head_out=state.header if postmap_flags & FLAG_HEADER_KEY else None,
        head_end=None if postmap_flags & FLAG_FULL_KEY else state.head_end,
        body_out=state.body if postmap_flags & FLAG_BODY_KEY else None, **limits)
    errors = 0
    for line in tool.stdin_lines():
        if state.header_done or errors:
            break
        errors = engine.update(mime.REC_TYPE_NORM, line)
    if not errors:
        errors = engine.update(mime.REC_TYPE_END, "")
    if errors:
        msg.fatal("message format error: %s" % mime.error_detail(errors)[1])
    return state.found

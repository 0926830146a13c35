"""sqlite: tables, an SQLite database queried through a client file (Postfix's
global/dict_sqlite.c, sqlite_table(5)).

    dbpath = /etc/postfix/virtual.sqlite
    query = SELECT target FROM aliases WHERE alias = '%s'
    result_format = %s          (optional)
    domain = example.com        (optional)
    expansion_limit = 0         (optional)

Without `query`, the legacy `table`, `select_field`, `where_field` and
`additional_conditions` build one. The key is SQL-quoted (`'` doubled) before it goes
into the query; every row's first column is expanded with result_format and the
results are joined with commas. A query that SQLite cannot prepare is a fatal error, as
in Postfix; a failure while the rows are read is a temporary error (ERR_RETRY).
"""

import sqlite3

from pyfix.common import msg

from pyfix.maps import db_common
from pyfix.maps.dict import ERR_RETRY, FLAG_FIXED, FLAG_PATTERN, Dict

TYPE = "sqlite"
# Errors SQLite reports while stepping through rows rather than preparing the query.
_STEP_ERRORS = ("SQLITE_BUSY", "SQLITE_LOCKED")


def quote(text):
    """sqlite3_mprintf("%q"): single quotes doubled (the text ends at a NUL)."""
    return text.split("\0", 1)[0].replace("'", "''")


class SqliteDict(Dict):
    type = TYPE

    def __init__(self, name, open_flags, dict_flags, parser):
        super().__init__(name, open_flags, dict_flags)
        self.parser = parser
        self.owner_uid = parser.owner_uid
        self._parse_config()
        try:
            self.db = sqlite3.connect(self.dbpath, isolation_level=None)
        except sqlite3.Error as exc:
            msg.fatal("%s:%s: Can't open database: %s\n" % (TYPE, name, exc))
        self.db.text_factory = bytes

    def _parse_config(self):
        parser = self.parser
        self.dbpath = parser.get_str("dbpath", "", 1)
        self.query = parser.get_str("query", None)
        if self.query is None:
            self.query = db_common.sql_build_query(parser)
        self.result_format = parser.get_str("result_format", "%s", 1)
        self.expansion_limit = parser.get_int("expansion_limit", 0)
        self.ctx = db_common.DbCommon(self)
        self.ctx.parse(self.query, True)
        self.ctx.parse(self.result_format, False)
        self.ctx.parse_domain(parser)
        self.flags |= FLAG_PATTERN if self.ctx.dict_partial() else FLAG_FIXED

    def _lookup(self, key):
        where = "dict_sqlite_lookup: %s" % self.parser.name
        key = db_common.prepare_key(self, key, where)
        if key is None:
            return None
        skipping = "%s: Skipping lookup of '%s'" % (where, key)
        if not db_common.domain_allows(self, key, skipping):
            return None
        query = self.ctx.expand(self.query, key, quote=quote)
        if query is None:
            return None
        if msg.verbose:
            msg.info("%s: Searching with query %s" % (where, query))
        result = self._run(where, query, key)
        return result if self.error == 0 and result else None

    def _run(self, where, query, key):
        statement, remainder = split_statement(query)
        if remainder.strip() and msg.verbose:
            msg.info("%s: Ignoring text at end of query: %s" % (where, remainder))
        result = ""
        expansion = 0
        try:
            cursor = self.db.execute(statement)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", "") not in _STEP_ERRORS:
                msg.fatal("%s: SQL prepare failed: %s\n" % (where, exc))
            return self._step_failed(where, query, exc)
        try:
            for row in cursor:
                value = self._column_text(row[0]) if row else None
                expanded = self.ctx.expand(self.result_format, value, key, result=result)
                if expanded is None:
                    continue
                result = expanded
                expansion += 1
                if 0 < self.expansion_limit < expansion:
                    msg.warn("%s: Expansion limit exceeded for key '%s'" % (where, key))
                    self.error = ERR_RETRY
                    break
        except sqlite3.Error as exc:
            return self._step_failed(where, query, exc)
        finally:
            cursor.close()
        return result

    def _step_failed(self, where, query, exc):
        msg.warn("%s: SQL step failed for query '%s': %s\n" % (where, query, exc))
        self.error = ERR_RETRY
        return ""

    def _column_text(self, value):
        """sqlite3_column_text(): what SQLite prints for the value, as a C string."""
        if value is None:
            return None
        if isinstance(value, float):
            value = self.db.execute("SELECT CAST(? AS TEXT)", (value,)).fetchone()[0]
        elif isinstance(value, int):
            return str(value)
        return bytes(value).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

    def close(self):
        self.db.close()


def split_statement(query):
    """The first SQL statement of query and the text after it (SQLite prepares only
    the first statement; Postfix ignores the rest)."""
    pos = query.find(";")
    while pos >= 0:
        if sqlite3.complete_statement(query[:pos + 1]):
            return query[:pos + 1], query[pos + 1:]
        pos = query.find(";", pos + 1)
    return query, ""


def open_sqlite(name, open_flags, dict_flags):
    return db_common.open_client_table(TYPE, SqliteDict, name, open_flags, dict_flags)

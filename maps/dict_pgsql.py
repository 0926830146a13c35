"""pgsql: tables, queries to PostgreSQL servers through a client file (Postfix's
global/dict_pgsql.c, pgsql_table(5)).

    hosts = unix:/var/run/postgresql inet:db1.example.com:5432 db2.example.com
            postgresql://user:secret@db3.example.com/mail?sslmode=require
    user = postfix
    password = secret
    dbname = mail
    query = SELECT target FROM aliases WHERE alias = '%s'

`hosts` lists mirrors of one database (default localhost). One connection is kept
open: to a host that already has one (Unix sockets first, then TCP, then URIs), else to
an untried or failed host chosen at random, in the same order of preference. A host
whose connection or query fails is left alone for RETRY_CONN_INTV (60 s) and the query
goes to the next host; when none is left the lookup fails with ERR_RETRY (a temporary
failure: mail is deferred, never lost). A connection that has been idle for
IDLE_CONN_INTV (60 s) is closed; Postfix does this from its event loop, pyfix when the
next query comes.

Each connection talks LATIN1, as Debian's Postfix (a non-SNAPSHOT build) does: key
bytes go to the server unchanged and result bytes come back unchanged. The key is
escaped with libpq's PQescapeStringConn() for that connection before it goes into the
query. Every column of every row is a result value (an SQL NULL is an empty value).
"""

import random
import time

from pyfix.common import msg
from pyfix.common.strings import tokens

try:
    from psycopg import pq
    from psycopg.conninfo import make_conninfo
except ImportError:             # the table type then says that psycopg is missing
    pq = make_conninfo = None

from pyfix.maps import db_common
from pyfix.maps.dict import ERR_RETRY, FLAG_FIXED, FLAG_PATTERN, Dict

TYPE = "pgsql"
STAT_ACTIVE, STAT_FAIL, STAT_UNTRIED = 1, 2, 4
TYPE_UNIX, TYPE_INET, TYPE_CONNSTRING = 1, 2, 4
RETRY_CONN_MAX = 100
RETRY_CONN_INTV = 60            # seconds a failed host is left alone
IDLE_CONN_INTV = 60             # seconds after which an idle connection is closed
CLIENT_ENCODING = "LATIN1"


def _b(text):
    return text.encode("utf-8", "surrogateescape")


def _s(data):
    return bytes(data).decode("utf-8", "surrogateescape")


class Host:
    """One entry of `hosts` and its connection (HOST)."""

    def __init__(self, hostname):
        self.hostname = hostname
        self.db = None
        self.stat = STAT_UNTRIED
        self.ts = 0
        self.last_used = 0.0
        if hostname.startswith("postgresql:"):
            self.type, self.name, self.port = TYPE_CONNSTRING, hostname, None
            return
        name = hostname[5:] if hostname[:5] in ("unix:", "inet:") else hostname
        if name and not name.startswith("/"):
            self.type = TYPE_INET
            head, colon, port = name.rpartition(":")
            self.name, self.port = (head, port) if colon else (name, None)
        else:
            self.type, self.name, self.port = TYPE_UNIX, name, None
        if msg.verbose > 1:
            msg.info("pgsql host_init: host=%s, port=%s, type=%s"
                     % (self.name, self.port or "",
                        {TYPE_UNIX: "unix", TYPE_INET: "inet"}.get(self.type, "uri")))

    def usable(self, stat, host_type, now):
        """dict_pgsql_check_stat(): in one of the states, of the type, not resting."""
        if not (self.stat & stat and (not host_type or self.type & host_type)):
            return False
        return not (self.stat == STAT_FAIL and self.ts > 0 and self.ts >= now)

    def conninfo(self, dbname, user, password):
        if self.type == TYPE_CONNSTRING:
            return self.name
        params = {"host": self.name, "port": self.port, "dbname": dbname, "user": user,
                  "password": password}
        return make_conninfo(**{k: v for k, v in params.items() if v})

    def close(self):
        """plpgsql_close_host(): an idle connection ends; the host may be used again."""
        self._finish()
        self.stat = STAT_UNTRIED

    def down(self):
        """plpgsql_down_host(): a failed connection ends; stay away for a while."""
        self._finish()
        self.ts = int(time.time()) + RETRY_CONN_INTV
        self.stat = STAT_FAIL

    def _finish(self):
        if self.db is not None:
            self.db.finish()
        self.db = None


class PgsqlDict(Dict):
    type = TYPE

    def __init__(self, name, open_flags, dict_flags, parser):
        super().__init__(name, open_flags, dict_flags)
        self.parser = parser
        self.owner_uid = parser.owner_uid
        self._parse_config()
        self.hosts = [Host(h) for h in self.host_names]
        self.active_host = None

    def _parse_config(self):
        p = self.parser
        self.username = p.get_str("user", "")
        self.password = p.get_str("password", "")
        self.dbname = p.get_str("dbname", "", 1)
        self.result_format = p.get_str("result_format", "%s", 1)
        self.expansion_limit = p.get_int("expansion_limit", 0)
        self.query = p.get_str("query", None)
        if self.query is None:
            function = p.get_str("select_function", None)
            if function is not None:
                self.query = "SELECT %s('%%s')" % function
            else:
                self.query = db_common.sql_build_query(p)
        self.ctx = db_common.DbCommon(self)
        self.ctx.parse(self.query, True)
        self.ctx.parse(self.result_format, False)
        self.ctx.parse_domain(p)
        self.flags |= FLAG_PATTERN if self.ctx.dict_partial() else FLAG_FIXED
        self.host_names = tokens(p.get_str("hosts", ""))
        if not self.host_names:
            self.host_names = ["localhost"]
            if msg.verbose:
                msg.info("pgsql_parse_config: %s: no hostnames specified, defaulting to '%s'"
                         % (self.name, "localhost"))

    # -- lookups ------------------------------------------------------------------------------

    def _lookup(self, key):
        where = "dict_pgsql_lookup"
        # Postfix checks keys for UTF-8 here only in SNAPSHOT builds; Debian's is not one.
        key = db_common.prepare_key(self, key, "%s: %s" % (where, self.parser.name),
                                    check_utf8=False)
        if key is None:
            return None
        skipping = "%s: Skipping lookup of '%s'" % (where, key)
        if not db_common.domain_allows(self, key, skipping):
            return None
        if self.ctx.expand(self.query, key) is None:
            return None
        res = self._query(key)
        if res is None:
            self.error = ERR_RETRY
            return None
        if msg.verbose:
            msg.info("%s: retrieved %d rows" % (where, res.ntuples))
        result = self._expand_rows(res, key, where)
        return result if self.error == 0 and result else None

    def _expand_rows(self, res, key, where):
        result = ""
        expansion = 0
        for row in range(res.ntuples):
            if self.error:
                break
            for col in range(res.nfields):
                data = res.get_value(row, col)
                value = _s(data) if data is not None else ""
                expanded = self.ctx.expand(self.result_format, value, key, result=result)
                if expanded is None:
                    continue
                result = expanded
                expansion += 1
                if 0 < self.expansion_limit < expansion:
                    msg.warn("%s: %s: Expansion limit exceeded for key: '%s'"
                             % (where, self.parser.name, key))
                    self.error = ERR_RETRY
                    break
        return result

    # -- hosts --------------------------------------------------------------------------------

    def _find_host(self, stat, host_type):
        now = int(time.time())
        usable = [h for h in self.hosts if h.usable(stat, host_type, now)]
        return random.choice(usable) if usable else None

    def _find_any(self, stat):
        for host_type in (TYPE_UNIX, TYPE_INET, TYPE_CONNSTRING):
            host = self._find_host(stat, host_type)
            if host is not None:
                return host
        return None

    def _get_active(self):
        """dict_pgsql_get_active(): a host with a connection, or a newly connected one."""
        host = self._find_any(STAT_ACTIVE)
        if host is not None:
            if msg.verbose:
                msg.info("dict_pgsql_get_active: found active connection to host %s"
                         % host.hostname)
            return host
        for _ in range(RETRY_CONN_MAX - 1):
            host = self._find_any(STAT_UNTRIED | STAT_FAIL)
            if host is None:
                break
            if msg.verbose:
                msg.info("dict_pgsql_get_active: attempting to connect to host %s"
                         % host.hostname)
            self._connect(host)
            if host.stat == STAT_ACTIVE:
                return host
        return None

    def _connect(self, host):
        """plpgsql_connect_single()"""
        host.db = pq.PGconn.connect(_b(host.conninfo(self.dbname, self.username,
                                                     self.password)))
        if host.db.status != pq.ConnStatus.OK:
            msg.warn("connect to pgsql server %s: %s"
                     % (host.hostname, _s(host.db.error_message)))
            host.down()
            return
        if msg.verbose:
            msg.info("dict_pgsql: successful connection to host %s" % host.hostname)
        res = host.db.exec_(b"set client_encoding to '" + CLIENT_ENCODING.encode() + b"'")
        if res.status != pq.ExecStatus.COMMAND_OK:
            msg.warn("dict_pgsql: cannot set the encoding to %s, skipping %s"
                     % (CLIENT_ENCODING, host.hostname))
            host.down()
            return
        host.stat = STAT_ACTIVE

    def _close_idle(self):
        """What Postfix's idle timer does: close connections unused for IDLE_CONN_INTV."""
        now = time.monotonic()
        for host in self.hosts:
            if host.db is not None and host.stat == STAT_ACTIVE \
                    and now - host.last_used >= IDLE_CONN_INTV:
                host.close()

    def _query(self, key):
        """plpgsql_query(): the result of the query on the first host that answers."""
        self._close_idle()
        while True:
            host = self._get_active()
            if host is None:
                return None
            self.active_host = host
            query = self.ctx.expand(self.query, key, quote=self._quote)
            self.active_host = None
            if host.stat == STAT_FAIL:
                host.down()
                continue
            try:
                res = host.db.exec_(_b(query))
            except Exception:   # noqa: BLE001 - PQexec() returned no result at all
                msg.warn("pgsql query failed: fatal error from host %s: %s"
                         % (host.hostname, _s(host.db.error_message)))
                host.down()
                continue
            if res.status in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
                if msg.verbose:
                    msg.info("dict_pgsql: successful query from host %s" % host.hostname)
                host.last_used = time.monotonic()
                return res
            self._query_failed(host, res)
            host.down()

    @staticmethod
    def _query_failed(host, res):
        if res.status == pq.ExecStatus.FATAL_ERROR:
            msg.warn("pgsql query failed: fatal error from host %s: %s"
                     % (host.hostname, _s(res.error_message)))
        elif res.status == pq.ExecStatus.BAD_RESPONSE:
            msg.warn("pgsql query failed: protocol error, host %s" % host.hostname)
        else:
            msg.warn("pgsql query failed: unknown code 0x%x from host %s"
                     % (int(res.status), host.hostname))

    def _quote(self, text):
        """dict_pgsql_quote(): PQescapeStringConn() on the active connection."""
        host = self.active_host
        if host is None:
            msg.panic("dict_pgsql_quote: bogus dict_pgsql->active_host")
        if host.stat == STAT_FAIL:
            return ""
        try:
            return _s(pq.Escaping(host.db).escape_string(_b(text)))
        except Exception:       # noqa: BLE001 - psycopg raises on an escaping error
            msg.warn("dict pgsql: (host %s) cannot escape input string: %s"
                     % (host.hostname, _s(host.db.error_message)))
            host.stat = STAT_FAIL
            return ""

    def close(self):
        for host in self.hosts:
            host._finish()


def open_pgsql(name, open_flags, dict_flags):
    return db_common.open_client_table(TYPE, PgsqlDict, name, open_flags, dict_flags,
                                       package="psycopg" if pq is None else None)

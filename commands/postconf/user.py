"""User-defined parameters and the unused/undefined warnings (postconf_user.c,
postconf_unused.c, postconf_dbms.c).

A name that main.cf or a master.cf `-o` sets is valid when something uses it: a `$name`
in a value (set or default), smtpd_restriction_classes, or a legacy database client
parameter (`ldap:foo` makes `foo_server_host` valid). What stays unused is warned about
after the output; a `$name` that nothing defines is warned about as undefined.
"""

import os

from pyfix.common import msg
from pyfix.common.config import MAIN_CF, MASTER_CF, MainCf
from pyfix.common.macro import FLAG_RECURSE, FLAG_SCAN, PARSE_ERROR, mac_expand
from pyfix.common.params import BUILTIN, DBMS, LEGACY, RAW, READONLY, SERVICE, USER
from pyfix.common.readlline import read_text
from pyfix.common.strings import (CHARS_BRACE, CHARS_COMMA_SP, extract_parens, split_nameval,
                                  tokens, tokens_quoted)

from pyfix.commands.postconf import output
from pyfix.commands.postconf.session import SHOW_EVAL, Node

# Database client parameters (the suffixes of legacy `type:prefix` parameters and the
# names a client configuration file may set), from each table type's manual.
DBMS_SUFFIXES = {
    "ldap": (
        "bind", "bind_dn", "bind_pw", "cache", "cache_expiry", "cache_size",
        "chase_referrals", "debuglevel", "dereference", "domain", "expansion_limit",
        "leaf_result_attribute", "query_filter", "recursion_limit", "result_attribute",
        "result_filter", "result_format", "sasl_authz_id", "sasl_mechs", "sasl_minssf",
        "sasl_realm", "scope", "search_base", "server_host", "server_port", "size_limit",
        "special_result_attribute", "start_tls", "terminal_result_attribute", "timeout",
        "tls_ca_cert_dir", "tls_ca_cert_file", "tls_cert", "tls_cipher_suite", "tls_key",
        "tls_random_file", "tls_require_cert", "version"),
    "mysql": (
        "additional_conditions", "dbname", "domain", "expansion_limit", "hosts",
        "option_file", "option_group", "password", "query", "require_result_set",
        "result_format", "select_field", "table", "tls_CAfile", "tls_CApath",
        "tls_cert_file", "tls_ciphers", "tls_key_file", "tls_verify_cert", "user",
        "where_field"),
    "pgsql": (
        "additional_conditions", "dbname", "domain", "expansion_limit", "hosts", "password",
        "query", "result_format", "select_field", "select_function", "table", "user",
        "where_field"),
    "sqlite": (
        "additional_conditions", "dbpath", "domain", "expansion_limit", "query",
        "result_format", "select_field", "table", "where_field"),
    "memcache": (
        "backup", "data_size_limit", "domain", "flags", "key_format", "line_size_limit",
        "max_try", "memcache", "retry_pause", "timeout", "ttl"),
}


class UserParameters:
    """pcf_register_user_parameters() and its helpers, bound to one Session."""

    def __init__(self, session):
        self.session = session
        self.restriction_classes = set()
        self.checked_dbms_files = set()

    def register(self):
        session = self.session
        shared = {}
        for scope in session.services:
            settings = None
            for _, option, value in scope.entry.option_pairs():
                if option != "-o":
                    continue
                name, val, err = split_nameval(value)
                if err is None:
                    settings = shared.setdefault(scope.name_space, {})
                    settings[name] = val
            if scope.name_space in shared:
                scope.all_params = shared[scope.name_space]
                scope.valid_names = {}
        for scope in session.services:
            if scope.all_params is not None:
                self.scan_namespace(scope.all_params, scope)
        self.scan_default_values()
        self.scan_namespace(session.main, None)

    # -- flagging -------------------------------------------------------------

    def flag(self, name, param_class, scope):
        """Make a `$name` reference validate the name=value that defines it."""
        session = self.session
        user_supplied = False
        if scope is not None and name in scope.all_params:
            user_supplied = True
            scope.valid_names.setdefault(name, Node(param_class, ""))
        elif name in session.main:
            user_supplied = True
            session.table.setdefault(name, Node(param_class, ""))
        if scope is None:
            for other in session.services:
                if other.all_params is not None and name in other.all_params:
                    user_supplied = True
                    other.valid_names.setdefault(name, Node(param_class, ""))
        if not user_supplied and not param_class & DBMS and name not in session.table:
            msg.warn("%s/%s: undefined parameter: %s"
                     % (session.config_dir, MASTER_CF if scope else MAIN_CF, name))
        return None

    def scan_value(self, value, scope):
        mac_expand(value, lambda name, mode: self.flag(name, USER, scope), FLAG_SCAN)

    def scan_default_values(self):
        session = self.session
        for name, node in list(session.table.items()):
            if node.flags & RAW or name in session.main:
                continue
            self.scan_value(node.default_value(), None)

    def _lookup_eval(self, settings, name, dict_name):
        value = settings.get(name)
        if value is None:
            return None
        text, status = mac_expand(value, lambda key, mode: settings.get(key), FLAG_RECURSE)
        if status & PARSE_ERROR:
            msg.fatal("dictionary %s: macro processing error" % dict_name)
        return text

    def scan_namespace(self, settings, scope):
        session = self.session
        source = MASTER_CF if scope else MAIN_CF
        dict_name = scope.name_space if scope else "mail_dict"
        class_list = self._lookup_eval(settings, "smtpd_restriction_classes", dict_name)
        if class_list is not None:
            for name in tokens(class_list, CHARS_COMMA_SP):
                if scope is None:
                    self.restriction_classes.add(name)
                self.flag(name, USER, scope)
        for name, value in list(settings.items()):
            if scope is not None and name not in scope.valid_names \
                    and name in self.restriction_classes:
                scope.valid_names[name] = Node(USER, "")
            node = session.table.get(name)
            if node is not None:
                if node.flags & READONLY:
                    msg.warn("%s/%s: read-only parameter assignment: %s=%s"
                             % (session.config_dir, source, name, value))
                    del settings[name]
                    continue
                if node.flags & LEGACY:
                    node.reclass(USER)
                if node.flags & RAW:
                    continue
            self.scan_value(value, scope)
            if node is not None and node.flags & (BUILTIN | SERVICE):
                self.register_dbms(value, scope)

    # -- legacy database client parameters -------------------------------------

    def register_dbms(self, value, scope):
        expanded = self.session.expand(value, SHOW_EVAL, scope)
        self._dbms_helper(expanded, scope)

    def _warn_parens(self, err, scope):
        if scope is not None:
            msg.warn("%s:%s: %s" % (MASTER_CF, scope.name_space, err))
        else:
            msg.warn("%s: %s" % (MAIN_CF, err))

    def _dbms_helper(self, text, scope):
        for db_type in tokens_quoted(text, CHARS_COMMA_SP, CHARS_BRACE):
            if db_type.startswith("{"):
                payload, err = extract_parens(db_type)
                if err:
                    self._warn_parens(err, scope)
                self._dbms_helper(payload, scope)
                continue
            prefix = None
            while ":" in db_type:
                db_type, _, prefix = db_type.partition(":")
                if db_type != "proxy":
                    break
                db_type = prefix
                prefix = None
            if prefix is None:
                continue
            if prefix.startswith("/"):
                if db_type in DBMS_SUFFIXES:
                    self.check_dbms_client(db_type, prefix)
                continue
            if prefix.startswith("."):
                continue
            if prefix.startswith("{"):
                payload, err = extract_parens(prefix)
                if err:
                    self._warn_parens(err, scope)
                self._dbms_helper(payload, scope)
                continue
            for suffix in DBMS_SUFFIXES.get(db_type, ()):
                self.flag("%s_%s" % (prefix, suffix), DBMS | USER, scope)

    def check_dbms_client(self, db_type, path):
        """Warn about unknown settings in a database client file, once per file."""
        spec = "%s:%s" % (db_type, path)
        if spec in self.checked_dbms_files:
            return
        self.checked_dbms_files.add(spec)
        try:
            if not os.path.isfile(path) and os.path.exists(path):
                msg.warn('open "%s" configuration "%s": not a regular file' % (db_type, path))
                return
            text = read_text(path)
        except OSError as exc:
            if exc.errno != 13:
                msg.warn('open "%s" configuration "%s": %s'
                         % (db_type, path, msg.strerror(exc)))
            return
        client = MainCf(path)
        client.load(text)
        for name, value in client.entries.items():
            if name not in DBMS_SUFFIXES[db_type]:
                msg.warn("%s: unused parameter: %s=%s" % (spec, name, value))


def flag_unused_parameters(session):
    """Warn about main.cf and master.cf settings that nothing uses."""
    for name, value in session.main.items():
        if name not in session.table:
            output.flush()
            msg.warn("%s/%s: unused parameter: %s=%s"
                     % (session.config_dir, MAIN_CF, name, value))
    flag_unused_master_parameters(session)


def flag_unused_master_parameters(session):
    for scope in session.services:
        if scope.all_params is None:
            continue
        for name, value in scope.all_params.items():
            if name not in session.table and name not in scope.valid_names:
                output.flush()
                msg.warn("%s/%s: unused parameter: %s=%s"
                         % (session.config_dir, MASTER_CF, name, value))

"""The table types pyfix implements: `type` -> "module:open function".

The module of a type is imported when a table of that type is first opened, so that a
process that never opens an LDAP table never imports ldap3. `postconf -m` lists the types
registered here; a type that is not listed is "unsupported dictionary type" (maps/dict.py).
Each opener is called as open(name, open_flags, dict_flags) and returns a maps.dict.Dict.
"""

from pyfix.maps.dict import load_module_opener

TABLE_TYPES = {
    "btree": "pyfix.maps.dict_db:open_btree",
    "cdb": "pyfix.maps.dict_cdb:open_cdb",
    "cidr": "pyfix.maps.dict_cidr:open_cidr",
    "environ": "pyfix.maps.dict_env:open_env",
    "fail": "pyfix.maps.dict_fail:open_fail",
    "hash": "pyfix.maps.dict_db:open_hash",
    "inline": "pyfix.maps.dict_inline:open_inline",
    "internal": "pyfix.maps.dict_ht:open_internal",
    "ldap": "pyfix.maps.dict_ldap:open_ldap",
    "lmdb": "pyfix.maps.dict_lmdb:open_lmdb",
    "pcre": "pyfix.maps.dict_pcre:open_pcre",
    "pgsql": "pyfix.maps.dict_pgsql:open_pgsql",
    "pipemap": "pyfix.maps.dict_pipe:open_pipe",
    "proxy": "pyfix.maps.dict_proxy:open_proxy",
    "randmap": "pyfix.maps.dict_random:open_random",
    "regexp": "pyfix.maps.dict_regexp:open_regexp",
    "socketmap": "pyfix.maps.dict_sockmap:open_sockmap",
    "sqlite": "pyfix.maps.dict_sqlite:open_sqlite",
    "static": "pyfix.maps.dict_static:open_static",
    "tcp": "pyfix.maps.dict_tcp:open_tcp",
    "texthash": "pyfix.maps.dict_thash:open_thash",
    "unionmap": "pyfix.maps.dict_union:open_union",
    "unix": "pyfix.maps.dict_unix:open_unix",
}

_openers = {}


def opener(dict_type):
    """The open function of a table type, or None when pyfix does not have the type."""
    if dict_type not in TABLE_TYPES:
        return None
    if dict_type not in _openers:
        _openers[dict_type] = load_module_opener(TABLE_TYPES[dict_type])
    return _openers[dict_type]


def register(dict_type, path):
    """Add a type (tests and extensions); path is "module:function"."""
    TABLE_TYPES[dict_type] = path
    _openers.pop(dict_type, None)

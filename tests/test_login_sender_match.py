"""maps/login_sender_match.py against the test table of Postfix's own
global/login_sender_match.c (its #ifdef TEST main()), plus the address-extension rules
of strip_addr_internal() that postdrop's local_login_sender_maps check relies on."""

import pytest

from pyfix.common.config import Config, MainCf
from pyfix.maps.dict import ERR_RETRY
from pyfix.maps.login_sender_match import (LSM_STAT_FOUND, LSM_STAT_NOTFOUND, dq_tokens,
                                           login_sender_match, strip_extension)

MAP = "inline:{root=*, {foo = foo,foo@example.com}, bar=<>}"
DOMAIN_MAP = "inline:{root=*, {foo = @example.com}, bar=<>}"
UID_MAP = "inline:{root=*, {uid:12345 = foo,foo@example.com}, bar=<>}"
QUOTED_MAP = 'inline:{root=*, {foo = "first last","first last"@example.com}, bar=<>}'

# (title, map_names, login_name, sender_addr, expected), as in login_sender_match.c.
POSTFIX_CASES = [
    ("wildcard works", MAP, "root", "anything", LSM_STAT_FOUND),
    ("unknown user", MAP, "toor", "anything", LSM_STAT_NOTFOUND),
    ("bare user", MAP, "foo", "foo", LSM_STAT_FOUND),
    ("user@domain", MAP, "foo", "foo@example.com", LSM_STAT_FOUND),
    ("user+ext@domain", MAP, "foo", "foo+bar@example.com", LSM_STAT_FOUND),
    ("wrong sender", MAP, "foo", "bar@example.com", LSM_STAT_NOTFOUND),
    ("@domain", DOMAIN_MAP, "foo", "anyone@example.com", LSM_STAT_FOUND),
    ("wrong @domain", DOMAIN_MAP, "foo", "anyone@example.org", LSM_STAT_NOTFOUND),
    ("null sender", MAP, "bar", "", LSM_STAT_FOUND),
    ("wrong null sender", MAP, "baz", "", LSM_STAT_NOTFOUND),
    ("error", "inline:{root=*}, fail:sorry", "baz", "whatever", ERR_RETRY),
    ("no error", "inline:{root=*}, fail:sorry", "root", "whatever", LSM_STAT_FOUND),
    ("unknown uid:number", UID_MAP, "uid:54321", "foo", LSM_STAT_NOTFOUND),
    ("known uid:number", UID_MAP, "uid:12345", "foo", LSM_STAT_FOUND),
    ('unknown "other last"', QUOTED_MAP, "foo", "other last", LSM_STAT_NOTFOUND),
    ('bare "first last"', QUOTED_MAP, "foo", "first last", LSM_STAT_FOUND),
    ('"first last"@domain', QUOTED_MAP, "foo", "first last@example.com", LSM_STAT_FOUND),
]


def config(**entries):
    return Config(MainCf(entries=dict(entries)))


@pytest.mark.parametrize("title,maps,login,sender,expected", POSTFIX_CASES,
                         ids=[case[0] for case in POSTFIX_CASES])
def test_postfix_table(title, maps, login, sender, expected):
    result = login_sender_match(config(), "local_login_sender_maps", maps, "+-", "<>", "*",
                                login, sender)
    assert result == expected


@pytest.mark.parametrize("addr,expected", [
    ("foo+bar@example.com", "foo@example.com"),
    ("foo-bar", "foo"),
    ("foo@example.com", None),              # no delimiter: unchanged
    ("+foo@example.com", None),             # nothing before the delimiter
    ("foo+@example.com", "foo@example.com"),
    ("postmaster@ex-ample.com", None),      # these local parts are never split
    ("MAILER-DAEMON@example.com", None),
    ("double-bounce", None),                # double_bounce_sender
    ("postmaster+x@example.com", "postmaster@example.com"),
    ("owner-list@example.com", None),       # owner_request_special with `-`
    ("list-request@example.com", None),
])
def test_strip_extension(addr, expected):
    assert strip_extension(addr, "+-", config()) == expected


def test_strip_extension_owner_request_special_off():
    cfg = config(owner_request_special="no")
    assert strip_extension("owner-list@example.com", "+-", cfg) == "owner@example.com"


def test_dq_tokens_keep_quoted_separators():
    assert dq_tokens('"first last", x@y  "a,b"@c') == ['"first last"', "x@y", '"a,b"@c']

"""The order of keys an address is looked up under (maps/addr_find.py), with in-memory
tables that record every key they are asked, and the forms of the keys."""

import os

import pytest

from pyfix.common.config import Config, MainCf
from pyfix.common.quote_822 import quote_822_local, unquote_822_local
from pyfix.maps import addr_find as A
from pyfix.maps.dict import Dict, FLAG_FIXED, FLAG_PATTERN
from pyfix.maps.maps import Maps
from pyfix.maps.match_list import MATCH_FLAG_PARENT, domain_list


class RecordingTable(Dict):
    """A table that answers from a dict and records the keys it was asked."""

    type = "recording"

    def __init__(self, entries, flags=FLAG_FIXED):
        super().__init__("test", os.O_RDONLY, flags)
        self.entries = entries
        self.asked = []

    def _lookup(self, key):
        self.asked.append(key)
        return self.entries.get(key)


def maps_of(*tables):
    maps = Maps("test_maps", "")
    maps.tables = list(tables)
    return maps


def rules(**settings):
    main_cf = MainCf("main.cf")
    main_cf.entries.update({"recipient_delimiter": "+", "myorigin": "example.com",
                            "mydestination": "example.com, localhost"}, **settings)
    return A.AddressRules(Config(main_cf))


def test_default_strategy_key_order_for_a_local_domain():
    table = RecordingTable({})
    A.mail_addr_find(maps_of(table), "user+ext@example.com", rules())
    assert table.asked == ["user+ext@example.com", "user@example.com", "user+ext", "user",
                           "@example.com"]


def test_remote_domain_skips_the_localpart_keys():
    table = RecordingTable({})
    A.mail_addr_find(maps_of(table), "user+ext@remote.example", rules())
    assert table.asked == ["user+ext@remote.example", "user@remote.example",
                           "@remote.example"]


def test_extension_reported_when_a_key_without_it_matches():
    table = RecordingTable({"user@example.com": "other@example.org"})
    found = A.mail_addr_find(maps_of(table), "user+ext@example.com", rules())
    assert (found.value, found.extension) == ("other@example.org", "+ext")


def test_pattern_tables_see_only_the_full_address():
    fixed = RecordingTable({})
    pattern = RecordingTable({}, FLAG_PATTERN)
    A.mail_addr_find(maps_of(pattern, fixed), "user+ext@example.com", rules())
    assert pattern.asked == ["user+ext@example.com"]
    assert len(fixed.asked) == 5


def test_transport_strategy_walks_parent_domains():
    table = RecordingTable({})
    strategy = A.FIND_FULL | A.FIND_NOEXT | A.FIND_DOMAIN | A.FIND_PDMS
    A.mail_addr_find(maps_of(table), "u@a.b.example", rules(), strategy)
    assert table.asked == ["u@a.b.example", "a.b.example", "b.example", "example"]
    table.asked.clear()
    strategy = A.FIND_FULL | A.FIND_NOEXT | A.FIND_DOMAIN | A.FIND_PDDMDS
    A.mail_addr_find(maps_of(table), "u@a.b.example", rules(), strategy)
    assert table.asked == ["u@a.b.example", "a.b.example", ".b.example", ".example"]


def test_special_localparts_keep_their_delimiter():
    table = RecordingTable({})
    A.mail_addr_find(maps_of(table), "owner-list@remote.example",
                     rules(recipient_delimiter="-"))
    assert table.asked == ["owner-list@remote.example", "@remote.example"]


def test_quoted_form_tried_first_then_unquoted():
    table = RecordingTable({"foo bar@remote.example": "x"})
    found = A.mail_addr_find(maps_of(table), "foo bar@remote.example", rules())
    assert table.asked == ['"foo bar"@remote.example', "foo bar@remote.example"]
    assert found.value == "x"


def test_a_table_error_stops_the_search():
    class Broken(RecordingTable):
        def _lookup(self, key):
            self.asked.append(key)
            self.error = -1
            return None

    broken = Broken({})
    later = RecordingTable({"user@remote.example": "x"})
    found = A.mail_addr_find(maps_of(broken, later), "user@remote.example", rules())
    assert (found.value, found.error) == (None, -1)
    assert later.asked == []


@pytest.mark.parametrize("internal, external", [
    ("user@example.com", "user@example.com"),
    ("foo bar@example.com", '"foo bar"@example.com'),
    ('a"b@example.com', '"a\\"b"@example.com'),
    (".dot@example.com", '".dot"@example.com'),
    ("@route:foo bar@example.com", '@route:"foo bar"@example.com'),
    ("bäd@example.com", "bäd@example.com"),         # QUOTE_FLAG_DEFAULT is 8-bit clean
])
def test_quote_and_unquote_round_trip(internal, external):
    assert quote_822_local(internal) == external
    assert unquote_822_local(external) == internal


def test_domain_list_parent_matching():
    assert domain_list("relay_domains", "example.com", MATCH_FLAG_PARENT).match(
        "sub.Example.COM")
    assert not domain_list("relay_domains", "example.com").match("sub.example.com")
    assert domain_list("relay_domains", ".example.com").match("sub.example.com")
    assert not domain_list("relay_domains", "!sub.example.com, example.com",
                           MATCH_FLAG_PARENT).match("sub.example.com")

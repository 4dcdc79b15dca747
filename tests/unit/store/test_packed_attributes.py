"""What ingest packs of a span's attributes for a check (the SQL packing is compared with it on
both databases in tests/functional/test_embedded_scale.py)."""

from __future__ import annotations

from feedbot.spans.stored_columns import ITEM_SEP, PART_SEP, WANTED_KEYS
from feedbot.store.span_queries import _packing_tag, pack_attributes

TAG = _packing_tag(WANTED_KEYS)


def _items(packed: str | None) -> list[list[str]]:
    assert packed is not None and packed.startswith(TAG)
    body = packed[len(TAG) :]
    return [item.split(PART_SEP) for item in body.split(ITEM_SEP)] if body else []


def test_only_read_and_label_like_keys_are_packed_in_their_order_with_json_each_types() -> None:
    attributes = {
        "user.id": "u1",  # neither read nor label-like
        "http.route": "/orders/{id}",
        "Tenant_Name": "acme",  # label-like, in any case
        "code.lineno": 42,
        "feature_flag.variant": True,  # a label key
        "region": 1.5,
        "shard": None,
    }
    assert _items(pack_attributes(attributes)) == [
        ["http.route", "text", "/orders/{id}"],
        ["Tenant_Name", "text", "acme"],
        ["code.lineno", "integer", "42"],
        ["feature_flag.variant", "true", "1"],
        ["region", "real", ""],
        ["shard", "null", ""],
    ]
    assert _items(pack_attributes({"user.id": "u1"})) == []


def test_a_separator_inside_a_value_is_marked_odd_and_what_sql_must_read_is_left_to_it() -> None:
    assert _items(pack_attributes({"tenant.id": f"a{ITEM_SEP}b"}))[-1] == ["odd"]
    assert _items(pack_attributes({"tenant.id": f"a{PART_SEP}b"}))[-1] == ["odd"]
    assert _items(pack_attributes({"tenant.id": "ab"}))[-1] != ["odd"]
    assert pack_attributes({"tenant.id": "a\x00b"}) is None
    assert pack_attributes({"code.lineno": 2**64}) is None
    assert pack_attributes({"code.lineno": 2**63 - 1}) is not None


def test_the_tag_names_the_key_set() -> None:
    assert _packing_tag(WANTED_KEYS) == TAG
    assert _packing_tag((*WANTED_KEYS, "another.key")) != TAG

"""JSON joined from fragments encoded once: exactly the text ``json.dumps`` writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syft_flwr.server.fragments import Encoded, RoundEntries, dumps


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
puts = st.lists(st.tuples(st.integers(min_value=0, max_value=30), json_values), max_size=25)


def expected(puts: list[tuple[int, Any]]) -> dict[int, Any]:
    """What the entries should be: each put replaces its round and drops the later ones."""
    entries: dict[int, Any] = {}
    for round_, value in puts:
        entries = {r: v for r, v in entries.items() if r < round_}
        entries[round_] = value
    return entries


@given(puts=puts)
def test_an_array_is_what_json_writes_for_its_entries_in_round_order(
    puts: list[tuple[int, Any]],
) -> None:
    entries = RoundEntries()
    for round_, value in puts:
        entries.put(round_, value)
    want = expected(puts)
    assert dumps(entries.encoded()) == canonical([want[r] for r in sorted(want)])
    assert entries.values() == tuple(want[r] for r in sorted(want))


@given(puts=puts)
def test_a_keyed_object_is_what_json_writes_for_its_rounds_by_name(
    puts: list[tuple[int, Any]],
) -> None:
    """Members in ``sort_keys`` order ("10" before "2"), whatever order they came in."""
    entries = RoundEntries(keyed=True)
    for round_, value in puts:
        entries.put(round_, value)
    want = expected(puts)
    assert dumps(entries.encoded()) == canonical({str(r): v for r, v in want.items()})


@given(
    value=st.dictionaries(
        st.text(max_size=5), json_values | st.dictionaries(st.text(max_size=5), json_values)
    ),
    puts=puts,
)
def test_dumps_joins_encoded_parts_into_what_json_writes(
    value: dict[str, Any], puts: list[tuple[int, Any]]
) -> None:
    entries = RoundEntries()
    for round_, each in puts:
        entries.put(round_, each)
    want = expected(puts)
    whole = {**value, "entries": entries.encoded(), "nested": {"entries": entries.encoded()}}
    plain = [want[r] for r in sorted(want)]
    reference = {**value, "entries": plain, "nested": {"entries": plain}}
    assert dumps(whole, end=b"\n") == canonical(reference) + b"\n"


def test_an_encoded_array_does_not_change_with_later_puts() -> None:
    entries = RoundEntries(keyed=True)
    entries.put(1, {"loss": 0.5})
    before = entries.encoded()
    entries.put(2, {"loss": 0.25})
    entries.put(1, {"loss": 0.125})
    assert dumps(before) == b'{"1": {"loss": 0.5}}'
    assert dumps(entries.encoded()) == b'{"1": {"loss": 0.125}}'


def test_a_value_json_cannot_write_changes_nothing() -> None:
    entries = RoundEntries()
    entries.put(0, [0, 1.0])
    with pytest.raises(TypeError):
        entries.put(1, {"x": object()})
    with pytest.raises(TypeError):
        entries.put(0, b"bytes")  # not even the drop of round 0 happens
    assert dumps(entries.encoded()) == b"[[0, 1.0]]"


def test_dumps_needs_str_keys() -> None:
    """``json.dumps`` would write ``1`` as ``"1"``; the joined text cannot tell, so it refuses."""
    with pytest.raises(TypeError, match="str keys"):
        dumps({1: Encoded((b"[]",))})

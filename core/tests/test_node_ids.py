"""Deterministic node ids for datasite emails."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syft_flwr.errors import GridError
from syft_flwr.node_ids import node_id_for, node_table


@given(st.emails())
def test_node_ids_are_stable_positive_and_never_reserved(email):
    node_id = node_id_for(email)
    assert node_id == node_id_for(email) == node_id_for(f"  {email.upper()} ")
    assert 2 <= node_id < 2**63


def test_table_maps_ids_to_emails():
    table = node_table(["a@x.org", "b@x.org"])
    assert sorted(table.values()) == ["a@x.org", "b@x.org"]
    assert table[node_id_for("a@x.org")] == "a@x.org"


def test_duplicate_datasite_is_an_error():
    with pytest.raises(GridError, match="more than once"):
        node_table(["a@x.org", "A@x.org"])


def test_hash_collision_is_an_error(monkeypatch):
    monkeypatch.setattr("syft_flwr.node_ids.node_id_for", lambda email: 42)
    with pytest.raises(GridError, match="same node id 42"):
        node_table(["a@x.org", "b@x.org"])

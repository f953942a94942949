"""Deterministic Flower node ids for datasite emails.

Every process of a run (the server and each client) must agree on a datasite's node id
without talking to each other, so the id is a hash of the normalised email: the first 63
bits of SHA-256, kept clear of the ids Flower reserves (0 and 1, the server).

syft-flwr 0.5.x numbers datasites differently (``zlib.crc32`` of the email as its project lists
it), so a datasite served by this project also answers to that id: a 0.5.x server can drive
it (:func:`node_ids_of`).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable

from syft_flwr.errors import GridError

RESERVED_NODE_IDS = frozenset({0, 1})


def normalise_email(email: str) -> str:
    """Canonical form of an email for identity comparisons (trimmed, lowercase)."""
    return email.strip().lower()


def node_id_for(email: str) -> int:
    """The node id of ``email``: stable across processes, never 0 or 1."""
    digest = hashlib.sha256(normalise_email(email).encode("utf-8")).digest()
    node_id = int.from_bytes(digest[:8], "big") >> 1
    return node_id + 2 if node_id in RESERVED_NODE_IDS else node_id


def legacy_node_id(email: str) -> int:
    """The node id syft-flwr 0.5.x gives ``email``: CRC-32 of it, exactly as written."""
    return zlib.crc32(email.encode("utf-8"))


def node_ids_of(email: str) -> frozenset[int]:
    """Every node id a message for ``email`` may carry: ours, and syft-flwr 0.5.x's for the
    email as given and in canonical form (a 0.5.x server hashes the spelling its project uses)."""
    return frozenset(
        {node_id_for(email), legacy_node_id(email), legacy_node_id(normalise_email(email))}
    )


def node_table(emails: Iterable[str]) -> dict[int, str]:
    """Map node id -> email for ``emails``.

    :raises GridError: an email is listed twice, or two emails hash to the same id.
    """
    table: dict[int, str] = {}
    for email in emails:
        node_id = node_id_for(email)
        other = table.get(node_id)
        if other is not None:
            if normalise_email(other) == normalise_email(email):
                raise GridError(f"datasite {email!r} is listed more than once")
            raise GridError(
                f"datasites {other!r} and {email!r} map to the same node id {node_id}; "
                "rename one of them"
            )
        table[node_id] = email
    return table

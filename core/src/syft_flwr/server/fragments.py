"""JSON documents joined from fragments encoded once, so a round's commit is O(1) Python work.

A run's snapshot (:mod:`syft_flwr.server.snapshot`) holds the history and the metrics line of
every committed round and is rewritten whole at every commit (its rename is the commit point).
Encoding it whole each time costs O(rounds) Python work per round, O(rounds^2) per run. Here
each round's entry is encoded once, when it is put (:class:`RoundEntries`), and a document's
text is joined from the cached fragments (:func:`dumps`): the bytes still grow with the
rounds, but joining and writing them is C-speed work. The text is exactly what
``json.dumps(value, sort_keys=True)`` writes for the value the parts stand for, so a reader
cannot tell the two apart.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Encoded", "RoundEntries", "dumps"]

_SEPARATOR = b", "


@dataclass(frozen=True)
class Encoded:
    """JSON encoded already, as the UTF-8 parts of its text: :func:`dumps` joins them in."""

    parts: tuple[bytes, ...]


class RoundEntries:
    """One JSON-safe entry per round, each encoded when it is put.

    Written as an array in round order or, ``keyed``, as an object whose members are named by
    the round, in the order ``sort_keys`` gives them (``"1"``, ``"10"``, ``"2"``).
    """

    def __init__(self, *, keyed: bool = False) -> None:
        self.keyed = keyed
        # Parallel lists in the text's order; ``_keys`` is what orders it (the round, or its
        # name), ``_values`` holds the entries as put. Every fragment but the first starts
        # with the separator, so the text is the fragments as they are, with no join of its
        # own.
        self._rounds: list[int] = []
        self._keys: list[int | str] = []
        self._fragments: list[bytes] = []
        self._values: list[Any] = []
        self._last = -1

    def put(self, round_: int, value: Any) -> None:
        """Make ``value`` the entry of ``round_``, dropping first the entries of that round and
        of later ones: a round committed again supersedes what followed it.

        Encodes ``value`` and nothing else; only dropping entries costs more than O(1).

        :raises TypeError: ``value`` is not JSON-safe (nothing is changed).
        """
        fragment = json.dumps(value, sort_keys=True).encode()
        key: int | str = round_
        if self.keyed:
            key = str(round_)
            fragment = f'"{key}": '.encode() + fragment
        if round_ <= self._last:
            self._drop_from(round_)
        at = bisect.bisect(self._keys, key)  # the end, unless keyed (then a memmove)
        if at > 0:
            fragment = _SEPARATOR + fragment
        elif self._fragments:
            self._fragments[0] = _SEPARATOR + self._fragments[0]
        self._rounds.insert(at, round_)
        self._keys.insert(at, key)
        self._fragments.insert(at, fragment)
        self._values.insert(at, value)
        self._last = round_

    def _drop_from(self, round_: int) -> None:
        kept = [i for i, r in enumerate(self._rounds) if r < round_]
        self._rounds = [self._rounds[i] for i in kept]
        self._keys = [self._keys[i] for i in kept]
        self._fragments = [self._fragments[i] for i in kept]
        self._values = [self._values[i] for i in kept]
        if self._fragments:
            self._fragments[0] = self._fragments[0].removeprefix(_SEPARATOR)
        self._last = max(self._rounds, default=-1)

    def values(self) -> tuple[Any, ...]:
        """The entries as they were put, in the text's order."""
        return tuple(self._values)

    def encoded(self) -> Encoded:
        """The whole array or object (immutable: a later put does not change it). Copies
        references to the fragments, not their bytes."""
        opening, closing = (b"{", b"}") if self.keyed else (b"[", b"]")
        return Encoded((opening, *self._fragments, closing))


def dumps(value: Any, *, end: bytes = b"") -> bytes:
    """``json.dumps(value, sort_keys=True)`` as UTF-8, where the :class:`Encoded` parts of
    ``value`` (itself, or in its dicts, which must have ``str`` keys) are joined in as they
    are; ``end`` follows (a file's last newline), in the same one copy of the bytes.

    Looks into dicts only, so a part that grows with the rounds should be encoded already.
    """
    parts: list[bytes] = []
    _add(value, parts)
    parts.append(end)
    return b"".join(parts)


def _add(value: Any, parts: list[bytes]) -> None:
    if isinstance(value, Encoded):
        parts.extend(value.parts)
    elif isinstance(value, dict):
        opening = b"{"
        for key, member in sorted(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"dumps needs str keys, not {type(key).__name__} ({key!r})")
            parts.append(opening + json.dumps(key).encode() + b": ")
            _add(member, parts)
            opening = _SEPARATOR
        parts.append(b"}" if opening is _SEPARATOR else b"{}")
    else:
        parts.append(json.dumps(value, sort_keys=True).encode())

"""A seeded, non-IID binary classification dataset (a stand-in for a small clinical table)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

NUM_FEATURES = 8
_SEED = 20261123


@dataclass(frozen=True)
class Split:
    """Features and 0/1 labels."""

    x: NDArray[np.float64]
    y: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.y.shape[0])


def _true_weights() -> tuple[NDArray[np.float64], float]:
    rng = np.random.default_rng(_SEED)
    return rng.normal(0.0, 1.5, NUM_FEATURES), -0.4


def _sample(
    rng: np.random.Generator, n: int, shift: NDArray[np.float64], positive_bias: float
) -> Split:
    weights, bias = _true_weights()
    x = rng.normal(0.0, 1.0, (n, NUM_FEATURES)) + shift
    logits = x @ weights + bias + positive_bias
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float64)
    return Split(x=x, y=y)


def partition(index: int, count: int, size: int = 400) -> tuple[Split, Split]:
    """Training and validation data of datasite ``index`` of ``count`` (deterministic, non-IID)."""
    if not 0 <= index < count:
        raise ValueError(f"partition index {index} outside 0..{count - 1}")
    rng = np.random.default_rng(_SEED + 1 + index)
    shift = np.random.default_rng(_SEED + 1000 + index).normal(0.0, 0.8, NUM_FEATURES)
    positive_bias = 1.5 * (index / max(count - 1, 1) - 0.5)
    train = _sample(rng, size + 50 * index, shift, positive_bias)
    valid = _sample(rng, size // 4, shift, positive_bias)
    return train, valid


def central_test_set(size: int = 2000) -> Split:
    """A held-out test set drawn from the population every datasite's data come from."""
    return _sample(np.random.default_rng(_SEED - 1), size, np.zeros(NUM_FEATURES), 0.0)

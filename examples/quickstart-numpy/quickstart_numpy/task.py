"""The model (logistic regression in NumPy) and each node's share of a synthetic dataset."""

from __future__ import annotations

import numpy as np

# numpy loads its random module on first use (15 ms): imported here, the ClientApp pays it
# when it is loaded, before its datasite serves, not inside the first round
from numpy.random import default_rng

FEATURES = 8
SAMPLES_PER_PARTITION = 400
TRUE_WEIGHTS = np.linspace(-2.0, 2.0, FEATURES)


def initial_weights() -> list[np.ndarray]:
    """A model that knows nothing yet: zero weights and bias."""
    return [np.zeros(FEATURES), np.zeros(1)]


def load_data(partition_id: int, num_partitions: int) -> tuple[np.ndarray, ...]:
    """Partition ``partition_id`` of ``num_partitions``: (x_train, y_train, x_test, y_test).

    Each partition draws from its own seed with its own shift of the features, so the
    partitions differ as the data of different datasites would.
    """
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} is not in 0..{num_partitions - 1}")
    rng = default_rng(1000 + partition_id)
    shift = (partition_id - (num_partitions - 1) / 2) * 0.5
    x = rng.normal(loc=shift, size=(SAMPLES_PER_PARTITION, FEATURES))
    y = (x @ TRUE_WEIGHTS + rng.normal(scale=0.5, size=SAMPLES_PER_PARTITION) > 0).astype(float)
    split = int(0.8 * SAMPLES_PER_PARTITION)
    return x[:split], y[:split], x[split:], y[split:]


def _predict(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x @ weights[0] + weights[1][0])))


def evaluate(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(log loss, accuracy) of ``weights`` on ``x``, ``y``."""
    p = np.clip(_predict(weights, x), 1e-9, 1 - 1e-9)
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return loss, float(np.mean((p > 0.5) == (y > 0.5)))


def train(
    weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, epochs: int, learning_rate: float
) -> tuple[list[np.ndarray], float]:
    """Full-batch gradient descent for ``epochs`` steps; the new weights and the final loss."""
    w, b = weights[0].copy(), weights[1].copy()
    for _ in range(epochs):
        error = _predict([w, b], x) - y
        w -= learning_rate * x.T @ error / len(y)
        b -= learning_rate * np.array([error.mean()])
    return [w, b], evaluate([w, b], x, y)[0]

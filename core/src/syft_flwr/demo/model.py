"""Logistic regression in NumPy: small enough to train in milliseconds, real enough to learn."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from syft_flwr.demo.data import NUM_FEATURES, Split


@dataclass
class LogisticRegression:
    """Weights and bias of a binary logistic regression."""

    weights: NDArray[np.float64]
    bias: NDArray[np.float64]

    @classmethod
    def zeros(cls) -> LogisticRegression:
        """The untrained model (predicts 0.5 everywhere)."""
        return cls(np.zeros(NUM_FEATURES), np.zeros(1))

    @classmethod
    def from_arrays(cls, arrays: list[NDArray[np.float64]]) -> LogisticRegression:
        """Rebuild from ``[weights, bias]`` as sent over the wire."""
        weights, bias = arrays
        return cls(
            np.asarray(weights, dtype=np.float64).copy(), np.asarray(bias, np.float64).copy()
        )

    def to_arrays(self) -> list[NDArray[np.float64]]:
        """``[weights, bias]`` for an ``ArrayRecord``."""
        return [self.weights, self.bias]

    def predict_proba(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Probability of the positive class."""
        probabilities: NDArray[np.float64] = 1.0 / (
            1.0 + np.exp(-(x @ self.weights + self.bias[0]))
        )
        return probabilities

    def loss_and_accuracy(self, data: Split) -> tuple[float, float]:
        """Mean binary cross-entropy and accuracy on ``data``."""
        p = np.clip(self.predict_proba(data.x), 1e-12, 1 - 1e-12)
        loss = -np.mean(data.y * np.log(p) + (1 - data.y) * np.log(1 - p))
        accuracy = np.mean((p >= 0.5) == (data.y == 1.0))
        return float(loss), float(accuracy)

    def fit(self, data: Split, epochs: int, learning_rate: float, batch_size: int = 32) -> float:
        """Mini-batch gradient descent; returns the training loss after the last epoch."""
        rng = np.random.default_rng(len(data))
        for _ in range(epochs):
            order = rng.permutation(len(data))
            for start in range(0, len(data), batch_size):
                batch = order[start : start + batch_size]
                error = self.predict_proba(data.x[batch]) - data.y[batch]
                self.weights -= learning_rate * data.x[batch].T @ error / len(batch)
                self.bias -= learning_rate * np.array([error.mean()])
        return self.loss_and_accuracy(data)[0]

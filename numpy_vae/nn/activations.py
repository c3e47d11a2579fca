"""Elementwise activations: ReLU, sigmoid and tanh, each a forward with its backward closure.

Derivations: docs/gradients.md#relu, #sigmoid, #tanh
"""
from __future__ import annotations

import numpy as np


def _exp_neg_abs(x: np.ndarray) -> np.ndarray:
    """e = exp(-|x|), in (0, 1]: never overflows."""
    return np.exp(-np.abs(x))


def sigmoid(x: np.ndarray, e: np.ndarray | None = None) -> np.ndarray:
    """Logistic function, exact on both tails (no overflow, tiny values kept for x << 0).

    With e = exp(-|x|) <= 1 (pass it in if already computed):
        x >= 0:  1 / (1 + e)        x < 0:  e / (1 + e)
    written without a branch as  max(e, [x >= 0]) / (1 + e).
    """
    if e is None:
        e = _exp_neg_abs(x)
    return np.maximum(e, x >= 0, dtype=x.dtype) / (1 + e)


class ReLU:
    """forward: x (B, ...) -> max(x, 0);  backward: dy -> dx, same shape.

    With ``inplace=True`` (as ``torch.nn.ReLU(inplace=True)``) forward overwrites x
    and backward overwrites dy, saving two allocations per pass; the model uses it
    where both arrays are fresh outputs of a matmul that nobody else holds.
    """

    def __init__(self, inplace: bool = False):
        self.inplace = inplace

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0, out=x if self.inplace else None)

    # y = max(x, 0)
    def forward(self, x: np.ndarray):
        y = self(x)

        # dx = dy * [y > 0]   (the output is positive exactly where the input is)
        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray:
            return np.multiply(dy, y > 0, out=dy if self.inplace else None)

        return y, backward


class Sigmoid:
    """forward: x -> sigmoid(x);  backward: dy -> dx, same shape.

    The derivative is sigma(x) sigma(-x) = e / (1 + e)^2 with e = exp(-|x|), exact on
    both tails; y (1 - y) loses everything once y rounds to 1 (x > 17 in float32).
    """

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x)

    # y = 1 / (1 + exp(-x))
    def forward(self, x: np.ndarray):
        e = _exp_neg_abs(x)
        y = sigmoid(x, e)

        # dx = dy * sigma(x) sigma(-x) = dy * e / (1 + e)^2
        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray:
            one_plus_e = 1 + e
            return dy * (e / (one_plus_e * one_plus_e))

        return y, backward


class Tanh:
    """forward: x -> tanh(x);  backward: dy -> dx, same shape."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    # y = tanh(x)
    def forward(self, x: np.ndarray):
        y = np.tanh(x)

        # dx = dy * (1 - y^2) = dy * (1 - y)(1 + y)
        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray:
            return dy * ((1 - y) * (1 + y))

        return y, backward

"""Layers as forward/backward pairs, every gradient written by hand.

Each layer's ``forward`` caches exactly what its ``backward`` needs (as
``torch.autograd.Function`` saves only what backward needs), and ``backward``
takes the upstream gradient ``dout`` and returns the gradient of its input.
Layers with parameters also fill ``self.grads`` (same keys as ``self.params``).

Shapes: B is the batch size, ``in``/``out`` are feature sizes.
"""
from __future__ import annotations

import numpy as np


class Linear:
    """Affine map, weights stored (out, in) as ``torch.nn.Linear`` stores them.

    Parameters may be views into a larger buffer (the model keeps all its
    parameters in one flat array); the layer writes its gradients in place into
    ``grads``, which may likewise be views.

    forward:  x (B, in)  -> y (B, out)
    backward: dy (B, out) -> dx (B, in); fills grads["weight"] (out, in), grads["bias"] (out,)
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray,
                 grad_weight: np.ndarray | None = None, grad_bias: np.ndarray | None = None):
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise ValueError(f"Linear: weight must be (out, in) and bias (out,), got {weight.shape} and {bias.shape}")
        self.params = {"weight": weight, "bias": bias}
        self.grads = {
            "weight": np.zeros_like(weight) if grad_weight is None else grad_weight,
            "bias": np.zeros_like(bias) if grad_bias is None else grad_bias,
        }
        self._x = None

    # y = x W^T + b
    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        y = x @ self.params["weight"].T
        y += self.params["bias"]
        return y

    # dW = dy^T x,  db = sum_B dy,  dx = dy W
    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if len(dy) == 1:   # an outer product: numpy's matmul takes ~1 ms for k = 1, broadcasting ~0.1
            np.multiply(dy.T, self._x, out=self.grads["weight"])
        else:
            np.matmul(dy.T, self._x, out=self.grads["weight"])
        np.sum(dy, axis=0, out=self.grads["bias"])
        return dy @ self.params["weight"] if need_dx else None


class ReLU:
    """forward: x (B, n) -> max(x, 0) (B, n);  backward: dy (B, n) -> dx (B, n).

    With ``inplace=True`` (as ``torch.nn.ReLU(inplace=True)``) forward overwrites x
    and backward overwrites dy, saving two (B, n) allocations per pass; the model
    uses it because both arrays are fresh outputs of a matmul that nobody else holds.
    """

    def __init__(self, inplace: bool = False):
        self.inplace = inplace
        self._y = None

    # y = max(x, 0)
    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = np.maximum(x, 0, out=x if self.inplace else None)
        return self._y

    # dx = dy * [x > 0]   (the output is positive exactly where the input is)
    def backward(self, dy: np.ndarray) -> np.ndarray:
        return np.multiply(dy, self._y > 0, out=dy if self.inplace else None)


def sigmoid(x: np.ndarray, e: np.ndarray | None = None) -> np.ndarray:
    """Logistic function, exact on both tails (no overflow, tiny values kept for x << 0).

    With e = exp(-|x|) <= 1 (pass it in if already computed):
        x >= 0:  1 / (1 + e)        x < 0:  e / (1 + e)
    written without a branch as  max(e, [x >= 0]) / (1 + e).
    """
    if e is None:
        e = np.exp(-np.abs(x))
    return np.maximum(e, x >= 0, dtype=x.dtype) / (1 + e)


class Sigmoid:
    """forward: x (B, n) -> sigmoid(x) (B, n);  backward: dy (B, n) -> dx (B, n)."""

    def __init__(self):
        self._y = None

    # y = 1 / (1 + exp(-x))
    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = sigmoid(x)
        return self._y

    # dx = dy * y (1 - y)
    def backward(self, dy: np.ndarray) -> np.ndarray:
        y = self._y
        return dy * y * (1 - y)

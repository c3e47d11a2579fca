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
        np.matmul(dy.T, self._x, out=self.grads["weight"])
        np.sum(dy, axis=0, out=self.grads["bias"])
        return dy @ self.params["weight"] if need_dx else None


class ReLU:
    """forward: x (B, n) -> max(x, 0) (B, n);  backward: dy (B, n) -> dx (B, n)."""

    def __init__(self):
        self._y = None

    # y = max(x, 0)
    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = np.maximum(x, 0)
        return self._y

    # dx = dy * [x > 0]   (the output is positive exactly where the input is)
    def backward(self, dy: np.ndarray) -> np.ndarray:
        return np.where(self._y > 0, dy, 0).astype(dy.dtype, copy=False)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, exact to the last bit on both tails (no overflow for |x| large).

    For x >= 0: 1 / (1 + e^-x); for x < 0: e^x / (1 + e^x); both with e = exp(-|x|) <= 1.
    """
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


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

"""Dropout, with the mask as an input (as eps is), so two backends can be fed the same draw.

Derivation: docs/gradients.md#dropout
"""
from __future__ import annotations

import numpy as np


def draw_dropout_mask(rng: np.random.Generator, shape, p: float, dtype=np.float32) -> np.ndarray:
    """A keep-mask of ``shape``: 1 with probability 1 - p, else 0 (torch's Bernoulli(1 - p)), in ``dtype``."""
    return (rng.random(shape) >= p).astype(dtype)


class Dropout:
    """forward: x (B, F), mask (B, F) of 0s and 1s -> x * mask / (1 - p), and its backward closure;
    backward: dy -> dy * mask / (1 - p).  Identity (no mask needed) when ``training`` is False.
    """

    def __init__(self, p: float = 0.5):
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p, self.training = float(p), True

    def _scale(self, mask: np.ndarray, dtype) -> np.ndarray:
        return mask.astype(dtype, copy=False) * dtype.type(1.0 / (1.0 - self.p))

    def __call__(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        if not self.training or self.p == 0:
            return x
        if mask is None:
            raise ValueError("Dropout in training needs its mask (draw it with numpy_vae.nn.dropout.draw_dropout_mask)")
        return x * self._scale(mask, x.dtype)

    # y = x m / (1 - p)
    def forward(self, x: np.ndarray, mask: np.ndarray | None = None):
        if not self.training or self.p == 0:
            return x, lambda dy, need_dx=True: dy
        if mask is None:
            raise ValueError("Dropout in training needs its mask (draw it with numpy_vae.nn.dropout.draw_dropout_mask)")
        scale = self._scale(mask, x.dtype)

        # dx = dy m / (1 - p)
        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray:
            return dy * scale

        return x * scale, backward

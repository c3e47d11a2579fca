"""Flatten and Unflatten: a batch of images as a batch of vectors and back, as ``torch.nn.Flatten()`` and
``torch.nn.Unflatten(1, shape)``.

A reshape moves no number, so each backward is the reshape undone.  Both return a
view of their input (forward) or of dy (backward) whenever NumPy's ``reshape`` can,
which is always for a C-contiguous array; otherwise a copy.  (A Conv2d's output is
channels-last in memory, so Flatten copies it, into the (C, H, W) order torch's
flatten gives.)  A view shares memory with what it was made from: a layer that
writes in place into the output of either must own that memory.

Derivation: docs/gradients.md#flatten-and-unflatten
"""
from __future__ import annotations

import math

import numpy as np


class Flatten:
    """forward:  x (B, *shape) -> y (B, prod(shape)), and its backward closure
    backward: dy (B, prod(shape)) -> dx (B, *shape)   (None with ``need_dx=False``)

    y[n] is x[n] in C order (the last axis fastest): for images (C, H, W) as torch's flatten."""

    is_view = True      # moves no number: a container may skip it when no input gradient is wanted

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Inference: y (B, prod(shape)), a view of x where possible."""
        if x.ndim < 1:
            raise ValueError("Flatten: expected x of shape (B, ...), got a scalar")
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    # y[n] = x[n] flattened in C order
    def forward(self, x: np.ndarray):
        y = self(x)
        shape = x.shape

        # dx = dy reshaped to x's shape
        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
            return dy.reshape(shape) if need_dx else None

        return y, backward


class Unflatten:
    """forward:  x (B, prod(shape)) -> y (B, *shape), and its backward closure
    backward: dy (B, *shape) -> dx (B, prod(shape))   (None with ``need_dx=False``)

    The inverse of Flatten: ``shape`` is e.g. (C, H, W), filled in C order."""

    is_view = True      # moves no number: a container may skip it when no input gradient is wanted

    def __init__(self, shape):
        self.shape = tuple(int(n) for n in shape)
        if any(n < 1 for n in self.shape):
            raise ValueError(f"Unflatten: sizes must be >= 1, got {shape}")
        self.size = math.prod(self.shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Inference: y (B, *shape), a view of x where possible."""
        if x.ndim != 2 or x.shape[1] != self.size:
            raise ValueError(f"Unflatten{self.shape}: expected x of shape (B, {self.size}), got {x.shape}")
        return x.reshape(x.shape[0], *self.shape)

    # y[n] = x[n] read in C order into shape
    def forward(self, x: np.ndarray):
        y = self(x)
        shape = x.shape

        # dx = dy reshaped to x's shape (B, prod(shape))
        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
            return dy.reshape(shape) if need_dx else None

        return y, backward

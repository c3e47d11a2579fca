"""Sequential: layers run in order, their backward closures in reverse.

Each layer's ``forward(x)`` returns ``(y, backward)``; the container's forward
returns ``(y, backward)`` too, whose backward runs the layers' closures from the
last to the first.  A closure belongs to the forward call that made it, so an
inference call in between (``container(x)``) can never change what a backward
uses, as a cache stored on the layer could.

Derivation: docs/gradients.md#the-container
"""
from __future__ import annotations

import numpy as np


class Sequential:
    """forward: x -> layers[-1](... layers[0](x)), and its backward closure;
    backward: dy -> dx (None with ``need_dx=False``, which the first layer may skip computing)."""

    def __init__(self, layers: list):
        self.layers = list(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Inference: nothing kept for a backward."""
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, x: np.ndarray, masks: dict[int, np.ndarray] | None = None):
        """``masks``: layer index -> the noise that layer's forward takes (Dropout's keep-mask)."""
        backwards = []
        for i, layer in enumerate(self.layers):
            x, backward = layer.forward(x, masks[i]) if masks and i in masks else layer.forward(x)
            backwards.append(backward)

        # Without dx, the leading reshapes are skipped and the first layer that computes is told so
        # (the conv VAE starts with Unflatten, then a Conv2d whose input gradient training never needs).
        first = next((i for i, layer in enumerate(self.layers) if not getattr(layer, "is_view", False)), 0)

        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
            stop = 0 if need_dx else first
            for layer_backward in reversed(backwards[stop + 1:]):
                dy = layer_backward(dy)
            if not backwards:
                return dy
            dx = backwards[stop](dy, need_dx)
            return dx if need_dx else None

        return x, backward

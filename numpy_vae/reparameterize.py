"""The reparameterization trick: a sample that gradients can flow through."""
from __future__ import annotations

import numpy as np


class Reparameterize:
    """z = mu + eps * sigma with sigma = exp(logvar / 2); eps ~ N(0, I) is an input.

    forward:  mu (B, L), logvar (B, L), eps (B, L) -> z (B, L)
    backward: dz (B, L) -> dmu (B, L), dlogvar (B, L)
    """

    def __init__(self):
        self._eps = self._sigma = None

    # z = mu + eps * exp(logvar / 2)
    def forward(self, mu: np.ndarray, logvar: np.ndarray, eps: np.ndarray) -> np.ndarray:
        self._eps, self._sigma = eps, np.exp(0.5 * logvar)
        return mu + eps * self._sigma

    # dz/dmu = 1,   dz/dlogvar = eps * sigma / 2
    def backward(self, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return dz, dz * self._eps * (0.5 * self._sigma)


def draw_eps(rng: np.random.Generator, batch: int, latent: int, dtype=np.float32) -> np.ndarray:
    """Standard normal noise (batch, latent) from an explicit Generator, to feed any backend."""
    return rng.standard_normal((batch, latent), dtype=np.dtype(dtype).type)

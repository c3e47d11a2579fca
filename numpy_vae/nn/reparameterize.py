"""The reparameterization trick: a sample that gradients can flow through.

Derivation: docs/gradients.md#reparameterization
"""
from __future__ import annotations

import numpy as np

from . import functional as F


class Reparameterize:
    """z = mu + eps * sigma with sigma = exp(logvar / 2); eps ~ N(0, I) is an input.

    forward:  mu (B, L), logvar (B, L), eps (B, L) -> z (B, L), and its backward closure
    backward: dz (B, L) -> dmu (B, L), dlogvar (B, L)
    """

    # z = mu + eps * exp(logvar / 2)
    def forward(self, mu: np.ndarray, logvar: np.ndarray, eps: np.ndarray):
        sigma = F.std(logvar)                       # backward reuses it

        # dz/dmu = 1,   dz/dlogvar = eps * sigma / 2
        def backward(dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return dz, dz * eps * (0.5 * sigma)

        return F.reparameterize(mu, logvar, eps, sigma), backward

"""The Gaussian head: h -> (mu, logvar), torch's ``fc_mu`` and ``fc_logvar`` computed as one matmul.

The two heads read the same h, so their weights are stacked (2L, H), rows [0, L)
``fc_mu.weight`` and rows [L, 2L) ``fc_logvar.weight``, and one Linear gives
[mu | logvar]; its backward takes [dmu | dlogvar].  Same numbers as two Linears,
one matmul instead of two.

Derivation: docs/gradients.md#the-gaussian-head
"""
from __future__ import annotations

import numpy as np

from .linear import Linear


class GaussianHead:
    """forward:  h (B, H) -> mu (B, L), logvar (B, L), and its backward closure
    backward: dmu (B, L), dlogvar (B, L) -> dh (B, H) (None with ``need_dx=False``)

    ``weight`` (2L, H) and ``bias`` (2L,) are the stacked parameters (views into the
    model's flat buffer, fc_mu's rows first), likewise their gradients.  ``linear``: the Linear class
    to use (numpy_vae.kernels' FastLinear in training).
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, grad_weight: np.ndarray, grad_bias: np.ndarray,
                 linear=Linear):
        self.linear = linear(weight, bias, grad_weight, grad_bias)
        self.latent = weight.shape[0] // 2

    def __call__(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        stats = self.linear(h)
        return stats[:, :self.latent], stats[:, self.latent:]

    # [mu | logvar] = h [W_mu | W_logvar]^T + [b_mu | b_logvar]
    def forward(self, h: np.ndarray):
        stats, linear_backward = self.linear.forward(h)

        # dh = [dmu | dlogvar] [W_mu | W_logvar];  dW, db: the two halves of the stacked Linear's
        def backward(dmu: np.ndarray, dlogvar: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
            return linear_backward(np.concatenate([dmu, dlogvar], axis=1), need_dx)

        return stats[:, :self.latent], stats[:, self.latent:], backward

"""The two terms of the negative ELBO, as forward/backward pairs.

Both return one value per sample (shape (B,)), summed over pixels or latent
dimensions; the model takes the batch mean.  ``backward(dout)`` takes the
gradient of the final scalar with respect to those per-sample values.
"""
from __future__ import annotations

import numpy as np

from .layers import sigmoid


class BernoulliNLL:
    """Negative log-likelihood of x under Bernoulli(sigmoid(logits)), from the logits.

    forward:  logits (B, D), x (B, D) in [0, 1] -> nll (B,)
    backward: dnll (B,) -> dlogits (B, D), dx (B, D)

    The stable form never exponentiates a positive number, so it is finite for
    logits of +-1e4 in float32 and float64, and exact where x is 0 or 1.
    """

    def __init__(self):
        self._logits = self._x = self._e = None

    # nll = sum_d [ max(a, 0) - a x + log(1 + exp(-|a|)) ]     (a = logits)
    def forward(self, logits: np.ndarray, x: np.ndarray) -> np.ndarray:
        e = np.exp(-np.abs(logits))                 # in (0, 1]: never overflows
        self._logits, self._x, self._e = logits, x, e
        elementwise = np.maximum(logits, 0)
        elementwise -= logits * x
        elementwise += np.log1p(e)
        return elementwise.sum(axis=1)

    # dnll/da = sigmoid(a) - x,   dnll/dx = -a
    def backward(self, dnll: np.ndarray, need_dx: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        d = dnll[:, None]
        dlogits = sigmoid(self._logits, self._e)    # reuses forward's exp(-|a|)
        dlogits -= self._x
        dlogits *= d
        return dlogits, (-self._logits * d if need_dx else None)


class GaussianKL:
    """KL( N(mu, exp(logvar)) || N(0, I) ), closed form, summed over latent dims.

    forward:  mu (B, L), logvar (B, L) -> kl (B,)
    backward: dkl (B,) -> dmu (B, L), dlogvar (B, L)
    """

    def __init__(self):
        self._mu = self._logvar = None

    # kl = -1/2 sum_l (1 + logvar - mu^2 - exp(logvar))
    def forward(self, mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
        self._mu, self._logvar = mu, logvar
        return -0.5 * (1 + logvar - mu * mu - np.exp(logvar)).sum(axis=1)

    # dkl/dmu = mu,   dkl/dlogvar = (exp(logvar) - 1) / 2
    def backward(self, dkl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = dkl[:, None]
        return self._mu * d, 0.5 * (np.exp(self._logvar) - 1) * d

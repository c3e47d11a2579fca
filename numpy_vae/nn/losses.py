"""The two terms of the negative ELBO, each a forward with its backward closure.

The values are ``functional.py``'s formulas (written there once); the layers add the gradients.

Both return one value per sample (shape (B,)), summed over pixels or latent
dimensions; the model takes the batch mean.  The backward closure takes the
gradient of the final scalar with respect to those per-sample values, (B,).

Derivations: docs/gradients.md#bernoulli-negative-log-likelihood-from-logits,
docs/gradients.md#gaussian-negative-log-likelihood-fixed-variance,
docs/gradients.md#gaussian-kl-to-the-standard-normal
"""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .activations import sigmoid


class BernoulliNLL:
    """Negative log-likelihood of x under Bernoulli(sigmoid(logits)), from the logits.

    forward:  logits (B, D), x (B, D) in [0, 1] -> nll (B,), and its backward closure
    backward: dnll (B,) -> dlogits (B, D), dx (B, D) (None with ``need_dx=False``)

    The stable form never exponentiates a positive number, so it is finite for
    logits of +-1e4 in float32 and float64, and exact where x is 0 or 1.
    """

    @staticmethod
    def mean(logits: np.ndarray) -> np.ndarray:
        """The distribution's mean, the pixel probabilities sigmoid(logits)."""
        return sigmoid(logits)

    # nll = sum_d [ max(a, 0) - a x + log(1 + exp(-|a|)) ]     (a = logits)
    def forward(self, logits: np.ndarray, x: np.ndarray):
        e = np.exp(-np.abs(logits))                 # in (0, 1]: never overflows; backward reuses it
        elementwise = F.bernoulli_nll_terms(logits, x, e)

        # dnll/da = sigmoid(a) - x,   dnll/dx = -a
        def backward(dnll: np.ndarray, need_dx: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
            d = dnll[:, None]
            dlogits = sigmoid(logits, e)            # reuses forward's exp(-|a|)
            dlogits -= x
            dlogits *= d
            return dlogits, (-logits * d if need_dx else None)

        return elementwise.sum(axis=1), backward


class GaussianNLL:
    """Negative log-density of x under N(mean, variance I), the variance fixed, with its full constant.

    forward:  mean (B, D), x (B, D) -> nll (B,), and its backward closure
    backward: dnll (B,) -> dmean (B, D), dx (B, D) (None with ``need_dx=False``)

    With variance 1/2 the data term is the summed squared error (the "MSE" VAE); the
    constant D/2 log(2 pi variance) keeps the nats an honest (continuous) density.
    Derivation: docs/gradients.md#gaussian-negative-log-likelihood-fixed-variance
    """

    def __init__(self, variance: float = 1.0):
        if not (math.isfinite(variance) and variance > 0):
            raise ValueError(f"GaussianNLL: variance must be a finite number > 0, got {variance!r}")
        self.variance = float(variance)

    @staticmethod
    def mean(out: np.ndarray) -> np.ndarray:
        """The decoder's output is the mean itself."""
        return out

    def constant(self, features: int) -> float:
        """D/2 log(2 pi variance), the part of the nll that no parameter moves."""
        return F.gaussian_nll_constant(features, self.variance)

    # nll = 1/(2 var) sum_d (x - mean)^2 + D/2 log(2 pi var)
    def forward(self, mean: np.ndarray, x: np.ndarray):
        r = mean - x
        inv_var = mean.dtype.type(1.0 / self.variance)
        nll = F.gaussian_nll(mean, x, self.variance, r)

        # dnll/dmean = (mean - x) / var,   dnll/dx = -(mean - x) / var
        def backward(dnll: np.ndarray, need_dx: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
            dmean = r * (inv_var * dnll[:, None])
            return dmean, (-dmean if need_dx else None)

        return nll, backward


class GaussianKL:
    """KL( N(mu, exp(logvar)) || N(0, I) ), closed form, summed over latent dims.

    forward:  mu (B, L), logvar (B, L) -> kl (B,), and its backward closure
    backward: dkl (B,) -> dmu (B, L), dlogvar (B, L)

    e^logvar - 1 is formed as expm1(logvar), which keeps its relative accuracy near
    logvar = 0 (the prior), where exp(logvar) - 1 cancels; and expm1(logvar) - logvar
    (>= 0) is formed before mu^2 (>= 0) is added, so only non-negative terms are summed.
    Derivation: docs/gradients.md#gaussian-kl-to-the-standard-normal
    """

    # kl = 1/2 sum_l (mu^2 + (expm1(logvar) - logvar))
    def forward(self, mu: np.ndarray, logvar: np.ndarray):
        expm1 = np.expm1(logvar)                    # backward reuses it
        kl = F.gaussian_kl(mu, logvar, expm1)

        # dkl/dmu = mu,   dkl/dlogvar = expm1(logvar) / 2
        def backward(dkl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            d = dkl[:, None]
            return mu * d, 0.5 * expm1 * d

        return kl, backward

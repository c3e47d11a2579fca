"""The two pieces of the importance-weighted bound (Burda et al. 2015) that no other layer has.

For an image x_b and K draws z_bk = mu_b + exp(logvar_b / 2) eps_bk of q(z|x_b)::

    log w_bk = log p(x_b|z_bk) + log p(z_bk) - log q(z_bk|x_b)
             = -nll(logits_bk, x_b) + LogPriorRatio(z_bk, eps_bk, logvar_b)
    bound_b  = LogMeanExp_k(log w_bk) = log (1/K) sum_k w_bk

``numpy_vae.objectives.iwae_loss`` composes them with the model's own layers.
Each is a forward with its backward closure, in the style of every layer here.

Derivation: docs/gradients.md#the-importance-weighted-bound
"""
from __future__ import annotations

import math

import numpy as np

from . import functional as F


class LogMeanExp:
    """log (1/K) sum_k exp(a_k) over the last axis, max-shifted; its gradient is the softmax of a.

    forward:  a (B, K) -> lme (B,), and its backward closure
    backward: dlme (B,) -> da (B, K) = dlme[:, None] * softmax_k(a)

    Stable: with m = max_k a_k, every exp(a_k - m) lies in (0, 1] (the largest is exactly 1), so
    nothing overflows and the sum s lies in [1, K]; log-weights of +-1e4 or -1e30 stay finite.
    Exact for K = 1: a - m = 0, s = 1 and log s - log 1 = 0, so lme = a and da = dlme, bit for bit.
    A row of all -inf gives -inf (and a NaN gradient), a row holding +inf gives +inf and one
    holding NaN gives NaN, as torch.logsumexp does.  Derivation: docs/gradients.md#the-log-mean-exp-and-its-softmax
    """

    # lme = m + log(sum_k exp(a_k - m)) - log K,   m = max_k a_k
    def forward(self, a: np.ndarray):
        if a.ndim != 2 or a.shape[1] < 1:
            raise ValueError(f"LogMeanExp: expected log-weights of shape (B, K) with K >= 1, got {a.shape}")
        k = a.shape[1]
        m = a.max(axis=1)
        m_safe = np.where(np.isfinite(m), m, 0).astype(a.dtype)   # an all -inf row: no (-inf) - (-inf)
        e = a - m_safe[:, None]
        np.exp(e, out=e)                                          # in (0, 1]: never overflows
        s = e.sum(axis=1)
        with np.errstate(divide="ignore"):
            lme = m_safe + (np.log(s) - a.dtype.type(math.log(k)))

        # da = dlme * exp(a - m) / s = dlme * softmax_k(a)   (the normalized importance weights)
        def backward(dlme: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                weights = e / s[:, None]
            weights *= dlme[:, None]
            return weights

        return lme, backward

    @staticmethod
    def softmax(a: np.ndarray) -> np.ndarray:
        """softmax_k(a) (B, K) of log-weights a (B, K), max-shifted: the normalized importance weights."""
        e = np.exp(a - a.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


class LogPriorRatio:
    """log p(z) - log q(z|x) for z = mu + exp(logvar/2) eps, summed over the latent axis.

    forward:  z (B, K, L), eps (B, K, L), logvar (B, L) -> r (B, K), and its backward closure
    backward: dr (B, K) -> dz (B, K, L), dlogvar (B, L)

    log p(z) = -|z|^2/2 - L/2 log 2pi and log q(z|x) = -|eps|^2/2 - sum logvar/2 - L/2 log 2pi
    (q's quadratic form is (z - mu)^2 / sigma^2 = eps^2), so the log 2pi terms cancel.
    eps is an input with no gradient: with eps held fixed, -|eps|^2/2 is a constant of the
    parameters, and the dependence of log q on them through z is already in the z path
    (docs/gradients.md#why-the-noise-term-has-no-gradient).  z's gradient here is only that of the
    prior term; the caller adds the decoder's and carries the sum back through the
    reparameterization.  Derivation: docs/gradients.md#the-log-prior-ratio
    """

    # r = 1/2 sum_l (eps^2 - z^2 + logvar)
    def forward(self, z: np.ndarray, eps: np.ndarray, logvar: np.ndarray):
        if z.ndim != 3 or eps.shape != z.shape or logvar.shape != (z.shape[0], z.shape[2]):
            raise ValueError(f"LogPriorRatio: expected z and eps (B, K, L) and logvar (B, L), got "
                             f"{z.shape}, {eps.shape} and {logvar.shape}")
        r = F.log_prior_ratio(z, eps, logvar[:, None, :])
        half = z.dtype.type(0.5)

        # dr/dz = -z,   dr/dlogvar_b = 1/2 summed over the K draws of image b (broadcast over l)
        def backward(dr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            dz = -z * dr[:, :, None]
            dlogvar = np.repeat((half * dr.sum(axis=1))[:, None], z.shape[2], axis=1)
            return dz, dlogvar

        return r, backward

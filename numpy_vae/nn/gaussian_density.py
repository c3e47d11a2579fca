"""Diagonal-Gaussian log densities, each a forward with its backward closure: the terms of log w
for a stack of stochastic layers (``numpy_vae.hvae``), where no closed-form KL exists.

    DiagGaussianLogDensity    log N(z; mu, e^logvar)   gradients into z, mu and logvar   (log p(h_l|h_(l+1)))
    StandardNormalLogDensity  log N(z; 0, I)           gradient into z                    (log p(h_L))
    SampleLogDensity          log N(z; mu, e^logvar) at z = mu + e^(logvar/2) eps, as a function of
                              (eps, logvar): the same number, and the same total derivative  (log q(h_l|h_(l-1)))

Each sums over the last axis: (..., L) -> (...,); the values are ``functional.py``'s formulas.  Derivation: docs/gradients.md#diagonal-gaussian-log-densities
"""
from __future__ import annotations

import numpy as np

from . import functional as F


class DiagGaussianLogDensity:
    """forward:  z, mu, logvar (..., L) -> lp (...,), and its backward closure
    backward: dlp (...,) -> dz, dmu, dlogvar (..., L)
    """

    # lp = -1/2 sum_l [log 2pi + logvar + (z - mu)^2 e^-logvar]
    def forward(self, z: np.ndarray, mu: np.ndarray, logvar: np.ndarray):
        r = z - mu
        scaled = r * np.exp(-logvar)                  # (z - mu) e^-logvar: backward reuses both
        lp = F.diag_gaussian_log_density(z, mu, logvar, r, scaled)

        # dz = -(z - mu) e^-logvar,  dmu = -dz,  dlogvar = 1/2 ((z - mu)^2 e^-logvar - 1)
        def backward(dlp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            d = dlp[..., None]
            dmu = scaled * d
            dlogvar = r * scaled
            dlogvar -= 1
            dlogvar *= 0.5 * d
            return -dmu, dmu, dlogvar

        return lp, backward


class StandardNormalLogDensity:
    """forward:  z (..., L) -> lp (...,), and its backward closure
    backward: dlp (...,) -> dz (..., L)
    """

    # lp = -1/2 sum_l [log 2pi + z^2]
    def forward(self, z: np.ndarray):
        lp = F.standard_normal_log_density(z)

        # dz = -z
        def backward(dlp: np.ndarray) -> np.ndarray:
            return -z * dlp[..., None]

        return lp, backward


class SampleLogDensity:
    """log q(z) of a Gaussian at its own reparameterized sample z = mu + e^(logvar/2) eps.

    forward:  eps (..., L), logvar (..., L) (broadcastable) -> lq (...,), and its backward closure
    backward: dlq (...,) -> dlogvar (the broadcast shape of eps and logvar; the caller sums a broadcast axis)

    (z - mu)^2 e^-logvar = eps^2 for every value of the parameters, so as a function of the parameters
    (eps held fixed) log q is -1/2 sum [log 2pi + logvar + eps^2]: the same function, hence the same
    total derivative as DiagGaussianLogDensity(z, mu, logvar) with z's own dependence on mu and logvar
    (autograd's path and score terms, which cancel exactly: docs/gradients.md#diagonal-gaussian-log-densities).
    Nothing flows into z or mu.
    """

    # lq = -1/2 sum_l [log 2pi + logvar + eps^2]
    def forward(self, eps: np.ndarray, logvar: np.ndarray):
        lq = F.gaussian_sample_log_density(eps, logvar)
        shape, dtype = np.broadcast_shapes(eps.shape, logvar.shape), np.result_type(eps, logvar)

        # dlogvar = -1/2 (broadcast over l)
        def backward(dlq: np.ndarray) -> np.ndarray:
            return np.broadcast_to((-0.5 * dlq)[..., None], shape).astype(dtype)

        return lq, backward

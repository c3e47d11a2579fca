"""The model's probability math, each formula written once: densities, likelihoods, the KL, the reparameterization.

The layers (losses.py, iwae_bound.py, reparameterize.py) compute their forward values with these
functions and keep their backward closures beside them; the objectives, the evaluation, the report
and the live page call them directly.  ``torch_vae.functional`` is the port's one copy, term for term.

All sums run over the last axis, so (B, D), (B, K, D) and broadcast shapes alike are fine; results
keep the inputs' dtype (pass float64 arrays for float64 results).  Derivations of the gradients
the layers attach: docs/gradients.md.

    gaussian_kl_terms, gaussian_kl       KL(N(mu, e^logvar) || N(0, I)), expm1 form
    bernoulli_nll_terms, bernoulli_log_likelihood   Bernoulli(x | sigmoid(a)) from logits a, stable form
    gaussian_nll, gaussian_log_likelihood  N(x | mean, variance I), the variance fixed, with its constant
    standard_normal_log_density          log N(z | 0, I)
    diag_gaussian_log_density            log N(z | mu, diag(e^logvar))
    gaussian_sample_log_density          the same at its own sample z = mu + sigma eps, from eps
    log_prior_ratio                      log p(z) - log q(z|x) for z = mu + sigma eps
    std, reparameterize                  sigma = e^(logvar/2), z = mu + eps sigma
"""
from __future__ import annotations

import math

import numpy as np

LOG_2PI = math.log(2 * math.pi)


# ------------------------------------------------------------------ the KL term
def gaussian_kl_terms(mu: np.ndarray, logvar: np.ndarray, expm1: np.ndarray | None = None) -> np.ndarray:
    """2 KL per latent dimension, mu^2 + (expm1(logvar) - logvar), each term >= 0: (..., L).

    e^logvar - 1 is formed as expm1(logvar), which keeps its relative accuracy near logvar = 0 (the
    prior), where the naive difference cancels; and expm1(logvar) - logvar (>= 0) is formed before mu^2
    (>= 0) is added, so only non-negative terms are summed.  ``expm1``: expm1(logvar), if already at hand.
    """
    terms = (np.expm1(logvar) if expm1 is None else expm1) - logvar
    terms += mu * mu
    return terms


def gaussian_kl(mu: np.ndarray, logvar: np.ndarray, expm1: np.ndarray | None = None) -> np.ndarray:
    """KL(N(mu, e^logvar) || N(0, I)) summed over the last axis: 1/2 sum_l (mu^2 + (expm1(logvar) - logvar))."""
    return 0.5 * gaussian_kl_terms(mu, logvar, expm1).sum(axis=-1)


# --------------------------------------------------------------- likelihoods
def bernoulli_nll_terms(logits: np.ndarray, x: np.ndarray, e: np.ndarray | None = None) -> np.ndarray:
    """-log Bernoulli(x | sigmoid(a)) per pixel: max(a, 0) - a x + log(1 + exp(-|a|)), a the logits.

    The stable form never exponentiates a positive number, so it is finite for logits of +-1e4 in
    float32 and float64, and exact where x is 0 or 1.  ``e``: exp(-|a|), if already at hand.
    x broadcasts against a ((B, 1, D) targets for (B, K, D) logits).
    """
    e = np.exp(-np.abs(logits)) if e is None else e           # in (0, 1]: never overflows
    terms = np.maximum(logits, 0)
    terms -= logits * x
    terms += np.log1p(e)
    return terms


def bernoulli_log_likelihood(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log p(x|z) = -sum_d bernoulli_nll_terms(a, x), from logits a (..., D) and targets x (..., D): (...,)."""
    a = np.asarray(logits)
    return -bernoulli_nll_terms(a, np.asarray(x, a.dtype)).sum(axis=-1)


def gaussian_nll_constant(features: int, variance: float) -> float:
    """D/2 log(2 pi variance), the part of the Gaussian nll that no parameter moves."""
    return 0.5 * features * math.log(2 * math.pi * variance)


def gaussian_nll(mean: np.ndarray, x: np.ndarray, variance: float, r: np.ndarray | None = None) -> np.ndarray:
    """-log N(x | mean, variance I) summed over the last axis, with its constant:
    1/(2 var) sum_d (x_d - m_d)^2 + D/2 log(2 pi var).  ``r``: mean - x, if already at hand."""
    r = mean - x if r is None else r
    dtype = r.dtype.type
    return (0.5 * dtype(1.0 / variance)) * np.einsum("...d,...d->...", r, r) \
        + dtype(gaussian_nll_constant(r.shape[-1], variance))


def gaussian_log_likelihood(mean: np.ndarray, x: np.ndarray, variance: float) -> np.ndarray:
    """log N(x | mean, variance I) summed over the last axis: -gaussian_nll."""
    return -gaussian_nll(mean, x, variance)


# ------------------------------------------------------------- latent densities
def standard_normal_log_density(z: np.ndarray) -> np.ndarray:
    """log N(z | 0, I) summed over the last axis: -1/2 sum_l (log 2pi + z_l^2)."""
    return -0.5 * (z * z + LOG_2PI).sum(axis=-1)


def diag_gaussian_log_density(z: np.ndarray, mu: np.ndarray, logvar: np.ndarray, r: np.ndarray | None = None,
                              scaled: np.ndarray | None = None) -> np.ndarray:
    """log N(z | mu, diag(e^logvar)) summed over the last axis: -1/2 sum_l [log 2pi + logvar_l + (z_l - mu_l)^2
    e^-logvar_l].  ``r`` = z - mu and ``scaled`` = r e^-logvar, if already at hand (a backward keeps them)."""
    r = z - mu if r is None else r
    scaled = r * np.exp(-logvar) if scaled is None else scaled
    terms = r * scaled
    terms += logvar
    terms += LOG_2PI
    return -0.5 * terms.sum(axis=-1)


def gaussian_sample_log_density(eps: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """log N(z | mu, diag(e^logvar)) at its own sample z = mu + e^(logvar/2) eps, where (z - mu)^2 e^-logvar
    = eps^2: -1/2 sum_l [eps_l^2 + log 2pi + logvar_l], logvar broadcast against eps."""
    terms = eps * eps
    terms += LOG_2PI
    terms = terms + logvar                      # broadcasts logvar (B, 1, L) against eps (B, K, L)
    return -0.5 * terms.sum(axis=-1)


def log_prior_ratio(z: np.ndarray, eps: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """log p(z) - log q(z|x) for z = mu + e^(logvar/2) eps, summed over the last axis:
    1/2 sum_l (eps^2 - z^2 + logvar).

    standard_normal_log_density(z) - diag_gaussian_log_density(z, mu, logvar) with (z - mu)^2 e^-logvar
    = eps^2: the log 2pi terms cancel.  logvar broadcasts against z ((B, 1, L) for (B, K, L) draws).
    """
    terms = eps * eps
    terms -= z * z
    terms += logvar
    return z.dtype.type(0.5) * terms.sum(axis=-1)


# --------------------------------------------------------- the reparameterization
def std(logvar: np.ndarray) -> np.ndarray:
    """sigma = exp(logvar / 2)."""
    return np.exp(0.5 * logvar)


def reparameterize(mu: np.ndarray, logvar: np.ndarray, eps: np.ndarray, sigma: np.ndarray | None = None) -> np.ndarray:
    """z = mu + eps * sigma, sigma = exp(logvar / 2) (``sigma``: if already at hand); shapes broadcast."""
    return mu + eps * (std(logvar) if sigma is None else sigma)

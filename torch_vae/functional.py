"""The model's probability math in PyTorch, each formula written once: ``numpy_vae.nn.functional``'s twin.

Same names, same terms, same grouping (so the parity suite compares like with like); autograd gives
the gradients.  Sums run over the last axis; shapes broadcast as in the NumPy module.

    gaussian_kl                     KL(N(mu, e^logvar) || N(0, I)), expm1 form
    bernoulli_nll                   -log Bernoulli(x | sigmoid(a)) from logits (torch's stable BCE with logits)
    gaussian_nll                    -log N(x | mean, variance I), the variance fixed, with its constant
    standard_normal_log_density     log N(z | 0, I)
    diag_gaussian_log_density       log N(z | mu, diag(e^logvar))
    log_prior_ratio                 log p(z) - log q(z|x) for z = mu + sigma eps
    std, reparameterize             sigma = e^(logvar/2), z = mu + eps sigma
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from numpy_vae.nn.functional import LOG_2PI, gaussian_nll_constant

__all__ = ["bernoulli_nll", "diag_gaussian_log_density", "gaussian_kl", "gaussian_nll", "log_prior_ratio",
           "reparameterize", "standard_normal_log_density", "std"]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the last axis: mu, logvar (..., L) -> (...,).

    1/2 sum (mu^2 + (expm1(logvar) - logvar)), numpy_vae's formula and grouping
    (docs/gradients.md#gaussian-kl-to-the-standard-normal).
    """
    return 0.5 * (mu.pow(2) + (torch.expm1(logvar) - logvar)).sum(-1)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(x | sigmoid(logits)) summed over the last axis: logits, x (..., D) -> (...,)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def gaussian_nll(mean: torch.Tensor, x: torch.Tensor, variance: float) -> torch.Tensor:
    """-log N(x | mean, variance I) summed over the last axis, with its constant: mean, x (..., D) -> (...,)."""
    r = mean - x
    return (0.5 / variance) * (r * r).sum(-1) + gaussian_nll_constant(x.shape[-1], variance)


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z | 0, I) summed over the last axis: -1/2 sum_l (log 2pi + z_l^2)."""
    return -0.5 * (LOG_2PI + z ** 2).sum(-1)


def diag_gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z | mu, diag(e^logvar)) summed over the last axis."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)


def log_prior_ratio(z: torch.Tensor, eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log p(z) - log q(z|x) = 1/2 sum_l (eps^2 - z^2 + logvar), logvar broadcast against z
    ((B, 1, L) for z, eps (B, K, L)) -> (B, K)."""
    return 0.5 * (eps * eps - z * z + logvar).sum(-1)


def std(logvar: torch.Tensor) -> torch.Tensor:
    """sigma = exp(logvar / 2)."""
    return torch.exp(0.5 * logvar)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + eps * exp(logvar / 2); shapes broadcast."""
    return mu + eps * std(logvar)

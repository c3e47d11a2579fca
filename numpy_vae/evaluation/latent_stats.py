"""What the encoder uses of its latent space: posterior statistics, per-dimension KL, active units.

A unit (latent dimension) u is *active* when the variance over the data of its
posterior mean, Var_x( E_q(z|x)[z_u] ) = Var_x(mu_u(x)), exceeds 0.01
(Burda, Grosse and Salakhutdinov, 2015, section 5.2).  An inactive unit has a
posterior that does not depend on the input: the decoder cannot read anything
from it, and its KL term has usually been driven to zero (posterior collapse).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nn import functional as F

ACTIVE_THRESHOLD = 0.01


def posterior_stats(encode, x: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """mu, logvar (N, L) of every row of ``x``, encoded ``batch_size`` rows at a time."""
    if len(x) == 0:
        raise ValueError("posterior_stats needs at least one image")
    parts = [encode(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return (np.concatenate([np.asarray(p[0]) for p in parts]),
            np.concatenate([np.asarray(p[1]) for p in parts]))


def kl_per_dimension(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(q(z_u|x) || N(0, 1)) of each latent dimension u, averaged over the rows: (L,), in nats."""
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    return 0.5 * F.gaussian_kl_terms(mu, logvar).mean(axis=0)


@dataclass
class ActiveUnits:
    count: int
    mask: np.ndarray          # (L,) bool: True where the unit is active
    variance: np.ndarray      # (L,) Var over the rows of mu_u
    threshold: float

    @property
    def latent(self) -> int:
        return len(self.mask)

    @property
    def mostly_inactive(self) -> bool:
        """More than half of the units carry no information about the input."""
        return 2 * self.count < self.latent


def active_units(mu: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> ActiveUnits:
    """Count the units whose posterior mean varies over the rows of ``mu`` (N, L) by more than ``threshold``."""
    mu = np.asarray(mu, np.float64)
    if mu.ndim != 2 or len(mu) < 2:
        raise ValueError(f"active_units needs posterior means of at least 2 inputs, shape (N, L); got {mu.shape}")
    variance = mu.var(axis=0)
    mask = variance > threshold
    return ActiveUnits(count=int(mask.sum()), mask=mask, variance=variance, threshold=threshold)


COLLAPSE_REMEDIES = (
    "KL warm-up (anneal beta from 0 to 1 over the first epochs, Bowman et al. 2016; Sonderby et al. 2016)",
    "a smaller beta (train with --beta below 1)",
    "free bits (do not penalise each unit's KL below a floor of lambda nats, Kingma et al. 2016)",
)


def collapse_message(units: ActiveUnits) -> str | None:
    """A warning in words when most units are inactive, with the usual remedies; None otherwise."""
    if not units.mostly_inactive:
        return None
    return (f"Posterior collapse: only {units.count} of {units.latent} latent units are active "
            f"(variance of the posterior mean over the test set above {units.threshold:g}). "
            f"The other units' posteriors ignore the input and match the prior, so they encode nothing. "
            f"Usual remedies: " + "; ".join(COLLAPSE_REMEDIES) + ".")

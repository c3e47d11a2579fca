"""The importance-weighted estimate of the test log-likelihood (Burda, Grosse and Salakhutdinov, 2015).

For one image x, with K draws z_k = mu + sigma * eps_k from the encoder's q(z|x)::

    log w_k  = log p(x|z_k) + log p(z_k) - log q(z_k|x)
    NLL_K(x) = -log (1/K) sum_k w_k          (a log-sum-exp of the log w_k)

E[NLL_K] decreases with K towards -log p(x); NLL_1 is the negative ELBO.
For the same draws, Jensen's inequality gives NLL_K <= -(1/K) sum_k log w_k
exactly, image by image.

Everything here is NumPy.  The model is reached only through two functions,
``encode(x) -> (mu, logvar)`` and ``decode_logits(z) -> logits`` (any backend
has them), and every eps is drawn in NumPy from a Generator seeded by
``(seed, index of the image)``.  So the result does not depend on the batch
or chunk sizes, on ``--limit``, or on which backend evaluates the network:
given the same weights, both backends see the same noise.

Memory stays bounded whatever K is: the K draws of an image are decoded in
chunks of at most ``max_rows`` rows (images x draws) and folded into a running
log-sum-exp, so no (K, 784) array ever exists for large K.
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..nn import functional as F
from ..streams import draw_eps, iwae_stream


def bernoulli_log_likelihood(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log p(x|z) from logits a (..., D) and targets x (..., D): (...,); ``functional.bernoulli_log_likelihood``
    (the stable form ``losses.BernoulliNLL`` computes).  ``x`` broadcasts: (B, 1, D) targets for (B, K, D)."""
    return F.bernoulli_log_likelihood(logits, x)


def gaussian_log_likelihood(variance: float):
    """log p(x|z) of the fixed-variance Gaussian likelihood, as a function of (mean (..., D), x): (...,),
    in float64: ``functional.gaussian_log_likelihood``, the negative of ``losses.GaussianNLL``."""
    def log_likelihood(mean: np.ndarray, x: np.ndarray) -> np.ndarray:
        return F.gaussian_log_likelihood(np.asarray(mean, np.float64), np.asarray(x, np.float64), variance)
    return log_likelihood


def _float64(*arrays) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(a, np.float64) for a in arrays)


#: The Generator of test image ``index``: its K draws of eps come from here, in order.
image_rng = iwae_stream


def _check_arguments(x, k, max_rows: int) -> tuple[np.ndarray, int]:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"K must be a positive integer number of importance samples, got {k!r}")
    if max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    x = np.asarray(x)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty (N, D) array of images, got shape {x.shape}")
    return x, int(k)


def _image_batches(x: np.ndarray, k: int, seed: int, first_index: int, max_rows: int, progress: bool, desc: str):
    """(start, images (b, D), their Generators, the sizes of their chunks of draws, the progress bar) for each
    batch of ``max(1, max_rows // K)`` images; each image's K draws come in chunks of at most ``max_rows``."""
    images_per_batch, chunk = max(1, max_rows // k), min(k, max_rows)
    with tqdm(total=len(x), desc=desc, unit="image", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(x), images_per_batch):
            xb = x[start:start + images_per_batch]
            rngs = [image_rng(seed, first_index + start + i) for i in range(len(xb))]
            yield start, xb, rngs, [min(chunk, k - k0) for k0 in range(0, k, chunk)], bar
            bar.update(len(xb))


def _fold(run_max: np.ndarray, run_sum: np.ndarray, logw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A running log-sum-exp per row, (max so far, sum_k exp(log w_k - max)), updated with a chunk logw (b, kc)."""
    new_max = np.maximum(run_max, logw.max(axis=1))
    return new_max, run_sum * np.exp(run_max - new_max) + np.exp(logw - new_max[:, None]).sum(axis=1)


@dataclass
class Estimate:
    """Per-image results of :func:`importance_weighted_nll` (all float64, shape (N,))."""

    nll: np.ndarray        # -log (1/K) sum_k w_k
    neg_elbo: np.ndarray   # mean_k [-log p(x|z_k)] + KL(q(z|x) || p(z)), the KL in closed form (as training reports it)
    neg_elbo_mc: np.ndarray  # -(1/K) sum_k log w_k, the same draws as nll: nll <= neg_elbo_mc exactly
    k: int
    seconds: float

    @staticmethod
    def _mean_se(values: np.ndarray) -> tuple[float, float]:
        """Mean and standard error of the mean; the standard error of one value is undefined (NaN), which is
        why `vae evaluate` refuses ``--limit 1`` and writes evaluation.json with ``allow_nan=False``."""
        n = len(values)
        se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        return float(values.mean()), se

    def summary(self) -> dict:
        nll, nll_se = self._mean_se(self.nll)
        elbo, elbo_se = self._mean_se(self.neg_elbo)
        gap, gap_se = self._mean_se(self.neg_elbo - self.nll)
        return {"k": self.k, "images": int(len(self.nll)), "seconds": self.seconds,
                "iwae_nll": nll, "iwae_nll_se": nll_se, "neg_elbo": elbo, "neg_elbo_se": elbo_se,
                "gap": gap, "gap_se": gap_se}


PER_IMAGE_FIELDS = ("index", "log_px", "k")


def per_image_csv(estimate: Estimate, first_index: int = 0) -> str:
    """Each image's estimate as CSV text: ``index`` (its place in the test set), ``log_px`` = -NLL_K(x), the
    importance-weighted estimate of log p(x) in nats (a lower bound in expectation), and ``k``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(PER_IMAGE_FIELDS)
    writer.writerows((first_index + i, repr(float(-v)), estimate.k) for i, v in enumerate(estimate.nll))
    return buf.getvalue()


def write_per_image(path, estimate: Estimate, first_index: int = 0) -> None:
    """Write :func:`per_image_csv` to ``path`` through a temporary file renamed into place: a reader never sees a
    half-written file, and an interrupted write leaves the old one (if any).  OSError if it cannot be written."""
    from ..training.checkpoint import atomic_write
    text = per_image_csv(estimate, first_index).encode()
    atomic_write(Path(path), lambda f: f.write(text))


def importance_weighted_nll(encode, decode_logits, x: np.ndarray, k: int = 5000, seed: int = 0,
                            first_index: int = 0, max_rows: int = 4096, progress: bool = False,
                            desc: str = "IWAE", log_likelihood=bernoulli_log_likelihood) -> Estimate:
    """The importance-weighted NLL estimate of every row of ``x`` (N, 784), with K draws each.

    ``encode(x) -> (mu, logvar)`` and ``decode_logits(z) -> the decoder's output`` are the model
    (e.g. a backend's methods); ``log_likelihood(output, x)`` reads log p(x|z) off that output
    (Bernoulli logits by default; :func:`gaussian_log_likelihood` for the gaussian models).  Row i uses the Generator ``image_rng(seed, first_index + i)``.
    Rows are processed ``max(1, max_rows // K)`` images at a time, and each image's
    draws in chunks of at most ``max_rows`` rows.
    """
    x, k = _check_arguments(x, k, max_rows)
    n = len(x)
    nll, neg_elbo, neg_elbo_mc = (np.empty(n) for _ in range(3))
    t0 = time.perf_counter()
    for start, xb, rngs, chunks, bar in _image_batches(x, k, seed, first_index, max_rows, progress, desc):
        b = len(xb)
        mu, logvar = (np.asarray(a) for a in encode(xb))
        latent = mu.shape[1]
        run_max = np.full(b, -np.inf)          # running log-sum-exp: max so far ...
        run_sum = np.zeros(b)                  # ... and sum_k exp(log w_k - max)
        sum_logw = np.zeros(b)
        sum_loglik = np.zeros(b)
        sigma = F.std(logvar)[:, None, :]
        for kc in chunks:
            eps = np.stack([draw_eps(r, kc, latent, mu.dtype) for r in rngs])      # (b, kc, L)
            z = F.reparameterize(mu[:, None, :], logvar[:, None, :], eps, sigma)   # as Reparameterize: model dtype
            logits = np.asarray(decode_logits(z.reshape(b * kc, latent))).reshape(b, kc, -1)
            loglik = np.asarray(log_likelihood(logits, xb[:, None, :]), np.float64)         # (b, kc)
            logw = loglik + F.log_prior_ratio(*_float64(z, eps, logvar[:, None, :]))
            sum_logw += logw.sum(axis=1)
            sum_loglik += loglik.sum(axis=1)
            run_max, run_sum = _fold(run_max, run_sum, logw)
        sl = slice(start, start + b)
        nll[sl] = -(run_max + np.log(run_sum) - math.log(k))
        neg_elbo_mc[sl] = -sum_logw / k
        neg_elbo[sl] = -sum_loglik / k + F.gaussian_kl(*_float64(mu, logvar))
        if not bar.disable:
            bar.set_postfix(nll=f"{nll[:start + b].mean():.2f}")
    return Estimate(nll=nll, neg_elbo=neg_elbo, neg_elbo_mc=neg_elbo_mc, k=k, seconds=time.perf_counter() - t0)


def importance_weighted_nll_chain(log_weights, noise_dim: int, dtype, x: np.ndarray, k: int = 5000, seed: int = 0,
                                  first_index: int = 0, max_rows: int = 4096, progress: bool = False,
                                  desc: str = "IWAE") -> Estimate:
    """As :func:`importance_weighted_nll`, for a model that computes its own log-weights: several stochastic
    layers (``numpy_vae.hvae.HVAE.log_weights(x (b, D), eps (b, kc, N)) -> log w (b, kc)``), the proposals
    drawn through the whole encoder chain.  Row i's eps (K, N) comes from ``image_rng(seed, first_index + i)``.
    There is no closed-form KL across layers, so ``neg_elbo`` is the Monte Carlo one, ``neg_elbo_mc``.
    """
    x, k = _check_arguments(x, k, max_rows)
    nll, neg_elbo_mc = np.empty(len(x)), np.empty(len(x))
    t0 = time.perf_counter()
    for start, xb, rngs, chunks, _ in _image_batches(x, k, seed, first_index, max_rows, progress, desc):
        b = len(xb)
        run_max, run_sum, sum_logw = np.full(b, -np.inf), np.zeros(b), np.zeros(b)
        for kc in chunks:
            eps = np.stack([draw_eps(r, kc, noise_dim, dtype) for r in rngs])                  # (b, kc, N)
            logw = np.asarray(log_weights(xb, eps), np.float64)
            sum_logw += logw.sum(axis=1)
            run_max, run_sum = _fold(run_max, run_sum, logw)
        nll[start:start + b] = -(run_max + np.log(run_sum) - math.log(k))
        neg_elbo_mc[start:start + b] = -sum_logw / k
    return Estimate(nll=nll, neg_elbo=neg_elbo_mc.copy(), neg_elbo_mc=neg_elbo_mc, k=k,
                    seconds=time.perf_counter() - t0)

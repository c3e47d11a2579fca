"""The importance-weighted NLL estimate: exact identities, the bound, its tightening with K, chunking."""
import math

import numpy as np
import pytest
import torch  # noqa: F401  (a dependency: without it these tests fail, never skip)

from numpy_vae.evaluation.iwae import bernoulli_log_likelihood, image_rng, importance_weighted_nll
from numpy_vae.streams import draw_eps
from numpy_vae.training.restore import load_backend


@pytest.fixture(scope="module")
def trained(small_run):
    backend, _, _ = load_backend(small_run / "last.npz")
    return backend


@pytest.fixture(scope="module")
def images(mnist_test):
    return mnist_test[0][:300]


def _log_normal(v, mean, var):
    return (-0.5 * (np.log(2 * np.pi * var) + (v - mean) ** 2 / var)).sum(axis=-1)


def test_k1_is_the_elbo_of_the_same_noise(trained, images):
    x = images[:40]
    est = importance_weighted_nll(trained.encode, trained.decode_logits, x, k=1, seed=3)
    eps = np.concatenate([draw_eps(image_rng(3, i), 1, 2, np.float32) for i in range(len(x))])
    model = trained.model
    per_image_loss = [model.forward(x[i:i + 1], eps[i:i + 1])["loss"] for i in range(len(x))]
    # the closed-form-KL ELBO, as training computes it, from the very same eps
    np.testing.assert_allclose(est.neg_elbo, per_image_loss, rtol=2e-6)
    # NLL_1 = -log w_1, written out with every density in full (2 pi terms included)
    out = model.forward(x, eps)
    z, mu, var = (out[k].astype(np.float64) for k in ("z", "mu", "logvar"))
    var = np.exp(var)
    log_px = -model.likelihood.forward(out["logits"], x)[0].astype(np.float64)
    log_w = log_px + _log_normal(z, 0.0, 1.0) - _log_normal(z, mu, var)
    np.testing.assert_allclose(est.nll, -log_w, rtol=1e-6)
    np.testing.assert_array_equal(est.nll, est.neg_elbo_mc)


def test_the_estimate_is_at_most_the_elbo_image_by_image(trained, images):
    est = importance_weighted_nll(trained.encode, trained.decode_logits, images[:100], k=50)
    assert (est.nll <= est.neg_elbo_mc + 1e-9).all()          # Jensen, for the same draws
    assert est.nll.mean() < est.neg_elbo.mean()               # and below the closed-form-KL ELBO on average


def test_the_estimate_tightens_as_k_grows(trained, images):
    est = {k: importance_weighted_nll(trained.encode, trained.decode_logits, images, k=k) for k in (1, 10, 100)}
    means = [est[k].nll.mean() for k in (1, 10, 100)]
    assert means[0] > means[1] > means[2], means
    # not by chance: each step down is over 3 standard errors of the paired per-image differences
    for small, large in ((1, 10), (10, 100)):
        d = est[small].nll - est[large].nll
        assert d.mean() > 3 * d.std(ddof=1) / math.sqrt(len(d)), (small, large, d.mean(), d.std())
    # and the ELBO estimated from the K=100 draws stays above it by more than its standard error
    s100 = est[100].summary()
    assert s100["neg_elbo"] - s100["iwae_nll"] > 3 * s100["gap_se"], s100


def test_chunking_batching_and_limits_do_not_change_the_result(trained, images):
    x = images[:12]
    ref = importance_weighted_nll(trained.encode, trained.decode_logits, x, k=64, seed=7)
    for max_rows in (1, 10, 64, 100, 10_000):           # chunks of K, one image at a time, many images at once
        got = importance_weighted_nll(trained.encode, trained.decode_logits, x, k=64, seed=7, max_rows=max_rows)
        np.testing.assert_allclose(got.nll, ref.nll, rtol=1e-6)
        np.testing.assert_allclose(got.neg_elbo, ref.neg_elbo, rtol=1e-6)
    tail = importance_weighted_nll(trained.encode, trained.decode_logits, x[5:], k=64, seed=7, first_index=5)
    np.testing.assert_allclose(tail.nll, ref.nll[5:], rtol=1e-6)
    other = importance_weighted_nll(trained.encode, trained.decode_logits, x, k=64, seed=8)
    assert not np.allclose(other.nll, ref.nll)


def test_running_logsumexp_matches_the_direct_one(trained, images):
    x = images[:1]
    k = 200
    est = importance_weighted_nll(trained.encode, trained.decode_logits, x, k=k, seed=2, max_rows=17)
    mu, logvar = trained.encode(x)
    eps = draw_eps(image_rng(2, 0), k, 2, np.float32)
    z = mu + eps * np.exp(0.5 * logvar)
    logits = trained.decode_logits(z)
    log_w = (bernoulli_log_likelihood(logits, x).astype(np.float64)
             + _log_normal(z.astype(np.float64), 0.0, 1.0)
             - _log_normal(z.astype(np.float64), mu.astype(np.float64), np.exp(logvar.astype(np.float64))))
    direct = -(np.logaddexp.reduce(log_w) - math.log(k))
    np.testing.assert_allclose(est.nll[0], direct, rtol=1e-7)   # decoded in other batches: float32 rounding


def test_no_underflow_when_every_weight_is_tiny():
    # q = p (mu 0, logvar 0), so log w = log p(x|z) = -784 * log(1 + e^60) ~ -47040 for every draw:
    # exp(log w) is 0 in float64, yet the estimate must be exactly -log p(x|z).
    def encode(x):
        return np.zeros((len(x), 3), np.float32), np.zeros((len(x), 3), np.float32)

    def decode_logits(z):
        return np.full((len(z), 784), -60.0, np.float32)

    x = np.ones((2, 784), np.float32)
    est = importance_weighted_nll(encode, decode_logits, x, k=300, max_rows=128)
    expected = 784 * (60 + math.log1p(math.exp(-60)))
    np.testing.assert_allclose(est.nll, expected, rtol=1e-6)
    np.testing.assert_allclose(est.neg_elbo, expected, rtol=1e-6)


@pytest.mark.parametrize("k", [0, -5, 2.5, True, "10"])
def test_k_must_be_a_positive_integer(k):
    with pytest.raises(ValueError, match="K must be a positive integer"):
        importance_weighted_nll(lambda x: None, lambda z: None, np.zeros((1, 784)), k=k)


def test_the_torch_backend_gives_the_same_estimate(small_run, images):
    torch_backend, _, _ = load_backend(small_run / "last.npz", backend="torch")      # torch is a dependency
    numpy_backend, _, _ = load_backend(small_run / "last.npz")
    x = images[:20]
    a = importance_weighted_nll(numpy_backend.encode, numpy_backend.decode_logits, x, k=100, seed=1)
    b = importance_weighted_nll(torch_backend.encode, torch_backend.decode_logits, x, k=100, seed=1)
    np.testing.assert_allclose(b.nll, a.nll, rtol=1e-5)
    np.testing.assert_allclose(b.neg_elbo, a.neg_elbo, rtol=1e-5)

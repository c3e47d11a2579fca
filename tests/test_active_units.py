"""Active units (Burda et al. 2015) and per-dimension KL, on constructed cases where the answer is known."""
import numpy as np
import pytest

from numpy_vae.evaluation.latent_stats import (ACTIVE_THRESHOLD, active_units, collapse_message, kl_per_dimension,
                                               posterior_stats)
from numpy_vae.nn.losses import GaussianKL
from numpy_vae.training.restore import load_backend


def test_count_follows_the_variance_of_each_column():
    rng = np.random.default_rng(0)
    n = 10_000
    base = rng.standard_normal(n)
    base = (base - base.mean()) / base.std()              # exactly mean 0, variance 1
    mu = np.column_stack([base * 1.0,                     # var 1       -> active
                          np.full(n, 3.7),                # constant    -> inactive
                          base * np.sqrt(0.005),          # var 0.005   -> inactive
                          base * np.sqrt(0.02) + 5,       # var 0.02    -> active (an offset changes nothing)
                          base * np.sqrt(0.0099)])        # just below the threshold -> inactive
    units = active_units(mu)
    assert units.count == 2
    assert units.mask.tolist() == [True, False, False, True, False]
    np.testing.assert_allclose(units.variance, [1, 0, 0.005, 0.02, 0.0099], rtol=1e-9, atol=1e-12)
    assert units.threshold == ACTIVE_THRESHOLD == 0.01
    assert active_units(mu, threshold=0.001).count == 4


def test_too_few_rows_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        active_units(np.zeros((1, 3)))


@pytest.mark.parametrize("k", [0, 1])
def test_a_unit_whose_mean_ignores_the_input_is_inactive(small_run, mnist_test, k):
    backend, _, _ = load_backend(small_run / "last.npz")
    x = mnist_test[0][:2000]
    before = active_units(posterior_stats(backend.encode, x)[0])
    assert before.mask.all(), f"the trained 2-D model should use both units: variances {before.variance}"

    backend.model.params["fc_mu.weight"][k] = 0.0         # mu_k = fc_mu.bias[k] for every input
    mu, _ = posterior_stats(backend.encode, x)
    assert np.ptp(mu[:, k]) == 0.0
    after = active_units(mu)
    assert after.count == before.count - 1
    assert not after.mask[k]
    others = np.arange(len(after.mask)) != k
    assert after.mask[others].all()
    np.testing.assert_array_equal(after.variance[others], before.variance[others])


def test_per_dimension_kl_sums_to_the_models_kl(small_run, mnist_test):
    backend, _, _ = load_backend(small_run / "last.npz")
    mu, logvar = posterior_stats(backend.encode, mnist_test[0][:3000], batch_size=700)
    per_dim = kl_per_dimension(mu, logvar)
    assert per_dim.shape == (2,) and (per_dim > 0).all()
    np.testing.assert_allclose(per_dim.sum(), GaussianKL().forward(mu.astype(np.float64), logvar.astype(np.float64))[0].mean(), rtol=1e-9)
    # a unit whose posterior is exactly the prior contributes nothing
    zero = kl_per_dimension(np.zeros((4, 3)), np.zeros((4, 3)))
    np.testing.assert_array_equal(zero, 0.0)


def test_collapse_message_only_when_most_units_are_inactive():
    def units(n_active, latent):
        mu = np.zeros((100, latent))
        mu[:, :n_active] = np.linspace(-1, 1, 100)[:, None]
        return active_units(mu)

    assert collapse_message(units(10, 20)) is None          # half active: not "most inactive"
    assert collapse_message(units(2, 2)) is None
    message = collapse_message(units(3, 20))
    assert message is not None and "3 of 20" in message
    for remedy in ("warm-up", "beta", "free bits"):
        assert remedy in message

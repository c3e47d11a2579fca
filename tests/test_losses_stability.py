"""The loss terms stay finite and exact where naive formulas overflow."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from numpy_vae.nn.activations import sigmoid
from numpy_vae.nn.losses import BernoulliNLL, GaussianKL
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_nll_is_finite_and_exact_for_huge_logits(dtype):
    logits = np.array([[1e4, -1e4, 1e4, -1e4, 0.0]], dtype)
    x = np.array([[1.0, 0.0, 0.0, 1.0, 0.5]], dtype)
    loss = BernoulliNLL()
    with np.errstate(over="raise", invalid="raise", divide="raise"):                      # no overflow, no invalid operation (underflow to 0 is exact enough)
        nll = loss.forward(logits, x)
        dlogits, dx = loss.backward(np.ones(1, dtype))
    # right with certainty costs 0 nats, wrong with certainty costs |logit| nats, logit 0 costs log 2
    np.testing.assert_allclose(nll, [1e4 + 1e4 + np.log(2)], rtol=1e-6)
    np.testing.assert_array_equal(dlogits, np.array([[0, 0, 1, -1, 0]], dtype))
    assert np.isfinite(dx).all() and nll.dtype == dtype


@given(st.floats(-700, 700), st.floats(0, 1))
def test_bernoulli_nll_equals_the_naive_formula_where_that_is_safe(a, x):
    p = 1 / (1 + np.exp(-a))
    naive = -(x * np.log(p) + (1 - x) * np.log1p(-p)) if 1e-300 < p < 1 - 1e-16 else None
    stable = BernoulliNLL().forward(np.array([[a]]), np.array([[x]]))[0]
    assert np.isfinite(stable) and stable >= -1e-12
    if naive is not None and abs(a) < 30:
        assert abs(stable - naive) <= 1e-9 * max(1.0, abs(naive))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_has_no_overflow_and_saturates_exactly(dtype):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = sigmoid(np.array([-1e4, -50, 0, 50, 1e4], dtype))
    assert s[0] == 0 and s[-1] == 1 and s[2] == 0.5 and s.dtype == dtype
    assert 0 < s[1] < 1e-20 and s[3] == 1.0


def test_gaussian_kl_is_zero_at_the_prior_and_finite_at_extremes():
    kl = GaussianKL()
    assert kl.forward(np.zeros((2, 5)), np.zeros((2, 5))).tolist() == [0.0, 0.0]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        vals = kl.forward(np.array([[0.0, 0.0]]), np.array([[30.0, -30.0]]))
    np.testing.assert_allclose(vals, [-0.5 * ((1 + 30 - np.exp(30)) + (1 - 30 - np.exp(-30)))])

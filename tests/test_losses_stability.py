"""The loss terms stay finite and exact where naive formulas overflow or cancel.

Where a closed form cancels (the KL near the prior, the sigmoid's derivative on its
positive tail) the reference is exact: Python's ``decimal`` at 50 digits, from the
very float inputs the layer saw.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from numpy_vae.nn.activations import Sigmoid, sigmoid
from numpy_vae.nn.gradcheck import exact_gaussian_kl as exact_kl, exact_sigmoid_derivative
from numpy_vae.nn.losses import BernoulliNLL, GaussianKL

# Per-element relative tolerance against the exact reference: a few ulps (float64 1e-14 = 45 ulps of 1,
# float32 1e-6 = 8 ulps of 1); measured worst cases are quoted at each test.
EXACT_RTOL = {np.dtype(np.float64): 1e-14, np.dtype(np.float32): 1e-6}


def per_element_relative_error(a: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|a - exact| / |exact| per element; where exact is 0, 0 if a is exactly 0 and inf otherwise."""
    diff = np.abs(np.asarray(a, np.float64) - exact)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(exact == 0, np.where(diff == 0, 0.0, np.inf), diff / np.abs(exact))


def assert_kl_matches_exact(mu, logvar, dkl, dtype):
    """GaussianKL's forward and both gradients against ``exact_kl`` of the same (cast) inputs.

    dmu and dlogvar: per element, EXACT_RTOL relative (exactly 0 where the exact value is 0).
    kl: per row, within EXACT_RTOL of kl + 1/2 sum |logvar|.  That is relative wherever mu^2 or
    logvar^2 / 2 is not tiny next to |logvar|; below that, expm1(logvar) - logvar = logvar^2/2 + ...
    cancels, and its rounding is that of expm1(logvar), u |logvar| (the cancellation
    docs/gradients.md accepts), where exp(logvar) - 1 - logvar lost u per dimension.
    Returns the worst errors (forward in that scale, dlogvar relative) for the record.
    """
    mu, logvar, dkl = (np.asarray(a, np.float64).astype(dtype) for a in (mu, logvar, dkl))
    rtol = EXACT_RTOL[np.dtype(dtype)]
    kl, backward = GaussianKL().forward(mu, logvar)
    dmu, dlogvar = backward(dkl)
    assert kl.dtype == dmu.dtype == dlogvar.dtype == dtype
    kl_x, dmu_x, dlv_x = exact_kl(mu, logvar, dkl)
    dlv_err = per_element_relative_error(dlogvar, dlv_x)
    assert dlv_err.max() <= rtol, (f"dlogvar: relative error {dlv_err.max():.3e} at logvar="
                                   f"{logvar.flat[dlv_err.argmax()]!r}", dlogvar, dlv_x)
    dmu_err = per_element_relative_error(dmu, dmu_x)
    assert dmu_err.max() <= rtol, (dmu_err.max(), dmu, dmu_x)
    scale = kl_x + 0.5 * np.abs(logvar.astype(np.float64)).sum(1)
    fwd_err = np.abs(kl.astype(np.float64) - kl_x)
    assert (fwd_err <= rtol * scale).all(), (f"kl: error {fwd_err.max():.3e}, allowed "
                                             f"{rtol:.0e} x {scale[fwd_err.argmax()]:.3e}", kl, kl_x)
    return float(np.max(fwd_err / np.where(scale > 0, scale, 1))), float(dlv_err.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_nll_is_finite_and_exact_for_huge_logits(dtype):
    logits = np.array([[1e4, -1e4, 1e4, -1e4, 0.0]], dtype)
    x = np.array([[1.0, 0.0, 0.0, 1.0, 0.5]], dtype)
    loss = BernoulliNLL()
    with np.errstate(over="raise", invalid="raise", divide="raise"):                      # no overflow, no invalid operation (underflow to 0 is exact enough)
        nll, backward = loss.forward(logits, x)
        dlogits, dx = backward(np.ones(1, dtype))
    # right with certainty costs 0 nats, wrong with certainty costs |logit| nats, logit 0 costs log 2
    np.testing.assert_allclose(nll, [1e4 + 1e4 + np.log(2)], rtol=1e-6)
    np.testing.assert_array_equal(dlogits, np.array([[0, 0, 1, -1, 0]], dtype))
    assert np.isfinite(dx).all() and nll.dtype == dtype


@given(st.floats(-700, 700), st.floats(0, 1))
def test_bernoulli_nll_equals_the_naive_formula_where_that_is_safe(a, x):
    p = 1 / (1 + np.exp(-a))
    q = 1 / (1 + np.exp(a))         # 1 - p, formed directly: log1p(-p) loses u / (1 - p) (5e-8 at a = 20)
    naive = -(x * np.log(p) + (1 - x) * np.log(q)) if 1e-300 < p < 1 - 1e-16 else None
    stable = BernoulliNLL().forward(np.array([[a]]), np.array([[x]]))[0][0]
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
    at_prior, backward = kl.forward(np.zeros((2, 5)), np.zeros((2, 5)))
    assert at_prior.tolist() == [0.0, 0.0]
    dmu, dlogvar = backward(np.ones(2))
    assert not dmu.any() and not dlogvar.any()              # exactly 0: the prior is the minimum
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        vals, backward = kl.forward(np.array([[0.0, 0.0]]), np.array([[30.0, -30.0]]))
        _, dlogvar = backward(np.ones(1))
    np.testing.assert_allclose(vals, [-0.5 * ((1 + 30 - np.exp(30)) + (1 - 30 - np.exp(-30)))], rtol=1e-15)
    np.testing.assert_allclose(dlogvar, [[0.5 * (np.exp(30) - 1), 0.5 * (np.exp(-30) - 1)]], rtol=1e-15)


# Every combination of logvar in {0, +-1e-8, +-1e-6, +-1e-3} and mu in {0, +-1e-8, +-1e-4, +-1e-3},
# one latent dimension per row (so each row's kl is one element), upstream gradients not all 1.
NEAR_PRIOR_LOGVAR = [0.0, 1e-8, -1e-8, 1e-6, -1e-6, 1e-3, -1e-3]
NEAR_PRIOR_MU = [0.0, 1e-8, -1e-8, 1e-4, -1e-4, 1e-3, -1e-3]


# Measured (relative to the exact value, per element), before -> after the expm1 rewrite:
#   dlogvar float32: 1.0 at |logvar| = 1e-8 (exp rounds to 1), 7.3e-2 at 1e-6, 2.3e-5 at 1e-3  ->  <= 8.5e-8
#   dlogvar float64: 1.1e-8 at 1e-8, 3.8e-11 at 1e-6, 4.3e-14 at 1e-3                          ->  <= 2.0e-16
#   kl at mu = 1e-3, logvar = 1e-6: float32 1.3e-1, float64 7.3e-11  ->  2.9e-8, 2.1e-16
#   kl in units of kl + 1/2 sum |logvar|: float32 1.0, float64 1.1e-1  ->  5.4e-8, 2.1e-16
# (What remains is the cancellation of expm1(logvar) - logvar that docs/gradients.md accepts: at
# mu = 0 the forward is still 9.1e-2 off relative at logvar = 1e-6 in float32, 1.4e-8 at 1e-8 in
# float64, an absolute u |logvar|; before, 2.4e5 and 1.0.)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_kl_near_the_prior_matches_an_exact_reference(dtype):
    grid = np.array([(m, lv) for m in NEAR_PRIOR_MU for lv in NEAR_PRIOR_LOGVAR])
    mu, logvar = grid[:, :1], grid[:, 1:]
    dkl = np.resize([1.0, -0.37, 3.3, 1 / 64], len(grid))
    assert_kl_matches_exact(mu, logvar, dkl, dtype)
    # the same values as wider rows (several latent dimensions summed per row)
    assert_kl_matches_exact(mu.reshape(7, 7), logvar.reshape(7, 7), dkl[:7], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_kl_forward_is_relatively_exact_where_mu_dominates(dtype):
    """The point measured at 1.3e-1 relative error in float32 before expm1: mu = 1e-3, logvar = 1e-6."""
    mu, logvar = np.array([[1e-3]], dtype), np.array([[1e-6]], dtype)
    kl, _ = GaussianKL().forward(mu, logvar)
    exact, _, _ = exact_kl(mu, logvar, np.ones(1))
    assert per_element_relative_error(kl, exact).max() <= EXACT_RTOL[np.dtype(dtype)]


# Magnitudes below 1e-12 become exact 0 (as parity_helpers.values does below 1e-6): their squares or
# products with dkl would be float32 subnormals, where rounding is absolute, not relative.
near_zero = st.one_of(st.sampled_from([0.0, 1e-8, -1e-8, 1e-6, -1e-6, 1e-3, -1e-3]),
                      st.floats(-1e-3, 1e-3), st.floats(-1e-7, 1e-7), st.floats(-1, 1)
                      ).map(lambda v: v if abs(v) >= 1e-12 else 0.0)
upstream = st.floats(-10, 10).filter(lambda v: abs(v) > 1e-6 or v == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data(), b=st.integers(1, 4), latent=st.integers(1, 8))
def test_gaussian_kl_near_the_prior_matches_an_exact_reference_drawn(dtype, data, b, latent):
    lists = lambda n, el: st.lists(el, min_size=n, max_size=n)  # noqa: E731
    mu = np.array(data.draw(lists(b * latent, near_zero))).reshape(b, latent)
    logvar = np.array(data.draw(lists(b * latent, near_zero))).reshape(b, latent)
    dkl = np.array(data.draw(lists(b, upstream)))
    assert_kl_matches_exact(mu, logvar, dkl, dtype)


# Sigmoid's derivative, sigma(x) sigma(-x) = e / (1 + e)^2 with e = exp(-|x|).  The former y (1 - y)
# had float32 relative error 4.6e-4 at x = 10 and returned 0 for x >= 17 (true 4.1e-8 at 17).
# Measured now, per element against the exact value: float32 <= 1.6e-7 (2.0e-8 at 17; 6.8e-8 at
# +-88, whose 6.05e-39 is a float32 subnormal), float64 <= 2.7e-16.
SIGMOID_TAILS = {np.dtype(np.float32): [10.0, 17.0, 30.0, -30.0, 88.0, -88.0, -10.0, 0.0, 1.0],
                 np.dtype(np.float64): [10.0, 17.0, 30.0, -30.0, 88.0, 700.0, -700.0, 0.0, 1.0]}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_derivative_is_accurate_on_both_tails(dtype):
    x = np.array(SIGMOID_TAILS[np.dtype(dtype)], dtype)
    finfo = np.finfo(dtype)
    for dy in (np.ones_like(x), np.full_like(x, 0.75)):
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            _, backward = Sigmoid().forward(x)
            dx = backward(dy)
        assert dx.dtype == dtype
        exact = exact_sigmoid_derivative(x) * dy.astype(np.float64)
        normal = exact >= finfo.tiny
        err = per_element_relative_error(dx, exact)
        assert (dx[normal] > 0).all(), (x[normal], dx[normal])
        assert err[normal].max() <= EXACT_RTOL[np.dtype(dtype)], dict(zip(x[normal], err[normal]))
        # below the smallest normal float (x = +-88 in float32: 6.05e-39) rounding is absolute
        sub = np.abs(dx[~normal].astype(np.float64) - exact[~normal])
        assert (sub <= 2 * finfo.smallest_subnormal).all(), (x[~normal], dx[~normal], exact[~normal])

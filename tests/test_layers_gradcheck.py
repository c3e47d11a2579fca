"""Every hand-written backward against central finite differences (float64), Hypothesis drawing shapes and values."""
import numpy as np
from hypothesis import given, strategies as st

from numpy_vae.nn.gradcheck import numerical_gradient, relative_error
from numpy_vae.nn.activations import ReLU, Sigmoid
from numpy_vae.nn.linear import Linear
from numpy_vae.nn.losses import BernoulliNLL, GaussianKL
from numpy_vae.nn.reparameterize import Reparameterize
TOL = 1e-6
seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 9)


def assert_gradient(analytic, f, x, tol=TOL, h=1e-6):
    """analytic == finite differences of f with respect to x, to ``tol`` relative.

    Entries far below the finite differences' rounding noise (eps |f| / h) are judged against
    1e4 times that noise instead of their own tiny size (see numpy_vae.nn.gradcheck).
    """
    numeric = numerical_gradient(f, x, h)
    floor = 1e4 * np.finfo(np.float64).eps * abs(f()) / h * np.sqrt(x.size)
    err = relative_error(analytic, numeric, floor)
    assert err < tol, (err, analytic, numeric)


def weighted_sum(out, w):
    """A scalar of the output with random weights, so every output element matters: L = sum w * out."""
    return float((out * w).sum())


@given(seeds, sizes, sizes, sizes)
def test_linear_backward_matches_finite_differences(seed, batch, n_in, n_out):
    rng = np.random.default_rng(seed)
    x, W, b = rng.normal(size=(batch, n_in)), rng.normal(size=(n_out, n_in)), rng.normal(size=n_out)
    w = rng.normal(size=(batch, n_out))
    layer = Linear(W, b)
    layer.forward(x)
    dx = layer.backward(w)
    f = lambda: weighted_sum(layer.forward(x), w)  # noqa: E731
    assert_gradient(dx, f, x)
    assert_gradient(layer.grads["weight"], f, W)
    assert_gradient(layer.grads["bias"], f, b)


@given(seeds, sizes, sizes)
def test_linear_backward_without_input_gradient_still_fills_grads(seed, batch, n):
    rng = np.random.default_rng(seed)
    layer = Linear(rng.normal(size=(n, n)), rng.normal(size=n))
    x, dy = rng.normal(size=(batch, n)), rng.normal(size=(batch, n))
    layer.forward(x)
    assert layer.backward(dy, need_dx=False) is None
    np.testing.assert_allclose(layer.grads["weight"], dy.T @ x, rtol=1e-12)


@given(seeds, sizes, sizes)
def test_relu_backward_matches_finite_differences(seed, batch, n):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, n))
    x[np.abs(x) < 1e-3] = 0.5            # keep away from the kink, where no derivative exists
    w = rng.normal(size=x.shape)
    layer = ReLU()
    layer.forward(x)
    dx = layer.backward(w)
    assert_gradient(dx, lambda: weighted_sum(layer.forward(x), w), x)


@given(seeds, sizes, sizes, st.floats(0.1, 30))
def test_sigmoid_backward_matches_finite_differences(seed, batch, n, scale):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=scale, size=(batch, n))
    w = rng.normal(size=x.shape)
    layer = Sigmoid()
    layer.forward(x)
    dx = layer.backward(w)
    # Deep in saturation sigmoid(x) = 1 - 1e-10 and the finite differences of numbers near 1
    # keep few digits: 1e-4 (the autograd parity test holds this backward to 1e-10).
    assert_gradient(dx, lambda: weighted_sum(layer.forward(x), w), x, tol=1e-4)


@given(seeds, sizes, sizes)
def test_bernoulli_nll_backward_matches_finite_differences(seed, batch, n):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3, size=(batch, n))
    x = rng.uniform(size=(batch, n))
    x[0, 0] = 0.0
    x[-1, -1] = 1.0
    w = rng.normal(size=batch)
    loss = BernoulliNLL()
    loss.forward(logits, x)
    dlogits, dx = loss.backward(w)
    f = lambda: weighted_sum(loss.forward(logits, x), w)  # noqa: E731
    assert_gradient(dlogits, f, logits)
    assert_gradient(dx, f, x)


@given(seeds, sizes, sizes)
def test_gaussian_kl_backward_matches_finite_differences(seed, batch, n):
    rng = np.random.default_rng(seed)
    mu, logvar = rng.normal(size=(batch, n)), rng.normal(scale=2, size=(batch, n))
    w = rng.normal(size=batch)
    kl = GaussianKL()
    kl.forward(mu, logvar)
    dmu, dlogvar = kl.backward(w)
    f = lambda: weighted_sum(kl.forward(mu, logvar), w)  # noqa: E731
    assert_gradient(dmu, f, mu)
    assert_gradient(dlogvar, f, logvar)


@given(seeds, sizes, sizes)
def test_reparameterize_backward_matches_finite_differences(seed, batch, n):
    rng = np.random.default_rng(seed)
    mu, logvar, eps = rng.normal(size=(batch, n)), rng.normal(size=(batch, n)), rng.normal(size=(batch, n))
    w = rng.normal(size=(batch, n))
    rep = Reparameterize()
    rep.forward(mu, logvar, eps)
    dmu, dlogvar = rep.backward(w)
    f = lambda: weighted_sum(rep.forward(mu, logvar, eps), w)  # noqa: E731
    assert_gradient(dmu, f, mu)
    assert_gradient(dlogvar, f, logvar)


def test_gradient_checker_catches_a_wrong_backward():
    """The checker itself can fail: a backward with a factor-2 slip is far outside the tolerance."""
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    kl = GaussianKL()
    f = lambda: float(kl.forward(mu, logvar).sum())  # noqa: E731
    wrong = np.exp(logvar) - 1                        # missing the 1/2
    assert relative_error(wrong, numerical_gradient(f, logvar)) > 0.5

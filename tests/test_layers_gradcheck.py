"""Every hand-written backward against central finite differences (float64), Hypothesis drawing shapes and values."""
import numpy as np
from hypothesis import example, given, strategies as st

from numpy_vae.nn.gradcheck import assert_gradient, numerical_gradient, relative_error
from numpy_vae.nn.activations import ReLU, Sigmoid, Tanh
from numpy_vae.nn.container import Sequential
from numpy_vae.nn.head import GaussianHead
from numpy_vae.nn.linear import Linear
from numpy_vae.nn.losses import BernoulliNLL, GaussianKL
from numpy_vae.nn.reparameterize import Reparameterize
TOL = 1e-6
seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 9)


def weighted_sum(out, w):
    """A scalar of the output with random weights, so every output element matters: L = sum w * out."""
    return float((out * w).sum())


@given(seeds, sizes, sizes, sizes)
def test_linear_backward_matches_finite_differences(seed, batch, n_in, n_out):
    rng = np.random.default_rng(seed)
    x, W, b = rng.normal(size=(batch, n_in)), rng.normal(size=(n_out, n_in)), rng.normal(size=n_out)
    w = rng.normal(size=(batch, n_out))
    layer = Linear(W, b)
    _, backward = layer.forward(x)
    dx = backward(w)
    f = lambda: weighted_sum(layer(x), w)  # noqa: E731
    assert_gradient(dx, f, x)
    assert_gradient(layer.grads["weight"], f, W)
    assert_gradient(layer.grads["bias"], f, b)


@given(seeds, sizes, sizes)
def test_linear_backward_without_input_gradient_still_fills_grads(seed, batch, n):
    rng = np.random.default_rng(seed)
    layer = Linear(rng.normal(size=(n, n)), rng.normal(size=n))
    x, dy = rng.normal(size=(batch, n)), rng.normal(size=(batch, n))
    _, backward = layer.forward(x)
    assert backward(dy, need_dx=False) is None
    np.testing.assert_allclose(layer.grads["weight"], dy.T @ x, rtol=1e-12)


@given(seeds, sizes, sizes)
def test_relu_backward_matches_finite_differences(seed, batch, n):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, n))
    x[np.abs(x) < 1e-3] = 0.5            # keep away from the kink, where no derivative exists
    w = rng.normal(size=x.shape)
    layer = ReLU()
    _, backward = layer.forward(x)
    dx = backward(w)
    assert_gradient(dx, lambda: weighted_sum(layer(x), w), x)


@given(seeds, sizes, sizes, st.floats(0.1, 30))
def test_sigmoid_backward_matches_finite_differences(seed, batch, n, scale):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=scale, size=(batch, n))
    w = rng.normal(size=x.shape)
    layer = Sigmoid()
    _, backward = layer.forward(x)
    dx = backward(w)
    # Deep in saturation sigmoid(x) = 1 - 1e-10 and the finite differences of numbers near 1
    # keep few digits: 1e-4 (the parity tests hold this backward to autograd's to 1e-10 and,
    # on the tails, to an exact reference).
    assert_gradient(dx, lambda: weighted_sum(layer(x), w), x, tol=1e-4)


@given(seeds, sizes, sizes, st.floats(0.1, 2))
def test_tanh_backward_matches_finite_differences(seed, batch, n, scale):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=scale, size=(batch, n))
    w = rng.normal(size=x.shape)
    layer = Tanh()
    _, backward = layer.forward(x)
    dx = backward(w)
    assert_gradient(dx, lambda: weighted_sum(layer(x), w), x)


@example(seed=954, batch=1, n=4, scale=8.0)
@given(seeds, sizes, sizes, st.floats(2, 20))
def test_tanh_backward_matches_finite_differences_into_saturation(seed, batch, n, scale):
    """|x| up to ~20 and beyond: tanh(x) is within 1e-17 of +-1, and (as for the sigmoid) the finite
    differences of numbers near 1 keep few digits, so 1e-4; the parity tests hold it to torch.
    Near +-1 the weighted sum's terms cancel, so f is rounded at sum |w tanh(x)|, not at |f| (Hypothesis
    found f near 0 with terms of size 1: the example above)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=scale, size=(batch, n))
    w = rng.normal(size=x.shape)
    layer = Tanh()
    _, backward = layer.forward(x)
    dx = backward(w)
    assert_gradient(dx, lambda: weighted_sum(layer(x), w), x, tol=1e-4, f_scale=np.abs(w * np.tanh(x)).sum())


@given(seeds, sizes, sizes)
def test_bernoulli_nll_backward_matches_finite_differences(seed, batch, n):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3, size=(batch, n))
    x = rng.uniform(size=(batch, n))
    x[0, 0] = 0.0
    x[-1, -1] = 1.0
    w = rng.normal(size=batch)
    loss = BernoulliNLL()
    _, backward = loss.forward(logits, x)
    dlogits, dx = backward(w)
    f = lambda: weighted_sum(loss.forward(logits, x)[0], w)  # noqa: E731
    assert_gradient(dlogits, f, logits)
    assert_gradient(dx, f, x)


@given(seeds, sizes, sizes)
def test_gaussian_kl_backward_matches_finite_differences(seed, batch, n):
    rng = np.random.default_rng(seed)
    mu, logvar = rng.normal(size=(batch, n)), rng.normal(scale=2, size=(batch, n))
    w = rng.normal(size=batch)
    kl = GaussianKL()
    _, backward = kl.forward(mu, logvar)
    dmu, dlogvar = backward(w)
    f = lambda: weighted_sum(kl.forward(mu, logvar)[0], w)  # noqa: E731
    assert_gradient(dmu, f, mu)
    assert_gradient(dlogvar, f, logvar)


@given(seeds, sizes, sizes)
def test_reparameterize_backward_matches_finite_differences(seed, batch, n):
    rng = np.random.default_rng(seed)
    mu, logvar, eps = rng.normal(size=(batch, n)), rng.normal(size=(batch, n)), rng.normal(size=(batch, n))
    w = rng.normal(size=(batch, n))
    rep = Reparameterize()
    _, backward = rep.forward(mu, logvar, eps)
    dmu, dlogvar = backward(w)
    f = lambda: weighted_sum(rep.forward(mu, logvar, eps)[0], w)  # noqa: E731
    assert_gradient(dmu, f, mu)
    assert_gradient(dlogvar, f, logvar)


def test_gradient_checker_catches_a_wrong_backward():
    """The checker itself can fail: a backward with a factor-2 slip is far outside the tolerance."""
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    kl = GaussianKL()
    f = lambda: float(kl.forward(mu, logvar)[0].sum())  # noqa: E731
    wrong = np.exp(logvar) - 1                        # missing the 1/2
    assert relative_error(wrong, numerical_gradient(f, logvar)) > 0.5


@given(seeds, sizes, sizes, st.integers(1, 5))
def test_gaussian_head_backward_matches_finite_differences(seed, batch, hidden, latent):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(batch, hidden))
    W, b = rng.normal(size=(2 * latent, hidden)), rng.normal(size=2 * latent)
    w_mu, w_lv = rng.normal(size=(batch, latent)), rng.normal(size=(batch, latent))
    head = GaussianHead(W, b, np.zeros_like(W), np.zeros_like(b))
    mu, logvar, backward = head.forward(h)
    assert mu.shape == logvar.shape == (batch, latent)
    dh = backward(w_mu, w_lv)

    def f():
        mu, logvar = head(h)
        return weighted_sum(mu, w_mu) + weighted_sum(logvar, w_lv)

    assert_gradient(dh, f, h)
    assert_gradient(head.linear.grads["weight"], f, W)
    assert_gradient(head.linear.grads["bias"], f, b)


def _stack(rng, n_in, hidden, n_out):
    """Linear-ReLU-Linear with random float64 weights: (the Sequential, its four parameter arrays)."""
    W1, b1 = rng.normal(size=(hidden, n_in)), rng.normal(size=hidden)
    W2, b2 = rng.normal(size=(n_out, hidden)), rng.normal(size=n_out)
    return Sequential([Linear(W1, b1), ReLU(), Linear(W2, b2)]), (W1, b1, W2, b2)


@given(seeds, sizes, sizes, sizes, sizes)
def test_sequential_backward_matches_finite_differences(seed, batch, n_in, hidden, n_out):
    rng = np.random.default_rng(seed)
    seq, (W1, b1, W2, b2) = _stack(rng, n_in, hidden, n_out)
    x, w = rng.normal(size=(batch, n_in)), rng.normal(size=(batch, n_out))
    # keep the hidden pre-activations away from ReLU's kink, where no derivative exists
    while (near := np.abs(x @ W1.T + b1).min(axis=0) < 1e-3).any():
        b1 += 0.37 * near                          # in place: the Linear holds this array
    _, backward = seq.forward(x)
    dx = backward(w)
    f = lambda: weighted_sum(seq(x), w)  # noqa: E731
    assert_gradient(dx, f, x)
    for layer, W, b in [(seq[0], W1, b1), (seq[2], W2, b2)]:
        assert_gradient(layer.grads["weight"], f, W)
        assert_gradient(layer.grads["bias"], f, b)


@given(seeds, sizes, sizes, sizes, sizes, sizes)
def test_sequential_inference_call_between_forward_and_backward_changes_nothing(seed, batch, batch2, n_in,
                                                                                hidden, n_out):
    """The stale-cache bug the closures fix: a layer that cached its input on itself would let an
    inference call ``seq(x2)`` between ``forward(x)`` and ``backward`` compute x2's gradients.
    With closures the gradients are those of x, bit for bit, whatever ran in between."""
    rng = np.random.default_rng(seed)
    seq, _ = _stack(rng, n_in, hidden, n_out)
    x, x2 = rng.normal(size=(batch, n_in)), rng.normal(size=(batch2, n_in))
    dy = rng.normal(size=(batch, n_out))

    y, backward = seq.forward(x)
    dx = backward(dy.copy())
    expected = [g.copy() for layer in (seq[0], seq[2]) for g in layer.grads.values()]

    y_again, backward = seq.forward(x)
    y2 = seq(x2)                                   # inference on another batch (another size too)
    _, backward2 = seq.forward(x2)                 # and a training forward whose backward never runs
    dx_again = backward(dy.copy())
    got = [g for layer in (seq[0], seq[2]) for g in layer.grads.values()]

    np.testing.assert_array_equal(y_again, y)
    np.testing.assert_array_equal(dx_again, dx)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
    np.testing.assert_array_equal(y2, seq(x2))     # the inference call itself left nothing behind either
    # and the gradients are x's: the first Linear's is dh^T x with dh from x's own hidden mask
    h = x @ seq[0].params["weight"].T + seq[0].params["bias"]
    dh = (dy @ seq[2].params["weight"]) * (h > 0)
    np.testing.assert_allclose(seq[0].grads["weight"], dh.T @ x, rtol=1e-12, atol=1e-12)


@given(seeds, sizes, sizes, sizes, sizes)
def test_linear_closure_keeps_its_own_batch_after_a_second_forward(seed, batch, batch2, n_in, n_out):
    """forward(x1) then forward(x2) with another batch size: the first closure still gives x1's gradients."""
    rng = np.random.default_rng(seed)
    layer = Linear(rng.normal(size=(n_out, n_in)), rng.normal(size=n_out))
    x1, x2 = rng.normal(size=(batch, n_in)), rng.normal(size=(batch2 + batch, n_in))
    dy1 = rng.normal(size=(batch, n_out))
    _, backward1 = layer.forward(x1)
    _, backward2 = layer.forward(x2)
    dx1 = backward1(dy1)
    assert dx1.shape == x1.shape
    np.testing.assert_allclose(layer.grads["weight"], dy1.T @ x1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], dy1.sum(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx1, dy1 @ layer.params["weight"], rtol=1e-12, atol=1e-12)
    f = lambda: weighted_sum(layer(x1), dy1)  # noqa: E731
    assert_gradient(dx1, f, x1)
    assert_gradient(layer.grads["weight"], f, layer.params["weight"])

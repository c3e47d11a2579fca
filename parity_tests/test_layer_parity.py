"""Layer by layer: numpy_vae's hand-written forward/backward against torch and torch.autograd.grad.

Hypothesis draws shapes and values; each NumPy forward must equal torch's, and
each NumPy backward must equal ``torch.autograd.grad`` of the same upstream
gradient with respect to every input and parameter, to a relative error of
1e-10 (float64) / 1e-4 (float32).  The torch side of the losses and of the
reparameterization is torch_vae's own code (``bernoulli_nll``, ``gaussian_kl``,
``reparameterize``), so these tests cover the port as well as the reference.

Value ranges are those the model's tensors take; the ranges where two correct
float implementations must disagree in relative terms (a result that is tiny
next to the terms that produce it) are explained where they are split off and
are covered in absolute, ulp-scaled terms (``test_bernoulli_nll_full_domain_
within_rounding_of_its_terms``, the sigmoid's and tanh's tails, test_extremes_parity.py)
or, where torch is the inaccurate one (the KL's dlogvar near logvar = 0, the
sigmoid's derivative on its positive tail), against an exact reference computed
with Python's ``decimal`` at 50 digits from the same float inputs.
"""
from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from numpy_vae.nn.activations import ReLU, Sigmoid, Tanh
from numpy_vae.nn.container import Sequential
from numpy_vae.nn.head import GaussianHead
from numpy_vae.nn.linear import Linear
from numpy_vae.nn.gradcheck import exact_gaussian_kl as exact_kl, exact_sigmoid_derivative
from numpy_vae.nn.losses import BernoulliNLL, GaussianKL
from numpy_vae.nn.reparameterize import Reparameterize
from parity_helpers import DTYPES, assert_parity, record, torch_dtype_of, values
from torch_vae import bernoulli_nll, gaussian_kl, reparameterize

dims = st.integers(1, 24)
batches = st.integers(1, 16)

# Per-element relative tolerance against an exact (decimal) reference: a few ulps.
EXACT_RTOL = {np.dtype(np.float64): 1e-14, np.dtype(np.float32): 1e-6}


def leaf(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, requires_grad=True)


def _dec(v) -> Decimal:
    return Decimal(float(v))                        # exact: every float32 and float64 is a float


def _ulps(a, b, scale, dtype) -> float:
    """max |a - b| / scale in ulps of 1 (eps) of dtype; 0 where scale is 0 and a == b exactly, else inf."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(scale == 0, np.where(diff == 0, 0.0, np.inf), diff / scale)
    return float(r.max(initial=0.0) / np.finfo(dtype).eps)


def per_element_relative_error(a, exact: np.ndarray) -> np.ndarray:
    """|a - exact| / |exact| per element; where exact is 0, 0 if a is exactly 0 and inf otherwise."""
    diff = np.abs(np.asarray(a, np.float64) - exact)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(exact == 0, np.where(diff == 0, 0.0, np.inf), diff / np.abs(exact))


def assert_exact(what: str, a, exact: np.ndarray, dtype) -> float:
    """Per element, relative error to the exact value <= EXACT_RTOL (exact 0 must come out exactly 0)."""
    err = per_element_relative_error(a, exact)
    worst = float(err.max(initial=0.0))
    record(f"{what} vs exact", worst, dtype)
    assert worst <= EXACT_RTOL[np.dtype(dtype)], (f"{what}: relative error {worst:.3e} to the exact value "
                                                  f"({np.dtype(dtype).name})", np.asarray(a), exact)
    return worst


def assert_kl_forward_exact(what: str, kl, mu, logvar, kl_exact, dtype) -> float:
    """Per row, |kl - exact| <= EXACT_RTOL * (exact + 1/2 sum |logvar|).

    Relative wherever mu^2 or logvar^2 / 2 is not tiny next to |logvar|.  Below that,
    expm1(logvar) - logvar = logvar^2 / 2 + ... cancels and keeps the rounding of expm1(logvar),
    u |logvar| (the cancellation docs/gradients.md accepts); exp(logvar) - 1 - logvar lost u per dimension.
    """
    scale = np.asarray(kl_exact) + 0.5 * np.abs(np.asarray(logvar, np.float64)).sum(1)
    err = np.abs(np.asarray(kl, np.float64) - kl_exact)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(scale == 0, np.where(err == 0, 0.0, np.inf), err / scale)
    worst = float(rel.max(initial=0.0))
    record(f"{what} vs exact (in kl + 1/2 sum|logvar|)", worst, dtype)
    assert worst <= EXACT_RTOL[np.dtype(dtype)], (f"{what}: error {worst:.3e} x (kl + 1/2 sum |logvar|) "
                                                  f"({np.dtype(dtype).name})", np.asarray(kl), kl_exact)
    return worst


# Measured worst relative errors in this file: "fast run / worst of three thorough runs (400 examples)";
# for the tests added with the closure API (sigmoid's new ranges, tanh, the KL without exclusion, the
# head, Sequential) "fast run / one thorough run".
# Linear: float64 2e-16 / 2.3e-15, float32 1e-7 / 1.2e-6.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, n_in=dims, n_out=dims)
def test_linear(dtype, data, b, n_in, n_out):
    x = data.draw(values((b, n_in), -10, 10)).astype(dtype)
    w = data.draw(values((n_out, n_in), -10, 10)).astype(dtype)
    bias = data.draw(values((n_out,), -10, 10)).astype(dtype)
    dy = data.draw(values((b, n_out), -10, 10)).astype(dtype)

    layer = Linear(w.copy(), bias.copy())
    y, backward = layer.forward(x)
    dx = backward(dy)

    xt, wt, bt = leaf(x), leaf(w), leaf(bias)
    yt = F.linear(xt, wt, bt)
    dxt, dwt, dbt = torch.autograd.grad(yt, [xt, wt, bt], grad_outputs=torch.from_numpy(dy))
    assert_parity("forward y", y, yt, dtype)
    assert_parity("dx", dx, dxt, dtype)
    assert_parity("dweight", layer.grads["weight"], dwt, dtype)
    assert_parity("dbias", layer.grads["bias"], dbt, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, n=dims)
def test_relu_is_bit_exact(dtype, data, b, n):
    """max(x, 0) and its mask involve no rounding: NumPy and torch agree bit for bit, zeros included."""
    x = data.draw(values((b, n), -1e6, 1e6) | st.just(np.zeros((b, n))))
    x = x.astype(dtype)
    dy = data.draw(values((b, n), -10, 10)).astype(dtype)
    layer = ReLU()
    y, backward = layer.forward(x)
    dx = backward(dy)
    xt = leaf(x)
    yt = torch.relu(xt)
    (dxt,) = torch.autograd.grad(yt, [xt], grad_outputs=torch.from_numpy(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, dxt.numpy())
    assert_parity("forward y", y, yt, dtype, tol=0.0)


# NumPy's backward is dy * e / (1 + e)^2 with e = exp(-|x|), accurate to a few ulps on both tails;
# torch's sigmoid_backward is dy * y * (1 - y), where 1 - y is good only to an ulp of 1 once y is
# near 1: relative error ~ u e^x, so torch is a reference to 1e-4 for x <= 6 in float32 (2.6e-5
# measured at 6, 2e-4 at 8) and to 1e-10 for x <= 12 in float64 (1.4e-11 at 12, 2e-8 at 20).
# Beyond that: test_sigmoid_tails (exact reference, and torch within 2 ulps of |dy|).
# Measured: float64 3.2e-15 / 7.8e-14, float32 3.0e-7 / 2.5e-6.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, n=dims)
def test_sigmoid(dtype, data, b, n):
    lim = 12.0 if dtype == np.float64 else 6.0
    x = data.draw(values((b, n), -lim, lim)).astype(dtype)
    dy = data.draw(values((b, n), -10, 10)).astype(dtype)
    layer = Sigmoid()
    y, backward = layer.forward(x)
    dx = backward(dy)
    xt = leaf(x)
    yt = torch.sigmoid(xt)
    (dxt,) = torch.autograd.grad(yt, [xt], grad_outputs=torch.from_numpy(dy))
    assert_parity("forward y", y, yt, dtype)
    assert_parity("dx", dx, dxt, dtype)


# The tails, |x| up to 40 (e^-40 = 4.2e-18 is a normal float32): NumPy's derivative to a few ulps
# relative of the exact value (numpy_vae.nn.gradcheck.exact_sigmoid_derivative), torch's y (1 - y)
# within 2 ulps of |dy| of NumPy's (its 1 - y).  Measured (per element, fast / thorough): NumPy vs
# exact float64 5.5e-16 / 5.6e-16, float32 2.3e-7 / 2.9e-7; torch within 0.74 ulps of |dy| in both dtypes.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, n=dims)
def test_sigmoid_tails(dtype, data, b, n):
    x = data.draw(values((b, n), -40, 40)).astype(dtype)
    dy = data.draw(values((b, n), -10, 10)).astype(dtype)
    y, backward = Sigmoid().forward(x)
    dx = backward(dy)
    xt = leaf(x)
    yt = torch.sigmoid(xt)
    (dxt,) = torch.autograd.grad(yt, [xt], grad_outputs=torch.from_numpy(dy))
    assert_parity("forward y", y, yt, dtype)
    assert_exact("dx", dx, exact_sigmoid_derivative(x) * dy.astype(np.float64), dtype)
    ulps = _ulps(dx, dxt.numpy(), np.abs(dy.astype(np.float64)), dtype)
    assert ulps <= 2, f"torch's dx differs by {ulps:.2f} ulps of |dy|"


# Tanh's backward is dy * (1 - y)(1 + y) from the saved y = tanh x, torch's tanh_backward dy * (1 - y^2).
# Both inherit y's rounding, ~u, as |y| -> 1, so in relative terms they drift apart as
# u / (1 - |y|) ~ u e^{2|x|} / 2 (docs/gradients.md#tanh): torch is a reference to 1e-4 for |x| <= 3 in
# float32 (8.8e-6 measured at 3, 8.4e-5 at 4) and to 1e-10 for |x| <= 6 in float64 (4.9e-11 at 7).
# Measured: float64 5.5e-16 / 9.4e-13, float32 3.2e-7 / 4.4e-6.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, n=dims)
def test_tanh(dtype, data, b, n):
    lim = 6.0 if dtype == np.float64 else 3.0
    x = data.draw(values((b, n), -lim, lim)).astype(dtype)
    dy = data.draw(values((b, n), -10, 10)).astype(dtype)
    layer = Tanh()
    y, backward = layer.forward(x)
    dx = backward(dy)
    np.testing.assert_array_equal(layer(x), y)
    xt = leaf(x)
    yt = torch.tanh(xt)
    (dxt,) = torch.autograd.grad(yt, [xt], grad_outputs=torch.from_numpy(dy))
    assert_parity("forward y", y, yt, dtype)
    assert_parity("dx", dx, dxt, dtype)


def exact_tanh_derivative(x: np.ndarray) -> np.ndarray:
    """1 - tanh^2 x = 4 e / (1 + e)^2 with e = e^{-2|x|}, to 50 digits, rounded once to float64."""
    with localcontext() as ctx:
        ctx.prec = 50
        return np.array([float(4 * (-2 * abs(_dec(v))).exp() / (1 + (-2 * abs(_dec(v))).exp()) ** 2)
                         for v in np.ravel(x)]).reshape(np.shape(x))


# Into saturation, |x| up to 20 (tanh x rounds to +-1 beyond ~9 in float32, ~19 in float64): the
# derivative is checked in absolute terms, in ulps of |dy|, which is what a backward from the saved
# y can promise (docs/gradients.md#tanh: absolute error below a few u): NumPy against the exact
# value and against torch, and both are exactly 0 where tanh x rounded to +-1.
# Measured (thorough, the larger of the two comparisons): float64 1.1 ulps, float32 1.4 ulps of |dy|.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, n=dims)
def test_tanh_saturated(dtype, data, b, n):
    x = data.draw(values((b, n), -20, 20)).astype(dtype)
    dy = data.draw(values((b, n), -10, 10)).astype(dtype)
    y, backward = Tanh().forward(x)
    dx = backward(dy)
    xt = leaf(x)
    yt = torch.tanh(xt)
    (dxt,) = torch.autograd.grad(yt, [xt], grad_outputs=torch.from_numpy(dy))
    assert_parity("forward y", y, yt, dtype)
    abs_dy = np.abs(dy.astype(np.float64))
    vs_exact = _ulps(dx, exact_tanh_derivative(x) * dy.astype(np.float64), abs_dy, dtype)
    vs_torch = _ulps(dx, dxt.numpy(), abs_dy, dtype)
    assert vs_exact <= 4, f"dx is {vs_exact:.2f} ulps of |dy| from the exact value"
    assert vs_torch <= 4, f"dx is {vs_torch:.2f} ulps of |dy| from torch's"
    assert (dx[np.abs(y) == 1] == 0).all() and (dxt.numpy()[np.abs(yt.detach().numpy()) == 1] == 0).all()


# x is drawn on the 8-bit grid k/255 (what MNIST pixels are, exact 0 and 1 included).
#
# Where the per-pixel loss is tiny next to the terms that produce it, the two formulas cancel in
# different places and cannot agree in relative terms: NumPy's max(a,0) - a x + log1p(e^-|a|) when
# a >> 0 and x is just below 1; torch's (1 - x) a - logsigmoid(a) when a << 0 and x is 0 or just
# above, i.e. a confidently right background pixel.  There torch loses the loss (measured: a = -13,
# x = 0 in float32 gives 1.907e-6 for the true 2.260e-6, and 0.0 at a = -20; float64 is 1.3% off at
# a = -30), while NumPy's stable form stays exact.  Those losses are ~1e-6 next to a reconstruction
# term of ~100 nats per image, so the whole model is unaffected (test_model_parity.py); here the
# forward is compared relatively where both formulas are accurate to the tolerance, |a| <= 8 (float64:
# ulp(|a|) / log1p(e^-|a|) < 1e-11) and |a| <= 5 (float32: < 5e-5).  The gradients have no such
# cancellation and are compared relatively over |a| <= 30; the full-domain test below bounds the
# forward in ulps of its terms up to |a| = 1e4.
# Measured: float64 1.3e-15 / 3.9e-13, float32 1.1e-7 / 9.6e-6.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, d=st.integers(1, 64))
def test_bernoulli_nll(dtype, data, b, d):
    lim = 8.0 if dtype == np.float64 else 5.0
    logits = data.draw(values((b, d), -lim, lim)).astype(dtype)
    x = (data.draw(hnp.arrays(np.int64, (b, d), elements=st.integers(0, 255))) / 255).astype(dtype)
    dnll = data.draw(values((b,), -10, 10)).astype(dtype)
    loss = BernoulliNLL()
    nll, backward = loss.forward(logits, x)
    dlogits, dx = backward(dnll)
    at, xt = leaf(logits), leaf(x)
    nllt = bernoulli_nll(at, xt)
    dat, dxt = torch.autograd.grad(nllt, [at, xt], grad_outputs=torch.from_numpy(dnll))
    assert_parity("forward nll", nll, nllt, dtype)
    assert_parity("dlogits", dlogits, dat, dtype)
    assert_parity("dx", dx, dxt, dtype)


# Measured: float64 3.3e-17 / 2.5e-16, float32 3.3e-8 / 2.2e-6.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, d=st.integers(1, 64))
def test_bernoulli_nll_gradients_over_wide_logits(dtype, data, b, d):
    logits = data.draw(values((b, d), -30, 30)).astype(dtype)
    x = (data.draw(hnp.arrays(np.int64, (b, d), elements=st.integers(0, 255))) / 255).astype(dtype)
    dnll = data.draw(values((b,), -10, 10)).astype(dtype)
    loss = BernoulliNLL()
    _, backward = loss.forward(logits, x)
    dlogits, dx = backward(dnll)
    at, xt = leaf(logits), leaf(x)
    dat, dxt = torch.autograd.grad(bernoulli_nll(at, xt), [at, xt], grad_outputs=torch.from_numpy(dnll))
    assert_parity("dlogits", dlogits, dat, dtype)
    assert_parity("dx", dx, dxt, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, d=st.integers(1, 64))
def test_bernoulli_nll_full_domain_within_rounding_of_its_terms(dtype, data, b, d):
    """Any x in [0, 1], logits up to +-1e4: per pixel, the two differ by a few ulps of the terms.

    The relative test above cannot hold here (see its comment); this is what two evaluations of
    the same quantity by different formulas can promise: forward within 4 ulps of
    |a| + |a x| + 1 (the largest term each formula forms), and dlogits = sigmoid(a) - x within
    4 ulps of 1 (sigmoid's own rounding), dx = -a exactly.
    """
    logits = data.draw(values((b, d), -1e4, 1e4)).astype(dtype)
    x = data.draw(values((b, d), 0, 1)).astype(dtype)
    ulp = np.finfo(dtype).eps
    loss = BernoulliNLL()                                   # per pixel: one pixel per row
    nll, backward = loss.forward(logits.reshape(-1, 1), x.reshape(-1, 1))
    nll = nll.reshape(b, d)
    dlogits, dx = backward(np.ones(b * d, dtype))
    at, xt = leaf(logits), leaf(x)
    nllt = F.binary_cross_entropy_with_logits(at, xt, reduction="none")
    dat, dxt = torch.autograd.grad(nllt.sum(), [at, xt])
    nllt = nllt.detach().numpy()
    assert np.isfinite(nll).all() and np.isfinite(dlogits).all() and np.isfinite(dx).all()
    scale = np.abs(logits.astype(np.float64)) * (1 + x) + 1
    fwd_ulps = float((np.abs(nll.astype(np.float64) - nllt) / scale).max() / ulp)
    grad_ulps = float(np.abs(dlogits.reshape(b, d).astype(np.float64) - dat.numpy()).max() / ulp)
    assert fwd_ulps <= 4, f"per-pixel nll differs by {fwd_ulps:.2f} ulps of its terms"
    assert grad_ulps <= 4, f"per-pixel dlogits differs by {grad_ulps:.2f} ulps of 1"
    np.testing.assert_array_equal(dx.reshape(b, d), dxt.numpy())


def kl_values(shape):
    """Like ``values(shape, -10, 10)``, with a good share of elements near 0: 0, +-1e-8, +-1e-6, +-1e-3,
    and anything in [-1e-3, 1e-3] (magnitudes below 1e-12 become exact 0: their squares, or their
    products with dkl, would be float32 subnormals, where rounding is absolute)."""
    near_zero = st.one_of(st.sampled_from([0.0, 1e-8, -1e-8, 1e-6, -1e-6, 1e-3, -1e-3]), st.floats(-1e-3, 1e-3))
    return hnp.arrays(np.float64, shape, elements=st.one_of(st.floats(-10, 10, allow_subnormal=False), near_zero)
                      .map(lambda v: v if abs(v) >= 1e-12 else 0.0))


# Both sides compute kl = 1/2 sum (mu^2 + (expm1(logvar) - logvar)).  Its gradient is where they part
# near the prior: NumPy's dlogvar = expm1(logvar) / 2 keeps full relative accuracy, while autograd's
# derivative of expm1(lv) - lv is exp(lv) g - g, which cancels to ~u |g| as logvar -> 0 (relative
# u / |logvar|).  So torch is the reference for dlogvar where |logvar| >= 0.01 (float64: < 1.1e-14)
# or >= 0.2 (float32: < 4e-7); every element, those near 0 included, is held to the exact
# reference.  The forward is held to torch on the rows without such elements and, on all rows, to
# the exact value within EXACT_RTOL x (kl + 1/2 sum |logvar|) (see assert_kl_forward_exact), NumPy's
# and torch's both.
# Measured, the largest of all these checks (the forward against the exact value, in the scale above):
# float64 3.5e-16 / 4.9e-16, float32 1.2e-7 / 2.1e-7.  (Before: 2.0e-16 / 8.7e-15, 1.1e-7 / 4.3e-7
# against torch with |logvar| kept >= 0.01 / 0.2.)
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, latent=dims)
def test_gaussian_kl(dtype, data, b, latent):
    mu = data.draw(kl_values((b, latent))).astype(dtype)
    logvar = data.draw(kl_values((b, latent))).astype(dtype)
    dkl = data.draw(values((b,), -10, 10)).astype(dtype)
    kl = GaussianKL()
    out, backward = kl.forward(mu, logvar)
    dmu, dlogvar = backward(dkl)
    mt, lt = leaf(mu), leaf(logvar)
    outt = gaussian_kl(mt, lt)
    dmt, dlt = torch.autograd.grad(outt, [mt, lt], grad_outputs=torch.from_numpy(dkl))
    near = np.abs(logvar) < (0.01 if dtype == np.float64 else 0.2)
    far_rows = ~near.any(axis=1)
    if far_rows.any():
        assert_parity("forward kl", out[far_rows], outt.detach().numpy()[far_rows], dtype)
    assert_parity("dmu", dmu, dmt, dtype)
    if (~near).any():
        assert_parity("dlogvar", dlogvar[~near], dlt.numpy()[~near], dtype)
    kl_x, dmu_x, dlv_x = exact_kl(mu, logvar, dkl)
    assert_kl_forward_exact("forward kl", out, mu, logvar, kl_x, dtype)
    assert_kl_forward_exact("torch forward kl", outt.detach().numpy(), mu, logvar, kl_x, dtype)
    assert_exact("dmu", dmu, dmu_x, dtype)
    assert_exact("dlogvar", dlogvar, dlv_x, dtype)


# Every combination of logvar in {0, +-1e-8, +-1e-6, +-1e-3} and mu in {0, +-1e-8, +-1e-4, +-1e-3}: one
# latent dimension per row, then the same values as 7 x 7 (sums over latent dimensions).
# Before expm1 (relative to the exact value, per element):
#   dlogvar float32 1.0 at |logvar| = 1e-8 (exp rounds to 1), 7.3e-2 at 1e-6, 2.3e-5 at 1e-3;
#           float64 1.1e-8 at 1e-8, 3.8e-11 at 1e-6, 4.3e-14 at 1e-3
#   kl at mu = 1e-3, logvar = 1e-6: float32 1.3e-1, float64 7.3e-11
# Now: dlogvar float64 2.0e-16, float32 8.5e-8; kl float64 2.1e-16, float32 5.4e-8 of kl + 1/2 sum |logvar|
# (relative: 2.1e-16 / 2.9e-8 at mu = 1e-3, logvar = 1e-6).  Torch's dlogvar, exp(lv) g - g, is 1.0
# (float32) and 1.7e-8 (float64) off relative, 0.5 / 0.7 ulps of |g| absolute.
NEAR_PRIOR = np.array([(m, lv) for m in [0.0, 1e-8, -1e-8, 1e-4, -1e-4, 1e-3, -1e-3]
                       for lv in [0.0, 1e-8, -1e-8, 1e-6, -1e-6, 1e-3, -1e-3]])


@pytest.mark.parametrize("shape", [(49, 1), (7, 7)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_kl_near_the_prior_against_an_exact_reference(dtype, shape):
    """NumPy's forward and gradients and the torch port's forward, from the float inputs (cast to
    dtype), against the exact decimal values; torch's dlogvar only within its cancellation."""
    mu, logvar = (NEAR_PRIOR[:, i].reshape(shape).astype(dtype) for i in (0, 1))
    dkl = np.resize([1.0, -0.37, 3.3, 1 / 64], shape[0]).astype(dtype)
    out, backward = GaussianKL().forward(mu, logvar)
    dmu, dlogvar = backward(dkl)
    mt, lt = leaf(mu), leaf(logvar)
    outt = gaussian_kl(mt, lt)
    dmt, dlt = torch.autograd.grad(outt, [mt, lt], grad_outputs=torch.from_numpy(dkl))
    kl_x, dmu_x, dlv_x = exact_kl(mu, logvar, dkl)
    assert out.dtype == dmu.dtype == dlogvar.dtype == dtype
    assert_kl_forward_exact("forward kl", out, mu, logvar, kl_x, dtype)
    assert_kl_forward_exact("torch forward kl", outt.detach().numpy(), mu, logvar, kl_x, dtype)
    assert_exact("dmu", dmu, dmu_x, dtype)
    assert_exact("torch dmu", dmt.numpy(), dmu_x, dtype)
    assert_exact("dlogvar", dlogvar, dlv_x, dtype)
    # autograd's exp(lv) g - g with g = dkl / 2: within an ulp or two of |g|, not of the value itself
    g = np.abs(dkl.astype(np.float64))[:, None] / 2
    ulps = _ulps(dlt.numpy(), dlv_x, np.broadcast_to(g, dlv_x.shape), dtype)
    assert ulps <= 2, f"torch's dlogvar is {ulps:.2f} ulps of |dkl| / 2 off"


# z = mu + eps * exp(logvar / 2).  NumPy's backward gives d/dmu and d/dlogvar (eps is noise, an
# input without a gradient in the reference).
# Measured: float64 0 / 0 (bit-equal), float32 8.3e-8 / 2.0e-7.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, latent=dims)
def test_reparameterize(dtype, data, b, latent):
    mu = data.draw(values((b, latent), -10, 10)).astype(dtype)
    logvar = data.draw(values((b, latent), -10, 10)).astype(dtype)
    eps = data.draw(values((b, latent), -5, 5)).astype(dtype)
    dz = data.draw(values((b, latent), -10, 10)).astype(dtype)
    rep = Reparameterize()
    z, backward = rep.forward(mu, logvar, eps)
    dmu, dlogvar = backward(dz)
    mt, lt = leaf(mu), leaf(logvar)
    zt = reparameterize(mt, lt, torch.from_numpy(eps))
    dmt, dlt = torch.autograd.grad(zt, [mt, lt], grad_outputs=torch.from_numpy(dz))
    assert_parity("forward z", z, zt, dtype)
    assert_parity("dmu", dmu, dmt, dtype)
    assert_parity("dlogvar", dlogvar, dlt, dtype)


# The stacked head against torch's two Linears fc_mu and fc_logvar reading the same h.  dh is one
# sum over 2L terms in NumPy, two sums over L added in torch, so it may differ in the last bits.
# Measured: float64 3.4e-14 / 6.0e-14, float32 9.4e-8 / 4.5e-7.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, hidden=dims, latent=st.integers(1, 12))
def test_gaussian_head(dtype, data, b, hidden, latent):
    h = data.draw(values((b, hidden), -10, 10)).astype(dtype)
    w_mu, w_lv = (data.draw(values((latent, hidden), -1, 1)).astype(dtype) for _ in range(2))
    b_mu, b_lv = (data.draw(values((latent,), -1, 1)).astype(dtype) for _ in range(2))
    dmu, dlv = (data.draw(values((b, latent), -10, 10)).astype(dtype) for _ in range(2))
    weight, bias = np.concatenate([w_mu, w_lv]), np.concatenate([b_mu, b_lv])
    grad_weight, grad_bias = np.full_like(weight, np.nan), np.full_like(bias, np.nan)    # all must be written
    head = GaussianHead(weight, bias, grad_weight, grad_bias)
    mu, logvar, backward = head.forward(h)
    dh = backward(dmu, dlv)

    kw = dict(dtype=torch_dtype_of(dtype))
    fc_mu, fc_logvar = nn.Linear(hidden, latent, **kw), nn.Linear(hidden, latent, **kw)
    with torch.no_grad():
        for layer, w, bb in [(fc_mu, w_mu, b_mu), (fc_logvar, w_lv, b_lv)]:
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(bb))
    ht = leaf(h)
    mut, lvt = fc_mu(ht), fc_logvar(ht)
    grads = torch.autograd.grad([mut, lvt], [ht, fc_mu.weight, fc_mu.bias, fc_logvar.weight, fc_logvar.bias],
                                grad_outputs=[torch.from_numpy(dmu), torch.from_numpy(dlv)])
    assert_parity("forward mu", mu, mut, dtype)
    assert_parity("forward logvar", logvar, lvt, dtype)
    for name, got, want in [("dh", dh, grads[0]),
                            ("fc_mu.weight", grad_weight[:latent], grads[1]),
                            ("fc_mu.bias", grad_bias[:latent], grads[2]),
                            ("fc_logvar.weight", grad_weight[latent:], grads[3]),
                            ("fc_logvar.bias", grad_bias[latent:], grads[4])]:
        assert_parity(name, got, want, dtype)
    assert_parity("inference mu", head(h)[0], mut, dtype)


# Linear-ReLU-Linear against torch's nn.Sequential of the same three modules.  The first layer's
# bias is nudged so that no pre-activation lies within rounding of ReLU's kink, where NumPy's and
# torch's last-bit differences could flip the mask (a difference in which side of 0, not in the code).
# Measured: float64 3.0e-16 / 7.4e-16, float32 1.7e-7 / 2.6e-7.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, n_in=dims, hidden=dims, n_out=dims)
def test_sequential(dtype, data, b, n_in, hidden, n_out):
    x = data.draw(values((b, n_in), -10, 10)).astype(dtype)
    w1 = data.draw(values((hidden, n_in), -1, 1)).astype(dtype)
    b1 = data.draw(values((hidden,), -1, 1)).astype(dtype)
    w2 = data.draw(values((n_out, hidden), -1, 1)).astype(dtype)
    b2 = data.draw(values((n_out,), -1, 1)).astype(dtype)
    dy = data.draw(values((b, n_out), -10, 10)).astype(dtype)
    x64, w64 = x.astype(np.float64), w1.astype(np.float64)
    margin = 1e-3 + 1e-4 * (np.abs(x64) @ np.abs(w64).T).max(axis=0)       # far above either's rounding
    while (near := (np.abs(x64 @ w64.T + b1).min(axis=0) < margin)).any():
        b1 = (b1 + 0.37 * near).astype(dtype)

    seq = Sequential([Linear(w1.copy(), b1.copy()), ReLU(), Linear(w2.copy(), b2.copy())])
    y, backward = seq.forward(x)
    dx = backward(dy)

    kw = dict(dtype=torch_dtype_of(dtype))
    tseq = nn.Sequential(nn.Linear(n_in, hidden, **kw), nn.ReLU(), nn.Linear(hidden, n_out, **kw))
    with torch.no_grad():
        for i, w, bb in [(0, w1, b1), (2, w2, b2)]:
            tseq[i].weight.copy_(torch.from_numpy(w))
            tseq[i].bias.copy_(torch.from_numpy(bb))
    xt = leaf(x)
    yt = tseq(xt)
    grads = torch.autograd.grad(yt, [xt, *tseq.parameters()], grad_outputs=torch.from_numpy(dy))
    assert_parity("forward y", y, yt, dtype)
    assert_parity("inference y", seq(x), yt, dtype)
    assert_parity("dx", dx, grads[0], dtype)
    for (name, _), got, want in zip(tseq.named_parameters(),
                                    [seq[0].grads["weight"], seq[0].grads["bias"],
                                     seq[2].grads["weight"], seq[2].grads["bias"]], grads[1:]):
        assert_parity(name, got, want, dtype)

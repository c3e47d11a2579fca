"""Layer by layer: numpy_vae's hand-written forward/backward against torch and torch.autograd.grad.

Hypothesis draws shapes and values; each NumPy forward must equal torch's, and
each NumPy backward must equal ``torch.autograd.grad`` of the same upstream
gradient with respect to every input and parameter, to a relative error of
1e-10 (float64) / 1e-4 (float32).  The torch side of the losses and of the
reparameterization is torch_vae's own code (``bernoulli_nll``, ``gaussian_kl``,
``reparameterize``), so these tests cover the port as well as the reference.

Value ranges are those the model's tensors take; the ranges where two correct
float implementations must disagree in relative terms (a result that is tiny
next to the terms that produce it) are explained where they are excluded and
are covered in absolute, ulp-scaled terms by ``test_bernoulli_nll_full_domain_
within_rounding_of_its_terms`` here and by test_extremes_parity.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from numpy_vae.nn.activations import ReLU, Sigmoid

from numpy_vae.nn.linear import Linear
from numpy_vae.nn.losses import BernoulliNLL, GaussianKL
from numpy_vae.nn.reparameterize import Reparameterize
from parity_helpers import DTYPES, assert_parity, values
from torch_vae import bernoulli_nll, gaussian_kl, reparameterize

dims = st.integers(1, 24)
batches = st.integers(1, 16)


def leaf(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, requires_grad=True)


# Measured worst relative errors in this file: "fast run / worst of three thorough runs (400 examples)".
# Linear: float64 2e-16 / 2.3e-15, float32 1e-7 / 1.2e-6.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, n_in=dims, n_out=dims)
def test_linear(dtype, data, b, n_in, n_out):
    x = data.draw(values((b, n_in), -10, 10)).astype(dtype)
    w = data.draw(values((n_out, n_in), -10, 10)).astype(dtype)
    bias = data.draw(values((n_out,), -10, 10)).astype(dtype)
    dy = data.draw(values((b, n_out), -10, 10)).astype(dtype)

    layer = Linear(w.copy(), bias.copy())
    y = layer.forward(x)
    dx = layer.backward(dy)

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
    y = layer.forward(x)
    dx = layer.backward(dy)
    xt = leaf(x)
    yt = torch.relu(xt)
    (dxt,) = torch.autograd.grad(yt, [xt], grad_outputs=torch.from_numpy(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, dxt.numpy())
    assert_parity("forward y", y, yt, dtype, tol=0.0)


# Sigmoid's backward is dy * y * (1 - y): for x > ~9 in float32, 1 - y is a few ulps of 1, so a
# one-ulp difference in exp (NumPy's and torch's float32 exp differ in the last bit for ~40% of
# arguments) becomes a large relative difference.  float32 draws stay in [-8, 8], where it is < 1e-4;
# float64 (same exp, bit-identical for x >= 0) takes [-40, 40].
# Measured: float64 1.3e-16 / 6.2e-16, float32 1.8e-7 / 1.6e-6.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, n=dims)
def test_sigmoid(dtype, data, b, n):
    lim = 40.0 if dtype == np.float64 else 8.0
    x = data.draw(values((b, n), -lim, lim)).astype(dtype)
    dy = data.draw(values((b, n), -10, 10)).astype(dtype)
    layer = Sigmoid()
    y = layer.forward(x)
    dx = layer.backward(dy)
    xt = leaf(x)
    yt = torch.sigmoid(xt)
    (dxt,) = torch.autograd.grad(yt, [xt], grad_outputs=torch.from_numpy(dy))
    assert_parity("forward y", y, yt, dtype)
    assert_parity("dx", dx, dxt, dtype)


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
    nll = loss.forward(logits, x)
    dlogits, dx = loss.backward(dnll)
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
    loss.forward(logits, x)
    dlogits, dx = loss.backward(dnll)
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
    nll = loss.forward(logits.reshape(-1, 1), x.reshape(-1, 1)).reshape(b, d)
    dlogits, dx = loss.backward(np.ones(b * d, dtype))
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


# Near the prior (logvar -> 0) the KL is a small difference of O(1) terms: forward
# 1 + logvar - mu^2 - e^logvar ~ -logvar^2 / 2 - mu^2 and backward (e^logvar - 1) / 2 ~ logvar / 2
# are then mostly rounding (NumPy's exp(logvar) - 1 is itself 2% off at logvar = 7e-16, where
# expm1 would be exact), and NumPy and autograd, which sums -1/2 and e^logvar / 2 separately,
# round differently: Hypothesis found dlogvar 8% apart at logvar = 6.8e-16 (float64) and 3e-4 apart
# at logvar ~ 1e-3 (float32; the two libraries' float32 exp also differ in the last bit).  So every
# |logvar| is kept >= 0.01 (float64: rounding / logvar^2 < 1e-11) or >= 0.2 (float32: < 2e-5).
# Measured: float64 2.0e-16 / 8.7e-15, float32 1.1e-7 / 4.3e-7.
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), b=batches, latent=dims)
def test_gaussian_kl(dtype, data, b, latent):
    mu = data.draw(values((b, latent), -10, 10))
    logvar = data.draw(values((b, latent), -10, 10))
    away = 0.01 if dtype == np.float64 else 0.2
    logvar = np.where(np.abs(logvar) < away, np.copysign(away, logvar), logvar)
    mu, logvar = mu.astype(dtype), logvar.astype(dtype)
    dkl = data.draw(values((b,), -10, 10)).astype(dtype)
    kl = GaussianKL()
    out = kl.forward(mu, logvar)
    dmu, dlogvar = kl.backward(dkl)
    mt, lt = leaf(mu), leaf(logvar)
    outt = gaussian_kl(mt, lt)
    dmt, dlt = torch.autograd.grad(outt, [mt, lt], grad_outputs=torch.from_numpy(dkl))
    assert_parity("forward kl", out, outt, dtype)
    assert_parity("dmu", dmu, dmt, dtype)
    assert_parity("dlogvar", dlogvar, dlt, dtype)


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
    z = rep.forward(mu, logvar, eps)
    dmu, dlogvar = rep.backward(dz)
    mt, lt = leaf(mu), leaf(logvar)
    zt = reparameterize(mt, lt, torch.from_numpy(eps))
    dmt, dlt = torch.autograd.grad(zt, [mt, lt], grad_outputs=torch.from_numpy(dz))
    assert_parity("forward z", z, zt, dtype)
    assert_parity("dmu", dmu, dmt, dtype)
    assert_parity("dlogvar", dlogvar, dlt, dtype)

"""BatchNorm1d and Dropout against torch.nn.BatchNorm1d / F.dropout's arithmetic, with finite differences.

BatchNorm1d in training and in evaluation mode: forward, dx, dgamma, dbeta, and the three running
buffers after several batches (running_mean, the unbiased running_var, num_batches_tracked).
Dropout with one mask fed to both: forward and dx; identity in evaluation mode.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from numpy_vae.nn.batchnorm import BatchNorm1d
from numpy_vae.nn.dropout import Dropout, draw_dropout_mask
from numpy_vae.nn.gradcheck import assert_gradient
from parity_helpers import DTYPES, assert_parity, torch_dtype_of


def _pair(features: int, dtype, rng):
    """A NumPy BatchNorm1d and a torch one with the same (non-trivial) gamma and beta."""
    gamma, beta = rng.uniform(0.5, 2, features), rng.uniform(-1, 1, features)
    ours = BatchNorm1d(gamma.astype(dtype), beta.astype(dtype), np.zeros(features, dtype), np.zeros(features, dtype),
                       np.zeros(features, dtype), np.ones(features, dtype), np.zeros((), np.int64))
    theirs = torch.nn.BatchNorm1d(features, dtype=torch_dtype_of(dtype))
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(gamma))
        theirs.bias.copy_(torch.from_numpy(beta))
    return ours, theirs


@pytest.mark.parametrize("dtype", DTYPES)
# dx is orthogonal to 1 and to x-hat over the batch, so with few rows it can nearly cancel, and a
# norm-wise relative error of a near-cancelled vector is unbounded for any two implementations:
# with two rows dx is 0 in exact arithmetic (Hypothesis found 1.9e-8 against terms of 1 in float64);
# with three rows and one feature float32 gave ||dx|| = 7.5e-4 and 3e-4 relative.  So float64 draws
# have batch >= 3, float32 draws batch >= 8.
@given(data=st.data(), seed=st.integers(0, 2**32 - 1), features=st.integers(1, 16),
       steps=st.integers(1, 4), scale=st.sampled_from([1e-3, 1.0, 30.0]))
def test_batchnorm_train_then_eval_against_torch(dtype, data, seed, features, steps, scale):
    batch = data.draw(st.integers(3 if dtype == np.float64 else 8, 32), label="batch")
    rng = np.random.default_rng(seed)
    ours, theirs = _pair(features, dtype, rng)
    for step in range(steps):                                   # the running buffers follow torch's, batch by batch
        # offsets in proportion to the spread: an offset of 3 over a spread of 1e-3 is ill-conditioned for
        # any implementation (float32 loses 3 / 1e-3 * 6e-8 = 2e-4 of x - mean: both libraries do)
        x = (scale * (rng.standard_normal((batch, features)) + rng.uniform(-3, 3, features))).astype(dtype)
        dy = rng.standard_normal((batch, features)).astype(dtype)
        y, backward = ours.forward(x)
        dx = backward(dy)
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt)
        dxt, dgt, dbt = torch.autograd.grad(yt, [xt, theirs.weight, theirs.bias], torch.tensor(dy))
        assert_parity("batchnorm train y", y, yt, dtype)
        assert_parity("batchnorm train dx", dx, dxt, dtype)
        assert_parity("batchnorm dgamma", ours.grads["weight"], dgt, dtype)
        assert_parity("batchnorm dbeta", ours.grads["bias"], dbt, dtype)
    assert_parity("running_mean", ours.buffers["running_mean"], theirs.running_mean, dtype)
    assert_parity("running_var", ours.buffers["running_var"], theirs.running_var, dtype)
    assert int(ours.buffers["num_batches_tracked"]) == int(theirs.num_batches_tracked) == steps

    ours.training = False
    theirs.eval()
    x = (rng.standard_normal((batch, features)) * scale).astype(dtype)
    dy = rng.standard_normal((batch, features)).astype(dtype)
    before = {k: v.copy() for k, v in ours.buffers.items()}
    y, backward = ours.forward(x)
    dx = backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    dxt, dgt, dbt = torch.autograd.grad(yt, [xt, theirs.weight, theirs.bias], torch.tensor(dy))
    assert_parity("batchnorm eval y", y, yt, dtype)
    assert_parity("batchnorm eval dx", dx, dxt, dtype)
    assert_parity("batchnorm eval dgamma", ours.grads["weight"], dgt, dtype)
    for k, v in before.items():                                 # evaluation changes no buffer
        np.testing.assert_array_equal(ours.buffers[k], v)


def test_batchnorm_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    ours, _ = _pair(5, np.float64, rng)
    x = rng.standard_normal((7, 5)) * 2 + 1
    r = rng.standard_normal((7, 5))
    for training in (True, False):
        ours.training = training
        buffers = {k: v.copy() for k, v in ours.buffers.items()}

        def f():
            for k, v in buffers.items():                        # the running buffers must not drift between calls
                ours.buffers[k][...] = v
            return float((ours(x) * r).sum())

        y, backward = ours.forward(x)
        dx = backward(r)
        for name, value, analytic in (("x", x, dx), ("gamma", ours.params["weight"], ours.grads["weight"]),
                                      ("beta", ours.params["bias"], ours.grads["bias"])):
            assert_gradient(analytic, f, value, tol=1e-7)


def test_batchnorm_refuses_a_batch_of_one_in_training():
    ours, _ = _pair(3, np.float32, np.random.default_rng(0))
    with pytest.raises(ValueError, match="more than 1 sample"):
        ours.forward(np.ones((1, 3), np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 16), features=st.integers(1, 32),
       p=st.sampled_from([0.0, 0.2, 0.5, 0.9]))
def test_dropout_with_a_shared_mask_against_torch(dtype, seed, batch, features, p):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, features)).astype(dtype)
    dy = rng.standard_normal((batch, features)).astype(dtype)
    mask = draw_dropout_mask(rng, x.shape, p, dtype)
    y, backward = Dropout(p).forward(x, mask)
    xt = torch.tensor(x, requires_grad=True)
    yt = xt * torch.tensor(mask) / (1 - p)                      # torch's dropout given the same keep-mask
    (dxt,) = torch.autograd.grad(yt, [xt], torch.tensor(dy))
    assert_parity("dropout y", y, yt, dtype) if y.any() else np.testing.assert_array_equal(y, 0)
    assert_parity("dropout dx", backward(dy), dxt, dtype) if mask.any() else None
    assert y.dtype == dtype


def test_dropout_masks_have_the_rate_and_eval_is_the_identity():
    rng = np.random.default_rng(1)
    mask = draw_dropout_mask(rng, (200, 500), 0.2)
    assert abs(mask.mean() - 0.8) < 0.005 and set(np.unique(mask)) == {0.0, 1.0}
    layer = Dropout(0.2)
    layer.training = False
    x = rng.standard_normal((3, 4))
    y, backward = layer.forward(x)
    assert y is x and backward(x) is x
    layer.training = True
    with pytest.raises(ValueError, match="needs its mask"):
        layer.forward(x)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        Dropout(1.0)

"""Conv2d, ConvTranspose2d, Flatten and Unflatten against torch.nn.functional and torch.autograd.grad.

Hypothesis draws the geometry (batch 1-4, channels 1-5 in and out, spatial size 1-12 and
kernel 1-5 per axis, so rectangular ones too, stride 1-3, padding 0-2 and, for the
transposed convolution, output_padding below the stride), constructed valid: the
padded input at least as large as the kernel, a non-empty transposed output.  Values
come from a drawn seed (standard normals), which keeps each example fast.  Each
layer's forward and every gradient of a random upstream dy (dx, dW, db) must equal
torch's to a relative error of 1e-10 (float64) / 1e-4 (float32), times the condition of
the sums where they cancel (see ``assert_close``).  The layers tested against torch are
the fast ones that training runs (numpy_vae.kernels.conv: im2col and one matmul; col2im tap
by tap); they must equal the reference path (numpy_vae.nn.conv: ``conv2d_reference`` and
friends, einsums in a loop over the kernel taps, the body of nn's Conv2d and
ConvTranspose2d) as closely, and so must the reference itself equal torch.  (The bound
derived from the rounding between the two is in tests/test_kernels.py.)
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from numpy_vae.nn.activations import ReLU
from numpy_vae.nn.container import Sequential
from numpy_vae.kernels.conv import FastConv2d as Conv2d, FastConvTranspose2d as ConvTranspose2d
from numpy_vae.nn.conv import (conv2d_reference, conv2d_reference_backward, conv_transpose2d_reference,
                               conv_transpose2d_reference_backward)
from numpy_vae.nn.reshape import Flatten, Unflatten
from parity_helpers import DTYPES, TOL, assert_parity

seeds = st.integers(0, 2**32 - 1)


def _arg(pair):
    """An (h, w) pair as the layers and torch take it: the int itself when both agree (both forms are accepted)."""
    return pair[0] if pair[0] == pair[1] else pair


@st.composite
def conv_geometry(draw):
    """A valid Conv2d: H + 2 p >= kH per axis, so the output is at least 1 x 1."""
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    size = tuple(draw(st.integers(max(1, k - 2 * p), 12)) for k, p in zip(kernel, padding))
    return dict(batch=draw(st.integers(1, 4)), c_in=draw(st.integers(1, 5)), c_out=draw(st.integers(1, 5)),
                size=size, kernel=kernel, stride=stride, padding=padding)


@st.composite
def conv_transpose_geometry(draw):
    """A valid ConvTranspose2d: output_padding < stride and (H - 1) s - 2 p + kH + output_padding >= 1."""
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    output_padding = tuple(draw(st.integers(0, s - 1)) for s in stride)
    size = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    padding = tuple(draw(st.integers(0, min(2, ((n - 1) * s + k + op - 1) // 2)))
                    for n, k, s, op in zip(size, kernel, stride, output_padding))
    return dict(batch=draw(st.integers(1, 4)), c_in=draw(st.integers(1, 5)), c_out=draw(st.integers(1, 5)),
                size=size, kernel=kernel, stride=stride, padding=padding, output_padding=output_padding)


def leaf(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, requires_grad=True)


def upstream(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """A random dy: standard normals plus a mean of +-1 per channel (axis 1).

    The mean keeps db = Σ dy over the batch's pixels away from a cancelling sum, where two
    correct float32 sums disagree relative to the tiny result: for a zero-mean dy (8, 1, 28, 28)
    that summed to -0.263 (sum |dy| = 5028), torch's conv_transpose2d bias gradient was off by
    1.7e-4 (6e-4 relative), NumPy's by 1.7e-5.
    """
    sign = rng.choice([-1.0, 1.0], size=shape[1]).reshape(-1, *[1] * (len(shape) - 2))
    return (rng.normal(size=shape) + sign).astype(dtype)


def magnitudes(transpose: bool, x, w, b, dy, *geometry) -> list[np.ndarray]:
    """Σ |terms| of every entry of y, dx, dW, db: the reference path on |x|, |w|, |b|, |dy| in float64."""
    x, w, b, dy = (np.abs(a).astype(np.float64) for a in (x, w, b, dy))
    forward, backward = ((conv_transpose2d_reference, conv_transpose2d_reference_backward) if transpose
                         else (conv2d_reference, conv2d_reference_backward))
    return [forward(x, w, b, *geometry), *backward(x, w, dy, *geometry)]


def assert_close(what: str, numpy_value, torch_value, dtype, terms: np.ndarray) -> float:
    """assert_parity, its tolerance scaled by the condition ||Σ |terms||| / ||result|| (>= 1).

    Where a sum cancels to far below its terms, the result keeps only their rounding, u Σ |terms|,
    in any order of evaluation: two correct implementations then differ by that much, not by u
    times the result.  Hypothesis finds such draws among the smallest shapes (one output pixel,
    one channel); for every other draw the condition is a few units and the tolerance 1e-10 / 1e-4.
    """
    if isinstance(torch_value, torch.Tensor):
        torch_value = torch_value.detach().numpy()
    cond = max(1.0, float(np.linalg.norm(terms) / max(np.linalg.norm(torch_value), np.finfo(np.float64).tiny)))
    label = what if cond < 100 else f"{what} (condition {cond:.0e})"
    return assert_parity(label, numpy_value, torch_value, dtype, tol=TOL[np.dtype(dtype)] * cond)


def conv_case(g: dict, dtype, seed: int):
    """x (B, in, H, W), W (out, in, kH, kW), b (out,) for geometry g, standard normals."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(g["batch"], g["c_in"], *g["size"])).astype(dtype)
    w = rng.normal(size=(g["c_out"], g["c_in"], *g["kernel"])).astype(dtype)
    b = rng.normal(size=g["c_out"]).astype(dtype)
    return rng, x, w, b


def conv_transpose_case(g: dict, dtype, seed: int):
    """x (B, in, H, W), W (in, out, kH, kW), b (out,) for geometry g."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(g["batch"], g["c_in"], *g["size"])).astype(dtype)
    w = rng.normal(size=(g["c_in"], g["c_out"], *g["kernel"])).astype(dtype)
    b = rng.normal(size=g["c_out"]).astype(dtype)
    return rng, x, w, b


def check_conv2d(x, w, b, stride, padding, rng, dtype):
    """Conv2d's forward, dx, dW, db against F.conv2d and autograd; returns the layer's results."""
    layer = Conv2d(w.copy(), b.copy(), stride=stride, padding=padding)
    y, backward = layer.forward(x)
    dy = upstream(rng, y.shape, dtype)
    dx = backward(dy)

    xt, wt, bt = leaf(x), leaf(w), leaf(b)
    yt = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    dxt, dwt, dbt = torch.autograd.grad(yt, [xt, wt, bt], grad_outputs=torch.from_numpy(dy))
    assert y.dtype == dx.dtype == np.dtype(dtype)
    terms = magnitudes(False, x, w, b, dy, stride, padding)
    for what, a, t, m in zip(["forward y", "dx", "dweight", "dbias"], [y, dx, *layer.grads.values()],
                             [yt, dxt, dwt, dbt], terms):
        assert_close(what, a, t, dtype, m)
    return y, dy, dx, layer


def check_conv_transpose2d(x, w, b, stride, padding, output_padding, rng, dtype):
    """ConvTranspose2d's forward, dx, dW, db against F.conv_transpose2d and autograd."""
    layer = ConvTranspose2d(w.copy(), b.copy(), stride=stride, padding=padding, output_padding=output_padding)
    y, backward = layer.forward(x)
    dy = upstream(rng, y.shape, dtype)
    dx = backward(dy)

    xt, wt, bt = leaf(x), leaf(w), leaf(b)
    yt = F.conv_transpose2d(xt, wt, bt, stride=stride, padding=padding, output_padding=output_padding)
    dxt, dwt, dbt = torch.autograd.grad(yt, [xt, wt, bt], grad_outputs=torch.from_numpy(dy))
    assert y.dtype == dx.dtype == np.dtype(dtype)
    terms = magnitudes(True, x, w, b, dy, stride, padding, output_padding)
    for what, a, t, m in zip(["forward y", "dx", "dweight", "dbias"], [y, dx, *layer.grads.values()],
                             [yt, dxt, dwt, dbt], terms):
        assert_close(what, a, t, dtype, m)
    return y, dy, dx, layer


# Measured worst relative errors against torch: "fast run / worst of five thorough runs (400 examples)",
# from the table the parity suite prints at the end.
# Conv2d:           float64 5e-16 / 1.7e-15, float32 2e-7 / 1.4e-6
# ConvTranspose2d:  float64 9e-16 / 4.6e-14 (a dx of condition 2e3; 1.1e-15 for all others), float32 5e-7 / 6.2e-6
# The conv VAE's shapes (fixed draws): float64 1.2e-15, float32 1.3e-6.
@pytest.mark.parametrize("dtype", DTYPES)
@given(g=conv_geometry(), seed=seeds)
def test_conv2d(dtype, g, seed):
    rng, x, w, b = conv_case(g, dtype, seed)
    check_conv2d(x, w, b, _arg(g["stride"]), _arg(g["padding"]), rng, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(g=conv_transpose_geometry(), seed=seeds)
def test_conv_transpose2d(dtype, g, seed):
    rng, x, w, b = conv_transpose_case(g, dtype, seed)
    check_conv_transpose2d(x, w, b, _arg(g["stride"]), _arg(g["padding"]), _arg(g["output_padding"]), rng, dtype)


# ------------------------------------------------------------------ the conv VAE's own shapes
VAE_CONVS = [  # (in, out, input size): encoder Conv2d(1, 32, 4, 2, 1), Conv2d(32, 64, 4, 2, 1) on 28x28
    (1, 32, 28), (32, 64, 14)]
VAE_CONV_TRANSPOSES = [  # decoder ConvTranspose2d(64, 32, 4, 2, 1), ConvTranspose2d(32, 1, 4, 2, 1) from 7x7
    (64, 32, 7), (32, 1, 14)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c_in, c_out, size", VAE_CONVS)
def test_conv2d_at_the_conv_vae_shapes(dtype, c_in, c_out, size):
    rng = np.random.default_rng(size)
    x = rng.uniform(size=(8, c_in, size, size)).astype(dtype)
    bound = 1 / np.sqrt(c_in * 16)                         # torch's default init
    w = rng.uniform(-bound, bound, (c_out, c_in, 4, 4)).astype(dtype)
    b = rng.uniform(-bound, bound, c_out).astype(dtype)
    y, _, _, _ = check_conv2d(x, w, b, 2, 1, rng, dtype)
    assert y.shape == (8, c_out, size // 2, size // 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c_in, c_out, size", VAE_CONV_TRANSPOSES)
def test_conv_transpose2d_at_the_conv_vae_shapes(dtype, c_in, c_out, size):
    rng = np.random.default_rng(size)
    x = rng.normal(size=(8, c_in, size, size)).astype(dtype)
    bound = 1 / np.sqrt(c_out * 16)                        # torch's fan_in for ConvTranspose2d: out * kH * kW
    w = rng.uniform(-bound, bound, (c_in, c_out, 4, 4)).astype(dtype)
    b = rng.uniform(-bound, bound, c_out).astype(dtype)
    y, _, _, _ = check_conv_transpose2d(x, w, b, 2, 1, 0, rng, dtype)
    assert y.shape == (8, c_out, 2 * size, 2 * size)


def _init(rng, shape, fan_in, dtype):
    bound = 1 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_vae_encoder_and_decoder_stacks(dtype):
    """The conv VAE's encoder (Unflatten, Conv2d, ReLU, Conv2d, ReLU, Flatten) and decoder (Unflatten,
    ConvTranspose2d, ReLU, ConvTranspose2d, Flatten) as Sequentials, batch 8, against torch: the
    channels-last outputs flow through ReLU and Flatten as torch's NCHW tensors do."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 784)).astype(dtype)
    w1, b1 = _init(rng, (32, 1, 4, 4), 16, dtype), _init(rng, 32, 16, dtype)
    w2, b2 = _init(rng, (64, 32, 4, 4), 512, dtype), _init(rng, 64, 512, dtype)
    encoder = Sequential([Unflatten((1, 28, 28)), Conv2d(w1.copy(), b1.copy(), stride=2, padding=1), ReLU(),
                          Conv2d(w2.copy(), b2.copy(), stride=2, padding=1), ReLU(), Flatten()])
    h, backward = encoder.forward(x)
    dh = upstream(rng, (8, 64, 7, 7), dtype).reshape(h.shape)
    dx = backward(dh)

    xt, w1t, b1t, w2t, b2t = map(leaf, (x, w1, b1, w2, b2))
    ht = F.relu(F.conv2d(F.relu(F.conv2d(xt.reshape(8, 1, 28, 28), w1t, b1t, 2, 1)), w2t, b2t, 2, 1)).flatten(1)
    grads = torch.autograd.grad(ht, [xt, w1t, b1t, w2t, b2t], grad_outputs=torch.from_numpy(dh))
    assert_parity("encoder h", h, ht, dtype)
    for what, a, t in zip(["dx", "dW1", "db1", "dW2", "db2"],
                          [dx, *encoder[1].grads.values(), *encoder[3].grads.values()], grads):
        assert_parity(what, a, t, dtype)

    v1, c1 = _init(rng, (64, 32, 4, 4), 512, dtype), _init(rng, 32, 512, dtype)
    v2, c2 = _init(rng, (32, 1, 4, 4), 16, dtype), _init(rng, 1, 16, dtype)
    decoder = Sequential([Unflatten((64, 7, 7)), ConvTranspose2d(v1.copy(), c1.copy(), stride=2, padding=1), ReLU(),
                          ConvTranspose2d(v2.copy(), c2.copy(), stride=2, padding=1), Flatten()])
    z = rng.normal(size=(8, 64 * 7 * 7)).astype(dtype)
    a, backward = decoder.forward(z)
    da = upstream(rng, (8, 1, 28, 28), dtype).reshape(a.shape)
    dz = backward(da)

    zt, v1t, c1t, v2t, c2t = map(leaf, (z, v1, c1, v2, c2))
    at = F.conv_transpose2d(F.relu(F.conv_transpose2d(zt.reshape(8, 64, 7, 7), v1t, c1t, 2, 1)), v2t, c2t, 2, 1)
    at = at.flatten(1)
    grads = torch.autograd.grad(at, [zt, v1t, c1t, v2t, c2t], grad_outputs=torch.from_numpy(da))
    assert a.shape == (8, 784)
    assert_parity("decoder logits", a, at, dtype)
    for what, a_, t in zip(["dz", "dV1", "dc1", "dV2", "dc2"],
                           [dz, *decoder[1].grads.values(), *decoder[3].grads.values()], grads):
        assert_parity(what, a_, t, dtype)


# ------------------------------------------------------------------ fast path == reference path
@pytest.mark.parametrize("dtype", DTYPES)
@given(g=conv_geometry(), seed=seeds)
def test_conv2d_fast_path_equals_reference(dtype, g, seed):
    rng, x, w, b = conv_case(g, dtype, seed)
    stride, padding = g["stride"], g["padding"]
    layer = Conv2d(w, b, stride=stride, padding=padding)
    y, backward = layer.forward(x)
    dy = upstream(rng, y.shape, dtype)
    dx = backward(dy)
    reference = [conv2d_reference(x, w, b, stride, padding), *conv2d_reference_backward(x, w, dy, stride, padding)]
    for what, a, r, m in zip(["y", "dx", "dweight", "dbias"], [y, dx, *layer.grads.values()], reference,
                             magnitudes(False, x, w, b, dy, stride, padding)):
        assert r.dtype == np.dtype(dtype)
        assert_close(f"fast {what} vs reference", a, r, dtype, m)
    np.testing.assert_array_equal(layer(x), y)                  # inference computes the same numbers


@pytest.mark.parametrize("dtype", DTYPES)
@given(g=conv_transpose_geometry(), seed=seeds)
def test_conv_transpose2d_fast_path_equals_reference(dtype, g, seed):
    rng, x, w, b = conv_transpose_case(g, dtype, seed)
    stride, padding, output_padding = g["stride"], g["padding"], g["output_padding"]
    layer = ConvTranspose2d(w, b, stride=stride, padding=padding, output_padding=output_padding)
    y, backward = layer.forward(x)
    dy = upstream(rng, y.shape, dtype)
    dx = backward(dy)
    geometry = (stride, padding, output_padding)
    reference = [conv_transpose2d_reference(x, w, b, *geometry),
                 *conv_transpose2d_reference_backward(x, w, dy, *geometry)]
    for what, a, r, m in zip(["y", "dx", "dweight", "dbias"], [y, dx, *layer.grads.values()], reference,
                             magnitudes(True, x, w, b, dy, *geometry)):
        assert r.dtype == np.dtype(dtype)
        assert_close(f"fast {what} vs reference", a, r, dtype, m)
    np.testing.assert_array_equal(layer(x), y)                  # inference computes the same numbers


@pytest.mark.parametrize("dtype", DTYPES)
@given(g=conv_geometry(), seed=seeds)
def test_conv2d_reference_against_torch(dtype, g, seed):
    """The reference path is a witness of its own: equal to torch as well."""
    rng, x, w, b = conv_case(g, dtype, seed)
    stride, padding = g["stride"], g["padding"]
    y = conv2d_reference(x, w, b, stride, padding)
    dy = upstream(rng, y.shape, dtype)
    xt, wt, bt = leaf(x), leaf(w), leaf(b)
    yt = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    for what, a, t, m in zip(["reference y", "reference dx", "reference dweight", "reference dbias"],
                             [y, *conv2d_reference_backward(x, w, dy, stride, padding)],
                             [yt, *torch.autograd.grad(yt, [xt, wt, bt], grad_outputs=torch.from_numpy(dy))],
                             magnitudes(False, x, w, b, dy, stride, padding)):
        assert_close(what, a, t, dtype, m)


@pytest.mark.parametrize("dtype", DTYPES)
@given(g=conv_transpose_geometry(), seed=seeds)
def test_conv_transpose2d_reference_against_torch(dtype, g, seed):
    rng, x, w, b = conv_transpose_case(g, dtype, seed)
    stride, padding, output_padding = g["stride"], g["padding"], g["output_padding"]
    y = conv_transpose2d_reference(x, w, b, stride, padding, output_padding)
    dy = upstream(rng, y.shape, dtype)
    xt, wt, bt = leaf(x), leaf(w), leaf(b)
    yt = F.conv_transpose2d(xt, wt, bt, stride=stride, padding=padding, output_padding=output_padding)
    for what, a, t, m in zip(["reference y", "reference dx", "reference dweight", "reference dbias"],
                             [y, *conv_transpose2d_reference_backward(x, w, dy, stride, padding, output_padding)],
                             [yt, *torch.autograd.grad(yt, [xt, wt, bt], grad_outputs=torch.from_numpy(dy))],
                             magnitudes(True, x, w, b, dy, stride, padding, output_padding)):
        assert_close(what, a, t, dtype, m)


# ------------------------------------------------------------------ layouts, need_dx, Flatten / Unflatten
@pytest.mark.parametrize("dtype", DTYPES)
@given(g=conv_geometry(), seed=seeds, layout=st.sampled_from(["nchw", "channels_last", "strided"]))
def test_conv2d_takes_any_input_layout(dtype, g, seed, layout):
    """The same numbers from a C-contiguous x, a channels-last one and a strided view, and from a
    channels-last dy; need_dx=False gives None and the same parameter gradients."""
    rng, x, w, b = conv_case(g, dtype, seed)
    if layout == "channels_last":
        x_in = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    elif layout == "strided":
        x_in = np.repeat(x, 2, axis=3)[..., ::2]
    else:
        x_in = x
    layer = Conv2d(w, b, stride=g["stride"], padding=g["padding"])
    y, backward = layer.forward(x)
    dy = upstream(rng, y.shape, dtype)
    dx = backward(dy)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    y2, backward2 = layer.forward(x_in)
    assert backward2(dy, need_dx=False) is None
    # The same sums, but BLAS may take another path for another layout (1 x 1 images, one channel):
    # equal to rounding, not bit for bit (Hypothesis found dx 1 ulp apart for a channels-last dy).
    assert_parity(f"y ({layout} x)", y2, y, dtype)
    for k in grads:
        assert_parity(f"d{k} ({layout} x)", layer.grads[k], grads[k], dtype)
    dy_channels_last = np.ascontiguousarray(dy.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert_parity("dx (channels-last dy)", layer.forward(x_in)[1](dy_channels_last), dx, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), batch=st.integers(1, 4), seed=seeds)
def test_flatten_and_unflatten_match_torch(dtype, shape, batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, *shape)).astype(dtype)
    y, backward = Flatten().forward(x)
    dy = upstream(rng, y.shape, dtype)
    xt = leaf(x)
    yt = torch.nn.Flatten()(xt)
    (dxt,) = torch.autograd.grad(yt, [xt], grad_outputs=torch.from_numpy(dy))
    assert_parity("flatten y", y, yt, dtype)
    assert_parity("flatten dx", backward(dy), dxt, dtype)

    u, backward = Unflatten(shape).forward(y)
    du = rng.normal(size=u.shape).astype(dtype)
    yt = leaf(y)
    ut = torch.nn.Unflatten(1, shape)(yt)
    (dyt,) = torch.autograd.grad(ut, [yt], grad_outputs=torch.from_numpy(du))
    assert_parity("unflatten y", u, ut, dtype)
    assert_parity("unflatten dx", backward(du), dyt, dtype)

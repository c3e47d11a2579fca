"""Conv2d, ConvTranspose2d, Flatten and Unflatten: the hand-written backward against central finite differences
(float64), the third witness beside torch autograd and the reference path (parity_tests/test_conv_parity.py).

The scalar is L = Σ y ⊙ R for a fixed random R, so every output element matters and dL/dy = R.
Hypothesis draws small geometries (each finite difference is two forward passes per entry).
Also: float32 against float64 on the same values, and the layers' refusals.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st


from conv_helpers import conv_geometry
from numpy_vae.nn.conv import (Conv2d, ConvTranspose2d, conv2d_reference, conv2d_reference_backward,
                               conv_transpose2d_reference, conv_transpose2d_reference_backward)
from numpy_vae.nn.gradcheck import assert_gradient, relative_error
from numpy_vae.nn.reshape import Flatten, Unflatten

TOL = 1e-6
F32_TOL = 1e-4          # float32 against float64, relative: the project's float32 tolerance (worst measured
                        # over 400 draws: 3.7e-6, a Conv2d dW; 1.4e-7 for the forwards)
seeds = st.integers(0, 2**32 - 1)


def weighted_sum(out, r):
    """L = Σ out ⊙ r."""
    return float((out * r).sum())


def small_conv(transpose: bool):
    """A small valid geometry: batch 1-2, channels 1-3, size 1-6, kernel 1-3, stride 1-3, padding 0-2."""
    return conv_geometry(transpose)


def make_layer(g, transpose: bool, rng, dtype=np.float64):
    """The layer of geometry g with random weights, and a random x for it."""
    c_in, c_out = g["c_in"], g["c_out"]
    shape = (c_in, c_out) if transpose else (c_out, c_in)
    w = rng.normal(size=(*shape, *g["kernel"])).astype(dtype)
    b = rng.normal(size=c_out).astype(dtype)
    x = rng.normal(size=(g["batch"], c_in, *g["size"])).astype(dtype)
    if transpose:
        layer = ConvTranspose2d(w, b, stride=g["stride"], padding=g["padding"], output_padding=g["output_padding"])
    else:
        layer = Conv2d(w, b, stride=g["stride"], padding=g["padding"])
    return layer, x


def check_layer_gradients(layer, x, rng):
    y, backward = layer.forward(x)
    r = rng.normal(size=y.shape)
    dx = backward(r)
    f = lambda: weighted_sum(layer(x), r)  # noqa: E731
    assert_gradient(dx, f, x)
    assert_gradient(layer.grads["weight"], f, layer.params["weight"])
    assert_gradient(layer.grads["bias"], f, layer.params["bias"])


@given(g=small_conv(transpose=False), seed=seeds)
def test_conv2d_backward_matches_finite_differences(g, seed):
    rng = np.random.default_rng(seed)
    layer, x = make_layer(g, False, rng)
    check_layer_gradients(layer, x, rng)


@given(g=small_conv(transpose=True), seed=seeds)
def test_conv_transpose2d_backward_matches_finite_differences(g, seed):
    rng = np.random.default_rng(seed)
    layer, x = make_layer(g, True, rng)
    check_layer_gradients(layer, x, rng)


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), batch=st.integers(1, 3), seed=seeds)
def test_flatten_and_unflatten_backward_match_finite_differences(shape, batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, *shape))
    flatten, unflatten = Flatten(), Unflatten(shape)
    y, backward = flatten.forward(x)
    assert y.shape == (batch, int(np.prod(shape)))
    r = rng.normal(size=y.shape)
    assert_gradient(backward(r), lambda: weighted_sum(flatten(x), r), x)

    v = rng.normal(size=y.shape)
    u, backward = unflatten.forward(v)
    assert u.shape == (batch, *shape)
    r = rng.normal(size=u.shape)
    assert_gradient(backward(r), lambda: weighted_sum(unflatten(v), r), v)
    np.testing.assert_array_equal(flatten(unflatten(v)), v)          # inverses of each other


def test_flatten_and_unflatten_return_views_of_contiguous_arrays():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    y, backward = Flatten().forward(x)
    assert np.shares_memory(y, x) and y.shape == (2, 60)
    dy = np.ones_like(y)
    assert np.shares_memory(backward(dy), dy)
    u, backward = Unflatten((3, 4, 5)).forward(y)
    assert np.shares_memory(u, y) and u.shape == x.shape
    du = np.ones_like(u)
    assert np.shares_memory(backward(du), du)
    # A channels-last array (a Conv2d's output) is copied into torch's (C, H, W) order.
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(Flatten()(x_cl), x.reshape(2, -1))


# ------------------------------------------------------------------ float32 against float64
@pytest.mark.parametrize("transpose", [False, True])
@given(data=st.data(), seed=seeds)
def test_float32_agrees_with_float64(transpose, data, seed):
    """Same values (float32-representable) through the float32 and float64 layers: y, dx, dW, db stay
    float32 and agree with the float64 results to float32 precision."""
    g = data.draw(small_conv(transpose))
    rng = np.random.default_rng(seed)
    layer32, x32 = make_layer(g, transpose, rng, np.float32)
    layer64 = type(layer32)(*(p.astype(np.float64) for p in layer32.params.values()),
                            **{k: getattr(layer32, k) for k in ("stride", "padding", "output_padding")
                               if hasattr(layer32, k)})
    results, r = [], None
    for layer, x in [(layer32, x32), (layer64, x32.astype(np.float64))]:
        y, backward = layer.forward(x)
        if r is None:                                   # mean 1, so that db is no cancelling sum
            r = (rng.normal(size=y.shape) + 1).astype(np.float32)
        results.append([y, backward(r.astype(x.dtype)), *layer.grads.values()])
    # Σ |terms| of each entry (the reference on absolute values): where a sum cancels, float32 keeps
    # only u Σ |terms|, so the tolerance is scaled by the condition ||Σ |terms||| / ||result||.
    geometry = [layer32.stride, layer32.padding] + ([layer32.output_padding] if transpose else [])
    forward, backward = ((conv_transpose2d_reference, conv_transpose2d_reference_backward) if transpose
                         else (conv2d_reference, conv2d_reference_backward))
    w, b = (np.abs(p.astype(np.float64)) for p in layer64.params.values())
    xa, ra = np.abs(x32.astype(np.float64)), np.abs(r.astype(np.float64))
    terms = [forward(xa, w, b, *geometry), *backward(xa, w, ra, *geometry)]
    for what, a32, a64, m in zip(["y", "dx", "dweight", "dbias"], *results, terms):
        assert a32.dtype == np.float32, what
        cond = max(1.0, np.linalg.norm(m) / max(np.linalg.norm(a64), np.finfo(np.float64).tiny))
        err = relative_error(a32, a64)
        assert err < F32_TOL * cond, (what, err, cond)


# ------------------------------------------------------------------ refusals
def test_conv_transpose2d_refuses_output_padding_not_below_stride():
    w, b = np.zeros((2, 3, 4, 4)), np.zeros(3)
    with pytest.raises(ValueError, match="output_padding"):
        ConvTranspose2d(w, b, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="output_padding"):
        ConvTranspose2d(w, b, stride=(2, 1), output_padding=(1, 1))
    ConvTranspose2d(w, b, stride=(2, 3), output_padding=(1, 2))       # < stride in each axis: fine


def test_layers_refuse_bad_shapes_and_arguments():
    with pytest.raises(ValueError, match="weight"):
        Conv2d(np.zeros((2, 3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="bias"):
        Conv2d(np.zeros((2, 3, 4, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="bias"):
        ConvTranspose2d(np.zeros((2, 3, 4, 4)), np.zeros(2))           # bias is (out,) = weight.shape[1]
    with pytest.raises(ValueError, match="stride"):
        Conv2d(np.zeros((2, 3, 4, 4)), np.zeros(2), stride=0)
    with pytest.raises(ValueError, match="padding"):
        Conv2d(np.zeros((2, 3, 4, 4)), np.zeros(2), padding=(1, -1))
    conv = Conv2d(np.zeros((2, 3, 4, 4)), np.zeros(2), padding=1)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        conv(np.zeros((1, 2, 8, 8)))
    with pytest.raises(ValueError, match="larger than the input"):
        conv(np.zeros((1, 3, 1, 8)))                                    # 1 + 2 < 4
    assert conv(np.zeros((1, 3, 2, 8))).shape == (1, 2, 1, 7)           # 2 + 2 = 4: one row
    convt = ConvTranspose2d(np.zeros((3, 2, 1, 1)), np.zeros(2), padding=1)
    with pytest.raises(ValueError, match="empty output"):
        convt(np.zeros((1, 3, 2, 2)))                                   # (2 - 1) - 2 + 1 = 0
    with pytest.raises(ValueError, match="Unflatten"):
        Unflatten((3, 4)).forward(np.zeros((2, 11)))


@pytest.mark.parametrize("args", [dict(stride=2, padding=1), dict(stride=(2, 2), padding=(1, 1))])
def test_int_and_pair_arguments_are_the_same(args):
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(4, 3, 4, 4)), rng.normal(size=4)
    x3, x4 = rng.normal(size=(2, 3, 9, 9)), rng.normal(size=(2, 4, 5, 5))
    np.testing.assert_array_equal(Conv2d(w, b, **args)(x3), Conv2d(w, b, stride=2, padding=1)(x3))
    np.testing.assert_array_equal(ConvTranspose2d(w, b[:3], **args)(x4),
                                  ConvTranspose2d(w, b[:3], stride=2, padding=1)(x4))


@pytest.mark.parametrize("transpose", [False, True])
def test_parameters_and_gradients_may_be_views_of_flat_buffers(transpose):
    """As the model builds them: weight and bias views into one flat buffer, their gradients views into
    another.  The backward writes into those views (never rebinds them), and reads the parameters
    through them, so an update made in the flat buffer is seen."""
    rng = np.random.default_rng(0)
    shape = (3, 2, 3, 2)                                    # Conv2d (out 3, in 2) / ConvTranspose2d (in 3, out 2)
    n_bias = shape[1] if transpose else shape[0]
    n_w = int(np.prod(shape))
    flat, grad_flat = rng.normal(size=n_w + n_bias), np.full(n_w + n_bias, np.nan)
    w, b = flat[:n_w].reshape(shape), flat[n_w:]
    gw, gb = grad_flat[:n_w].reshape(shape), grad_flat[n_w:]
    cls, c_in = (ConvTranspose2d, 3) if transpose else (Conv2d, 2)
    layer = cls(w, b, gw, gb, stride=(2, 1), padding=(1, 0))
    x = rng.normal(size=(2, c_in, 5, 4))
    flat *= 2                                               # an optimizer step, in place
    y, backward = layer.forward(x)
    r = rng.normal(size=y.shape)
    backward(r)
    assert layer.grads["weight"] is gw and layer.grads["bias"] is gb
    assert np.isfinite(grad_flat).all()
    fresh = cls(w.copy(), b.copy(), stride=(2, 1), padding=(1, 0))
    y2, backward2 = fresh.forward(x)
    backward2(r)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(grad_flat, np.concatenate([fresh.grads["weight"].ravel(), fresh.grads["bias"]]))


@pytest.mark.parametrize("transpose", [False, True])
def test_calls_between_forward_and_backward_change_nothing(transpose):
    """A layer reuses its scratch arrays from call to call, never the arrays a closure holds or a call
    returns: inference and another forward (another batch size) in between leave the first backward's
    results bit for bit, and writing into the outputs changes nothing either."""
    rng = np.random.default_rng(3)
    g = dict(batch=3, c_in=4, c_out=5, size=(6, 7), kernel=(4, 3), stride=(2, 1), padding=(1, 2),
             output_padding=(1, 0))
    layer, x = make_layer(g, transpose, rng)
    y, backward = layer.forward(x)
    dy = rng.normal(size=y.shape)
    expected = [y.copy(), backward(dy.copy()), *(v.copy() for v in layer.grads.values())]

    y, backward = layer.forward(x)
    other = rng.normal(size=(5, *x.shape[1:]))
    layer(other)
    _, backward_other = layer.forward(other)
    y_kept = y.copy()
    dx = backward(dy.copy())
    got = [y_kept, dx, *layer.grads.values()]
    for a, e in zip(got, expected):
        np.testing.assert_array_equal(a, e)
    dx[...] = 0                                           # outputs are fresh arrays, owned by the caller
    y[...] = 0
    layer(other)
    np.testing.assert_array_equal(layer.forward(x)[1](dy.copy()), expected[1])

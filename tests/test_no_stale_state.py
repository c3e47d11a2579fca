"""A backward uses what its own forward computed, whatever is called in between.

Before the redesign each layer cached its input on itself, so ``encode``, ``decode`` or
``reconstruct`` between ``forward`` and ``backward`` overwrote what backward used (measured
relative gradient errors of 1.09, 0.81 and 0.67, or a matmul ValueError with another batch
size), and ``forward`` returned the cached arrays themselves (``out["logits"] *= 0`` changed a
gradient by 0.51).  Each case here would fail on that design.
"""
import numpy as np
import pytest

from numpy_vae import build_model, draw_eps
from numpy_vae.nn.linear import Linear


def _model_and_batch(seed=0):
    rng = np.random.default_rng(seed)
    model = build_model(latent=4, hidden=(24, 12), dtype=np.float64, seed=seed)
    x, eps = rng.random((6, 784)), draw_eps(rng, 6, 4, np.float64)
    return model, x, eps, rng


def _gradients(model, x, eps, between=lambda: None):
    model.forward(x, eps)
    between()
    grads, dx = model.backward()
    return {k: v.copy() for k, v in grads.items()}, dx.copy()


@pytest.mark.parametrize("call", ["encode", "decode", "decode_probs", "reconstruct", "sample", "forward_other"])
def test_calls_between_forward_and_backward_change_nothing(call):
    model, x, eps, rng = _model_and_batch()
    expected, dx_expected = _gradients(model, x, eps)
    other = rng.random((11, 784))                         # another batch size, as a user's plotting code would
    calls = {"encode": lambda: model.encode(other),
             "decode": lambda: model.decode(rng.standard_normal((3, 4))),
             "decode_probs": lambda: model.decode(rng.standard_normal((3, 4)), probs=True),
             "reconstruct": lambda: model.reconstruct(other),
             "sample": lambda: model.sample(5, rng),
             # a second forward replaces the first: backward then belongs to it, consistently
             "forward_other": None}
    if call == "forward_other":
        model.forward(other, draw_eps(rng, 11, 4, np.float64))
        grads, dx = _gradients(model, x, eps)
    else:
        grads, dx = _gradients(model, x, eps, calls[call])
    for name in expected:
        np.testing.assert_array_equal(grads[name], expected[name], err_msg=name)
    np.testing.assert_array_equal(dx, dx_expected)


@pytest.mark.parametrize("key", ["logits", "mu", "logvar", "z"])
def test_changing_forwards_outputs_changes_no_gradient(key):
    model, x, eps, _ = _model_and_batch(1)
    expected, dx_expected = _gradients(model, x, eps)
    out = model.forward(x, eps)
    out[key] *= 0                                        # the user's arrays are copies, not the saved ones
    grads, dx = model.backward()
    for name in expected:
        np.testing.assert_array_equal(grads[name], expected[name], err_msg=name)
    np.testing.assert_array_equal(dx, dx_expected)


def test_changing_the_input_after_forward_changes_no_gradient():
    """x is checked and copied to the model's dtype; eps likewise, for a float32 model fed float64."""
    rng = np.random.default_rng(2)
    model = build_model(latent=3, hidden=(16,), dtype=np.float32)
    x, eps = rng.random((4, 784)), rng.standard_normal((4, 3))
    expected, dx_expected = _gradients(model, x.copy(), eps.copy())
    model.forward(x, eps)
    x[:] = 0.5
    eps[:] = 9.0
    grads, dx = model.backward()
    for name in expected:
        np.testing.assert_array_equal(grads[name], expected[name], err_msg=name)
    np.testing.assert_array_equal(dx, dx_expected)


def test_a_layers_backward_belongs_to_its_own_forward():
    rng = np.random.default_rng(3)
    layer = Linear(rng.standard_normal((5, 7)), rng.standard_normal(5))
    x1, x2 = rng.standard_normal((4, 7)), rng.standard_normal((9, 7))
    _, back1 = layer.forward(x1)
    layer.forward(x2)                                    # a second call with another batch size
    dy = rng.standard_normal((4, 5))
    dx = back1(dy)
    np.testing.assert_allclose(layer.grads["weight"], dy.T @ x1, rtol=1e-14)
    np.testing.assert_allclose(dx, dy @ layer.params["weight"], rtol=1e-14)


def test_backward_before_any_forward_is_a_clear_error():
    model = build_model(latent=2, hidden=(8,))
    with pytest.raises(RuntimeError, match="needs a forward"):
        model.backward()

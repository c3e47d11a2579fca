"""The convolutional VAE, whole: same weights, x and eps through both models, then 50 Adam steps.

The spec (numpy_vae.specs.conv_spec) is read by both interpreters, so the names, shapes and
initial weights agree by construction (checked below); the NumPy gradients are the hand-written
Conv2d / ConvTranspose2d backward, torch's come from autograd.  Tolerances as for the MLP:
1e-10 (float64) and 1e-4 (float32) relative for the gradients, 1e-9 / 1e-3 after the Adam steps.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import numpy_vae
import torch_vae
from numpy_vae.streams import draw_eps
from parity_helpers import DTYPES, assert_rows, mnist_like
from torch_vae.parity import gradient_rows, trajectory_rows


def test_conv_names_shapes_and_initial_weights_are_torchs():
    ref = numpy_vae.build_model("conv", latent=20, seed=0)
    port = torch_vae.build_model("conv", latent=20, seed=0)
    state = port.state_dict()
    assert list(ref.params) == list(state)
    assert [tuple(v.shape) for v in state.values()] == [v.shape for v in ref.params.values()]
    assert ref.num_params == sum(p.numel() for p in port.parameters()) == 258_025
    for name, value in state.items():
        np.testing.assert_array_equal(ref.params[name], value.numpy(), err_msg=name)
    assert isinstance(port.encoder[1], torch.nn.Conv2d) and isinstance(port.decoder[3], torch.nn.ConvTranspose2d)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=4)             # each example is a 258 K-parameter model through both frameworks
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(2, 6), latent=st.integers(2, 8),
       beta=st.sampled_from([0.0, 0.5, 1.0, 3.0]), kind=st.sampled_from(["uniform", "binary", "digits"]))
def test_conv_model_loss_and_every_gradient(dtype, seed, batch, latent, beta, kind):
    rng = np.random.default_rng(seed)
    x = mnist_like(rng, batch, kind, dtype)
    eps = draw_eps(rng, batch, latent, dtype)
    config = {"arch": "conv", "latent": latent, "hidden": (), "beta": beta, "dtype": np.dtype(dtype)}
    assert_rows(gradient_rows(config, x, eps, seed=seed), dtype)


# float32: 20 steps.  Adam's 1 / (sqrt(v) + 1e-8) turns rounding-noise gradients into steps of a
# fraction of lr (see `pydoc torch_vae.parity`); after 50 steps the moments had drifted to 7.3e-4
# relative here, too close to 1e-3 for a machine whose BLAS sums in another order.
@pytest.mark.parametrize("dtype, steps, tol", [(np.float64, 50, 1e-9), (np.float32, 20, 1e-3)])
def test_conv_adam_steps_agree(dtype, steps, tol):
    rng = np.random.default_rng(7)
    batches = [mnist_like(rng, 8, "digits", dtype) for _ in range(steps)]
    config = {"arch": "conv", "latent": 4, "hidden": (), "beta": 1.0, "dtype": np.dtype(dtype)}
    assert_rows(trajectory_rows(config, batches, seed=7, tol=tol), dtype)

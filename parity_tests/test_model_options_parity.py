"""The tutorials' models, whole: BatchNorm1d (train and eval, buffers), Dropout (shared masks), tanh,
the Gaussian likelihood, beta; NumPy's hand-written backward against torch autograd, then Adam steps.

Hypothesis draws the MLP's options (batchnorm, dropout p, activation, likelihood and its variance),
sizes, beta, the mode and the inputs.  The rows are ``torch_vae.parity``'s (what `vae parity` prints):
loss, recon, kl, mu, logvar, z, decoder output, grad x, every parameter's gradient, and every buffer
after the forward (a training forward moves BatchNorm's running statistics in both).

One honest exception, in training with BatchNorm: the bias of a Linear that a BatchNorm1d follows is
removed by the batch mean, so its gradient is 0 in exact arithmetic and both backends compute
rounding noise (so is fc_mu's, without a KL term, when the decoder starts with Linear, BatchNorm1d:
Hypothesis found it, hidden (2,), latent 2, beta 0).  That row checks both are rounding-small against the layer's weight gradient
(``torch_vae.parity.biases_before_batchnorm``), and the trajectory test holds those biases, and the
running means they feed, to an absolute bound instead of a relative one: Adam turns a noise gradient
into a step of up to lr (1/(sqrt(v) + eps) normalizes it), so after N steps they may differ by N lr.

Tolerance otherwise: 1e-10 relative in float64, 1e-4 in float32, as every parity test.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from numpy_vae import draw_eps
from numpy_vae.specs import mlp_spec
from parity_helpers import DTYPES, assert_rows, mnist_like
from torch_vae.parity import biases_before_batchnorm, gradient_rows, trajectory_rows

options = st.fixed_dictionaries({
    "batchnorm": st.booleans(),
    "dropout": st.sampled_from([0.0, 0.2, 0.5]),
    "activation": st.sampled_from(["relu", "tanh"]),
    "likelihood": st.sampled_from(["bernoulli", "gaussian"]),
    "likelihood_variance": st.sampled_from([0.5, 1.0]) | st.floats(0.05, 4.0),
})
# beta: no subnormal betas (beta * grad underflows differently), as in test_model_parity.py


def config_of(opts: dict, hidden, latent, beta, dtype) -> dict:
    return {"arch": "mlp", "hidden": hidden, "latent": latent, "beta": beta, "dtype": np.dtype(dtype), **opts}


@pytest.mark.parametrize("dtype", DTYPES)
@given(opts=options, hidden=st.lists(st.integers(2, 32), min_size=1, max_size=2).map(tuple),
       latent=st.integers(2, 6), batch=st.integers(4, 12), beta=st.just(0.0) | st.floats(1e-3, 4.0),
       training=st.booleans(),
       seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["uniform", "binary", "digits"]))
def test_every_gradient_and_buffer(dtype, opts, hidden, latent, batch, beta, training, seed, kind):
    rng = np.random.default_rng(seed)
    x, eps = mnist_like(rng, batch, kind, dtype), draw_eps(rng, batch, latent, dtype)
    rows = gradient_rows(config_of(opts, hidden, latent, beta, dtype), x, eps, seed=seed, training=training)
    if opts["batchnorm"]:
        assert any(r.name.startswith("buffer ") for r in rows)
    assert_rows(rows, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_mlp_bn_preset_model(dtype, training):
    """The mlp-bn preset's model (784-256-128-2, BatchNorm, ReLU, Dropout 0.2), batch 32, both modes."""
    rng = np.random.default_rng(3)
    x, eps = mnist_like(rng, 32, "digits", dtype), draw_eps(rng, 32, 2, dtype)
    cfg = config_of({"batchnorm": True, "dropout": 0.2}, (256, 128), 2, 1.0, dtype)
    rows = gradient_rows(cfg, x, eps, seed=3, training=training)
    assert sum(r.name.startswith("buffer ") for r in rows) == 12      # 4 BatchNorms x 3 buffers
    if training:
        assert sum("0 in exact arithmetic" in r.name for r in rows) == 4
    assert_rows(rows, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_preset_model(dtype):
    """The mse preset's model: Gaussian likelihood (variance 1/2) on a sigmoid decoder."""
    rng = np.random.default_rng(4)
    x, eps = mnist_like(rng, 16, "digits", dtype), draw_eps(rng, 16, 10, dtype)
    cfg = config_of({"likelihood": "gaussian", "likelihood_variance": 0.5}, (256, 64), 10, 1.0, dtype)
    assert_rows(gradient_rows(cfg, x, eps, seed=4), dtype)


def test_gaussian_likelihood_has_its_constant():
    """nll = ||x - mean||^2 / (2 var) + D/2 log(2 pi var): at mean = x only the constant is left."""
    from numpy_vae.nn.losses import GaussianNLL
    x = np.random.default_rng(0).random((3, 784))
    nll, _ = GaussianNLL(0.5).forward(x.copy(), x)
    np.testing.assert_allclose(nll, 392 * np.log(np.pi), rtol=1e-15)


@pytest.mark.parametrize("batchnorm,dropout", [(True, 0.2), (True, 0.0), (False, 0.5)])
def test_trajectory_with_batchnorm_and_dropout(batchnorm, dropout):
    """20 Adam steps, float64, the same batches, noise and masks: every parameter, buffer and moment agrees."""
    steps, lr = 20, 1e-3
    rng = np.random.default_rng([7, 9])
    batches = [mnist_like(rng, 16, "digits") for _ in range(steps)]
    cfg = config_of({"batchnorm": batchnorm, "dropout": dropout}, (24, 12), 3, 1.0, np.float64)
    rows = trajectory_rows(cfg, batches, seed=7, lr=lr)
    spec = mlp_spec((24, 12), 3, batchnorm=batchnorm, dropout=dropout)
    loose = [r for r in rows if "Adam on a 0 gradient's rounding noise" in r.name]
    assert len(loose) == 2 * len(biases_before_batchnorm(spec, 1.0))     # each bias and the running mean it feeds
    assert all(r.max_abs_diff <= steps * lr for r in loose)
    assert_rows(rows, np.float64)


def test_eval_mode_is_deterministic_and_leaves_buffers():
    """Evaluation: running statistics normalize, Dropout is the identity, nothing moves."""
    from numpy_vae import build_model
    m = build_model(hidden=(16,), latent=2, batchnorm=True, dropout=0.5, dtype=np.float64, seed=1).eval()
    rng = np.random.default_rng(0)
    x, eps = rng.random((5, 784)), rng.standard_normal((5, 2))
    before = m.state_dict()
    a, b = m.loss(x, eps), m.loss(x, eps)
    assert a == b
    after = m.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    m.train()
    m.loss(x, eps, m.draw_masks(np.random.default_rng(1), 5))
    assert int(m.buffers["encoder.1.num_batches_tracked"]) == 1
    assert not np.array_equal(before["encoder.1.running_mean"], m.buffers["encoder.1.running_mean"])


@pytest.mark.parametrize("preset", ["mlp-bn", "mse", "burda"])
def test_vae_parity_takes_a_preset(preset, capsys):
    """float64: in float32 a BatchNorm model's Adam trajectory on 8 synthetic images can leave the float32
    tolerance (measured: encoder.1.bias 1.4e-2 relative after 3 steps), Adam amplifying rounding noise as
    the parity module's docstring describes; with MNIST at batch 32 it stays inside."""
    from numpy_vae.cli import main
    assert main(["parity", "--preset", preset, "--batch-size", "8", "--steps", "3", "--device", "cpu",
                 "--dtype", "float64", "--data-dir", "/nonexistent-so-synthetic"]) == 0
    out = capsys.readouterr().out
    assert "parity: all relative errors within tolerance" in out
    if preset == "mlp-bn":
        assert "BatchNorm1d(256), ReLU(), Dropout(p=0.2)" in out and "running_mean" in out and "rounding noise" in out
    if preset == "burda":                                   # the model line is the spec built: tanh
        assert "Linear(784, 200), Tanh()" in out and "ReLU" not in out
    if preset == "mse":
        assert "Sigmoid() -> gaussian (variance 0.5)" in out


def test_a_bias_before_batchnorm_whose_layer_input_is_all_zero():
    """Hypothesis found it: hidden (2,), BatchNorm, Dropout 0.5, beta 0: ReLU and the masks zero h for every
    sample, so fc_mu.weight's gradient is exactly 0 and cannot be the scale of fc_mu.bias's rounding noise
    (it reported a relative error of 2e302); the sum of |dloss/dmu_b| over the batch is that scale."""
    rng = np.random.default_rng(3)
    x, eps = mnist_like(rng, 11, "uniform", np.float32), draw_eps(rng, 11, 5, np.float32)
    opts = {"batchnorm": True, "dropout": 0.5, "activation": "relu", "likelihood": "bernoulli"}
    rows = gradient_rows(config_of(opts, (2,), 5, 0.0, np.float32), x, eps, seed=3, training=True)
    row = next(r for r in rows if r.name.startswith("grad fc_mu.bias"))
    assert "0 in exact arithmetic" in row.name
    assert_rows(rows, np.float32)

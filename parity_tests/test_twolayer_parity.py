"""Two stochastic layers: numpy_vae.hvae.HVAE (hand-written backward, NumPy Adam) against its torch port
torch_vae.hvae.TorchHVAE (autograd, torch.optim.Adam), through ``torch_vae.parity`` (what `vae parity` prints).

The port evaluates every log density as the full Gaussian at its sample, log q(h_l|.) included, so
autograd sums the reparameterization's path and score terms that HVAE folds into -1/2 (logvar + eps^2)
by hand (docs/gradients.md#two-stochastic-layers).

- Hypothesis draws stacks of 1 to 3 stochastic layers (2 in the k = 1 / k = 5 tests: the runs' model) with
  small widths, nets of 0 to 2 hidden layers, tanh, ReLU or sigmoid, weights scaled 0.5 to 2 from torch's
  init, binary or grey images, batch 1 to 4: in float64 the loss, recon, kl, log w, d loss / d x and
  d loss / d every parameter agree to relative error < 1e-10 (loss and kl at least to 8 ulps of their
  terms, ``torch_vae.parity.bound_rounding``: they are sums of terms of either sign);
- float32, NumPy against the float32 port: the loss to 1e-5 of the sum of its terms' magnitudes, the whole
  gradient norm-wise to 1e-4; the burda2 model itself row by row to 1e-4;
- 20 Adam steps of both backends on burda2 (h2 of 3 and of 50) in float64, k = 1 and k = 5: per-step losses,
  every parameter and both Adam moments to 1e-9; float32 within TRAJECTORY_TOL (1e-3);
- `vae parity --preset burda2` prints every parameter's row and exits 0;
- the two backends' encode, decode, evaluate and log w agree, and a state handed from one to the other
  mid-training continues as if it had stayed.

Measured worst relative errors (printed by parity_tests/conftest.py), fast profile / one thorough run
(400 examples), 2026-12-08:
    any stack, float64                 2.3e-13 / 2.3e-13 (grad px.net.0.bias)
    two layers, k = 1 and 5, float64   3.1e-14 / 3.8e-12 (grad q2.mu.weight)
    float32 against the float32 port   whole gradient 1.9e-6 / 5.6e-6
    burda2 row by row, float32         3.7e-5 (grad q2.mu.bias)
    20 Adam steps, float64             1.2e-13 (p1.logvar.bias);  float32 (k = 5) 2.8e-5 (px.net.4.bias)
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import assume, given, strategies as st

import numpy_vae
from numpy_vae.cli import main
from numpy_vae.hvae import HVAE
from numpy_vae.specs import HVAESpec, Linear, ReLU, Sigmoid, StochasticLayer, Tanh
from parity_helpers import assert_rows, check_handover, mnist_like, record, torch_dtype_of
from torch_vae import TorchHVAE, to_torch
from torch_vae.parity import compare_models, relative_error, trajectory_rows

ACTS = {"tanh": Tanh, "relu": ReLU, "sigmoid": Sigmoid}
BURDA2 = {"arch": "burda2", "latent": 50, "hidden": (200, 200), "activation": "tanh"}


@st.composite
def stacks(draw, n_layers: int) -> HVAESpec:
    """Specs of ``n_layers`` stochastic layers of widths 1-4 over an input of 2-7, each net (q_l, p_l, px's
    hidden part) 0-2 hidden Linear layers of 1-5 units, with one activation throughout."""
    act = ACTS[draw(st.sampled_from(sorted(ACTS)))]
    d_in = draw(st.integers(2, 7))
    latents = draw(st.lists(st.integers(1, 4), min_size=n_layers, max_size=n_layers))
    widths = st.lists(st.integers(1, 5), max_size=2)

    def net(n_in: int, hidden: list[int]) -> tuple:
        sizes = [n_in, *hidden]
        return tuple(m for a, b in zip(sizes, sizes[1:]) for m in (Linear(a, b), act()))

    ins = [d_in, *latents[:-1]]
    encoder = tuple(StochasticLayer(net(n, draw(widths)), d) for n, d in zip(ins, latents))
    decoder = tuple(StochasticLayer(net(latents[l + 1], draw(widths)), latents[l]) for l in range(n_layers - 1))
    px_hidden = draw(widths)
    px = (*net(latents[0], px_hidden), Linear(([latents[0]] + px_hidden)[-1], d_in))
    return HVAESpec("small", encoder, decoder, px, input_shape=(d_in,))


def make_pair(spec: HVAESpec, dtype, seed: int, scale: float = 1.0) -> tuple[HVAE, TorchHVAE]:
    """The NumPy model of ``spec`` (the seed's init, scaled) and its torch port holding the same weights."""
    ref = HVAE(spec, dtype=dtype, seed=seed)
    ref.flat *= ref.dtype.type(scale)
    port = TorchHVAE(spec, dtype=torch_dtype_of(dtype))
    to_torch(ref.state_dict(), port)
    return ref, port


def draw_case(data, dtype, n_layers=None, k=None):
    spec = data.draw(stacks(n_layers or data.draw(st.integers(1, 3), "layers")), "spec")
    seed = data.draw(st.integers(0, 2**32 - 1), "seed")
    ref, port = make_pair(spec, dtype, seed, data.draw(st.sampled_from([0.5, 1.0, 2.0]), "scale"))
    rng = np.random.default_rng(seed)
    batch = data.draw(st.integers(1, 4), "batch")
    k = k or data.draw(st.integers(1, 6), "k")
    x = rng.random((batch, spec.input_dim))
    if data.draw(st.booleans(), "binary"):
        x = (x < 0.5).astype(np.float64)
    eps = rng.standard_normal((batch, k, spec.noise_dim))
    return ref, port, x.astype(dtype), eps.astype(dtype)


# ------------------------------------------------------------------ float64
# Measured worst (fast / thorough): see the module docstring's table printed by conftest.
@given(st.data())
def test_any_stack_matches_autograd_in_float64(data):
    ref, port, x, eps = draw_case(data, np.float64)
    rows, _ = compare_models(ref, port, x, eps)
    assert_rows(rows, np.float64)


@pytest.mark.parametrize("k", [1, 5])
@given(data=st.data())
def test_two_layers_k1_and_k5_match_autograd_in_float64(k, data):
    """The runs' objectives: the ELBO (k = 1) and the IWAE bound (k = 5), every row of `vae parity`."""
    ref, port, x, eps = draw_case(data, np.float64, n_layers=2, k=k)
    if k == 1 and data.draw(st.booleans(), "eps 2-D"):
        eps = eps[:, 0, :]                           # the training loop's ELBO draw, (B, N)
    rows, _ = compare_models(ref, port, x, eps)
    assert_rows(rows, np.float64)


# ------------------------------------------------------------------ float32
def float32_case_or_reject(ref, x, eps):
    """NumPy's float32 loss and gradient; a draw that overflows float32 (e^-logvar at logvar < -88, from
    three ReLU layers at twice the init's scale) is beyond what float32 can carry and is drawn away."""
    try:
        with np.errstate(over="raise"):
            loss, _, _ = ref.loss(x, eps)
            ref.backward()
    except FloatingPointError:
        assume(False)
    return float(loss), ref.grad_flat.copy()


@pytest.mark.parametrize("k", [1, 5])
@given(data=st.data())
def test_float32_within_float32_rounding(k, data):
    """float32 NumPy against the float32 port: the loss is a sum of terms of either sign (log p - log q - nll),
    so it is held relative to the sum of their magnitudes; the gradient norm-wise, relative to its norm."""
    ref, port, x, eps = draw_case(data, np.float32, k=k)
    loss, grad = float32_case_or_reject(ref, x, eps)
    xt, et = torch.tensor(x), torch.tensor(eps)
    out = port(xt, et)
    grads_t = torch.autograd.grad(out["loss"], list(port.parameters()))
    flat_t = np.concatenate([g.numpy().ravel() for g in grads_t])
    assume(np.abs(flat_t).max() < 1e30)
    with torch.no_grad():
        terms = port.log_weights(xt, et)
    scale = float(sum(terms[n].abs() for n in ("nll", "log_p", "log_q")).mean(dim=1).mean()) + 1.0
    record("loss / (sum of |terms| + 1)", abs(loss - float(out["loss"].detach())) / scale, np.float32)
    assert abs(loss - float(out["loss"].detach())) < 1e-5 * scale
    flat_np = np.concatenate([ref.grads[n].ravel() for n, _ in port.named_parameters()])
    err = relative_error(flat_np, flat_t)
    record("whole gradient", err, np.float32)
    assert err < 1e-4


@pytest.mark.parametrize("k", [1, 5])
def test_burda2_in_float32_row_by_row(k):
    """The paper's model at its initialization, on digit-like images, every row within 1e-4."""
    ref, port = make_pair(numpy_vae.specs.burda2_spec(), np.float32, seed=3)
    rng = np.random.default_rng(3)
    x = mnist_like(rng, 8, "binary")
    eps = rng.standard_normal((8, k, ref.noise_dim)).astype(np.float32)
    rows, _ = compare_models(ref, port, x, eps)
    assert len(rows) == 5 + len(ref.params)
    assert_rows(rows, np.float32)


# ---------------------------------------------------------------- trajectory
@pytest.mark.parametrize("latent", [3, 50])
@pytest.mark.parametrize("k", [1, 5])
def test_twenty_adam_steps_agree_in_float64(k, latent):
    """Both backends, the burda preset's optimizer (Adam eps 1e-4), 20 steps on binarized digit-like batches of 8:
    per-step losses, every parameter and both Adam moments to 1e-9."""
    config = {**BURDA2, "latent": latent, "dtype": np.dtype(np.float64)}
    rng = np.random.default_rng([latent, k])
    batches = [mnist_like(rng, 8, "binary", np.float64) for _ in range(20)]
    rows = trajectory_rows(config, batches, seed=latent + k, lr=1e-3, tol=1e-9, samples=None if k == 1 else k,
                           adam_eps=1e-4)
    assert len(rows) == 1 + len(numpy_vae.specs.burda2_spec(latent).parameter_shapes()) + 2
    assert_rows(rows, np.float64)


def test_twenty_adam_steps_in_float32_stay_within_float32_rounding():
    config = {**BURDA2, "latent": 50, "dtype": np.dtype(np.float32)}
    rng = np.random.default_rng(7)
    batches = [mnist_like(rng, 8, "binary") for _ in range(20)]
    assert_rows(trajectory_rows(config, batches, seed=7, lr=1e-3, samples=5, adam_eps=1e-4), np.float32)


# ---------------------------------------------------------------------- CLI
def test_vae_parity_preset_burda2(capsys, tmp_path):
    code = main(["parity", "--preset", "burda2", "--batch-size", "4", "--steps", "2", "--device", "cpu",
                 "--data-dir", str(tmp_path / "no-mnist")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"model: {numpy_vae.specs.burda2_spec().summary()}\n" in out          # the spec built, in one line
    names = list(numpy_vae.specs.burda2_spec().parameter_shapes())
    assert len(names) == 30                         # 15 Linear layers
    for name in names:
        assert len(re.findall(rf"^  grad {re.escape(name)} ", out, re.M)) == 2      # float64 and float32
        assert len(re.findall(rf"^  {re.escape(name)} ", out, re.M)) == 2           # after the Adam steps
    assert len(re.findall(r"^  log_w ", out, re.M)) == 2
    assert "parity: all relative errors within tolerance" in out


# ------------------------------------------------------------------ backends
def backends(dtype=np.float64, **kwargs):
    from numpy_vae.backends import NumpyBackend
    from torch_vae.backend import TorchBackend
    config = {**BURDA2, "latent": 3, "dtype": np.dtype(dtype)}
    return NumpyBackend(config, **kwargs), TorchBackend(config, **kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backends_encode_decode_and_evaluate_alike(dtype):
    """What the report, the live page and `vae evaluate` read: the chain at its means, the Monte Carlo ELBO, log w."""
    from parity_helpers import assert_parity
    n, t = backends(dtype)
    assert n.noise_dim == t.noise_dim == 103 and n.param_shapes == t.param_shapes
    rng = np.random.default_rng(0)
    x = mnist_like(rng, 6, "binary", dtype)
    mu, logvar = t.encode(x)
    assert mu.shape == (6, 3) and mu.dtype == dtype
    for what, ours, theirs in [("mu", mu, n.encode(x)[0]), ("logvar", logvar, n.encode(x)[1]),
                               ("decode", t.decode(mu), n.decode(mu)),
                               ("decode_logits", t.decode_logits(mu), n.decode_logits(mu))]:
        assert isinstance(ours, np.ndarray) and ours.dtype == dtype
        assert_parity(what, ours, theirs, dtype)
    eps = rng.standard_normal((6, 103)).astype(dtype)
    assert_parity("evaluate", np.array(t.evaluate(x, eps)), np.array(n.evaluate(x, eps)), dtype)
    eps5 = rng.standard_normal((6, 5, 103)).astype(dtype)
    assert_parity("log w", t.log_weights(x, eps5), n.model.log_weights(x, eps5), dtype)
    for bad in (eps[:, :50], eps5[:2]):
        for b in (n, t):
            with pytest.raises(numpy_vae.InputError, match="eps must have shape"):
                b.evaluate(x, bad)


@pytest.mark.parametrize("first", ["numpy", "torch"])
def test_state_handed_over_continues_identically(first):
    """3 IWAE k = 5 steps in one backend, its parameters and Adam state into the other, 3 more: as 6 in one."""
    rng = np.random.default_rng(2)
    batches = [(mnist_like(rng, 4, "binary", np.float64), rng.standard_normal((4, 5, 103))) for _ in range(6)]
    check_handover(first, {**BURDA2, "latent": 3, "dtype": np.dtype(np.float64)}, batches, objective="iwae",
                   adam_eps=1e-4)


def test_the_port_checks_its_inputs_as_numpy_vae_does():
    from numpy_vae.inputs import InputError
    ref, port = make_pair(numpy_vae.specs.burda2_spec(latent=3), np.float64, seed=0)
    x, eps = np.zeros((2, 784)), np.zeros((2, 5, 103))
    for bad_x, bad_eps in [(x, eps[:, :, :50]), (x, eps[:1]), (x[:, :100], eps)]:
        with pytest.raises(InputError) as en:
            ref.loss(bad_x, bad_eps)
        with pytest.raises(InputError) as et:
            port(torch.tensor(bad_x), torch.tensor(bad_eps))
        assert str(et.value) == str(en.value)
    nan_eps, big_x = eps.copy(), x.copy()
    nan_eps[0, 0, 0], big_x[0, 0] = np.nan, 2.0
    for bad_x, bad_eps, needle in [(x, nan_eps, "eps"), (big_x, eps, "x")]:
        with pytest.raises(InputError, match=needle):
            port(torch.tensor(bad_x), torch.tensor(bad_eps))
    with pytest.raises(InputError, match="must be a torch.Tensor"):
        port.log_weights(x, torch.tensor(eps))
    assert port(torch.tensor(x), torch.tensor(eps[:, 0]))["log_w"].shape == (2, 1)     # (B, N): K = 1

"""TorchBackend behaves as NumpyBackend: same interface, same state layout, same errors."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from numpy_vae import InputError, draw_eps
from numpy_vae.backends import NonFiniteError, NumpyBackend
from numpy_vae.cli import main
from numpy_vae.config import ConfigError
from parity_helpers import assert_parity, check_handover, mnist_like
from torch_vae.backend import TorchBackend

CONFIG = {"arch": "mlp", "latent": 3, "hidden": (16, 8), "beta": 1.0, "dtype": np.dtype(np.float64)}


def _batches(n, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    return [(mnist_like(rng, batch, "digits"), draw_eps(rng, batch, 3, np.float64)) for _ in range(n)]


def test_same_public_interface_and_constructor():
    public = lambda cls: {n for n, _ in inspect.getmembers(cls, callable) if not n.startswith("_")}  # noqa: E731
    assert public(NumpyBackend) <= public(TorchBackend)
    assert list(inspect.signature(NumpyBackend).parameters) == list(inspect.signature(TorchBackend).parameters)
    n, t = NumpyBackend(CONFIG), TorchBackend(CONFIG)
    assert (n.name, t.name) == ("numpy", "torch")
    assert n.dtype == t.dtype == np.float64 and isinstance(t.dtype, np.dtype)
    assert n.param_shapes == t.param_shapes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_are_numpy_arrays_of_the_backend_dtype(dtype):
    t, n = TorchBackend({**CONFIG, "dtype": np.dtype(dtype)}), NumpyBackend({**CONFIG, "dtype": np.dtype(dtype)})
    x, eps = _batches(1)[0]
    mu, logvar = t.encode(x)
    for ours, theirs in [(mu, n.encode(x)[0]), (logvar, n.encode(x)[1]), (t.decode(mu), n.decode(mu)),
                         (t.decode_logits(mu), n.decode_logits(mu))]:
        assert isinstance(ours, np.ndarray) and ours.dtype == dtype
        assert_parity("encode/decode", ours, theirs, dtype)
    assert all(isinstance(v, np.ndarray) and v.dtype == dtype for v in t.get_params().values())
    assert all(isinstance(v, float) for v in t.train_step(x, eps) + t.evaluate(x, eps))


def test_optimizer_state_layout_before_and_after_steps():
    n, t = NumpyBackend(CONFIG), TorchBackend(CONFIG)
    for b in (n, t):
        s = b.optimizer_state()
        assert int(s["step"]) == 0 and not s["exp_avg"].any() and not s["exp_avg_sq"].any()
    for x, eps in _batches(3):
        n.train_step(x, eps)
        t.train_step(x, eps)
    sn, st = n.optimizer_state(), t.optimizer_state()
    assert set(sn) == set(st) == {"step", "exp_avg", "exp_avg_sq"}
    assert int(sn["step"]) == int(st["step"]) == 3
    for key in ("exp_avg", "exp_avg_sq"):
        assert sn[key].shape == st[key].shape and sn[key].dtype == st[key].dtype
        assert_parity(key, sn[key], st[key], np.float64)
    # The flat layout is params order: the first entries belong to encoder.0.weight, element by element.
    w = t.optimizer.state[t.model.encoder[0].weight]["exp_avg"].reshape(-1).numpy()
    np.testing.assert_array_equal(st["exp_avg"][:w.size], w)


@pytest.mark.parametrize("first", ["numpy", "torch"])
def test_state_handed_over_continues_identically(first):
    """3 steps in one backend, its params + optimizer state into the other, 3 more steps: as 6 in one."""
    check_handover(first, CONFIG, _batches(6))


def test_non_finite_loss_raises_and_leaves_parameters_alone():
    t = TorchBackend(CONFIG)
    params = t.get_params()
    params["fc_logvar.bias"][...] = 1e3                     # exp(1e3) overflows: the KL is infinite
    t.set_params(params)
    x, eps = _batches(1)[0]
    with pytest.raises(NonFiniteError, match="loss is inf"):
        t.train_step(x, eps)
    for name, value in t.get_params().items():
        np.testing.assert_array_equal(value, params[name])
    assert int(t.optimizer_state()["step"]) == 0


def test_input_errors_are_numpy_vaes():
    t, n = TorchBackend(CONFIG), NumpyBackend(CONFIG)
    x, eps = _batches(1)[0]
    for bad_x, bad_eps in [(x * 2, eps), (x * 300, eps), (x[:, :100], eps), (x, eps[:, :2])]:
        with pytest.raises(InputError) as et:
            t.evaluate(bad_x, bad_eps)
        with pytest.raises(InputError) as en:
            n.evaluate(bad_x, bad_eps)
        assert str(et.value) == str(en.value)
    for bad_z in [np.zeros((2, 4)), np.zeros(3), np.array([[np.nan, 0, 0]]), np.array([["a", "b", "c"]])]:
        for method in ("decode", "decode_logits"):
            with pytest.raises(InputError) as et:
                getattr(t, method)(bad_z)
            with pytest.raises(InputError) as en:
                getattr(n, method)(bad_z)
            assert str(et.value) == str(en.value)


@pytest.mark.parametrize("clip", [1.0, None])
def test_finite_float32_gradient_whose_norm_overflows_float32_is_kept(clip):
    """logvar ~ 46: the KL's gradient is ~5e19 per entry, finite, but its squared norm exceeds float32's
    range.  NumpyBackend measures such a norm in float64 and steps; TorchBackend does the same, and
    both must leave the same parameters and Adam moments (finite) behind."""
    config = {**CONFIG, "dtype": np.dtype(np.float32)}
    n, t = NumpyBackend(config, clip_grad_norm=clip), TorchBackend(config, clip_grad_norm=clip)
    params = n.get_params()
    params["fc_logvar.bias"][...] = 46.0
    n.set_params(params)
    t.set_params(params)
    x, eps = _batches(1)[0]
    eps = eps.astype(np.float32) * 0                      # z = mu: the decoder stays in range
    out = t.model(*t._batch(x, eps))
    out["loss"].backward()
    assert not torch.isfinite(torch.nn.utils.get_total_norm([p.grad for p in t.params]))   # float32 overflows
    t.optimizer.zero_grad()
    with np.errstate(over="ignore"):
        losses = n.train_step(x, eps), t.train_step(x, eps)
    assert np.isfinite(losses).all()
    assert int(n.optimizer_state()["step"]) == int(t.optimizer_state()["step"]) == 1
    for name, value in n.get_params().items():
        assert_parity(name, value, t.get_params()[name], np.float32)
    for key in ("exp_avg", "exp_avg_sq"):
        assert_parity(key, n.optimizer_state()[key], t.optimizer_state()[key], np.float32)


@pytest.mark.parametrize("device, message", [
    ("tpu", "--device tpu: not a device torch knows"),
    ("mps", "--device mps: the torch backend runs on cpu or cuda"),
])
def test_unusable_devices_are_config_errors(device, message):
    with pytest.raises(ConfigError, match=message):
        TorchBackend(CONFIG, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_train_on_cuda_without_cuda_is_one_line_and_exit_1(tmp_path, capsys):
    code = main(["train", "--backend", "torch", "--device", "cuda", "--runs-dir", str(tmp_path),
                 "--data-dir", str(tmp_path / "no-data"), "--name", "x", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == ("vae: error: CUDA is not available on this machine (torch.cuda.is_available() is False); "
                   "use --device cpu\n")
    assert not (tmp_path / "x").exists()

"""Shared by the parity tests: the tolerance check, input generators, and the worst-case record.

Every comparison is the relative error ||numpy - torch|| / ||torch|| (Frobenius
norm, in float64) against 1e-10 for float64 and 1e-4 for float32.  Each check
also records the largest relative error seen per test and dtype;
``parity_tests/conftest.py`` prints that table at the end of the run, which is
where the measured worst cases quoted in the tests' comments come from.
"""
from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import torch

from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from torch_vae.parity import relative_error

TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}
DTYPES = [np.float64, np.float32]

# (test id without parameters, dtype name) -> (worst relative error, what it was)
WORST: dict[tuple[str, str], tuple[float, str]] = defaultdict(lambda: (0.0, ""))


def _current_test() -> str:
    node = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    return node.split("[")[0].split("/")[-1]


def record(what: str, err: float, dtype) -> None:
    """Keep the largest error per test and dtype (rounding-level KL checks, see kl_rounding, apart)."""
    key = (_current_test(), np.dtype(dtype).name + (" kl~0" if "rounding-level" in what else ""))
    if err >= WORST[key][0]:
        WORST[key] = (err, what)


def assert_parity(what: str, numpy_value, torch_value, dtype, tol: float | None = None) -> float:
    """Assert ||numpy - torch|| / ||torch|| <= tol (default: TOL of dtype); both finite; returns the error."""
    if isinstance(torch_value, torch.Tensor):
        torch_value = torch_value.detach().cpu().numpy()
    a, b = np.asarray(numpy_value), np.asarray(torch_value)
    assert a.shape == b.shape, f"{what}: numpy shape {a.shape}, torch shape {b.shape}"
    assert np.isfinite(a).all() and np.isfinite(b).all(), f"{what}: non-finite values (numpy {a}, torch {b})"
    tol = TOL[np.dtype(dtype)] if tol is None else tol
    err = relative_error(a, b)
    record(what, err, dtype)
    assert err <= tol, (f"{what}: relative error {err:.3e} > {tol:.0e} ({np.dtype(dtype).name}); "
                        f"max abs diff {np.abs(a.astype(np.float64) - b).max():.3e}, ||torch|| {np.linalg.norm(b):.3e}")
    return err


def values(shape, lo, hi):
    """A Hypothesis float64 array of ``shape`` with elements in [lo, hi] (cast to the test dtype later).

    Magnitudes below 1e-6 become exact 0: their products underflow to float32 subnormals, where
    rounding is absolute and two evaluation orders legitimately differ (Hypothesis found
    eps = 1.2e-38 times e^-15 / 2: 1.4e-45 in NumPy, 0 in torch).
    """
    return hnp.arrays(np.float64, shape, elements=st.floats(lo, hi, allow_subnormal=False)
                      .map(lambda v: v if abs(v) >= 1e-6 else 0.0))


def mnist_like(rng: np.random.Generator, batch: int, kind: str, dtype=np.float32) -> np.ndarray:
    """(batch, 784) inputs in [0, 1] with exact 0s and 1s.

    kind: 'uniform'  any value in [0, 1], about a quarter of them exactly 0 or 1;
          'binary'   only exact 0s and 1s;
          'digits'   mostly exact 0 with strokes of k/255 values and exact 1s, as MNIST.
    """
    if kind == "uniform":
        x = rng.random((batch, 784))
        x[x < 0.125] = 0.0
        x[x > 0.875] = 1.0
    elif kind == "binary":
        x = (rng.random((batch, 784)) < 0.3).astype(np.float64)
    elif kind == "digits":
        x = np.zeros((batch, 784))
        stroke = rng.random((batch, 784)) < 0.2
        x[stroke] = rng.integers(1, 256, stroke.sum()) / 255.0
    else:
        raise ValueError(kind)
    return x.astype(dtype)


def torch_dtype_of(dtype) -> torch.dtype:
    return {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[np.dtype(dtype)]


# ------------------------------------------------------------------ whole model
def kl_rounding(mu: np.ndarray, logvar: np.ndarray, dtype) -> float:
    """8 ulps of the terms of the batch-mean KL: the absolute accuracy any evaluation of it can have.

    kl = mean_B 1/2 sum_L (e^logvar - 1 - logvar + mu^2) is a small difference of O(1) terms
    when the posterior is the prior (mu, logvar -> 0, as at initialization).  Any evaluation,
    NumPy's or torch's, is then only good to a few ulps of s = mean_B 1/2 sum_L (e^logvar + 1 +
    |logvar| + mu^2), and the two libraries' float32 exps differ in the last bit.  Example:
    Hypothesis's float32 draw batch=1, latent=1, hidden=(19,), seed=2275 has kl = 1.06e-4 and the
    two differ by 3.0e-8 = ulp(1) / 4, i.e. 2.8e-4 relative.
    """
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    s = 0.5 * (np.exp(logvar) + 1 + np.abs(logvar) + mu * mu).sum(1).mean()
    return 8 * float(np.finfo(dtype).eps) * float(s)


def _check_scalar_with_kl(what: str, numpy_value, torch_value, kl_part: float, dtype) -> None:
    """A scalar holding ``kl_part`` (absolute rounding of its KL term): TOL relative, or within kl_part
    where that is larger (the KL at rounding level), recorded apart as 'rounding-level'."""
    tol = max(TOL[np.dtype(dtype)], kl_part / max(abs(float(torch_value)), np.finfo(np.float64).tiny))
    assert_parity(what if tol == TOL[np.dtype(dtype)] else f"{what} (rounding-level)", numpy_value, torch_value,
                  dtype, tol)


def compare_model(ref, port, x: np.ndarray, eps: np.ndarray, dtype, device: str = "cpu") -> dict:
    """Forward and backward of the NumPy model ``ref`` and its torch copy ``port`` on x (B, 784), eps (B, L);
    asserts loss, recon, kl, d loss / d x and d loss / d every parameter agree.  Returns NumPy's outputs."""
    out = ref.forward(x, eps)
    grads, dx = ref.backward()
    xt = torch.tensor(x, device=device, requires_grad=True)
    out_t = port(xt, torch.tensor(eps, device=device))
    names = [n for n, _ in port.named_parameters()]
    assert names == list(grads)
    grads_t = torch.autograd.grad(out_t["loss"], [xt, *port.parameters()])
    assert_parity("recon", out["recon"], out_t["recon"], dtype)
    kl_abs = kl_rounding(out["mu"], out["logvar"], dtype)
    _check_scalar_with_kl("kl", out["kl"], out_t["kl"].item(), kl_abs, dtype)
    _check_scalar_with_kl("loss", out["loss"], out_t["loss"].item(), ref.beta * kl_abs, dtype)
    assert_parity("grad x", dx, grads_t[0], dtype)
    for name, g in zip(names, grads_t[1:]):
        assert_parity(f"grad {name}", grads[name], g, dtype)
    return out


def check_whole_model(dtype, device: str, batch: int, hidden: tuple[int, ...], latent: int, beta: float,
                      seed: int, kind: str) -> None:
    """Same weights (from ``seed``), same x (B, 784) and eps (B, L) through both models: loss, recon, kl,
    and the gradient of the loss with respect to x and to every parameter agree (relative error)."""
    import numpy_vae
    import torch_vae
    from numpy_vae import draw_eps

    rng = np.random.default_rng(seed)
    x = mnist_like(rng, batch, kind, dtype)
    eps = draw_eps(rng, batch, latent, dtype)
    ref = numpy_vae.build_model(latent=latent, hidden=hidden, beta=beta, dtype=dtype, seed=seed)
    port = torch_vae.build_model(latent=latent, hidden=hidden, beta=beta, dtype=torch_dtype_of(dtype),
                                 seed=seed, device=device)
    compare_model(ref, port, x, eps, dtype, device)


# ------------------------------------------------------------------ trajectory
def train_both(model_config: dict, batches: list[np.ndarray], seed: int, lr: float = 1e-3,
               weight_decay: float = 0.0, clip_grad_norm: float | None = None, device: str = "cpu"):
    """One step per batch with NumpyBackend and TorchBackend from the same init and the same noise.

    batches: list of (B, 784) arrays.  Returns (numpy backend, torch backend, per-step losses of each).
    """
    from numpy_vae import draw_eps
    from numpy_vae.backends import NumpyBackend
    from torch_vae.backend import TorchBackend

    kwargs = dict(lr=lr, weight_decay=weight_decay, seed=seed, clip_grad_norm=clip_grad_norm)
    backends = [NumpyBackend(model_config, **kwargs), TorchBackend(model_config, **kwargs, device=device)]
    losses = []
    for b in backends:
        noise = np.random.default_rng([seed, 2])
        losses.append([b.train_step(x, draw_eps(noise, len(x), model_config["latent"], model_config["dtype"]))[0]
                       for x in batches])
    return backends[0], backends[1], losses


def check_trajectory(model_config: dict, batches: list[np.ndarray], seed: int, tol: float, **kwargs) -> None:
    """After len(batches) Adam steps, every parameter and both Adam moments agree to ``tol`` (relative)."""
    np_backend, t_backend, (loss_np, loss_t) = train_both(model_config, batches, seed, **kwargs)
    dtype = model_config["dtype"]
    assert_parity("per-step losses", np.array(loss_np), np.array(loss_t), dtype, tol)
    p_np, p_t = np_backend.get_params(), t_backend.get_params()
    assert list(p_np) == list(p_t)
    for name in p_np:
        assert_parity(name, p_np[name], p_t[name], dtype, tol)
    s_np, s_t = np_backend.optimizer_state(), t_backend.optimizer_state()
    assert int(s_np["step"]) == int(s_t["step"]) == len(batches)
    for key in ("exp_avg", "exp_avg_sq"):
        assert_parity(key, s_np[key], s_t[key], dtype, tol)

"""Shared by the parity tests: input generators, the worst-case record, and asserting on the engine's rows.

The whole-model and trajectory comparisons are ``torch_vae.parity``'s (the rows
`vae parity` prints); the tests assert on those rows.  Layer tests compare
arrays directly with :func:`assert_parity`.  Every comparison is the relative error ||numpy - torch|| / ||torch|| (Frobenius
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

from torch_vae.parity import compare_models, format_table, gradient_rows, relative_error, trajectory_rows

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


# ------------------------------------------------------------ the engine's rows
def assert_rows(rows, dtype) -> None:
    """Every row of ``torch_vae.parity`` (what `vae parity` prints) within its tolerance, each recorded."""
    for r in rows:
        record(r.name, r.rel_err, dtype)
    bad = [r for r in rows if not r.ok]
    assert not bad, "\n" + format_table(f"rows over tolerance ({np.dtype(dtype).name})", bad)


def compare_model(ref, port, x: np.ndarray, eps: np.ndarray, dtype, device: str = "cpu") -> dict:
    """torch_vae.parity.compare_models, asserted row by row; returns NumPy's forward outputs."""
    rows, out = compare_models(ref, port, x, eps, device)
    assert_rows(rows, dtype)
    return out


def check_whole_model(dtype, device: str, batch: int, hidden: tuple[int, ...], latent: int, beta: float,
                      seed: int, kind: str) -> None:
    """Same weights (from ``seed``), same x (B, 784) and eps (B, L) through both models: every row of
    `vae parity`'s first section within tolerance."""
    from numpy_vae import draw_eps

    rng = np.random.default_rng(seed)
    x = mnist_like(rng, batch, kind, dtype)
    eps = draw_eps(rng, batch, latent, dtype)
    config = {"arch": "mlp", "latent": latent, "hidden": hidden, "beta": beta, "dtype": np.dtype(dtype)}
    assert_rows(gradient_rows(config, x, eps, seed=seed, device=device), dtype)


def check_trajectory(model_config: dict, batches: list[np.ndarray], seed: int, tol: float, **kwargs) -> None:
    """After len(batches) Adam steps: per-step losses, every parameter and both Adam moments within ``tol``."""
    assert_rows(trajectory_rows(model_config, batches, seed, tol=tol, **kwargs), model_config["dtype"])


def check_handover(first: str, config: dict, batches: list, **kwargs) -> None:
    """Half the (x, eps) ``batches`` in backend ``first`` ("numpy" or "torch"), its parameters and Adam state into
    the other backend (built with another seed), the rest there: every parameter as after all of them in
    ``first``, to 1e-12 (float64)."""
    from numpy_vae.backends import NumpyBackend
    from torch_vae.backend import TorchBackend
    make = {"numpy": NumpyBackend, "torch": TorchBackend}
    half = len(batches) // 2
    a, straight = make[first](config, **kwargs), make[first](config, **kwargs)
    for x, eps in batches[:half]:
        a.train_step(x, eps)
    b = make["torch" if first == "numpy" else "numpy"](config, **{**kwargs, "seed": 99})
    b.set_params(a.get_params())
    b.load_optimizer_state(a.optimizer_state())
    for x, eps in batches[half:]:
        b.train_step(x, eps)
    for x, eps in batches:
        straight.train_step(x, eps)
    assert int(b.optimizer_state()["step"]) == len(batches)
    for name, value in straight.get_params().items():
        assert_parity(name, b.get_params()[name], value, np.float64, tol=1e-12)

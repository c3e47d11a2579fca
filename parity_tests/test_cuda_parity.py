"""The whole-model and trajectory parity tests on ``device="cuda"`` (float64), where CUDA is available.

NumPy runs on the CPU as always; torch_vae runs on the GPU (cuBLAS float64
matmuls: no TF32, which only ever applies to float32).  Same tolerances as on
the CPU: 1e-10 relative for the gradients, 1e-9 for the parameters after 50
Adam steps (lr drawn from [1e-4, 3e-3], as on the CPU and for the same reason).
Every test here skips, with the reason, on a machine without CUDA.

Not yet run on a GPU: the session that wrote these had none.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from parity_helpers import check_trajectory, check_whole_model, mnist_like

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")

STEPS = 50


def _batches(seed: int, batch: int, kind: str = "digits") -> list[np.ndarray]:
    rng = np.random.default_rng([seed, 9])
    return [mnist_like(rng, batch, kind) for _ in range(STEPS)]


@given(batch=st.integers(1, 16), hidden=st.lists(st.integers(1, 48), min_size=1, max_size=3).map(tuple),
       latent=st.integers(1, 8), beta=st.floats(0, 4), seed=st.integers(0, 2**32 - 1),
       kind=st.sampled_from(["uniform", "binary", "digits"]))
def test_whole_model_on_cuda_float64(batch, hidden, latent, beta, seed, kind):
    check_whole_model(np.float64, "cuda", batch, hidden, latent, beta, seed, kind)


def test_whole_model_default_architecture_on_cuda_float64():
    check_whole_model(np.float64, "cuda", 32, (512, 256), 20, 1.0, 0, "digits")


@given(hidden=st.lists(st.integers(1, 32), min_size=1, max_size=3).map(tuple), latent=st.integers(1, 6),
       batch=st.integers(1, 16), lr=st.floats(1e-4, 3e-3), clip=st.sampled_from([None, 0.5, 100.0]),
       seed=st.integers(0, 2**32 - 1))
def test_fifty_adam_steps_on_cuda_float64(hidden, latent, batch, lr, clip, seed):
    config = {"arch": "mlp", "latent": latent, "hidden": hidden, "beta": 1.0, "dtype": np.dtype(np.float64)}
    check_trajectory(config, _batches(seed, batch), seed, 1e-9, lr=lr, clip_grad_norm=clip, device="cuda")


def test_fifty_adam_steps_default_architecture_on_cuda_float64():
    config = {"arch": "mlp", "latent": 20, "hidden": (512, 256), "beta": 1.0, "dtype": np.dtype(np.float64)}
    check_trajectory(config, _batches(0, 32), 0, 1e-9, lr=1e-3, device="cuda")


def test_torch_backend_state_lives_on_cuda():
    from torch_vae.backend import TorchBackend
    config = {"arch": "mlp", "latent": 2, "hidden": (8,), "beta": 1.0, "dtype": np.dtype(np.float64)}
    b = TorchBackend(config, device="cuda")
    b.train_step(mnist_like(np.random.default_rng(0), 4, "digits"), np.zeros((4, 2)))
    assert all(p.is_cuda for p in b.model.parameters())
    assert all(s["exp_avg"].is_cuda for s in b.optimizer.state.values())
    state = b.optimizer_state()
    assert isinstance(state["exp_avg"], np.ndarray) and int(state["step"]) == 1


@pytest.mark.parametrize("k", [1, 5])
def test_burda2_on_cuda_float64(k):
    """The two-stochastic-layer model (torch_vae.hvae.TorchHVAE on the GPU): gradients, then 20 Adam steps."""
    from numpy_vae import specs
    from numpy_vae.hvae import HVAE
    from torch_vae.hvae import TorchHVAE
    from torch_vae.convert import to_torch
    from torch_vae.parity import compare_models
    from parity_helpers import assert_rows
    ref = HVAE(specs.burda2_spec(), dtype=np.float64, seed=1)
    port = to_torch(ref.state_dict(), TorchHVAE(ref.spec, dtype=torch.float64, device="cuda"))
    rng = np.random.default_rng(k)
    x = mnist_like(rng, 8, "binary", np.float64)
    assert_rows(compare_models(ref, port, x, rng.standard_normal((8, k, ref.noise_dim)), device="cuda")[0],
                np.float64)
    config = {"arch": "burda2", "latent": 50, "hidden": (200, 200), "beta": 1.0, "dtype": np.dtype(np.float64)}
    check_trajectory(config, _batches(k, 8, "binary")[:20], k, 1e-9, lr=1e-3, device="cuda",
                     samples=None if k == 1 else k, adam_eps=1e-4)

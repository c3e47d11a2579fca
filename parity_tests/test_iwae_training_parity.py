"""Training with the importance-weighted bound: NumpyBackend (hand-written IWAE gradient, NumPy Adam)
against TorchBackend (autograd through torch.logsumexp, torch's Adam), step by step, and the loop's
`--objective iwae --samples K` end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest

from numpy_vae.backends import NumpyBackend
from numpy_vae.cli import main
from numpy_vae.config import TrainConfig
from numpy_vae.training.checkpoint import load_checkpoint
from numpy_vae.training.loop import draw_noise
from parity_helpers import assert_rows, mnist_like
from torch_vae.backend import TorchBackend
from torch_vae.parity import compare


@pytest.mark.parametrize("k", [1, 5])
def test_iwae_steps_agree_in_float64(k):
    config = TrainConfig(hidden=(24, 12), latent=3, activation="tanh", objective="iwae", samples=k,
                         dtype="float64", adam_eps=1e-4)
    kwargs = dict(lr=1e-3, seed=5, adam_eps=1e-4, objective="iwae")
    backends = [NumpyBackend(config.model_config(), **kwargs), TorchBackend(config.model_config(), **kwargs)]
    rng = np.random.default_rng(5)
    batches = [(mnist_like(rng, 8, "binary", np.float64), draw_noise(rng, 8, config, np.float64)) for _ in range(10)]
    losses = [[b.train_step(x, eps)[0] for x, eps in batches] for b in backends]
    rows = [compare("loss per step", np.array(losses[0]), np.array(losses[1]), 1e-10)]
    p_np, p_t = backends[0].get_params(), backends[1].get_params()
    rows += [compare(n, p_np[n], p_t[n], 1e-9) for n in p_t]
    assert_rows(rows, np.float64)


def test_objective_iwae_trains_from_the_cli(real_mnist_dir, tmp_path):
    assert main(["train", "--objective", "iwae", "--samples", "3", "--epochs", "1", "--train-limit", "200",
                 "--batch-size", "20", "--hidden", "16", "--latent", "2", "--binarize", "dynamic",
                 "--data-dir", str(real_mnist_dir), "--runs-dir", str(tmp_path), "--name", "iw", "--no-progress",
                 "--no-figures"]) == 0
    config = json.loads((tmp_path / "iw" / "config.json").read_text())
    assert config["objective"] == "iwae" and config["samples"] == 3
    _, _, meta = load_checkpoint(tmp_path / "iw" / "last.npz")
    assert meta["step"] == 10 and np.isfinite(meta["metrics"][0]["test_loss"])

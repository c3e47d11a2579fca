"""Small trained runs shared by the report, IWAE and active-unit tests (trained once per session).

Both train on the first 5,000 real MNIST images for 2 epochs with a 784-64-32
encoder: a few seconds each, enough for a model that has learned something.
"""
from pathlib import Path

import pytest

from numpy_vae.data import load_mnist
from numpy_vae.config import TrainConfig
from numpy_vae.presets import preset_values
from numpy_vae.report import write_report
from numpy_vae.training import train


def _train(root: Path, data_dir: Path, name: str, latent: int, figures: bool) -> Path:
    config = TrainConfig(epochs=2, train_limit=5000, latent=latent, hidden=(64, 32), data_dir=str(data_dir),
                         runs_dir=str(root), name=name)
    run = train(config, progress=False, log=lambda *a: None)
    if figures:                      # what `vae train` does after the loop
        write_report(run, progress=False, log=lambda *a: None)
    return run


@pytest.fixture(scope="session")
def small_run(real_mnist_dir, tmp_path_factory) -> Path:
    """A run folder with a 2-D latent, trained by `train`, then reported as `vae train` does."""
    return _train(tmp_path_factory.mktemp("small_runs"), real_mnist_dir, "latent2", 2, figures=True)


@pytest.fixture(scope="session")
def small_run_latent5(real_mnist_dir, tmp_path_factory) -> Path:
    """A run folder with a 5-D latent, trained without figures."""
    return _train(tmp_path_factory.mktemp("small_runs"), real_mnist_dir, "latent5", 5, figures=False)


@pytest.fixture(scope="session")
def small_burda2_run(real_mnist_dir, tmp_path_factory) -> Path:
    """A run folder of the two-stochastic-layer ``burda2`` preset after 2 steps (40 images, batch 20), no figures."""
    config = TrainConfig(**{**preset_values("burda2"), "epochs": 1, "train_limit": 40}, data_dir=str(real_mnist_dir),
                         runs_dir=str(tmp_path_factory.mktemp("small_runs")), name="burda2")
    return train(config, progress=False, log=lambda *a: None)


@pytest.fixture(scope="session")
def mnist_test(real_mnist_dir):
    """(images (10000, 784) float32 in [0, 1], labels (10000,))."""
    return load_mnist(real_mnist_dir, "test")

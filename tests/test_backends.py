"""Both backends satisfy the Backend protocol the loop, the report and `vae evaluate` drive."""
import numpy as np
import pytest

from numpy_vae.backends import Backend, NumpyBackend, available_backends, make_backend
from numpy_vae.config import ConfigError, TrainConfig


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_both_backends_are_backends(arch):
    from torch_vae.backend import TorchBackend
    config = {"arch": arch, "latent": 3, "hidden": (8,), "beta": 1.0, "dtype": np.dtype(np.float32)}
    for backend in (NumpyBackend(config), TorchBackend(config)):
        assert isinstance(backend, Backend), type(backend).__name__
        assert list(backend.param_shapes) == list(backend.get_params())


def test_the_registry_finds_torch_by_entry_point_and_refuses_the_unknown():
    assert {"numpy", "torch"} <= set(available_backends())
    assert type(make_backend(TrainConfig(backend="torch", hidden=(8,), latent=2))).__name__ == "TorchBackend"
    with pytest.raises(ConfigError, match="unknown backend 'jax'"):
        make_backend(TrainConfig(backend="jax"))
    with pytest.raises(ConfigError, match="arch='resnet'"):
        make_backend(TrainConfig(arch="resnet"))

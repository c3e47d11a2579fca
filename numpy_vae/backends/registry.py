"""Backends by name: 'numpy' here, others registered as entry points (torch_vae's is 'torch').

``numpy_vae`` never imports ``torch_vae``: the torch backend announces itself in
pyproject.toml under the entry-point group ``vae_from_scratch.backends``.
"""
from __future__ import annotations

from importlib import metadata

import numpy as np

from ..config import ConfigError, TrainConfig, validate_config
from .numpy_backend import NumpyBackend

ENTRY_POINT_GROUP = "vae_from_scratch.backends"


def available_backends() -> list[str]:
    """'numpy' and the names registered under the entry-point group ``vae_from_scratch.backends``."""
    return sorted({"numpy", *(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))})


def make_backend(config: TrainConfig, spec=None):
    """The backend named by ``config.backend``, built for ``config``: the model ``spec`` (a checkpoint's,
    read by ``training.restore``), else the one the config describes (``config.spec()``).

    A backend that cannot be loaded or cannot use the device raises ConfigError, and so
    does a config that fails :func:`~numpy_vae.config.validate_config` (checked first, so
    a config read from an untrusted checkpoint cannot make a model of absurd size).
    """
    validate_config(config)
    model_config = {"spec": config.spec() if spec is None else spec, "beta": config.beta,
                    "dtype": np.dtype(config.dtype)}
    kwargs = dict(model_config=model_config, lr=config.lr, weight_decay=config.weight_decay,
                  seed=config.seed, clip_grad_norm=config.clip_grad_norm, device=config.device,
                  adam_eps=config.adam_eps, objective=config.objective, threads=config.threads, kernels=config.kernels)
    if config.backend == "numpy":
        factory = NumpyBackend
    else:
        found = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        if config.backend not in found:
            raise ConfigError(f"unknown backend {config.backend!r}; available: {available_backends()}")
        try:
            factory = found[config.backend].load()
        except ImportError as e:
            raise ConfigError(f"backend {config.backend!r} cannot be loaded ({e}); is its package installed?") from None
    try:
        return factory(**kwargs)
    except ConfigError:
        raise
    except ValueError as e:          # e.g. NumpyBackend on a device other than the CPU
        raise ConfigError(str(e)) from None

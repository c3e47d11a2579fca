"""Rebuild a model from a checkpoint of either backend, behind the backend interface.

Both backends write the same ``.npz`` (see ``checkpoint.py``), whose meta holds
the training configuration, so a checkpoint written by the torch backend is
evaluated by the NumPy one and the other way round.  The torch backend is
reached only through ``backends.make_backend`` (an entry point): numpy_vae
never imports torch_vae.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..backends import make_backend
from ..config import ConfigError, TrainConfig, validate_config
from .checkpoint import CheckpointError, check_params, load_checkpoint


def resolve_checkpoint(path) -> Path:
    """A checkpoint file, or a run folder (its last.npz); CheckpointError naming the fix otherwise."""
    path = Path(path)
    if path.is_dir():
        if not (path / "last.npz").is_file():
            raise CheckpointError(f"{path} is a folder without last.npz: pass a run folder written by `vae train` "
                                  f"or a checkpoint file such as runs/NAME/best.npz")
        return path / "last.npz"
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the .npz written by `vae train` "
                              f"(runs/NAME/last.npz or best.npz) or its run folder")
    return path


def architecture_from_params(params: dict, source) -> TrainConfig:
    """A TrainConfig with the architecture, latent size, hidden sizes and dtype that ``params`` were made for."""
    try:
        latent = int(params["fc_mu.weight"].shape[0])
        dtype = np.dtype(params["fc_mu.weight"].dtype).name
        if getattr(params.get("encoder.1.weight"), "ndim", 0) == 4:        # the conv VAE: Unflatten, then Conv2d
            return TrainConfig(arch="conv", latent=latent, dtype=dtype if dtype in ("float32", "float64") else "float32")
        hidden, i = [], 0
        while f"encoder.{2 * i}.weight" in params:
            hidden.append(int(params[f"encoder.{2 * i}.weight"].shape[0]))
            i += 1
        dtype = np.dtype(params["fc_mu.weight"].dtype).name
    except (KeyError, IndexError, AttributeError, TypeError):
        hidden = []
    if not hidden:
        raise CheckpointError(f"checkpoint {source} has no training configuration and its parameters are not "
                              f"those of this project's VAE (encoder.0.weight, fc_mu.weight, ...)")
    return TrainConfig(latent=latent, hidden=tuple(hidden), dtype=dtype if dtype in ("float32", "float64") else "float32")


def load_backend(checkpoint, backend: str = "numpy", device: str = "cpu"):
    """(backend, TrainConfig, meta) for the weights in ``checkpoint``, on the backend named ``backend``.

    The architecture comes from the checkpoint's meta, or, for a bare torch state_dict
    without one, from the parameters' shapes.
    """
    path = resolve_checkpoint(checkpoint)
    params, _, meta = load_checkpoint(path)
    if isinstance(meta.get("config"), dict):
        try:
            config = TrainConfig.from_json(meta["config"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path}: its configuration cannot be read ({e})") from None
    else:                                   # a bare state_dict (torch.save): read the architecture off the shapes
        config = architecture_from_params(params, path)
    config = dataclasses.replace(config, backend=backend, device=device)
    try:
        validate_config(config)
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path}: its saved configuration is invalid ({e}); was the file edited? "
                              f"Use another checkpoint (e.g. best.npz)") from None
    try:
        model = make_backend(config)
    except ImportError as e:
        raise ConfigError(f"the {backend} backend cannot be loaded ({e}); use --backend numpy") from None
    check_params(params, model.state_shapes, path)
    model.set_params(params)
    return model, config, meta

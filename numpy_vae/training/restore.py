"""The one loader: a checkpoint's model spec, read once, and the model (NumPy, torch, a backend) built from it.

Every checkpoint written by ``vae train`` carries its model's spec as JSON (meta
``spec``: ``numpy_vae.specs``'s ``to_json``), read back by ``specs.spec_from_json``.
:func:`read_saved` is the only place a spec comes out of a checkpoint, and every
command builds its model from what it returns: ``vae train --resume``,
``evaluate``, ``report``, ``serve``, ``parity --checkpoint``, ``paper-table``,
``numpy_vae.load`` and ``torch_vae.load``.

Older checkpoints have no spec: theirs is derived here, once, from the flat
training configuration they carry (arch, hidden, latent, activation, batchnorm,
dropout, likelihood, likelihood_variance: ``TrainConfig.spec()``); a bare torch
``state_dict`` without any meta gets the MLP or conv spec its parameter shapes
describe (ReLU: shapes cannot tell the activation).

Both backends write the same ``.npz`` (see ``checkpoint.py``), so a checkpoint
written by the torch backend is evaluated by the NumPy one and the other way
round.  The torch backend is reached only through ``backends.make_backend`` (an
entry point): numpy_vae never imports torch_vae.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends import make_backend
from ..config import MAX_PARAMETERS, ConfigError, TrainConfig, validate_config
from ..model import VAE, build_model
from ..specs import SpecError, spec_from_json
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


#: Where a spec came from, in words (``Saved.spec_source``).
SPEC_SOURCES = {"checkpoint": "as the checkpoint stores it",
                "config": "derived from the configuration of a checkpoint older than stored specs",
                "parameters": "derived from the shapes of a bare state_dict: MLP or conv, ReLU"}


@dataclass(frozen=True)
class Saved:
    """A checkpoint as read by :func:`read_saved`: the model's spec, its arrays, meta and configuration.

    ``config`` is the saved training configuration; for a bare torch state_dict, one with the sizes
    and dtype its parameters have.  ``spec_source`` says where the spec came from: "checkpoint" (its
    meta), "config" (an older checkpoint: derived from the configuration) or "parameters" (a bare
    state_dict: derived from the shapes).
    """
    path: Path
    spec: object                     # numpy_vae.specs.VAESpec (or another kind of spec_from_json)
    params: dict
    optim: dict
    meta: dict
    config: TrainConfig
    spec_source: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.config.dtype)


def _saved_config(meta: dict, params: dict, path: Path) -> TrainConfig:
    if not isinstance(meta.get("config"), dict):     # a bare state_dict (torch.save): the shapes tell the sizes
        return architecture_from_params(params, path)
    try:
        return TrainConfig.from_json(meta["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: its configuration cannot be read ({e})") from None


def saved_spec(meta: dict, config: TrainConfig, path) -> tuple[object, str]:
    """(spec, where it came from) of a checkpoint: its meta's spec, else derived from its configuration.

    This is the one place a checkpoint's architecture is decided; the derivation for checkpoints
    written before the spec was stored is ``TrainConfig.spec()`` of their saved (or shape-derived) config.
    """
    if "spec" in meta:
        try:
            return spec_from_json(meta["spec"]), "checkpoint"
        except SpecError as e:
            raise CheckpointError(f"checkpoint {path}: its model spec cannot be built ({e})") from None
    try:
        return config.spec(), "config" if isinstance(meta.get("config"), dict) else "parameters"
    except SpecError as e:
        raise _invalid_config(path, e) from None


def _invalid_config(path, e: Exception) -> CheckpointError:
    return CheckpointError(f"checkpoint {path}: its saved configuration is invalid ({e}); was the file edited? "
                           f"Use another checkpoint (e.g. best.npz)")


def read_saved(checkpoint) -> Saved:
    """Read a checkpoint (or a run folder's last.npz) and decide its model's spec; CheckpointError if the
    parameters do not fit that spec.  Nothing is built yet: see :func:`load_backend`, :func:`load_model`."""
    path = resolve_checkpoint(checkpoint)
    params, optim, meta = load_checkpoint(path)
    config = _saved_config(meta, params, path)
    spec, source = saved_spec(meta, config, path)
    if spec.num_params > MAX_PARAMETERS:            # before anything of that size is allocated
        too_big = f"its model has {spec.num_params:,} parameters, more than the {MAX_PARAMETERS:,} supported"
        if source == "checkpoint":
            raise CheckpointError(f"checkpoint {path}: {too_big}; refused before anything is allocated")
        raise _invalid_config(path, too_big)
    try:
        validate_config(config)
    except ConfigError as e:
        raise _invalid_config(path, e) from None
    check_params(params, spec.state_shapes(), path)
    return Saved(path=path, spec=spec, params=params, optim=optim, meta=meta, config=config, spec_source=source)


def backend_of(saved: Saved, backend: str = "numpy", device: str = "cpu"):
    """The backend named ``backend`` holding ``saved``'s model (its spec) and weights; its config too."""
    config = dataclasses.replace(saved.config, backend=backend, device=device)
    try:
        model = make_backend(config, spec=saved.spec)
    except ImportError as e:
        raise ConfigError(f"the {backend} backend cannot be loaded ({e}); use --backend numpy") from None
    model.set_params(saved.params)
    return model, config


def load_backend(checkpoint, backend: str = "numpy", device: str = "cpu"):
    """(backend, TrainConfig, meta) for the weights in ``checkpoint``, on the backend named ``backend``:
    :func:`read_saved`, then :func:`backend_of`."""
    saved = read_saved(checkpoint)
    model, config = backend_of(saved, backend, device)
    return model, config, saved.meta


def load_model(checkpoint, dtype=None) -> VAE:
    """The ``numpy_vae.VAE`` (an ``HVAE`` for a spec of several stochastic layers) saved in ``checkpoint``,
    its weights loaded, in evaluation mode (``numpy_vae.load``).

    ``dtype``: float32 or float64; default the checkpoint's own.
    """
    saved = read_saved(checkpoint)
    model = build_model(spec=saved.spec, beta=saved.config.beta, dtype=saved.dtype if dtype is None else dtype)
    model.load_params(saved.params)
    return model.eval()

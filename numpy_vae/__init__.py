"""vae-from-scratch, the NumPy reference: a VAE with every gradient written by hand.

    numpy_vae.nn        the math: layers, losses, the container, optimizers, gradient checking (the reference)
    numpy_vae.kernels   the tuned Linear, convolutions and Adam that training runs by default, proven equal to nn's
    numpy_vae.specs     architectures as data, read by this package and by torch_vae
    numpy_vae.model     the NumPy interpreter of a spec: VAE, build_model
    numpy_vae.hvae      several stochastic layers (Burda et al.'s two-layer model): HVAE
    numpy_vae.load      a checkpoint's model (numpy_vae.training.restore: the one loader)
    numpy_vae.objectives  the importance-weighted bound as a training objective (iwae_loss)
    numpy_vae.inputs    the checks at every model entry point (InputError)
    numpy_vae.streams   the named random streams
    numpy_vae.config    TrainConfig, ConfigError and its validation
    numpy_vae.presets   the named configurations of `vae train --preset`
    numpy_vae.backends  the backend interface, the NumPy backend, the registry
    numpy_vae.training  the loop, the run folder, checkpoints, restoring a run
    numpy_vae.data      MNIST: IDX files, loading, fetching
    numpy_vae.evaluation, numpy_vae.report, numpy_vae.cli

Importing the package does nothing else: the names below load on first use (so that the ``vae``
command can set OpenBLAS's thread settings before NumPy loads; see numpy_vae.kernels.threads).
"""
from importlib import import_module

_EXPORTS = {"HVAE": "hvae", "HVAESpec": "specs", "InputError": "inputs", "VAE": "model", "build_model": "model",
            "VAESpec": "specs", "make_spec": "specs", "mlp_spec": "specs", "parameter_shapes": "specs",
            "draw_eps": "streams"}

__all__ = sorted([*_EXPORTS, "load"])


def __getattr__(name: str):
    """``numpy_vae.VAE`` and the other exports, and the subpackages (``numpy_vae.nn``), imported on first use."""
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    try:
        return import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__():
    return sorted({*globals(), *_EXPORTS})


def load(path, dtype=None):
    """The model saved in a checkpoint (a ``.npz`` of either backend, a run folder, or a torch state_dict),
    built from the spec the checkpoint carries, weights loaded, in evaluation mode: a ``VAE``, or an ``HVAE``
    for several stochastic layers.  ``dtype``: float32 or float64, default the checkpoint's.  The loader
    every command uses: ``numpy_vae.training.restore``."""
    from .training.restore import load_model
    return load_model(path, dtype)

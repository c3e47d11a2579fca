"""``torch_vae.build_model``: the torch twin of whatever ``numpy_vae.build_model`` builds, by the spec's type.

    a ``VAESpec``   -> ``torch_vae.model.TorchVAE``   (``torch_vae.model.build_model``)
    an ``HVAESpec`` -> ``torch_vae.hvae.TorchHVAE``   (several stochastic layers: arch ``burda2``)

Either way the weights are those ``numpy_vae.build_model`` makes with the same seed, bit for bit.
"""
from __future__ import annotations

import numpy as np
import torch

import numpy_vae
from numpy_vae import specs

from . import model as vae_model
from .convert import to_torch
from .hvae import TorchHVAE

__all__ = ["build_model", "load"]


def build_model(arch: str = "mlp", latent: int = 20, hidden=(512, 256), beta: float = 1.0,
                dtype: torch.dtype = torch.float32, seed: int | np.random.Generator = 0,
                device="cpu", spec=None, **options):
    """``numpy_vae.build_model``'s twin: same arguments (dtype a torch dtype, ``spec`` too) plus ``device``."""
    if spec is None:
        spec = specs.make_spec(arch, hidden=hidden, latent=latent, **options)
    elif options:
        raise specs.SpecError(f"build_model(spec=...) builds the spec as it is; it takes no options "
                              f"({sorted(options)})")
    if not isinstance(spec, specs.HVAESpec):
        return vae_model.build_model(beta=beta, dtype=dtype, seed=seed, device=device, spec=spec)
    tdtype = vae_model.torch_dtype(dtype)
    reference = numpy_vae.build_model(beta=beta, dtype=vae_model.numpy_dtype(tdtype), seed=seed, spec=spec)
    module = TorchHVAE(reference.spec, beta=reference.beta, dtype=tdtype, device="meta")
    module.to_empty(device=device)
    to_torch(reference.state_dict(), module)
    return module


def load(path, dtype=None, device="cpu"):
    """The ``TorchVAE`` (a ``TorchHVAE`` for several stochastic layers) saved in a checkpoint, ``numpy_vae.load``'s
    twin: built from the spec the checkpoint carries, by numpy_vae's one loader
    (``numpy_vae.training.restore.read_saved``), weights loaded, in evaluation mode.  ``dtype``: float32 or
    float64 (torch or NumPy), default the checkpoint's."""
    from numpy_vae.training.restore import read_saved
    saved = read_saved(path)
    module = build_model(spec=saved.spec, beta=saved.config.beta, device=device,
                         dtype=vae_model.torch_dtype(saved.dtype if dtype is None else dtype))
    to_torch(saved.params, module)
    return module.eval()

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

__all__ = ["build_model"]


def build_model(arch: str = "mlp", latent: int = 20, hidden=(512, 256), beta: float = 1.0,
                dtype: torch.dtype = torch.float32, seed: int | np.random.Generator = 0,
                device="cpu", **options):
    """``numpy_vae.build_model``'s twin: same arguments (dtype a torch dtype) plus ``device``."""
    spec = specs.make_spec(arch, hidden=hidden, latent=latent, **options)
    if not isinstance(spec, specs.HVAESpec):
        return vae_model.build_model(arch, latent=latent, hidden=hidden, beta=beta, dtype=dtype, seed=seed,
                                     device=device, **options)
    tdtype = vae_model.torch_dtype(dtype)
    reference = numpy_vae.build_model(arch, latent=latent, hidden=hidden, beta=beta,
                                      dtype=vae_model.numpy_dtype(tdtype), seed=seed, **options)
    module = TorchHVAE(reference.spec, beta=reference.beta, dtype=tdtype, device="meta")
    module.to_empty(device=device)
    to_torch(reference.state_dict(), module)
    return module

"""vae-from-scratch, the PyTorch port: ``numpy_vae``'s VAE in ordinary PyTorch, autograd for the gradients.

    build_model(...)            the nn.Module, same arguments as numpy_vae.build_model (+ device): a TorchVAE,
                                or a TorchHVAE for a spec of several stochastic layers (torch_vae.build)
    load(path)                  a checkpoint's model, built from the spec it carries (numpy_vae.load's twin)
    to_torch / to_numpy         weights either way; the keys are identical
    TorchBackend                the training backend (entry point vae_from_scratch.backends: torch)
"""
from .build import build_model, load
from .convert import to_numpy, to_torch
from .hvae import TorchHVAE
from .model import TorchVAE, bernoulli_nll, gaussian_kl, reparameterize, torch_dtype

__all__ = ["TorchHVAE", "TorchVAE", "bernoulli_nll", "build_model", "gaussian_kl", "load", "reparameterize",
           "to_numpy", "to_torch", "torch_dtype"]

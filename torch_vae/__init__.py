"""vae-from-scratch, the PyTorch port: ``numpy_vae``'s VAE in ordinary PyTorch, autograd for the gradients.

    build_model(...)            the nn.Module, same arguments as numpy_vae.build_model (+ device)
    to_torch / to_numpy         weights either way; the keys are identical
    TorchBackend                the training backend (entry point vae_from_scratch.backends: torch)
"""
from .convert import to_numpy, to_torch
from .model import TorchVAE, bernoulli_nll, build_model, gaussian_kl, reparameterize, torch_dtype

__all__ = ["TorchVAE", "bernoulli_nll", "build_model", "gaussian_kl", "reparameterize", "to_numpy", "to_torch",
           "torch_dtype"]

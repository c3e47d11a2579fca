"""The MLP VAE in ordinary PyTorch: the same network and loss as ``numpy_vae.model``, autograd for backward.

Architecture (default ``hidden=(512, 256)``, ``latent=20``)::

    encoder    nn.Sequential(Linear 784-512, ReLU, Linear 512-256, ReLU)      x (B, 784) -> h (B, 256)
    fc_mu      Linear 256-L                                                   h -> mu (B, L)
    fc_logvar  Linear 256-L                                                   h -> logvar (B, L)
    sample     z = mu + eps * exp(logvar / 2), eps (B, L) passed in
    decoder    nn.Sequential(Linear L-256, ReLU, Linear 256-512, ReLU, Linear 512-784)  z -> logits (B, 784)
    loss       mean_B [ BernoulliNLL(logits, x) + beta * KL(N(mu, e^logvar) || N(0, I)) ]

so ``state_dict()`` keys are exactly ``numpy_vae``'s ``model.params`` keys
(``encoder.0.weight`` ... ``decoder.4.bias``), in the same order, with the same shapes.
Weights are initialized by building the NumPy model with the same seed and
copying its parameters in, so both implementations start from the same point.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import numpy_vae
from numpy_vae.model import INPUT_DIM

from .convert import to_torch

_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def torch_dtype(dtype) -> torch.dtype:
    """float32/float64 given as a torch dtype, a NumPy dtype or its name -> the torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _TORCH_DTYPES.values():
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    try:
        return _TORCH_DTYPES[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}") from None


def numpy_dtype(dtype) -> np.dtype:
    """The NumPy dtype of a torch (or NumPy) float32/float64 dtype."""
    tdtype = torch_dtype(dtype)
    return next(n for n, t in _TORCH_DTYPES.items() if t == tdtype)


# ------------------------------------------------------------- the loss terms
def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + eps * exp(logvar / 2): mu, logvar, eps (B, L) -> z (B, L)."""
    return mu + eps * torch.exp(0.5 * logvar)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(x | sigmoid(logits)) summed over pixels: logits, x (B, D) -> (B,)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims: mu, logvar (B, L) -> (B,)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


# ------------------------------------------------------------------ the module
class TorchVAE(nn.Module):
    """Variational autoencoder with MLP encoder and decoder; see the module docstring."""

    def __init__(self, latent: int = 20, hidden=(512, 256), beta: float = 1.0, input_dim: int = INPUT_DIM,
                 dtype: torch.dtype = torch.float32, device="cpu"):
        super().__init__()
        if latent < 1 or not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"latent and every hidden size must be positive integers, got latent={latent}, hidden={hidden}")
        self.latent, self.hidden, self.beta, self.input_dim = int(latent), tuple(int(h) for h in hidden), float(beta), input_dim
        kw = {"dtype": torch_dtype(dtype), "device": device}

        def stack(sizes) -> list[nn.Module]:
            layers: list[nn.Module] = []
            for n_in, n_out in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(n_in, n_out, **kw), nn.ReLU()]
            return layers

        self.encoder = nn.Sequential(*stack([input_dim, *self.hidden]))
        self.fc_mu = nn.Linear(self.hidden[-1], self.latent, **kw)
        self.fc_logvar = nn.Linear(self.hidden[-1], self.latent, **kw)
        self.decoder = nn.Sequential(*stack([self.latent, *reversed(self.hidden), input_dim])[:-1])  # ends in logits

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 784) -> mu (B, L), logvar (B, L)."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor, probs: bool = False) -> torch.Tensor:
        """z (B, L) -> logits (B, 784), or pixel probabilities when ``probs``."""
        logits = self.decoder(z)
        return torch.sigmoid(logits) if probs else logits

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> dict[str, torch.Tensor]:
        """Negative ELBO of a batch, as ``numpy_vae.MLPVAE.forward``.

        x (B, 784) in [0, 1], eps (B, L).  Returns ``loss`` (batch mean of
        per-sample nll + beta * kl), ``recon`` and ``kl`` (their batch means),
        ``logits`` (B, 784), ``mu``, ``logvar``, ``z`` (B, L).
        """
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, eps)
        logits = self.decode(z)
        recon, kl = bernoulli_nll(logits, x), gaussian_kl(mu, logvar)
        return {"loss": (recon + self.beta * kl).mean(), "recon": recon.mean(), "kl": kl.mean(),
                "logits": logits, "mu": mu, "logvar": logvar, "z": z}


def build_model(arch: str = "mlp", latent: int = 20, hidden=(512, 256), beta: float = 1.0,
                dtype: torch.dtype = torch.float32, seed: int | np.random.Generator = 0,
                device="cpu") -> TorchVAE:
    """``numpy_vae.build_model``'s twin: same arguments (dtype a torch dtype) plus ``device``.

    The weights are those ``numpy_vae.build_model`` draws with the same seed, bit for bit.
    """
    if arch != "mlp":
        raise ValueError(f"unknown arch {arch!r}; available: 'mlp'")
    tdtype = torch_dtype(dtype)
    reference = numpy_vae.build_model(arch, latent=latent, hidden=hidden, beta=beta,
                                      dtype=numpy_dtype(tdtype), seed=seed)
    # Built on the meta device (no memory, no throw-away init), then given storage and the NumPy weights.
    module = TorchVAE(latent=latent, hidden=hidden, beta=beta, dtype=tdtype, device="meta")
    module.to_empty(device=device)
    to_torch(reference.params, module)
    return module

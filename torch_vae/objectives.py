"""The importance-weighted bound in PyTorch, autograd through ``torch.logsumexp``: numpy_vae.objectives' twin.

    iwae_loss(model, x, eps) -> (loss, recon, kl)

Same definitions as ``numpy_vae.objectives`` (see there and
docs/gradients.md#the-importance-weighted-bound): x (B, D), eps (B, K, L), each image
encoded once and decoded at its K draws (row b K + k), and

    log w_bk = -nll(logits_bk, x_b) + 1/2 sum_l (eps_bk^2 - z_bk^2 + logvar_b)
    loss     = -(1/B) sum_b [ logsumexp_k log w_bk - log K ]

``loss`` carries the autograd graph; ``recon`` and ``kl`` (the softmax-weighted means of
nll and of log q - log p) are detached diagnostics.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from numpy_vae.inputs import InputError
from numpy_vae.specs import SpecError

from .functional import log_prior_ratio, reparameterize
from .hvae import TorchHVAE
from .model import TorchVAE

__all__ = ["iwae_loss", "log_prior_ratio"]

_STOCHASTIC = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def _check(model, x: torch.Tensor, eps: torch.Tensor) -> None:
    if not isinstance(model, TorchVAE):
        raise SpecError(f"iwae_loss needs a torch_vae.TorchVAE, got {type(model).__name__}")
    if model.beta != 1.0:
        raise SpecError(f"the importance-weighted bound is defined for beta = 1, this model has beta={model.beta!r}")
    for name, module in model.named_modules():
        if isinstance(module, _STOCHASTIC) and module.training:
            raise SpecError(f"iwae_loss: {name} ({type(module).__name__}) is in training mode; the importance-"
                            f"weighted bound needs every row to be its own function: call model.eval(), or use a "
                            f"spec without BatchNorm1d/Dropout")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != model.input_dim:
        raise InputError(f"x must have shape (batch, {model.input_dim}) with batch >= 1, got {tuple(x.shape)}")
    batch = x.shape[0]
    if eps.ndim != 3 or eps.shape[0] != batch or eps.shape[2] != model.latent or eps.shape[1] < 1:
        raise InputError(f"eps must have shape ({batch}, K, {model.latent}) with K >= 1 importance samples per "
                         f"image, got {tuple(eps.shape)}")


def iwae_loss(model: TorchVAE, x: torch.Tensor, eps: torch.Tensor, check_inputs: bool = True):
    """(loss, recon, kl) of x (B, D) with eps (B, K, L): the negative importance-weighted bound, nats per image.

    ``check_inputs=False``: x's values are known to be good (TorchBackend checks its batches in NumPy)."""
    if isinstance(model, TorchHVAE):    # several stochastic layers: the model computes its own bound
        out = model(x, eps, check_inputs=check_inputs)
        return out["loss"], out["recon"], out["kl"]
    _check(model, x, eps)
    if check_inputs:
        x = model.check_images(x)
    batch, k, latent = eps.shape
    mu, logvar = model.encode(x, check_inputs=False)                    # (B, L): once per image
    z = reparameterize(mu[:, None, :], logvar[:, None, :], eps)         # (B, K, L)
    logits = model.decode(z.reshape(batch * k, latent), check_inputs=False)     # (B K, D)
    nll = model.nll(logits, x.repeat_interleave(k, dim=0)).reshape(batch, k)
    ratio = log_prior_ratio(z, eps, logvar[:, None, :])
    log_w = ratio - nll
    loss = -(torch.logsumexp(log_w, dim=1) - math.log(k)).mean()
    with torch.no_grad():
        weights = torch.softmax(log_w, dim=1)
        recon = (weights * nll).sum(1).mean()
        kl = -(weights * ratio).sum(1).mean()
    return loss, recon, kl

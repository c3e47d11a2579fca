"""The VAE in ordinary PyTorch: the same spec as ``numpy_vae.model``, interpreted into ``torch.nn`` modules.

    encoder    nn.Sequential of the spec's encoder layers        x (B, 784) -> h (B, H)
    fc_mu      nn.Linear(H, L)                                   h -> mu (B, L)
    fc_logvar  nn.Linear(H, L)                                   h -> logvar (B, L)
    sample     z = mu + eps * exp(logvar / 2), eps (B, L) passed in
    decoder    nn.Sequential of the spec's decoder layers        z -> out (B, 784): logits, or the Gaussian's mean
    loss       mean_B [ NLL(out, x) + beta * KL(N(mu, e^logvar) || N(0, I)) ]

BatchNorm1d and Dropout are torch's own modules (train/eval as usual).  A Dropout
layer in training takes the keep-mask passed in ``masks`` (name -> (B, F) tensor of
0s and 1s), exactly as numpy_vae does, so both can be fed the same draw; without a
mask it draws its own from torch's generator (plain torch use).

so ``state_dict()`` keys are exactly ``numpy_vae``'s ``model.params`` keys
(``encoder.0.weight`` ... ``decoder.4.bias``), in the same order, with the same
shapes: both are read off the same ``numpy_vae.specs.VAESpec``.  Weights are
initialized by building the NumPy model with the same seed and copying its
parameters in, so both implementations start from the same point.
"""
from __future__ import annotations


import numpy as np
import torch
from torch import nn

import numpy_vae
from numpy_vae import specs
from numpy_vae.specs import SpecError, VAESpec

from . import inputs
from .convert import to_torch
from .functional import bernoulli_nll, gaussian_kl, gaussian_nll, reparameterize

__all__ = ["TorchVAE", "bernoulli_nll", "build_layer", "build_model", "gaussian_kl", "gaussian_nll", "load",
           "numpy_dtype", "reparameterize", "torch_dtype"]

_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def torch_dtype(dtype) -> torch.dtype:
    """float32/float64 given as a torch dtype, a NumPy dtype or its name -> the torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _TORCH_DTYPES.values():
            raise SpecError(f"dtype={dtype}: expected float32 or float64")
        return dtype
    try:
        return _TORCH_DTYPES[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise SpecError(f"dtype={dtype!r}: expected float32 or float64") from None


def numpy_dtype(dtype) -> np.dtype:
    """The NumPy dtype of a torch (or NumPy) float32/float64 dtype."""
    tdtype = torch_dtype(dtype)
    return next(n for n, t in _TORCH_DTYPES.items() if t == tdtype)


# ------------------------------------------------------------- the interpreter
def build_layer(layer, **kw) -> nn.Module:
    """The ``torch.nn`` module of one layer spec (``numpy_vae.specs``); kw: dtype and device."""
    if isinstance(layer, specs.Linear):
        return nn.Linear(layer.in_features, layer.out_features, **kw)
    if isinstance(layer, specs.Conv2d):
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding, **kw)
    if isinstance(layer, specs.ConvTranspose2d):
        return nn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                  layer.padding, layer.output_padding, **kw)
    if isinstance(layer, specs.Flatten):
        return nn.Flatten()
    if isinstance(layer, specs.Unflatten):
        return nn.Unflatten(1, layer.shape)
    if isinstance(layer, specs.BatchNorm1d):
        return nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum, **kw)
    if isinstance(layer, specs.Dropout):
        return nn.Dropout(layer.p)
    if isinstance(layer, specs.ReLU):
        return nn.ReLU()
    if isinstance(layer, specs.Sigmoid):
        return nn.Sigmoid()
    if isinstance(layer, specs.Tanh):
        return nn.Tanh()
    raise SpecError(f"torch_vae has no module for {layer!r}")


class TorchVAE(nn.Module):
    """A variational autoencoder built from a ``numpy_vae.specs.VAESpec``; see the module docstring."""

    def __init__(self, spec: VAESpec, beta: float = 1.0, dtype: torch.dtype = torch.float32, device="cpu"):
        super().__init__()
        if not isinstance(spec, VAESpec):
            raise SpecError(f"spec must be a numpy_vae.specs.VAESpec, got {type(spec).__name__}")
        self.spec, self.beta = spec, float(beta)
        self.latent, self.input_dim = spec.latent, spec.input_dim
        kw = {"dtype": torch_dtype(dtype), "device": device}
        self.encoder = nn.Sequential(*(build_layer(layer, **kw) for layer in spec.encoder))
        mu_spec, logvar_spec = spec.head
        self.fc_mu = build_layer(mu_spec, **kw)
        self.fc_logvar = build_layer(logvar_spec, **kw)
        self.decoder = nn.Sequential(*(build_layer(layer, **kw) for layer in spec.decoder))

    @staticmethod
    def _run(part: nn.Sequential, prefix: str, x: torch.Tensor, masks) -> torch.Tensor:
        """The Sequential ``part``, its Dropout layers in training taking their mask from ``masks`` when given."""
        for i, module in enumerate(part):
            name = f"{prefix}.{i}"
            if isinstance(module, nn.Dropout) and module.training and masks is not None and name in masks:
                x = x * (masks[name].to(x.dtype) * (1.0 / (1.0 - module.p)))     # numpy_vae's Dropout, op for op
            else:
                x = module(x)
        return x

    def _where(self) -> tuple[torch.dtype, torch.device]:
        """The dtype and device of the model's parameters."""
        first = next(self.parameters())
        return first.dtype, first.device

    def check_images(self, x, name: str = "x") -> torch.Tensor:
        """x as a (B, 784) tensor of the model's dtype in [0, 1] (B >= 1), or numpy_vae's InputError saying why."""
        return inputs.check_images(x, self.input_dim, *self._where(), name)

    def encode(self, x: torch.Tensor, masks=None, check_inputs: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 784) -> mu (B, L), logvar (B, L).  ``check_inputs=False``: x is known to be good (no check,
        no host synchronization)."""
        if check_inputs:
            x = self.check_images(x)
        h = self._run(self.encoder, "encoder", x, masks)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor, probs: bool = False, masks=None, check_inputs: bool = True) -> torch.Tensor:
        """z (B, L) -> the decoder's output (B, 784), logits or the gaussian's mean; with ``probs`` the
        likelihood's mean (pixel probabilities, or the gaussian's mean).  ``check_inputs=False``: z is known
        to be good."""
        if check_inputs:
            z = inputs.check_latent(z, self.latent, *self._where())
        out = self._run(self.decoder, "decoder", z, masks)
        return torch.sigmoid(out) if probs and self.spec.likelihood == "bernoulli" else out

    def nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The spec's likelihood: -log p(x | decoder output), per sample (B,)."""
        if self.spec.likelihood == "gaussian":
            return gaussian_nll(out, x, self.spec.likelihood_variance)
        return bernoulli_nll(out, x)

    def forward(self, x: torch.Tensor, eps: torch.Tensor, masks=None, check_inputs: bool = True) -> dict[str, torch.Tensor]:
        """Negative ELBO of a batch, as ``numpy_vae.VAE.forward``.

        x (B, 784) in [0, 1], eps (B, L), ``masks`` the Dropout keep-masks by layer name.
        Returns ``loss`` (batch mean of per-sample nll + beta * kl), ``recon`` and ``kl``
        (their batch means), ``logits`` (B, 784: the decoder's output), ``mu``, ``logvar``, ``z`` (B, L).
        x and eps are checked as numpy_vae checks them (InputError naming the problem and the fix;
        other real dtypes are cast to the model's); ``check_inputs=False`` skips that (and its host
        synchronization on CUDA) for a batch already checked, as TorchBackend's are.
        """
        if check_inputs:
            x = self.check_images(x)
            eps = inputs.check_noise(eps, x.shape[0], self.latent, *self._where())
        mu, logvar = self.encode(x, masks, check_inputs=False)
        z = reparameterize(mu, logvar, eps)
        logits = self.decode(z, masks=masks, check_inputs=False)
        recon, kl = self.nll(logits, x), gaussian_kl(mu, logvar)
        return {"loss": (recon + self.beta * kl).mean(), "recon": recon.mean(), "kl": kl.mean(),
                "logits": logits, "mu": mu, "logvar": logvar, "z": z}


def build_model(arch: str = "mlp", latent: int = 20, hidden=(512, 256), beta: float = 1.0,
                dtype: torch.dtype = torch.float32, seed: int | np.random.Generator = 0,
                device="cpu", spec: VAESpec | None = None, **options) -> TorchVAE:
    """``numpy_vae.build_model``'s twin: same arguments (dtype a torch dtype, ``spec`` too) plus ``device``.

    The weights (and BatchNorm's buffers) are those ``numpy_vae.build_model`` makes with the same seed,
    bit for bit.
    """
    tdtype = torch_dtype(dtype)
    reference = numpy_vae.build_model(arch, latent=latent, hidden=hidden, beta=beta,
                                      dtype=numpy_dtype(tdtype), seed=seed, spec=spec, **options)
    # Built on the meta device (no memory, no throw-away init), then given storage and the NumPy weights.
    module = TorchVAE(reference.spec, beta=reference.beta, dtype=tdtype, device="meta")
    module.to_empty(device=device)
    to_torch(reference.state_dict(), module)
    return module


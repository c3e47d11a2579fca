"""Several stochastic layers in ordinary PyTorch: ``numpy_vae.hvae.HVAE``'s twin, autograd for the gradients.

Built from the same ``numpy_vae.specs.HVAESpec``: each stochastic layer (q1 ... qL, p1 ... p(L-1)) is a
module with ``net`` (nn.Sequential of the spec's layers), ``mu`` and ``logvar`` (nn.Linear heads), and
``px.net`` the likelihood's network, so ``state_dict()`` keys are exactly ``HVAE.params``' names
(``q1.net.0.weight`` ... ``px.net.4.bias``), in the same order.

For x (B, D) and eps (B, N) or (B, K, N), N = d_1 + ... + d_L, as ``HVAE.bound``::

    h_1 = mu_1(x) + e^(logvar_1(x)/2) eps_1     (q(h_1|x) runs once per image, then K draws)
    h_l = mu_l(h_(l-1)) + e^(logvar_l/2) eps_l  (on the B K rows, row b K + k)
    log w = log p(x|h_1) + sum_(l<L) log N(h_l; p_l(h_(l+1))) + log N(h_L; 0, I) - sum_l log N(h_l; q_l(h_(l-1)))
    loss  = -(1/B) sum_b [logsumexp_k log w_bk - log K]       (K = 1: the single-sample ELBO)

Unlike the NumPy model, every log density here is the full Gaussian at its sample, log q included:
autograd then sums the reparameterization's path term and the score term that HVAE folds into
-1/2 (logvar + eps^2) by hand, so the parity tests check that fold too
(docs/gradients.md#two-stochastic-layers).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from numpy_vae.hvae import chain_noise_message
from numpy_vae.inputs import InputError
from numpy_vae.specs import HVAESpec, SpecError

from . import inputs
from .functional import bernoulli_nll, diag_gaussian_log_density, reparameterize, standard_normal_log_density
from .model import build_layer, torch_dtype

__all__ = ["TorchHVAE", "diag_gaussian_log_density"]

class GaussianLayer(nn.Module):
    """One stochastic layer: a = net(h), mu = mu(a), logvar = logvar(a) (its spec: ``specs.StochasticLayer``)."""

    def __init__(self, prefix: str, layer, in_features: int, **kw):
        super().__init__()
        modules = dict(layer.modules(prefix, in_features))
        self.net = nn.Sequential(*(build_layer(s, **kw) for s in layer.net))
        self.mu = build_layer(modules[f"{prefix}.mu"], **kw)
        self.logvar = build_layer(modules[f"{prefix}.logvar"], **kw)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.net(h)
        return self.mu(a), self.logvar(a)


class TorchHVAE(nn.Module):
    """A stack of stochastic layers built from a ``numpy_vae.specs.HVAESpec``; see the module docstring."""

    def __init__(self, spec: HVAESpec, beta: float = 1.0, dtype: torch.dtype = torch.float32, device="cpu"):
        super().__init__()
        if not isinstance(spec, HVAESpec):
            raise SpecError(f"spec must be a numpy_vae.specs.HVAESpec, got {type(spec).__name__}")
        if beta != 1:
            raise SpecError(f"beta={beta!r}: a stack of stochastic layers trains log w, which has no KL term "
                            f"to weight; use beta 1")
        self.spec, self.beta = spec, float(beta)
        self.latents, self.latent, self.input_dim = spec.latents, spec.latent, spec.input_dim
        self.noise_dim = spec.noise_dim
        kw = {"dtype": torch_dtype(dtype), "device": device}
        for prefix, layer, n in spec.stochastic_layers():          # registered in state_dict() order
            self.add_module(prefix, GaussianLayer(prefix, layer, n, **kw))
        self.px = nn.Module()
        self.px.net = nn.Sequential(*(build_layer(s, **kw) for s in spec.likelihood_net))

    @property
    def q(self) -> list[GaussianLayer]:
        return [getattr(self, f"q{l + 1}") for l in range(len(self.spec.encoder))]

    @property
    def p(self) -> list[GaussianLayer]:
        return [getattr(self, f"p{l + 1}") for l in range(len(self.spec.decoder))]

    def _where(self) -> tuple[torch.dtype, torch.device]:
        """The dtype and device of the model's parameters."""
        first = next(self.parameters())
        return first.dtype, first.device

    def check_images(self, x, name: str = "x") -> torch.Tensor:
        """x as a (B, D) tensor of the model's dtype in [0, 1] (B >= 1), or numpy_vae's InputError saying why."""
        return inputs.check_images(x, self.input_dim, *self._where(), name)

    def check_noise(self, eps, batch: int, name: str = "eps") -> torch.Tensor:
        """eps (batch, N) or (batch, K, N), finite, as (batch, K, N) of the model's dtype: ``HVAE.check_noise``."""
        cast = inputs._real_tensor(eps, name, *self._where())
        if cast.ndim == 2 and tuple(cast.shape) == (batch, self.noise_dim):
            cast = cast[:, None, :]
        if cast.ndim != 3 or cast.shape[0] != batch or cast.shape[1] < 1 or cast.shape[2] != self.noise_dim:
            raise InputError(chain_noise_message(name, batch, self.latents, eps.shape))
        inputs._finite(eps, cast, name)
        return cast

    def encode(self, x: torch.Tensor, check_inputs: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D) -> mu_L, logvar_L (B, d_L), each layer below read at its mean (``HVAE.encode``).
        ``check_inputs=False``: x is known to be good (no check, no host synchronization)."""
        h = self.check_images(x) if check_inputs else x
        for q in self.q:
            mu, logvar = q(h)
            h = mu
        return mu, logvar

    def decode(self, z: torch.Tensor, probs: bool = False, check_inputs: bool = True) -> torch.Tensor:
        """h_L (B, d_L) -> Bernoulli logits (B, D) (``probs``: probabilities), each h_l below at its mean."""
        h = inputs.check_latent(z, self.latent, *self._where()) if check_inputs else z
        for p in reversed(self.p):
            h, _ = p(h)
        logits = self.px.net(h)
        return torch.sigmoid(logits) if probs else logits

    def log_weights(self, x: torch.Tensor, eps: torch.Tensor, check_inputs: bool = True) -> dict[str, torch.Tensor]:
        """log w (B, K) of x (B, D) at eps (B, N) or (B, K, N), with its parts: nll, log_p and log_q (B, K) each.
        x and eps are checked as numpy_vae checks them; ``check_inputs=False`` skips that for a checked batch."""
        if check_inputs:
            x = self.check_images(x)
            eps = self.check_noise(eps, x.shape[0])
        elif eps.ndim == 2:
            eps = eps[:, None, :]
        batch, k = x.shape[0], eps.shape[1]
        noise = torch.split(eps, list(self.latents), dim=-1)                      # (B, K, d_l) each
        h, log_q, below = [], 0, x
        for l, q in enumerate(self.q):
            mu, logvar = q(below)
            if l == 0:                                                             # once per image
                mu, logvar = mu[:, None, :], logvar[:, None, :]
                h_l = reparameterize(mu, logvar, noise[0])                         # (B, K, d_1)
            else:
                h_l = reparameterize(mu, logvar, noise[l])
            log_q = log_q + diag_gaussian_log_density(h_l, mu, logvar)             # (B, K)
            h.append(h_l)
            below = h_l
        log_p = standard_normal_log_density(h[-1])                                # log N(h_L; 0, I)
        for l, p in enumerate(self.p):
            log_p = log_p + diag_gaussian_log_density(h[l], *p(h[l + 1]))
        logits = self.px.net(h[0].reshape(batch * k, -1))                          # (B K, D), row b K + k
        nll = bernoulli_nll(logits, x.repeat_interleave(k, dim=0)).reshape(batch, k)
        return {"log_w": log_p - log_q - nll, "nll": nll, "log_p": log_p, "log_q": log_q}

    def forward(self, x: torch.Tensor, eps: torch.Tensor, masks=None, check_inputs: bool = True) -> dict[str, torch.Tensor]:
        """The negative importance-weighted bound of a batch (``HVAE.bound``): ``loss`` with its graph, and the
        diagnostics ``recon`` (sum_k w~ nll) and ``kl`` (sum_k w~ (log q - log p)), batch means, detached;
        ``log_w`` (B, K).  ``check_inputs``: as :meth:`log_weights`."""
        if masks:
            raise InputError("masks: this model has no Dropout layer; pass None")
        terms = self.log_weights(x, eps, check_inputs)
        log_w = terms["log_w"]
        loss = -(torch.logsumexp(log_w, dim=1) - math.log(log_w.shape[1])).mean()
        with torch.no_grad():
            weights = torch.softmax(log_w, dim=1)
            recon = (weights * terms["nll"]).sum(1).mean()
            kl = (weights * (terms["log_q"] - terms["log_p"])).sum(1).mean()
        return {"loss": loss, "recon": recon, "kl": kl, "log_w": log_w}

"""Training objectives beyond the model's own ELBO: the importance-weighted bound (IWAE, Burda et al. 2015).

    iwae_loss(model, x, eps) -> (loss, recon, kl, backward)

For x (B, D) and eps (B, K, L) standard normal, each image is encoded ONCE,
mu, logvar = head(encoder(x)) (B, L), and decoded at its K draws::

    z_bk     = mu_b + exp(logvar_b / 2) eps_bk                      (B, K, L), decoded as B*K rows
    log w_bk = -nll(decoder(z_bk), x_b) + 1/2 sum_l (eps_bk^2 - z_bk^2 + logvar_b)
             = log p(x_b|z_bk) + log p(z_bk) - log q(z_bk|x_b)       (the log 2 pi terms cancel)
    loss     = -(1/B) sum_b [ logsumexp_k log w_bk - log K ]         (nats per image)

Its gradient is each draw's single-sample ELBO gradient weighted by the normalized
importance weights softmax_k(log w_b) (docs/gradients.md#the-importance-weighted-bound).

The diagnostics, per image then averaged over the batch, with those weights w~_bk:

    recon = sum_k w~_bk nll_bk                               (the weighted reconstruction cost)
    kl    = sum_k w~_bk (log q(z_bk|x_b) - log p(z_bk))      (the weighted Monte Carlo KL estimate)

so that loss = recon + kl + mean_b KL(w~_b || uniform over K) >= recon + kl, with equality
for K = 1.  Neither has a gradient: they are reported, not trained.

K = 1 is the ELBO with the KL estimated by one sample: for the same eps, -log w = nll +
(log q - log p), whose expectation over eps is the closed-form KL that ``VAE.loss`` uses.
So ``--objective iwae --samples 1`` trains the single-sample Monte Carlo KL ELBO: its loss
and recon equal ``VAE.loss``'s in expectation (recon even bit for bit for the same eps), its
kl is a one-draw estimate of the model's closed-form kl, noisier, with the same mean.

The model must be a deterministic per-row function: a model in training mode with a
BatchNorm1d or Dropout layer is refused (``model.eval()`` makes them per-row: running
statistics, no dropout), since batch statistics over the B*K decoder rows would couple an
image's draws and Dropout needs a mask per row.
``beta`` must be 1: the importance-weighted bound has no KL weight.
"""
from __future__ import annotations

import numpy as np

from .inputs import InputError, _finite_as, _real_array
from .hvae import HVAE
from .model import VAE
from .nn.iwae_bound import LogMeanExp, LogPriorRatio
from .specs import SpecError

__all__ = ["iwae_loss", "check_iwae_model", "check_iwae_noise"]


def _moded_layers(model) -> list[tuple[str, object]]:
    """("encoder.3", layer) of every layer with a training mode (BatchNorm1d, Dropout)."""
    return [(f"{prefix}.{i}", layer) for prefix, part in (("encoder", model.encoder), ("decoder", model.decoder))
            for i, layer in enumerate(part) if hasattr(layer, "training")]


def check_iwae_model(model) -> None:
    """SpecError unless ``model`` is a numpy_vae VAE with beta 1 whose layers are per-row functions.

    A layer with a training mode (BatchNorm1d, Dropout) is accepted only with the model in
    evaluation mode (``model.eval()``): running statistics and no dropout.  In training mode
    batch statistics over the B*K decoder rows would couple an image's K draws, and Dropout
    would need a mask per row, so the bound would not be the bound.
    """
    if not isinstance(model, VAE):
        raise SpecError(f"iwae_loss needs a numpy_vae.VAE, got {type(model).__name__}")
    if model.beta != 1.0:
        raise SpecError(f"the importance-weighted bound is defined for beta = 1, this model has beta={model.beta!r}; "
                        f"build it with beta=1 (or train the ELBO objective, which weights its KL)")
    moded = _moded_layers(model)
    training = getattr(model, "training", any(layer.training for _, layer in moded))
    if moded and training:
        names = ", ".join(f"{name} ({type(layer).__name__})" for name, layer in moded)
        raise SpecError(f"iwae_loss: the model is in training mode and has {names}; the importance-weighted "
                        f"bound needs every row to be its own function (batch statistics over the B*K decoder "
                        f"rows would couple an image's draws, dropout would need a mask per row): call "
                        f"model.eval() first, or use a spec without BatchNorm1d/Dropout")


def check_iwae_noise(eps, batch: int, latent: int, dtype, name: str = "eps") -> np.ndarray:
    """eps (batch, K, latent) of finite numbers with K >= 1, as a C-contiguous array of ``dtype``."""
    eps = _real_array(eps, name)
    if eps.ndim != 3 or eps.shape[0] != batch or eps.shape[2] != latent or eps.shape[1] < 1:
        raise InputError(f"{name} must have shape ({batch}, K, {latent}) with K >= 1 importance samples per "
                         f"image, got {eps.shape}; draw it with numpy_vae.draw_eps(rng, {batch} * K, {latent})"
                         f".reshape({batch}, K, {latent})")
    return _finite_as(eps, dtype, name)


def iwae_loss(model: VAE, x, eps):
    """The negative importance-weighted bound of a batch and its backward; see the module docstring.

    x (B, D) in [0, 1]; eps (B, K, L) standard normal, K >= 1 draws per image.
    Returns ``(loss, recon, kl, backward)``: three scalars of the model's dtype (nats per
    image, batch means) and ``backward(need_input_grad=False)``, which fills
    ``model.grad_flat`` (so ``model.grads``) with d loss / d every parameter and returns
    d loss / d x (B, D) when ``need_input_grad``, else None.  Nothing is stored on the model.
    """
    if isinstance(model, HVAE):         # several stochastic layers: the model computes its own bound
        return model.bound(x, eps)
    check_iwae_model(model)
    x = model.check_input(x)
    batch, dtype = x.shape[0], model.dtype
    eps = check_iwae_noise(eps, batch, model.latent, dtype)
    k, latent = eps.shape[1], model.latent

    for _, layer in _moded_layers(model):          # evaluation mode (checked above): running statistics, no dropout
        layer.training = False
    h, encoder_backward = model.encoder.forward(x)                         # (B, H): once per image
    mu, logvar, head_backward = model.head.forward(h)                      # (B, L)
    # (B, 1, L) against eps (B, K, L): the model's Reparameterize, broadcast over the draws
    z, reparameterize_backward = model.reparameterize.forward(mu[:, None, :], logvar[:, None, :], eps)
    logits, decoder_backward = model.decoder.forward(z.reshape(batch * k, latent))   # (B K, D), row b K + k
    targets = np.repeat(x, k, axis=0) if k > 1 else x                      # x_b for each of its K rows
    nll, nll_backward = model.likelihood.forward(logits, targets)          # (B K,)
    nll = nll.reshape(batch, k)
    ratio, ratio_backward = LogPriorRatio().forward(z, eps, logvar)        # (B, K)
    log_w = ratio - nll                                                    # (B, K)
    bound, bound_backward = LogMeanExp().forward(log_w)                    # (B,)

    loss = -bound.mean()
    weights = LogMeanExp.softmax(log_w)                                    # w~ (B, K), for the diagnostics
    recon = (weights * nll).sum(axis=1).mean()
    kl = -(weights * ratio).sum(axis=1).mean()

    # loss = -(1/B) sum_b bound_b:  d loss / d log w_bk = -w~_bk / B, into -nll and the prior ratio
    def backward(need_input_grad: bool = False) -> np.ndarray | None:
        dlog_w = bound_backward(np.full(batch, -1.0 / batch, dtype))        # (B, K)
        dlogits, dx_target = nll_backward(-dlog_w.reshape(batch * k), need_input_grad)
        dz = decoder_backward(dlogits).reshape(batch, k, latent)           # the decoder path ...
        dz_prior, dlogvar = ratio_backward(dlog_w)
        dz += dz_prior                                                     # ... plus the prior's -|z|^2/2
        dmu_k, dlogvar_k = reparameterize_backward(dz)                     # (B, K, L) each
        dmu = dmu_k.sum(axis=1)                                            # mu_b and logvar_b feed K draws
        dlogvar += dlogvar_k.sum(axis=1)                                   # + the ratio's 1/2 sum logvar
        dh = head_backward(dmu, dlogvar)
        dx_encoder = encoder_backward(dh, need_input_grad)
        if not need_input_grad:
            return None
        return dx_encoder + dx_target.reshape(batch, k, -1).sum(axis=1)   # x is also each row's target

    return loss, recon, kl, backward

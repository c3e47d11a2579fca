"""A VAE with several stochastic layers (Burda et al. 2015, section 5), in NumPy, every gradient by hand.

The spec (``numpy_vae.specs.HVAESpec``) lists q(h_1|x), q(h_2|h_1), ..., the conditional priors
p(h_l|h_(l+1)) and the likelihood p(x|h_1); p(h_L) = N(0, I).  For an image x and one draw
eps = [eps_1 | ... | eps_L] of the whole chain (reparameterized through the encoder)::

    h_1 = mu_1(x) + e^(logvar_1(x)/2) eps_1,   h_l = mu_l(h_(l-1)) + e^(logvar_l(h_(l-1))/2) eps_l
    log w = log p(x|h_1) + sum_(l<L) log p(h_l|h_(l+1)) + log p(h_L) - sum_l log q(h_l|h_(l-1))

There is no closed-form KL across layers, so every term is a one-sample estimate, as in the paper
and the authors' code.  With K draws per image the loss is the importance-weighted bound,

    loss = -(1/B) sum_b log (1/K) sum_k w_bk          (K = 1: the single-sample ELBO, the paper's VAE)

``loss(x, eps)`` takes eps (B, N) (K = 1) or (B, K, N), N = d_1 + ... + d_L.  q(h_1|x)'s network runs
once per image; every other network runs on the B K rows, row b K + k being draw k of image b.
log q(h_l|.) is evaluated at its own sample as -1/2 sum [log 2 pi + logvar_l + eps_l^2], the same
function of the parameters as the density at h_l (hence the same total derivative; nn/gaussian_density.py).

Parameters live in one flat array ``model.flat`` (``model.params``: views, in ``state_dict()`` order;
each stochastic layer's mu and logvar weights are adjacent in the buffer, then their biases, so that
its head is one matmul, nn/head.py), gradients likewise in ``model.grad_flat``: the optimizer and the
training loop treat this model as ``numpy_vae.model.VAE``.  Derivation of the backward through both
stochastic layers: docs/gradients.md#two-stochastic-layers
"""
from __future__ import annotations

import numpy as np

from .inputs import InputError, _finite_as, _real_array, check_images, check_latent
from .interpret import check_kernels, flat_buffers, init_params, interpret_layers, layer_classes, model_dtype, \
    pack_layout
from .nn.container import Sequential
from .nn.gaussian_density import DiagGaussianLogDensity, SampleLogDensity, StandardNormalLogDensity
from .nn.head import GaussianHead
from .nn.iwae_bound import LogMeanExp
from .nn.losses import BernoulliNLL
from .nn.reparameterize import Reparameterize
from .specs import HVAESpec, SpecError

__all__ = ["HVAE", "chain_noise_message", "hvae_flat_layout"]


def chain_noise_message(name: str, batch: int, latents: tuple[int, ...], shape) -> str:
    """The one-line error for noise of the wrong shape for a stack of stochastic layers of sizes ``latents``."""
    n = sum(latents)
    return (f"{name} must have shape ({batch}, {n}) or ({batch}, K, {n}) with K >= 1 (one draw of eps_1 ... eps_L, "
            f"sizes {tuple(latents)}, per sample), got {tuple(shape)}; draw it with "
            f"numpy_vae.draw_eps(rng, {batch} * K, {n}).reshape({batch}, K, {n})")


def hvae_flat_layout(spec: HVAESpec) -> dict[str, tuple[int, ...]]:
    """Name -> (start, stop) in the flat buffer: each stochastic layer's net, then its heads' weights, then
    their biases (adjacent: one matmul), then the next layer; px last."""
    shapes = spec.parameter_shapes()
    order = []
    for prefix, _, _ in spec.stochastic_layers():
        order += [n for n in shapes if n.startswith(f"{prefix}.net.")]
        order += [f"{prefix}.mu.weight", f"{prefix}.logvar.weight", f"{prefix}.mu.bias", f"{prefix}.logvar.bias"]
    order += [n for n in shapes if n.startswith("px.")]
    return pack_layout(order, shapes)


class HVAE:
    """A stack of stochastic layers built from an :class:`~numpy_vae.specs.HVAESpec`; see the module docstring."""

    def __init__(self, spec: HVAESpec, beta: float = 1.0, dtype=np.float32, seed: int | np.random.Generator = 0,
                 kernels: str = "fast"):
        if not isinstance(spec, HVAESpec):
            raise SpecError(f"spec must be a numpy_vae.specs.HVAESpec, got {type(spec).__name__}")
        self.dtype = model_dtype(dtype)
        self.spec, self.beta = spec, beta
        self.kernels = check_kernels(kernels)              # "fast" or "reference": see numpy_vae.interpret
        self._check_beta()
        self.latents, self.latent, self.input_dim = spec.latents, spec.latent, spec.input_dim
        self.noise_dim = spec.noise_dim

        shapes = spec.parameter_shapes()
        layout = self.layout = hvae_flat_layout(spec)
        self.flat, self.grad_flat, self.params, self.grads = flat_buffers(shapes, layout, self.dtype)
        self.buffers = {}
        init_params(spec, self.params, seed)
        self.training = True
        self.dropout_p = {}

        blocks = {prefix: self._block(prefix, layer) for prefix, layer, _ in spec.stochastic_layers()}
        self.q = [blocks[f"q{l + 1}"] for l in range(len(spec.encoder))]      # (net, head): q(h_l+1|h_l)
        self.p = [blocks[f"p{l + 1}"] for l in range(len(spec.decoder))]      # (net, head): p(h_l+1|h_l+2)
        self.px = Sequential(interpret_layers("px.net", spec.likelihood_net, self.params, self.grads, {}, self.kernels))
        self.reparameterize = Reparameterize()
        self.likelihood = BernoulliNLL()
        self._backward = None

    def _block(self, prefix: str, layer) -> tuple[Sequential, GaussianHead]:
        """A stochastic layer's net and its stacked (mu | logvar) head, views into the flat buffers."""
        net = Sequential(interpret_layers(f"{prefix}.net", layer.net, self.params, self.grads, {}, self.kernels))
        (w0, _), (_, w1) = self.layout[f"{prefix}.mu.weight"], self.layout[f"{prefix}.logvar.weight"]
        (b0, _), (_, b1) = self.layout[f"{prefix}.mu.bias"], self.layout[f"{prefix}.logvar.bias"]
        stacked = (2 * layer.latent, self.params[f"{prefix}.mu.weight"].shape[1])
        return net, GaussianHead(self.flat[w0:w1].reshape(stacked), self.flat[b0:b1],
                                 self.grad_flat[w0:w1].reshape(stacked), self.grad_flat[b0:b1],
                                 layer_classes(self.kernels)[0])

    def _check_beta(self) -> None:
        if self.beta != 1:
            raise SpecError(f"beta={self.beta!r}: a stack of stochastic layers trains log w, which has no KL term "
                            f"to weight; use beta 1")

    @property
    def num_params(self) -> int:
        return self.flat.size

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> "HVAE":
        """Training and evaluation compute the same (no BatchNorm1d or Dropout here); kept for the interface."""
        self.training = bool(mode)
        return self

    def eval(self) -> "HVAE":
        return self.train(False)

    # ----------------------------------------------------------------- checks
    def check_input(self, x, name: str = "x") -> np.ndarray:
        return check_images(x, self.input_dim, self.dtype, name)

    def check_noise(self, eps, batch: int, name: str = "eps") -> np.ndarray:
        """eps (batch, N) or (batch, K, N), N = d_1 + ... + d_L, as (batch, K, N) of the model's dtype."""
        eps = _real_array(eps, name)
        n = self.noise_dim
        if eps.ndim == 2 and eps.shape == (batch, n):
            eps = eps[:, None, :]
        if eps.ndim != 3 or eps.shape[0] != batch or eps.shape[1] < 1 or eps.shape[2] != n:
            raise InputError(chain_noise_message(name, batch, self.latents, eps.shape))
        return _finite_as(eps, self.dtype, name)

    def draw_masks(self, rng: np.random.Generator, batch: int):
        return None

    # --------------------------------------- inference along the means: nothing is kept
    def encode(self, x) -> tuple[np.ndarray, np.ndarray]:
        """x (B, D) -> mu_L, logvar_L (B, d_L) of the top layer, each q(h_l|h_(l-1)) read at the mean of the
        layer below (the report's and the live page's view of the model through its top latent)."""
        h = self.check_input(x)
        for net, head in self.q:
            mu, logvar = head(net(h))
            h = mu
        return mu, logvar

    def decode(self, z, probs: bool = False) -> np.ndarray:
        """h_L (B, d_L) -> the Bernoulli logits (B, D) (``probs``: the pixel probabilities), every h_l below
        at the mean of p(h_l|h_(l+1))."""
        h = check_latent(z, self.latent, self.dtype)
        for net, head in reversed(self.p):
            h, _ = head(net(h))
        logits = self.px(h)
        return self.likelihood.mean(logits) if probs else logits

    # ------------------------------------------------------------ the bound
    def bound(self, x, eps):
        """The negative importance-weighted bound of a batch and its backward (``objectives.iwae_loss``'s contract).

        x (B, D) in [0, 1]; eps (B, N) or (B, K, N).  Returns ``(loss, recon, kl, backward)``: the loss
        -(1/B) sum_b log mean_k w_bk and, weighted by the normalized weights w~_bk, recon = sum_k w~ (-log p(x|h_1))
        and kl = sum_k w~ (log q - log p of the latents) (batch means; loss = recon + kl for K = 1); and
        ``backward(need_input_grad=False)``, which fills ``grad_flat`` and returns d loss / d x (B, D) or None.
        """
        self._check_beta()
        x = self.check_input(x)
        batch = x.shape[0]
        eps = self.check_noise(eps, batch)
        return self._bound(x, eps)[:4]

    def _bound(self, x: np.ndarray, eps: np.ndarray):
        batch, k, _ = eps.shape
        rows, dtype, n_layers = batch * k, self.dtype, len(self.q)
        cuts = np.cumsum((0, *self.latents))
        eps_l = [eps[:, :, a:b] for a, b in zip(cuts[:-1], cuts[1:])]            # (B, K, d_l) each

        # inference, bottom-up: h_l = mu_l + e^(logvar_l/2) eps_l, and log q(h_l|h_(l-1)) at that sample
        h, q_backward, log_q = [], [], np.zeros((batch, k), dtype)
        below = x
        for l, (net, head) in enumerate(self.q):
            a, net_backward = net.forward(below)
            mu, logvar, head_backward = head.forward(a)
            if l == 0:      # once per image: (B, 1, d_1) against eps_1 (B, K, d_1)
                mu, logvar, noise = mu[:, None, :], logvar[:, None, :], eps_l[0]
            else:           # on the B K rows
                noise = eps_l[l].reshape(rows, -1)
            h_l, reparameterize_backward = self.reparameterize.forward(mu, logvar, noise)
            lq, lq_backward = SampleLogDensity().forward(noise, logvar)
            log_q += lq.reshape(batch, k)
            h.append(h_l.reshape(rows, -1))
            q_backward.append((net_backward, head_backward, reparameterize_backward, lq_backward))
            below = h[-1]

        # generative: p(h_L) = N(0, I), p(h_l|h_(l+1)), p(x|h_1)
        log_p, top_backward = StandardNormalLogDensity().forward(h[-1])          # (B K,)
        p_backward = []
        for l, (net, head) in enumerate(self.p):
            a, net_backward = net.forward(h[l + 1])
            mu, logvar, head_backward = head.forward(a)
            lp, lp_backward = DiagGaussianLogDensity().forward(h[l], mu, logvar)
            log_p = log_p + lp
            p_backward.append((net_backward, head_backward, lp_backward))
        logits, px_backward = self.px.forward(h[0])                               # (B K, D)
        targets = np.repeat(x, k, axis=0) if k > 1 else x
        nll, nll_backward = self.likelihood.forward(logits, targets)              # (B K,)

        nll, log_p = nll.reshape(batch, k), log_p.reshape(batch, k)
        log_w = log_p - log_q - nll                                               # (B, K)
        bound, bound_backward = LogMeanExp().forward(log_w)
        loss = -bound.mean()
        weights = LogMeanExp.softmax(log_w)
        recon = (weights * nll).sum(axis=1).mean()
        kl = (weights * (log_q - log_p)).sum(axis=1).mean()

        # loss = -(1/B) sum_b bound_b: g = d loss / d log w (B, K) = -w~ / B, then every term of log w
        def backward(need_input_grad: bool = False) -> np.ndarray | None:
            g = bound_backward(np.full(batch, -1.0 / batch, dtype)).reshape(rows)      # (B K,)
            dlogits, dx_target = nll_backward(-g, need_input_grad)                   # log w has -nll
            dh = [None] * n_layers                     # d loss / d h_l (B K, d_l), summed over the paths into h_l

            def add(l, d):
                dh[l] = d if dh[l] is None else dh[l] + d

            add(0, px_backward(dlogits))                                             # p(x|h_1) -> h_1
            add(n_layers - 1, top_backward(g))                                       # log p(h_L) -> h_L
            for l, (net_backward, head_backward, lp_backward) in enumerate(p_backward):
                dz, dmu, dlogvar = lp_backward(g)                                    # log p(h_l|h_(l+1)) ...
                add(l, dz)                                                           # ... -> h_l directly
                add(l + 1, net_backward(head_backward(dmu, dlogvar)))                # ... -> h_(l+1) via p's net
            dx_encoder = None
            for l in reversed(range(n_layers)):        # top-down: dh[l] is complete once q_(l+1) is done
                net_backward, head_backward, reparameterize_backward, lq_backward = q_backward[l]
                d = dh[l] if l > 0 else dh[0].reshape(batch, k, -1)
                dmu, dlogvar = reparameterize_backward(d)                            # h_l = mu + sigma eps
                dlogvar = dlogvar + lq_backward(-g.reshape(d.shape[:-1]))            # log w has -log q
                if l == 0:                                                           # mu_1, logvar_1 feed K draws
                    dmu, dlogvar = dmu.sum(axis=1), dlogvar.sum(axis=1)
                da = head_backward(dmu, dlogvar)
                if l > 0:
                    add(l - 1, net_backward(da))                                     # q_l reads h_(l-1)
                else:
                    dx_encoder = net_backward(da, need_input_grad)
            if not need_input_grad:
                return None
            return dx_encoder + dx_target.reshape(batch, k, -1).sum(axis=1)         # x is each row's target too

        return loss, recon, kl, backward, log_w

    # ------------------------------------------------------- model interface
    def loss(self, x, eps, masks=None) -> tuple[float, float, float]:
        """(loss, recon, kl) of :meth:`bound`, keeping its backward for :meth:`backward` (``VAE.loss``'s contract)."""
        if masks:
            raise InputError("masks: this model has no Dropout layer; pass None")
        loss, recon, kl, self._backward = self.bound(x, eps)
        return loss, recon, kl

    def backward(self, need_input_grad: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Gradients of the last ``loss``: (grads by parameter name, d loss / d x (B, D) or None)."""
        if self._backward is None:
            raise RuntimeError("backward() needs a loss() first")
        return self.grads, self._backward(need_input_grad)

    def log_weights(self, x, eps) -> np.ndarray:
        """log w (B, K) of x (B, D) at eps (B, K, N), in float64, for importance-weighted estimates; keeps nothing."""
        x = self.check_input(x)
        eps = self.check_noise(eps, x.shape[0])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            log_w = self._bound(x, eps)[4]        # the closures are dropped with this frame
        return log_w.astype(np.float64)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: self.params[name].copy() for name in self.spec.state_names()}

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Copy arrays (NumPy or array-like, e.g. a torch state_dict's values) into the model, by ``state_dict()`` name."""
        missing = sorted(set(self.params) - set(params))
        unexpected = sorted(set(params) - set(self.params))
        if missing or unexpected:
            raise KeyError(f"parameter names do not match this model: missing {missing}, unexpected {unexpected}")
        for name, value in params.items():
            value = np.asarray(value)
            if value.shape != self.params[name].shape:
                raise ValueError(f"parameter {name}: expected shape {self.params[name].shape}, got {value.shape}")
            self.params[name][...] = value

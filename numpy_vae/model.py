"""The VAE in NumPy: a spec (``numpy_vae.specs``) interpreted into hand-written layers.

    encoder   x (B, 784) -> the spec's encoder layers -> h (B, H)
    head      h -> mu (B, L), logvar (B, L)          (fc_mu and fc_logvar, one matmul: nn/head.py)
    sample    z = mu + eps * exp(logvar / 2),  eps ~ N(0, I) passed in (B, L)
    decoder   z -> the spec's decoder layers -> out (B, 784): Bernoulli logits, or the Gaussian's mean
    loss      mean_B [ NLL(out, x) + beta * KL(N(mu, e^logvar) || N(0, I)) ]

BatchNorm1d and Dropout layers follow ``model.training`` (``model.train()`` /
``model.eval()``), as torch modules do, in ``forward``/``loss``; the inference
methods (``encode``, ``decode``, ``reconstruct``, ``sample``) always run in
evaluation mode and never move the running statistics.  Dropout's keep-masks
are inputs, as eps is (``masks``: layer name -> (B, F) array of 0s and 1s), so
both backends can be fed the same draw.  BatchNorm's running statistics live in
``model.buffers``, outside the flat parameter buffer (no optimizer moves them);
``state_dict()`` returns parameters and buffers under torch's names.

Parameter names equal the keys of ``torch_vae``'s ``state_dict()`` (``encoder.0.weight``,
``fc_mu.bias``, ``decoder.4.weight``, ...), weights stored (out, in).

All parameters live in one flat array ``model.flat`` and ``model.params`` holds
views into it (gradients likewise in ``model.grad_flat`` / ``model.grads``), so an
optimizer updates the whole model in a few in-place passes over one array.  The
buffer holds each layer's parameters in turn, the two heads' weights next to each
other (then their biases), so that the head is one Linear H -> 2L.

``forward`` returns the loss terms and copies of the arrays it computed, and keeps
the backward closures of that call; ``backward`` runs them.  ``encode``, ``decode``,
``reconstruct`` and ``sample`` run the layers without keeping anything, so nothing
called between ``forward`` and ``backward`` can change the gradients.
Derivation of the batch mean and of every layer: docs/gradients.md
"""
from __future__ import annotations

import math

import numpy as np

from . import specs
from .hvae import HVAE
from .interpret import check_kernels, flat_buffers, init_params, interpret_layers, layer_classes, model_dtype, \
    pack_layout
from .inputs import (InputError, check_batchnorm_batch, check_count, check_images, check_latent, check_masks,
                     check_noise)
from .nn.batchnorm import BatchNorm1d
from .nn.container import Sequential
from .nn.dropout import Dropout
from .nn.head import GaussianHead
from .nn.losses import BernoulliNLL, GaussianKL, GaussianNLL
from .nn.reparameterize import Reparameterize
from .specs import INPUT_DIM, SpecError, VAESpec
from .streams import draw_masks

__all__ = ["INPUT_DIM", "InputError", "VAE", "build_model"]

def _likelihood(spec: VAESpec):
    if spec.likelihood == "gaussian":
        return GaussianNLL(spec.likelihood_variance)
    return BernoulliNLL()


def _check_beta(beta) -> float:
    if isinstance(beta, (bool, np.bool_)) or not isinstance(beta, (int, float, np.integer, np.floating)) \
            or not math.isfinite(beta) or beta < 0:
        raise SpecError(f"beta={beta!r}: expected a finite number >= 0 (the weight of the KL term)")
    return float(beta)


def flat_layout(spec: VAESpec) -> dict[str, tuple[int, int]]:
    """Name -> (start, stop) in the flat buffer: layer after layer, the heads' weights, then biases, adjacent."""
    shapes = spec.parameter_shapes()
    order = [n for n in shapes if not n.startswith("fc_")]
    first_decoder = next((i for i, n in enumerate(order) if n.startswith("decoder.")), len(order))
    order[first_decoder:first_decoder] = ["fc_mu.weight", "fc_logvar.weight", "fc_mu.bias", "fc_logvar.bias"]
    return pack_layout(order, shapes)


class VAE:
    """A variational autoencoder built from a :class:`~numpy_vae.specs.VAESpec`; see the module docstring."""

    def __init__(self, spec: VAESpec, beta: float = 1.0, dtype=np.float32, seed: int | np.random.Generator = 0,
                 kernels: str = "fast"):
        if not isinstance(spec, VAESpec):
            raise SpecError(f"spec must be a numpy_vae.specs.VAESpec, got {type(spec).__name__}")
        self.dtype = model_dtype(dtype)
        self.spec, self.beta = spec, _check_beta(beta)
        self.kernels = check_kernels(kernels)            # "fast" or "reference": see numpy_vae.interpret
        self.latent, self.input_dim = spec.latent, spec.input_dim

        shapes = spec.parameter_shapes()
        layout = self.layout = flat_layout(spec)          # name -> (start, stop) in self.flat
        self.flat, self.grad_flat, self.params, self.grads = flat_buffers(shapes, layout, self.dtype)
        self.buffers = {n: np.zeros(shape, self.dtype if kind == "float" else np.dtype(kind))
                        for n, (shape, kind) in spec.buffer_shapes().items()}
        for name, buf in self.buffers.items():
            if name.endswith(".running_var"):
                buf[...] = 1                              # torch's initial running variance
        self._init_params(seed)
        self.training = True
        self.dropout_p = spec.dropout_layers()           # name -> p: the masks a training forward takes

        self.encoder = Sequential(self._layers("encoder", spec.encoder))
        (w0, _), (_, w1) = layout["fc_mu.weight"], layout["fc_logvar.weight"]
        (b0, _), (_, b1) = layout["fc_mu.bias"], layout["fc_logvar.bias"]
        stacked = (2 * self.latent, spec.head_features)
        self.head = GaussianHead(self.flat[w0:w1].reshape(stacked), self.flat[b0:b1],
                                 self.grad_flat[w0:w1].reshape(stacked), self.grad_flat[b0:b1],
                                 layer_classes(self.kernels)[0])
        self.decoder = Sequential(self._layers("decoder", spec.decoder))
        self.reparameterize = Reparameterize()
        self.likelihood = _likelihood(spec)
        self.kl = GaussianKL()
        self._moded = [layer for part in (self.encoder, self.decoder) for layer in part
                       if isinstance(layer, (BatchNorm1d, Dropout))]
        self._backward = None          # the closures of the last forward

    def _layers(self, prefix: str, layer_specs) -> list:
        """The NumPy layers of a spec's encoder or decoder, their parameters views into the flat buffers."""
        return interpret_layers(prefix, layer_specs, self.params, self.grads, self.buffers, self.kernels)

    def _init_params(self, seed) -> None:
        init_params(self.spec, self.params, seed)

    @property
    def num_params(self) -> int:
        return self.flat.size

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> "VAE":
        """Training mode (batch statistics, dropout on) for ``forward``/``loss``, as torch's ``module.train()``."""
        self.training = bool(mode)
        return self

    def eval(self) -> "VAE":
        """Evaluation mode (running statistics, dropout off), as torch's ``module.eval()``."""
        return self.train(False)

    def _set_mode(self, training: bool) -> None:
        for layer in self._moded:
            layer.training = training

    # ----------------------------------------------------------------- checks
    def check_input(self, x, name: str = "x") -> np.ndarray:
        """x as a C-contiguous (B, input_dim) array of the model's dtype in [0, 1], or InputError saying why."""
        return check_images(x, self.input_dim, self.dtype, name)

    def draw_masks(self, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
        """Fresh keep-masks for every Dropout layer, in layer order, from ``rng`` (the run's dropout stream)."""
        return draw_masks(self.spec, rng, batch, self.dtype)

    def check_masks(self, masks, batch: int) -> dict[str, dict[int, np.ndarray]]:
        """The masks a forward needs, split by part ({"encoder": {index: mask}, ...}); InputError saying why not."""
        split = {"encoder": {}, "decoder": {}}
        if self.training:
            for name, m in check_masks(masks, self.spec, batch, self.dtype).items():
                part, index = name.split(".")
                split[part][int(index)] = m
        return split

    # ---------------------------------------------- inference: nothing is kept
    def encode(self, x) -> tuple[np.ndarray, np.ndarray]:
        """x (B, 784) -> mu (B, L), logvar (B, L)."""
        self._set_mode(False)
        return self.head(self.encoder(self.check_input(x)))

    def decode(self, z, probs: bool = False) -> np.ndarray:
        """z (B, L) -> the decoder's output (B, 784): logits (bernoulli) or the mean (gaussian);
        with ``probs``, the likelihood's mean (pixel probabilities, or the gaussian's mean)."""
        self._set_mode(False)
        out = self.decoder(check_latent(z, self.latent, self.dtype))
        return self.likelihood.mean(out) if probs else out

    def reconstruct(self, x) -> np.ndarray:
        """Pixel probabilities decoded from the posterior mean: (B, 784)."""
        mu, _ = self.encode(x)
        return self.likelihood.mean(self.decoder(mu))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n digits decoded (as probabilities) from z ~ N(0, I): (n, 784)."""
        n = check_count(n)
        self._set_mode(False)
        return self.likelihood.mean(self.decoder(rng.standard_normal((n, self.latent)).astype(self.dtype)))

    # ------------------------------------------------------------ training
    def loss(self, x, eps, masks=None) -> tuple[float, float, float]:
        """(loss, recon, kl) batch means, keeping the backward closures: ``forward`` without the copies."""
        x = self.check_input(x)
        eps = check_noise(eps, x.shape[0], self.latent, self.dtype)
        return self._forward(x, eps, self.check_masks(masks, x.shape[0]))[:3]

    def _forward(self, x: np.ndarray, eps: np.ndarray, masks: dict):
        if self.training:
            check_batchnorm_batch(self.spec, x.shape[0])
        self._set_mode(self.training)
        h, encoder_backward = self.encoder.forward(x, masks["encoder"])
        mu, logvar, head_backward = self.head.forward(h)
        z, reparameterize_backward = self.reparameterize.forward(mu, logvar, eps)
        logits, decoder_backward = self.decoder.forward(z, masks["decoder"])
        (recon, nll_backward), (kl, kl_backward) = self.likelihood.forward(logits, x), self.kl.forward(mu, logvar)
        batch = x.shape[0]
        beta = self.beta

        # loss = mean_B (nll + beta kl): each per-sample term gets 1/B (beta/B for the KL)
        def backward(need_input_grad: bool) -> np.ndarray | None:
            per_sample = np.full(batch, 1.0 / batch, self.dtype)      # d mean / d item
            dlogits, dx_target = nll_backward(per_sample, need_input_grad)
            dz = decoder_backward(dlogits)
            dmu, dlogvar = reparameterize_backward(dz)
            dmu_kl, dlogvar_kl = kl_backward(beta * per_sample)
            dh = head_backward(dmu + dmu_kl, dlogvar + dlogvar_kl)
            dx_encoder = encoder_backward(dh, need_input_grad)
            return dx_encoder + dx_target if need_input_grad else None

        self._backward = backward
        loss = (recon + beta * kl).mean()
        return loss, recon.mean(), kl.mean(), logits, mu, logvar, z

    def forward(self, x, eps, masks=None) -> dict[str, np.ndarray]:
        """Negative ELBO of a batch.

        x (B, 784) in [0, 1], eps (B, L) standard normal noise, ``masks`` the Dropout
        keep-masks (training mode only; see ``draw_masks``).  Returns ``loss``
        (batch mean of per-sample nll + beta * kl, in nats), ``recon`` and ``kl``
        (their batch means), and copies of ``logits`` (B, 784: the decoder's output),
        ``mu``, ``logvar``, ``z`` (B, L): changing them changes nothing that ``backward`` uses.
        """
        x = self.check_input(x)
        eps = check_noise(eps, x.shape[0], self.latent, self.dtype)
        loss, recon, kl, logits, mu, logvar, z = self._forward(x, eps, self.check_masks(masks, x.shape[0]))
        return {"loss": loss, "recon": recon, "kl": kl, "logits": logits.copy(), "mu": mu.copy(),
                "logvar": logvar.copy(), "z": z.copy()}

    def backward(self, need_input_grad: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Gradients of the last ``forward``'s loss: (grads by parameter name, dloss/dx (B, 784)).

        x reaches the loss twice, through the encoder and as the Bernoulli target;
        dx sums both.  Training passes ``need_input_grad=False`` to skip that work
        (it then returns None for dx).  The returned arrays are views into
        ``grad_flat``, overwritten by the next backward.
        """
        if self._backward is None:
            raise RuntimeError("backward() needs a forward() first")
        return self.grads, self._backward(need_input_grad)

    # ------------------------------------------------------------ weights
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed and ordered as torch_vae's ``state_dict()``."""
        own = {**self.params, **self.buffers}
        return {name: own[name].copy() for name in self.spec.state_names()}

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Copy arrays (NumPy or anything array-like, e.g. a torch state_dict's values) into the model.

        The names are ``state_dict()``'s: every parameter, and every buffer (BatchNorm's running statistics).
        """
        own = {**self.params, **self.buffers}
        missing = sorted(set(own) - set(params))
        unexpected = sorted(set(params) - set(own))
        if missing or unexpected:
            raise KeyError(f"parameter names do not match this model: missing {missing}, unexpected {unexpected}")
        for name, value in params.items():
            value = np.asarray(value)
            if value.shape != own[name].shape:
                raise ValueError(f"parameter {name}: expected shape {own[name].shape}, got {value.shape}")
            own[name][...] = value


def build_model(arch: str = "mlp", latent: int = 20, hidden=(512, 256), beta: float = 1.0,
                dtype=np.float32, seed: int | np.random.Generator = 0, kernels: str = "fast",
                spec: VAESpec | None = None, **options) -> VAE:
    """The project's model factory; ``torch_vae.build_model`` takes the same arguments.

    ``options``: the MLP's activation, batchnorm, dropout, likelihood, likelihood_variance
    (``numpy_vae.specs.mlp_spec``).  ``spec``: build exactly this architecture instead (a checkpoint's,
    say); then ``arch``, ``latent``, ``hidden`` and ``options`` are not used, and options are refused.
    Raises SpecError (a ValueError) naming the argument for an architecture that cannot be built.
    ``kernels`` (NumPy only): "fast" or "reference" (numpy_vae.interpret).
    """
    if spec is None:
        spec = specs.make_spec(arch, hidden=hidden, latent=latent, **options)
    elif options:
        raise SpecError(f"build_model(spec=...) builds the spec as it is; it takes no options ({sorted(options)})")
    if isinstance(spec, specs.HVAESpec):          # several stochastic layers (arch "burda2")
        return HVAE(spec, beta=beta, dtype=dtype, seed=seed, kernels=kernels)
    return VAE(spec, beta=beta, dtype=dtype, seed=seed, kernels=kernels)

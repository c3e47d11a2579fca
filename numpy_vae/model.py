"""The VAE in NumPy: a spec (``numpy_vae.specs``) interpreted into hand-written layers.

    encoder   x (B, 784) -> the spec's encoder layers -> h (B, H)
    head      h -> mu (B, L), logvar (B, L)          (fc_mu and fc_logvar, one matmul: nn/head.py)
    sample    z = mu + eps * exp(logvar / 2),  eps ~ N(0, I) passed in (B, L)
    decoder   z -> the spec's decoder layers -> logits (B, 784)
    loss      mean_B [ BernoulliNLL(logits, x) + beta * KL(N(mu, e^logvar) || N(0, I)) ]

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
from .inputs import InputError, check_count, check_images, check_latent, check_noise
from .nn.activations import ReLU, Sigmoid, Tanh
from .nn.container import Sequential
from .nn.conv import Conv2d, ConvTranspose2d
from .nn.head import GaussianHead
from .nn.linear import Linear
from .nn.losses import BernoulliNLL, GaussianKL
from .nn.reparameterize import Reparameterize
from .nn.reshape import Flatten, Unflatten
from .specs import INPUT_DIM, SpecError, VAESpec

__all__ = ["INPUT_DIM", "InputError", "VAE", "build_model"]

LIKELIHOODS = {"bernoulli": BernoulliNLL}


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
    layout, offset = {}, 0
    for name in order:
        size = math.prod(shapes[name])
        layout[name] = (offset, offset + size)
        offset += size
    return layout


class VAE:
    """A variational autoencoder built from a :class:`~numpy_vae.specs.VAESpec`; see the module docstring."""

    def __init__(self, spec: VAESpec, beta: float = 1.0, dtype=np.float32, seed: int | np.random.Generator = 0):
        if not isinstance(spec, VAESpec):
            raise SpecError(f"spec must be a numpy_vae.specs.VAESpec, got {type(spec).__name__}")
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            self.dtype = None
        if self.dtype not in (np.float32, np.float64):
            raise SpecError(f"dtype={dtype!r}: expected float32 or float64")
        self.spec, self.beta = spec, _check_beta(beta)
        self.latent, self.input_dim = spec.latent, spec.input_dim

        shapes = spec.parameter_shapes()
        layout = self.layout = flat_layout(spec)          # name -> (start, stop) in self.flat
        total = max(stop for _, stop in layout.values())
        self.flat = np.zeros(total, self.dtype)
        self.grad_flat = np.zeros(total, self.dtype)
        self.params = {n: self.flat[slice(*layout[n])].reshape(s) for n, s in shapes.items()}
        self.grads = {n: self.grad_flat[slice(*layout[n])].reshape(s) for n, s in shapes.items()}
        self._init_params(seed)

        self.encoder = Sequential(self._layers("encoder", spec.encoder))
        (w0, _), (_, w1) = layout["fc_mu.weight"], layout["fc_logvar.weight"]
        (b0, _), (_, b1) = layout["fc_mu.bias"], layout["fc_logvar.bias"]
        stacked = (2 * self.latent, spec.head_features)
        self.head = GaussianHead(self.flat[w0:w1].reshape(stacked), self.flat[b0:b1],
                                 self.grad_flat[w0:w1].reshape(stacked), self.grad_flat[b0:b1])
        self.decoder = Sequential(self._layers("decoder", spec.decoder))
        self.reparameterize = Reparameterize()
        self.likelihood = LIKELIHOODS[spec.likelihood]()
        self.kl = GaussianKL()
        self._backward = None          # the closures of the last forward

    def _layers(self, prefix: str, layer_specs) -> list:
        """The NumPy layers of a spec's encoder or decoder, their parameters views into the flat buffers."""
        layers = []
        for i, s in enumerate(layer_specs):
            w, b = (f"{prefix}.{i}.weight", f"{prefix}.{i}.bias")
            if isinstance(s, specs.Linear):
                layers.append(Linear(self.params[w], self.params[b], self.grads[w], self.grads[b]))
            elif isinstance(s, specs.Conv2d):
                layers.append(Conv2d(self.params[w], self.params[b], self.grads[w], self.grads[b], s.stride, s.padding))
            elif isinstance(s, specs.ConvTranspose2d):
                layers.append(ConvTranspose2d(self.params[w], self.params[b], self.grads[w], self.grads[b], s.stride,
                                              s.padding, s.output_padding))
            elif isinstance(s, specs.Flatten):
                layers.append(Flatten())
            elif isinstance(s, specs.Unflatten):
                layers.append(Unflatten(s.shape))
            elif isinstance(s, specs.ReLU):
                # In place where its input is a fresh output of the layer before, which nobody else holds.
                fresh = (specs.Linear, specs.Conv2d, specs.ConvTranspose2d)
                layers.append(ReLU(inplace=i > 0 and isinstance(layer_specs[i - 1], fresh)))
            elif isinstance(s, specs.Sigmoid):
                layers.append(Sigmoid())
            elif isinstance(s, specs.Tanh):
                layers.append(Tanh())
            else:
                raise SpecError(f"{prefix}.{i}: numpy_vae has no layer for {s!r}")
        return layers

    def _init_params(self, seed) -> None:
        """torch's default init for each layer: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        for prefix, layer in self.spec.modules():
            names = layer.param_shapes()
            if "weight" in names:
                bound = 1.0 / math.sqrt(layer.fan_in)
                for name in ("weight", "bias"):
                    param = self.params[f"{prefix}.{name}"]
                    param[...] = rng.uniform(-bound, bound, param.shape)

    @property
    def num_params(self) -> int:
        return self.flat.size

    # ----------------------------------------------------------------- checks
    def check_input(self, x, name: str = "x") -> np.ndarray:
        """x as a C-contiguous (B, input_dim) array of the model's dtype in [0, 1], or InputError saying why."""
        return check_images(x, self.input_dim, self.dtype, name)

    # ---------------------------------------------- inference: nothing is kept
    def encode(self, x) -> tuple[np.ndarray, np.ndarray]:
        """x (B, 784) -> mu (B, L), logvar (B, L)."""
        return self.head(self.encoder(self.check_input(x)))

    def decode(self, z, probs: bool = False) -> np.ndarray:
        """z (B, L) -> logits (B, 784), or pixel probabilities when ``probs``."""
        out = self.decoder(check_latent(z, self.latent, self.dtype))
        return self.likelihood.mean(out) if probs else out

    def reconstruct(self, x) -> np.ndarray:
        """Pixel probabilities decoded from the posterior mean: (B, 784)."""
        mu, _ = self.encode(x)
        return self.likelihood.mean(self.decoder(mu))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n digits decoded (as probabilities) from z ~ N(0, I): (n, 784)."""
        n = check_count(n)
        return self.likelihood.mean(self.decoder(rng.standard_normal((n, self.latent)).astype(self.dtype)))

    # ------------------------------------------------------------ training
    def loss(self, x, eps) -> tuple[float, float, float]:
        """(loss, recon, kl) batch means, keeping the backward closures: ``forward`` without the copies."""
        x = self.check_input(x)
        eps = check_noise(eps, x.shape[0], self.latent, self.dtype)
        return self._forward(x, eps)[:3]

    def _forward(self, x: np.ndarray, eps: np.ndarray):
        h, encoder_backward = self.encoder.forward(x)
        mu, logvar, head_backward = self.head.forward(h)
        z, reparameterize_backward = self.reparameterize.forward(mu, logvar, eps)
        logits, decoder_backward = self.decoder.forward(z)
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

    def forward(self, x, eps) -> dict[str, np.ndarray]:
        """Negative ELBO of a batch.

        x (B, 784) in [0, 1], eps (B, L) standard normal noise.  Returns ``loss``
        (batch mean of per-sample nll + beta * kl, in nats), ``recon`` and ``kl``
        (their batch means), and copies of ``logits`` (B, 784), ``mu``, ``logvar``,
        ``z`` (B, L): changing them changes nothing that ``backward`` uses.
        """
        x = self.check_input(x)
        eps = check_noise(eps, x.shape[0], self.latent, self.dtype)
        loss, recon, kl, logits, mu, logvar, z = self._forward(x, eps)
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
    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Copy arrays (NumPy or anything array-like, e.g. a torch state_dict's values) into the model."""
        missing = sorted(set(self.params) - set(params))
        unexpected = sorted(set(params) - set(self.params))
        if missing or unexpected:
            raise KeyError(f"parameter names do not match this model: missing {missing}, unexpected {unexpected}")
        for name, value in params.items():
            value = np.asarray(value)
            if value.shape != self.params[name].shape:
                raise ValueError(f"parameter {name}: expected shape {self.params[name].shape}, got {value.shape}")
            self.params[name][...] = value


def build_model(arch: str = "mlp", latent: int = 20, hidden=(512, 256), beta: float = 1.0,
                dtype=np.float32, seed: int | np.random.Generator = 0) -> VAE:
    """The project's model factory; ``torch_vae.build_model`` takes the same arguments.

    Raises SpecError (a ValueError) naming the argument for an architecture that cannot be built.
    """
    return VAE(specs.make_spec(arch, hidden=hidden, latent=latent), beta=beta, dtype=dtype, seed=seed)

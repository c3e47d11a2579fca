"""The MLP VAE in NumPy: forward, the negative ELBO, and its backward by hand.

Architecture (default ``hidden=(512, 256)``, ``latent=20``)::

    encoder   x (B, 784) -> Linear 784-512 -> ReLU -> Linear 512-256 -> ReLU -> h (B, 256)
    heads     h -> fc_mu 256-L -> mu (B, L);  h -> fc_logvar 256-L -> logvar (B, L)
    sample    z = mu + eps * exp(logvar / 2),  eps ~ N(0, I) passed in (B, L)
    decoder   z -> Linear L-256 -> ReLU -> Linear 256-512 -> ReLU -> Linear 512-784 -> logits (B, 784)
    loss      mean_B [ BernoulliNLL(logits, x) + beta * KL(N(mu, e^logvar) || N(0, I)) ]

Parameter names equal the keys of ``torch_vae``'s ``state_dict()`` (``encoder.0.weight``,
``fc_mu.bias``, ``decoder.4.weight``, ...), weights stored (out, in).

All parameters live in one flat array ``model.flat`` and ``model.params`` holds
views into it (gradients likewise in ``model.grad_flat`` / ``model.grads``), so an
optimizer updates the whole model in a few in-place passes over one array.
The two heads' weights sit next to each other in that buffer, so the layer
computing them is a single Linear 256-2L whose output is split into mu and logvar.
"""
from __future__ import annotations

import math

import numpy as np

from .layers import Linear, ReLU, sigmoid
from .losses import BernoulliNLL, GaussianKL
from .reparameterize import Reparameterize

INPUT_DIM = 784


class InputError(ValueError):
    """Raised at the model's public entry points for inputs it cannot use."""


def parameter_shapes(hidden=(512, 256), latent=20, input_dim=INPUT_DIM) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter, in ``torch_vae``'s ``state_dict()`` order."""
    shapes: dict[str, tuple[int, ...]] = {}
    sizes = [input_dim, *hidden]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes[f"encoder.{2 * i}.weight"] = (n_out, n_in)
        shapes[f"encoder.{2 * i}.bias"] = (n_out,)
    for head in ("fc_mu", "fc_logvar"):
        shapes[f"{head}.weight"] = (latent, sizes[-1])
        shapes[f"{head}.bias"] = (latent,)
    sizes = [latent, *reversed(hidden), input_dim]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes[f"decoder.{2 * i}.weight"] = (n_out, n_in)
        shapes[f"decoder.{2 * i}.bias"] = (n_out,)
    return shapes


def _flat_layout(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, int]]:
    """Name -> (start, stop) in the flat buffer; the heads' weights and biases adjacent."""
    order = [n for n in shapes if not n.startswith("fc_")]
    n_enc = sum(1 for n in shapes if n.startswith("encoder."))
    order[n_enc:n_enc] = ["fc_mu.weight", "fc_logvar.weight", "fc_mu.bias", "fc_logvar.bias"]
    layout, offset = {}, 0
    for name in order:
        size = math.prod(shapes[name])
        layout[name] = (offset, offset + size)
        offset += size
    return layout


class MLPVAE:
    """Variational autoencoder with MLP encoder and decoder; see the module docstring."""

    def __init__(self, latent: int = 20, hidden=(512, 256), beta: float = 1.0,
                 dtype=np.float32, seed: int | np.random.Generator = 0, input_dim: int = INPUT_DIM):
        if latent < 1 or not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"latent and every hidden size must be positive integers, got latent={latent}, hidden={hidden}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.latent, self.hidden, self.beta, self.input_dim = int(latent), tuple(int(h) for h in hidden), float(beta), input_dim
        self.config = {"arch": "mlp", "latent": self.latent, "hidden": list(self.hidden),
                       "beta": self.beta, "dtype": self.dtype.name}

        shapes = parameter_shapes(self.hidden, self.latent, input_dim)
        layout = self.layout = _flat_layout(shapes)   # name -> (start, stop) in self.flat
        total = max(stop for _, stop in layout.values())
        self.flat = np.zeros(total, self.dtype)
        self.grad_flat = np.zeros(total, self.dtype)
        self.params = {n: self.flat[slice(*layout[n])].reshape(s) for n, s in shapes.items()}
        self.grads = {n: self.grad_flat[slice(*layout[n])].reshape(s) for n, s in shapes.items()}
        self._init_params(seed)

        def linear(first_weight: str, first_bias: str, n_out: int) -> Linear:
            (w0, _), (b0, _) = layout[first_weight], layout[first_bias]
            n_in = shapes[first_weight][1]
            w, b = slice(w0, w0 + n_out * n_in), slice(b0, b0 + n_out)
            return Linear(self.flat[w].reshape(n_out, n_in), self.flat[b],
                          self.grad_flat[w].reshape(n_out, n_in), self.grad_flat[b])

        def stack(prefix: str) -> list:
            layers = []
            names = [n for n in shapes if n.startswith(prefix) and n.endswith(".weight")]
            for k, name in enumerate(names):
                layers.append(linear(name, name[:-len("weight")] + "bias", shapes[name][0]))
                layers.append(ReLU(inplace=True))   # its input is a fresh matmul output
            return layers

        self.encoder = stack("encoder.")
        # Both heads in one matmul: rows [0, L) are fc_mu, rows [L, 2L) are fc_logvar.
        self.heads = linear("fc_mu.weight", "fc_mu.bias", 2 * self.latent)
        self.decoder = stack("decoder.")[:-1]  # no ReLU after the last Linear: it outputs logits
        self.reparameterize = Reparameterize()
        self.nll = BernoulliNLL()
        self.kl = GaussianKL()
        self._batch = None

    def _init_params(self, seed) -> None:
        """torch.nn.Linear's default init: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        for name in self.params:
            if name.endswith(".weight"):
                bound = 1.0 / math.sqrt(self.params[name].shape[1])
                self.params[name][...] = rng.uniform(-bound, bound, self.params[name].shape)
                bias = self.params[name[:-len("weight")] + "bias"]
                bias[...] = rng.uniform(-bound, bound, bias.shape)

    @property
    def num_params(self) -> int:
        return self.flat.size

    # ----------------------------------------------------------------- checks
    def check_input(self, x, name: str = "x") -> np.ndarray:
        """Return x as a C-contiguous array of the model's dtype, or raise InputError saying why."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.input_dim or x.shape[0] == 0:
            raise InputError(f"{name} must have shape (batch, {self.input_dim}) with batch >= 1, got {x.shape}; "
                             f"flatten 28x28 images with x.reshape(len(x), -1)")
        if not np.issubdtype(x.dtype, np.number):
            raise InputError(f"{name} must be numeric, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=self.dtype)
        lo, hi = x.min(), x.max()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError(f"{name} contains NaN or infinite values; clean the data before calling the model")
        if lo < 0 or hi > 1:
            hint = "divide 8-bit pixel values by 255" if lo >= 0 and hi <= 255 else "rescale the pixels to [0, 1]"
            raise InputError(f"{name} must lie in [0, 1] for the Bernoulli likelihood, got values in [{lo:g}, {hi:g}]; "
                             f"{hint}")
        return x

    def _check_eps(self, eps, batch: int) -> np.ndarray:
        eps = np.asarray(eps)
        if eps.shape != (batch, self.latent):
            raise InputError(f"eps must have shape ({batch}, {self.latent}), got {eps.shape}; draw it with numpy_vae.draw_eps")
        eps = np.ascontiguousarray(eps, dtype=self.dtype)
        if not np.isfinite(eps).all():
            raise InputError("eps contains NaN or infinite values")
        return eps

    # ------------------------------------------------------------ the network
    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (B, 784) -> mu (B, L), logvar (B, L)."""
        h = x
        for layer in self.encoder:
            h = layer.forward(h)
        stats = self.heads.forward(h)
        return stats[:, :self.latent], stats[:, self.latent:]

    def decode(self, z, probs: bool = False) -> np.ndarray:
        """z (B, L) -> logits (B, 784), or pixel probabilities when ``probs``."""
        z = np.asarray(z)
        if z.ndim != 2 or z.shape[1] != self.latent or not np.issubdtype(z.dtype, np.number):
            raise InputError(f"z must be a numeric array of shape (batch, {self.latent}), got {z.dtype} {z.shape}")
        z = np.ascontiguousarray(z, dtype=self.dtype)
        if not np.isfinite(z).all():
            raise InputError("z contains NaN or infinite values")
        return self._decode(z, probs)

    def _decode(self, z: np.ndarray, probs: bool = False) -> np.ndarray:
        h = z
        for layer in self.decoder:
            h = layer.forward(h)
        return sigmoid(h) if probs else h

    def forward(self, x, eps) -> dict[str, np.ndarray]:
        """Negative ELBO of a batch.

        x (B, 784) in [0, 1], eps (B, L) standard normal noise.  Returns ``loss``
        (batch mean of per-sample nll + beta * kl, in nats), ``recon`` and ``kl``
        (their batch means), ``logits`` (B, 784), ``mu``, ``logvar``, ``z`` (B, L).
        """
        x = self.check_input(x)
        eps = self._check_eps(eps, x.shape[0])
        mu, logvar = self.encode(x)
        z = self.reparameterize.forward(mu, logvar, eps)
        logits = self._decode(z)
        recon, kl = self.nll.forward(logits, x), self.kl.forward(mu, logvar)
        self._batch = x.shape[0]
        return {"loss": (recon + self.beta * kl).mean(), "recon": recon.mean(), "kl": kl.mean(),
                "logits": logits, "mu": mu, "logvar": logvar, "z": z}

    def backward(self, need_input_grad: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Gradients of the last ``forward``'s loss: (grads by parameter name, dloss/dx (B, 784)).

        x reaches the loss twice, through the encoder and as the Bernoulli target;
        dx sums both.  Training passes ``need_input_grad=False`` to skip that work
        (it then returns None for dx).  The returned arrays are views into
        ``grad_flat``, overwritten by the next backward.
        """
        if self._batch is None:
            raise RuntimeError("backward() needs a forward() first")
        per_sample = np.full(self._batch, 1.0 / self._batch, self.dtype)      # d mean / d item
        dlogits, dx_target = self.nll.backward(per_sample, need_dx=need_input_grad)
        dz = dlogits
        for layer in reversed(self.decoder):
            dz = layer.backward(dz)
        dmu, dlogvar = self.reparameterize.backward(dz)
        dmu_kl, dlogvar_kl = self.kl.backward(self.beta * per_sample)
        dstats = np.concatenate([dmu + dmu_kl, dlogvar + dlogvar_kl], axis=1)
        dh = self.heads.backward(dstats)
        for i in range(len(self.encoder) - 1, 0, -1):
            dh = self.encoder[i].backward(dh)
        dx_encoder = self.encoder[0].backward(dh, need_dx=need_input_grad)
        return self.grads, (dx_encoder + dx_target if need_input_grad else None)

    # ------------------------------------------------------------ conveniences
    def reconstruct(self, x) -> np.ndarray:
        """Pixel probabilities decoded from the posterior mean: (B, 784)."""
        mu, _ = self.encode(self.check_input(x))
        return self._decode(mu, probs=True)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n digits decoded (as probabilities) from z ~ N(0, I): (n, 784)."""
        if int(n) != n or n < 1:
            raise InputError(f"n must be a positive integer, got {n!r}")
        return self._decode(rng.standard_normal((int(n), self.latent)).astype(self.dtype), probs=True)

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
                dtype=np.float32, seed: int | np.random.Generator = 0) -> MLPVAE:
    """The project's model factory; ``torch_vae.build_model`` takes the same arguments."""
    if arch != "mlp":
        raise ValueError(f"unknown arch {arch!r}; available: 'mlp'")
    return MLPVAE(latent=latent, hidden=hidden, beta=beta, dtype=dtype, seed=seed)

"""Architectures as data: one spec per VAE, read by two interpreters.

A :class:`VAESpec` lists the encoder's layers, the Gaussian head's latent size,
the decoder's layers and the likelihood.  ``numpy_vae.model`` builds its
hand-written layers from it and ``torch_vae.model`` builds ``torch.nn`` modules
from the very same spec, so the two can never disagree about an architecture.

Parameter names follow from the spec by construction: layer ``i`` of the encoder
is ``encoder.i`` (as in ``torch.nn.Sequential``), the head is ``fc_mu`` and
``fc_logvar``, layer ``i`` of the decoder is ``decoder.i``.  So ``numpy_vae``'s
``model.params`` keys are ``torch_vae``'s ``state_dict()`` keys, in the same order.

The default model, ``mlp_spec()``::

    encoder   Linear(784, 512), ReLU, Linear(512, 256), ReLU
    head      fc_mu Linear(256, 20), fc_logvar Linear(256, 20)
    decoder   Linear(20, 256), ReLU, Linear(256, 512), ReLU, Linear(512, 784)
    likelihood bernoulli (the decoder outputs logits)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from .nn.conv import as_pair, conv2d_size, conv_transpose2d_size

INPUT_DIM = 784
#: bernoulli: the decoder outputs logits; gaussian: it outputs the mean, with a fixed variance (the spec's).
LIKELIHOODS = ("bernoulli", "gaussian")
ACTIVATIONS = ("relu", "tanh")


class SpecError(ValueError):
    """An architecture that cannot be built; the message names the field and what it must be."""


def _positive_int(name: str, value) -> int:
    """``value`` as an int >= 1 (NumPy integers too), else SpecError: 2.7, "3" and True are refused."""
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{name}={value!r}: expected an integer >= 1")
    return value


# ------------------------------------------------------------------ the layers
@dataclass(frozen=True)
class Linear:
    """y = x W^T + b with W (out_features, in_features), as ``torch.nn.Linear``."""
    in_features: int
    out_features: int
    kind = "linear"

    def __post_init__(self):
        _positive_int("in_features", self.in_features)
        _positive_int("out_features", self.out_features)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}

    @property
    def fan_in(self) -> int:
        return self.in_features

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if shape != (self.in_features,):
            raise SpecError(f"Linear({self.in_features}, {self.out_features}) cannot take inputs of shape {shape}")
        return (self.out_features,)


def _check_conv_fields(layer, pairs: dict[str, int]) -> None:
    """Validate a conv spec's channels, and store each of ``pairs`` (field -> minimum) as an (h, w) pair."""
    _positive_int("in_channels", layer.in_channels)
    _positive_int("out_channels", layer.out_channels)
    for name, minimum in pairs.items():
        object.__setattr__(layer, name, _pair(name, getattr(layer, name), minimum))


def _pair(name: str, value, minimum: int) -> tuple[int, int]:
    """nn.conv's rule for an int or an (h, w) pair of ints >= minimum, refused as a SpecError."""
    try:
        return as_pair(name, value, minimum)
    except ValueError as e:
        raise SpecError(str(e)) from None


@dataclass(frozen=True)
class Conv2d:
    """Cross-correlation over (C, H, W) with W (out_channels, in_channels, kH, kW), as ``torch.nn.Conv2d``."""
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int] | int
    stride: tuple[int, int] | int = 1
    padding: tuple[int, int] | int = 0
    kind = "conv2d"

    def __post_init__(self):
        _check_conv_fields(self, {"kernel_size": 1, "stride": 1, "padding": 0})

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.out_channels, self.in_channels, *self.kernel_size), "bias": (self.out_channels,)}

    @property
    def fan_in(self) -> int:
        return self.in_channels * math.prod(self.kernel_size)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise SpecError(f"{self} cannot take inputs of shape {shape}: expected ({self.in_channels}, H, W)")
        size = conv2d_size(shape[1:], self.kernel_size, self.stride, self.padding)
        if min(size) < 1:
            raise SpecError(f"{self} makes an empty output from an input of shape {shape}")
        return (self.out_channels, *size)


@dataclass(frozen=True)
class ConvTranspose2d:
    """The input-gradient of a convolution, W (in_channels, out_channels, kH, kW), as ``torch.nn.ConvTranspose2d``."""
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int] | int
    stride: tuple[int, int] | int = 1
    padding: tuple[int, int] | int = 0
    output_padding: tuple[int, int] | int = 0
    kind = "conv_transpose2d"

    def __post_init__(self):
        _check_conv_fields(self, {"kernel_size": 1, "stride": 1, "padding": 0, "output_padding": 0})
        if any(op >= s for op, s in zip(self.output_padding, self.stride)):
            raise SpecError(f"output_padding={self.output_padding} must be smaller than stride={self.stride}")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.in_channels, self.out_channels, *self.kernel_size), "bias": (self.out_channels,)}

    @property
    def fan_in(self) -> int:
        """torch computes it from the weight's second axis: out_channels * kH * kW."""
        return self.out_channels * math.prod(self.kernel_size)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise SpecError(f"{self} cannot take inputs of shape {shape}: expected ({self.in_channels}, H, W)")
        size = conv_transpose2d_size(shape[1:], self.kernel_size, self.stride, self.padding,
                                            self.output_padding)
        if min(size) < 1:
            raise SpecError(f"{self} makes an empty output from an input of shape {shape}")
        return (self.out_channels, *size)


@dataclass(frozen=True)
class Flatten:
    """(C, H, W) -> (C H W,), as ``torch.nn.Flatten()``."""
    kind = "flatten"

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(shape),)


@dataclass(frozen=True)
class Unflatten:
    """(prod(shape),) -> shape, as ``torch.nn.Unflatten(1, shape)``."""
    shape: tuple[int, ...]
    kind = "unflatten"

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(_positive_int("Unflatten size", n) for n in self.shape))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if shape != (math.prod(self.shape),):
            raise SpecError(f"Unflatten{self.shape} cannot take inputs of shape {shape}")
        return self.shape


@dataclass(frozen=True)
class BatchNorm1d:
    """Per-feature normalization of (B, F), as ``torch.nn.BatchNorm1d(num_features, eps, momentum)``.

    Parameters weight (gamma, init 1) and bias (beta, init 0); buffers running_mean (init 0),
    running_var (init 1) and num_batches_tracked (int64, init 0), saved under these names.
    """
    num_features: int
    eps: float = 1e-5
    momentum: float = 0.1
    kind = "batchnorm1d"

    def __post_init__(self):
        _positive_int("num_features", self.num_features)
        for name, low, high in (("eps", 0.0, math.inf), ("momentum", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
                raise SpecError(f"BatchNorm1d {name}={value!r}: expected a number in ({low}, {high}]")

    def __repr__(self) -> str:
        return f"BatchNorm1d({self.num_features})"

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.num_features,), "bias": (self.num_features,)}

    def buffer_shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """name -> (shape, dtype); "float" is the model's dtype."""
        return {"running_mean": ((self.num_features,), "float"), "running_var": ((self.num_features,), "float"),
                "num_batches_tracked": ((), "int64")}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if shape != (self.num_features,):
            raise SpecError(f"BatchNorm1d({self.num_features}) cannot take inputs of shape {shape}")
        return shape


@dataclass(frozen=True)
class Dropout:
    """Zero each feature with probability p in training, scale the rest by 1/(1 - p); identity in evaluation.

    The keep-mask is an input (drawn from the run's ``dropout`` stream), as eps is.
    """
    p: float = 0.5
    kind = "dropout"

    def __post_init__(self):
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or not 0 <= self.p < 1:
            raise SpecError(f"Dropout p={self.p!r}: expected a probability in [0, 1)")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape


@dataclass(frozen=True)
class _Elementwise:
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape


@dataclass(frozen=True)
class ReLU(_Elementwise):
    kind = "relu"


@dataclass(frozen=True)
class Sigmoid(_Elementwise):
    kind = "sigmoid"


@dataclass(frozen=True)
class Tanh(_Elementwise):
    kind = "tanh"


LAYER_KINDS = {cls.kind: cls for cls in (Linear, Conv2d, ConvTranspose2d, Flatten, Unflatten, BatchNorm1d, Dropout,
                                         ReLU, Sigmoid, Tanh)}


def layer_to_json(layer) -> dict:
    return {"kind": layer.kind, **{f.name: (list(v) if isinstance(v := getattr(layer, f.name), tuple) else v)
                                   for f in fields(layer)}}


def layer_from_json(d: dict):
    try:
        kind = d["kind"]
        return LAYER_KINDS[kind](**{k: v for k, v in d.items() if k != "kind"})
    except (KeyError, TypeError) as e:
        raise SpecError(f"not a layer spec: {d!r} ({type(e).__name__}: {e}); kinds: {sorted(LAYER_KINDS)}") from None


# ------------------------------------------------------------------- the VAE
@dataclass(frozen=True)
class VAESpec:
    """A VAE: x -> encoder -> h -> (mu, logvar) = (fc_mu(h), fc_logvar(h)) -> z -> decoder -> likelihood.

    ``input_shape`` is one sample's shape; the encoder must end in a flat (H,)
    feature vector, and the decoder must map (latent,) back to ``input_shape``.
    ``likelihood_variance`` is the fixed variance of the gaussian likelihood (unused by bernoulli).
    """
    name: str
    encoder: tuple
    latent: int
    decoder: tuple
    likelihood: str = "bernoulli"
    input_shape: tuple[int, ...] = (INPUT_DIM,)
    likelihood_variance: float = 1.0
    kind = "vae"        # the top-level "kind" of its JSON form: see spec_from_json

    def __post_init__(self):
        _positive_int("latent", self.latent)
        if self.likelihood not in LIKELIHOODS:
            raise SpecError(f"likelihood={self.likelihood!r}: expected one of {LIKELIHOODS}")
        v = self.likelihood_variance
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not (math.isfinite(v) and v > 0):
            raise SpecError(f"likelihood_variance={v!r}: expected a finite number > 0 (the gaussian's fixed variance)")
        shape = self.input_shape
        for layer in self.encoder:
            shape = layer.output_shape(shape)
        if len(shape) != 1:
            raise SpecError(f"the encoder of {self.name!r} must end in a flat feature vector, got shape {shape}")
        shape = (self.latent,)
        for layer in self.decoder:
            shape = layer.output_shape(shape)
        if shape != tuple(self.input_shape):
            raise SpecError(f"the decoder of {self.name!r} outputs shape {shape}, not the input's {self.input_shape}")

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def head_features(self) -> int:
        """H, the size of the encoder's output that both heads read."""
        shape = self.input_shape
        for layer in self.encoder:
            shape = layer.output_shape(shape)
        return shape[0]

    @property
    def head(self) -> tuple[Linear, Linear]:
        """fc_mu and fc_logvar."""
        return Linear(self.head_features, self.latent), Linear(self.head_features, self.latent)

    def modules(self):
        """(prefix, layer spec) of every layer, in ``state_dict()`` order: encoder.i, fc_mu, fc_logvar, decoder.i."""
        yield from ((f"encoder.{i}", layer) for i, layer in enumerate(self.encoder))
        yield from zip(("fc_mu", "fc_logvar"), self.head)
        yield from ((f"decoder.{i}", layer) for i, layer in enumerate(self.decoder))

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter, in ``torch_vae``'s ``state_dict()`` order."""
        return {f"{prefix}.{name}": shape for prefix, layer in self.modules()
                for name, shape in layer.param_shapes().items()}

    def buffer_shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Name -> (shape, dtype) of every buffer (BatchNorm's running statistics); "float" is the model's dtype."""
        return {f"{prefix}.{name}": spec for prefix, layer in self.modules() if hasattr(layer, "buffer_shapes")
                for name, spec in layer.buffer_shapes().items()}

    def state_names(self) -> list[str]:
        """Every key of ``torch_vae``'s ``state_dict()`` in its order: each module's parameters, then its buffers."""
        names = []
        for prefix, layer in self.modules():
            names += [f"{prefix}.{n}" for n in layer.param_shapes()]
            names += [f"{prefix}.{n}" for n in getattr(layer, "buffer_shapes", dict)()]
        return names

    def dropout_layers(self) -> dict[str, float]:
        """Name (``encoder.3``) -> p of every Dropout layer with p > 0: the masks a training step needs."""
        return {prefix: layer.p for prefix, layer in self.modules() if isinstance(layer, Dropout) and layer.p > 0}

    def mask_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        """Dropout layer name -> the (batch, F) shape of the keep-mask a training step feeds it."""
        shapes = {}
        for prefix, part, shape in (("encoder", self.encoder, self.input_shape), ("decoder", self.decoder, (self.latent,))):
            for i, layer in enumerate(part):
                shape = layer.output_shape(shape)
                if isinstance(layer, Dropout) and layer.p > 0:
                    shapes[f"{prefix}.{i}"] = (batch, *shape)
        return shapes

    def has_batchnorm(self) -> bool:
        return any(isinstance(layer, BatchNorm1d) for _, layer in self.modules())

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.parameter_shapes().values())

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter and buffer, in ``state_dict()`` order: what a checkpoint holds."""
        shapes = {**self.parameter_shapes(), **{n: s for n, (s, _) in self.buffer_shapes().items()}}
        return {n: shapes[n] for n in self.state_names()}

    def summary(self) -> str:
        """The architecture in one line: ``mlp: 784 -> Linear(784, 200), Tanh(), ... -> z 50 -> ... -> bernoulli``."""
        shape = "x".join(map(str, self.input_shape))
        encoder = ", ".join(map(repr, self.encoder))
        decoder = ", ".join(map(repr, self.decoder))
        likelihood = self.likelihood if self.likelihood == "bernoulli" else \
            f"{self.likelihood} (variance {self.likelihood_variance:g})"
        return (f"{self.name}: {shape} -> {encoder} -> fc_mu, fc_logvar Linear({self.head_features}, {self.latent}) "
                f"-> z {self.latent} -> {decoder} -> {likelihood}; {self.num_params:,} parameters")

    def to_json(self) -> dict:
        return {"kind": self.kind, "name": self.name, "encoder": [layer_to_json(l) for l in self.encoder], "latent": self.latent,
                "decoder": [layer_to_json(l) for l in self.decoder], "likelihood": self.likelihood,
                "input_shape": list(self.input_shape), "likelihood_variance": self.likelihood_variance}

    @classmethod
    def from_json(cls, d: dict) -> "VAESpec":
        try:
            return cls(name=str(d["name"]), encoder=tuple(layer_from_json(l) for l in d["encoder"]),
                       latent=d["latent"], decoder=tuple(layer_from_json(l) for l in d["decoder"]),
                       likelihood=d.get("likelihood", "bernoulli"),
                       input_shape=tuple(d.get("input_shape", (INPUT_DIM,))),
                       likelihood_variance=d.get("likelihood_variance", 1.0))
        except (KeyError, TypeError) as e:
            raise SpecError(f"not a VAE spec ({type(e).__name__}: {e})") from None


# ----------------------------------------------- several stochastic layers
#: Layers a stack of stochastic layers may hold: per-row functions without running statistics or masks.
_PER_ROW_LAYERS = (Linear, ReLU, Sigmoid, Tanh)


def _check_net(where: str, layers, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape of ``layers`` on ``shape``; SpecError if a layer is not per-row or the shapes do not fit."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, _PER_ROW_LAYERS):
            raise SpecError(f"{where}.{i}: {layer!r} cannot be part of a stack of stochastic layers "
                            f"(Linear, ReLU, Sigmoid and Tanh can; BatchNorm1d and Dropout would couple the K samples)")
        shape = layer.output_shape(shape)
    return shape


@dataclass(frozen=True)
class StochasticLayer:
    """A diagonal Gaussian of ``latent`` dimensions conditioned on the layer's input h:

        a = net(h),   mu = a W_mu^T + b_mu,   logvar = a W_logvar^T + b_logvar,   N(mu, e^logvar)

    Its parameters are ``PREFIX.net.i.*`` (``net`` a torch.nn.Sequential), ``PREFIX.mu.*`` and
    ``PREFIX.logvar.*``.  ``net`` may be empty (the heads then read h itself).
    """
    net: tuple
    latent: int

    def __post_init__(self):
        object.__setattr__(self, "net", tuple(self.net))
        _positive_int("latent", self.latent)

    def features(self, where: str, in_features: int) -> int:
        """H, the width of net's output that both heads read, for an input of ``in_features``."""
        shape = _check_net(f"{where}.net", self.net, (in_features,))
        if len(shape) != 1:
            raise SpecError(f"{where}.net must end in a flat feature vector, got shape {shape}")
        return shape[0]

    def modules(self, prefix: str, in_features: int):
        """(name, layer spec) of net's layers and of the two heads, in ``state_dict()`` order."""
        h = self.features(prefix, in_features)
        yield from ((f"{prefix}.net.{i}", layer) for i, layer in enumerate(self.net))
        yield from ((f"{prefix}.{head}", Linear(h, self.latent)) for head in ("mu", "logvar"))

    def to_json(self) -> dict:
        return {"net": [layer_to_json(l) for l in self.net], "latent": self.latent}

    @classmethod
    def from_json(cls, d: dict) -> "StochasticLayer":
        return cls(net=tuple(layer_from_json(l) for l in d["net"]), latent=d["latent"])


@dataclass(frozen=True)
class HVAESpec:
    """A VAE with L stochastic layers h_1 ... h_L (Burda et al. 2015, section 5)::

        inference   q(h_1|x) q(h_2|h_1) ... q(h_L|h_{L-1})        ``encoder[l]`` is q(h_{l+1}|h_l), h_0 = x
        generative  p(h_L) = N(0, I),  p(h_l|h_{l+1}) for l < L,   ``decoder[l]`` is p(h_{l+1}|h_{l+2})
                    p(x|h_1): ``likelihood_net`` gives Bernoulli logits

    Parameter names (torch_vae's ``state_dict()`` keys): ``q1.net.0.weight``, ``q1.mu.weight``,
    ``q1.logvar.weight``, ... for the encoder's layers, ``p1....`` for the decoder's (p1 is p(h_1|h_2)),
    ``px.net.i.*`` for the likelihood; in that order.  The model is ``numpy_vae.hvae.HVAE``.
    """
    name: str
    encoder: tuple
    decoder: tuple
    likelihood_net: tuple
    input_shape: tuple[int, ...] = (INPUT_DIM,)
    likelihood: str = "bernoulli"
    kind = "hvae"

    def __post_init__(self):
        for field in ("encoder", "decoder", "likelihood_net", "input_shape"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        if self.likelihood != "bernoulli":
            raise SpecError(f"likelihood={self.likelihood!r}: a stack of stochastic layers has a bernoulli likelihood")
        if len(self.input_shape) != 1:
            raise SpecError(f"input_shape={self.input_shape}: expected a flat (D,) input")
        if not self.encoder or not all(isinstance(s, StochasticLayer) for s in self.encoder + self.decoder):
            raise SpecError("encoder and decoder must hold StochasticLayer specs, the encoder at least one")
        if len(self.decoder) != len(self.encoder) - 1:
            raise SpecError(f"{len(self.encoder)} stochastic layers need {len(self.encoder) - 1} conditional priors "
                            f"p(h_l|h_(l+1)) in the decoder, got {len(self.decoder)}")
        for l, p in enumerate(self.decoder):
            if p.latent != self.latents[l]:
                raise SpecError(f"p{l + 1} is a Gaussian over h_{l + 1}, which has {self.latents[l]} dimensions, "
                                f"not {p.latent}")
        list(self.modules())                       # every net fits its input
        shape = _check_net("px.net", self.likelihood_net, (self.latents[0],))
        if shape != self.input_shape:
            raise SpecError(f"px.net of {self.name!r} outputs shape {shape}, not the input's {self.input_shape}")

    @property
    def input_dim(self) -> int:
        return self.input_shape[0]

    @property
    def latents(self) -> tuple[int, ...]:
        """(d_1, ..., d_L), the sizes of h_1 ... h_L."""
        return tuple(q.latent for q in self.encoder)

    @property
    def latent(self) -> int:
        """d_L, the size of the top layer (the one with the N(0, I) prior)."""
        return self.latents[-1]

    @property
    def noise_dim(self) -> int:
        """d_1 + ... + d_L: one draw of the whole chain reads eps = [eps_1 | ... | eps_L] of this width."""
        return sum(self.latents)

    def stochastic_layers(self):
        """(prefix, StochasticLayer, in_features) of q1 ... qL, p1 ... p(L-1)."""
        ins = (self.input_dim, *self.latents[:-1])
        yield from ((f"q{l + 1}", q, n) for l, (q, n) in enumerate(zip(self.encoder, ins)))
        yield from ((f"p{l + 1}", p, self.latents[l + 1]) for l, p in enumerate(self.decoder))

    def modules(self):
        """(prefix, layer spec) of every layer, in ``state_dict()`` order: q1 ..., p1 ..., px.net.i."""
        for prefix, layer, n in self.stochastic_layers():
            yield from layer.modules(prefix, n)
        yield from ((f"px.net.{i}", layer) for i, layer in enumerate(self.likelihood_net))

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {f"{prefix}.{name}": shape for prefix, layer in self.modules()
                for name, shape in layer.param_shapes().items()}

    def buffer_shapes(self) -> dict:
        return {}

    def state_names(self) -> list[str]:
        return list(self.parameter_shapes())

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter (no buffers): what a checkpoint holds."""
        return self.parameter_shapes()

    def summary(self) -> str:
        """The architecture in one line: each stochastic layer's net and size, the likelihood's net."""
        def net(layers):
            return ", ".join(map(repr, layers)) or "identity"
        q = "; ".join(f"q{l + 1}: {net(s.net)} -> Gaussian {s.latent}" for l, s in enumerate(self.encoder))
        p = "; ".join(f"p{l + 1}: {net(s.net)} -> Gaussian {s.latent}" for l, s in enumerate(self.decoder))
        return (f"{self.name}: {self.input_dim} -> {q} | prior N(0, I) on h{len(self.encoder)}"
                + (f"; {p}" if p else "") + f" | px: {net(self.likelihood_net)} -> {self.likelihood}; "
                f"{self.num_params:,} parameters")

    def dropout_layers(self) -> dict[str, float]:
        return {}

    def mask_shapes(self, batch: int) -> dict:
        """No Dropout layer: no keep-masks (``VAESpec.mask_shapes``' contract)."""
        return {}

    def has_batchnorm(self) -> bool:
        return False

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.parameter_shapes().values())

    def to_json(self) -> dict:
        return {"kind": self.kind, "name": self.name, "encoder": [q.to_json() for q in self.encoder],
                "decoder": [p.to_json() for p in self.decoder],
                "likelihood_net": [layer_to_json(l) for l in self.likelihood_net],
                "input_shape": list(self.input_shape), "likelihood": self.likelihood}

    @classmethod
    def from_json(cls, d: dict) -> "HVAESpec":
        try:
            return cls(name=str(d["name"]), encoder=tuple(StochasticLayer.from_json(q) for q in d["encoder"]),
                       decoder=tuple(StochasticLayer.from_json(p) for p in d["decoder"]),
                       likelihood_net=tuple(layer_from_json(l) for l in d["likelihood_net"]),
                       input_shape=tuple(d.get("input_shape", (INPUT_DIM,))), likelihood=d.get("likelihood", "bernoulli"))
        except (KeyError, TypeError) as e:
            raise SpecError(f"not a spec of stochastic layers ({type(e).__name__}: {e})") from None


#: The spec classes by the top-level "kind" of their JSON form (a class with ``kind``, ``to_json``, ``from_json``).
SPEC_KINDS = {VAESpec.kind: VAESpec, HVAESpec.kind: HVAESpec}


def spec_from_json(d) -> VAESpec | HVAESpec:
    """The spec a JSON object describes (``spec.to_json()``), by its top-level "kind" (see ``SPEC_KINDS``).

    The one entry point from JSON to a spec: checkpoints carry their model's spec this way.  A missing
    "kind" is read as "vae" (the only kind there was before the field existed).
    """
    if not isinstance(d, dict):
        raise SpecError(f"not a model spec: expected a JSON object, got {type(d).__name__}")
    kind = d.get("kind", VAESpec.kind)
    if kind not in SPEC_KINDS:
        raise SpecError(f"model spec kind {kind!r} is unknown; known kinds: {sorted(SPEC_KINDS)}")
    return SPEC_KINDS[kind].from_json(d)


def _refuse_options(arch: str, options: dict, activation: str, what: str, hint: str = "") -> None:
    """SpecError for an MLP option that an architecture with fixed layers cannot take (anything but its
    ``activation``, bernoulli, no batchnorm or dropout)."""
    defaults = {"activation": activation, "batchnorm": False, "dropout": 0.0, "likelihood": "bernoulli",
                "likelihood_variance": 1.0}
    for name, value in options.items():
        if name not in defaults:
            raise SpecError(f"{arch}_spec() got an unknown option {name!r}")
        if value != defaults[name]:
            raise SpecError(f"{name}={value!r}: the {arch} architecture {what} ({name}={defaults[name]!r}){hint}")


def _tanh_net(sizes) -> tuple:
    """Linear, Tanh for each consecutive pair of ``sizes``."""
    return tuple(layer for n_in, n_out in zip(sizes[:-1], sizes[1:]) for layer in (Linear(n_in, n_out), Tanh()))


def burda2_spec(latent: int = 50, hidden=None, **options) -> HVAESpec:
    """Burda et al. (2015)'s two-stochastic-layer MNIST model (their appendix; ``hidden`` is ignored, as the
    sizes are the paper's, and ``latent`` sets h_2's size, 50 in the paper)::

        q(h1|x)   784-200-200 tanh, then a Gaussian of 100      q(h2|h1)  100-100-100 tanh, then a Gaussian of 50
        p(h2)     N(0, I)                                        p(h1|h2)  50-100-100 tanh, then a Gaussian of 100
        p(x|h1)   100-200-200 tanh, then Linear(200, 784): Bernoulli logits

    With latent 50 it has 521,084 parameters.  The MLP's ``options`` are refused unless they are tanh and
    bernoulli without batchnorm or dropout (the paper's).
    """
    latent = _positive_int("latent", latent)
    _refuse_options("burda2", options, "tanh", "is the paper's")
    return HVAESpec(name="burda2",
                    encoder=(StochasticLayer(_tanh_net((INPUT_DIM, 200, 200)), 100),
                             StochasticLayer(_tanh_net((100, 100, 100)), latent)),
                    decoder=(StochasticLayer(_tanh_net((latent, 100, 100)), 100),),
                    likelihood_net=(*_tanh_net((100, 200, 200)), Linear(200, INPUT_DIM)))


# ------------------------------------------------------------ the architectures
def _hidden_block(n_in: int, n_out: int, activation: str, batchnorm: bool, dropout: float) -> list:
    """Linear, then BatchNorm1d (optional), the activation, Dropout (optional): one hidden layer."""
    act = {"relu": ReLU, "tanh": Tanh}[activation]()
    return [Linear(n_in, n_out), *([BatchNorm1d(n_out)] if batchnorm else []), act,
            *([Dropout(dropout)] if dropout else [])]


def check_mlp_options(activation: str = "relu", batchnorm: bool = False, dropout: float = 0.0,
                      likelihood: str = "bernoulli", likelihood_variance: float = 1.0) -> None:
    """SpecError naming the option that an MLP spec cannot take."""
    if activation not in ACTIVATIONS:
        raise SpecError(f"activation={activation!r}: expected one of {ACTIVATIONS}")
    if not isinstance(batchnorm, (bool, np.bool_)):
        raise SpecError(f"batchnorm={batchnorm!r}: expected True or False")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise SpecError(f"dropout={dropout!r}: expected a probability in [0, 1)")
    if likelihood not in LIKELIHOODS:
        raise SpecError(f"likelihood={likelihood!r}: expected one of {LIKELIHOODS}")


def mlp_spec(hidden=(512, 256), latent: int = 20, input_dim: int = INPUT_DIM, activation: str = "relu",
             batchnorm: bool = False, dropout: float = 0.0, likelihood: str = "bernoulli",
             likelihood_variance: float = 1.0) -> VAESpec:
    """The MLP VAE: per hidden size Linear, [BatchNorm1d], activation, [Dropout], mirrored in the decoder.

    The decoder's last Linear gives the Bernoulli logits; with ``likelihood="gaussian"`` a
    Sigmoid follows it, and its output is the Gaussian's mean (fixed ``likelihood_variance``).
    """
    if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
        raise SpecError(f"hidden={hidden!r}: expected a sequence of integers >= 1, such as (512, 256)")
    hidden = tuple(_positive_int("hidden size", h) for h in hidden)
    if not hidden:
        raise SpecError("hidden=(): expected at least one hidden size, such as (512, 256)")
    latent = _positive_int("latent", latent)
    check_mlp_options(activation, batchnorm, dropout, likelihood, likelihood_variance)
    block = dict(activation=activation, batchnorm=bool(batchnorm), dropout=float(dropout))
    sizes = [input_dim, *hidden]
    encoder = [layer for n_in, n_out in zip(sizes[:-1], sizes[1:]) for layer in _hidden_block(n_in, n_out, **block)]
    sizes = [latent, *reversed(hidden)]
    decoder = [layer for n_in, n_out in zip(sizes[:-1], sizes[1:]) for layer in _hidden_block(n_in, n_out, **block)]
    decoder.append(Linear(sizes[-1], input_dim))
    if likelihood == "gaussian":
        decoder.append(Sigmoid())
    return VAESpec(name="mlp", encoder=tuple(encoder), latent=latent, decoder=tuple(decoder),
                   likelihood=likelihood, input_shape=(input_dim,), likelihood_variance=likelihood_variance)


def conv_spec(latent: int = 20, hidden=None, **options) -> VAESpec:
    """The convolutional VAE (``hidden`` is ignored: its sizes are fixed; so are its layers, so the MLP's
    ``options`` are refused unless they are the defaults, relu and bernoulli without batchnorm or dropout)::

        encoder  1x28x28 -> Conv2d(1, 32, 4, 2, 1) -> ReLU -> 32x14x14 -> Conv2d(32, 64, 4, 2, 1) -> ReLU
                 -> 64x7x7 -> Flatten -> 3136
        decoder  Linear(L, 3136) -> ReLU -> Unflatten(64, 7, 7) -> ConvTranspose2d(64, 32, 4, 2, 1) -> ReLU
                 -> 32x14x14 -> ConvTranspose2d(32, 1, 4, 2, 1) -> 1x28x28 logits -> Flatten -> 784
    """
    latent = _positive_int("latent", latent)
    _refuse_options("conv", options, "relu", "has fixed layers", "; use --arch mlp for it")
    encoder = (Unflatten((1, 28, 28)), Conv2d(1, 32, 4, 2, 1), ReLU(), Conv2d(32, 64, 4, 2, 1), ReLU(), Flatten())
    decoder = (Linear(latent, 64 * 7 * 7), ReLU(), Unflatten((64, 7, 7)), ConvTranspose2d(64, 32, 4, 2, 1), ReLU(),
               ConvTranspose2d(32, 1, 4, 2, 1), Flatten())
    return VAESpec(name="conv", encoder=encoder, latent=latent, decoder=decoder, input_shape=(INPUT_DIM,))


ARCHITECTURES = {"mlp": mlp_spec, "conv": conv_spec, "burda2": burda2_spec}


def make_spec(arch: str = "mlp", **kwargs) -> VAESpec:
    """The spec of architecture ``arch`` (see ``ARCHITECTURES``) with its size arguments."""
    if arch not in ARCHITECTURES:
        raise SpecError(f"arch={arch!r}: unknown architecture; available: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)


def parameter_shapes(hidden=(512, 256), latent: int = 20, input_dim: int = INPUT_DIM) -> dict[str, tuple[int, ...]]:
    """The MLP's parameter shapes (``mlp_spec(...).parameter_shapes()``), in ``state_dict()`` order."""
    return mlp_spec(hidden, latent, input_dim).parameter_shapes()

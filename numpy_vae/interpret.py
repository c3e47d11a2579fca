"""Specs into NumPy layers: the interpreter both models share (``numpy_vae.model.VAE``, ``numpy_vae.hvae.HVAE``).

``interpret_layers`` builds the hand-written layers of a list of layer specs on views into a model's
flat parameter and gradient buffers; ``init_params`` gives them torch's default initialization.
``kernels`` picks the layers' bodies: "fast", numpy_vae.kernels' tuned Linear and convolutions (what
training runs by default), or "reference", numpy_vae.nn's own (see ``KERNELS``).
"""
from __future__ import annotations

import math

import numpy as np

from . import specs
from .nn.activations import ReLU, Sigmoid, Tanh
from .nn.batchnorm import BatchNorm1d
from .kernels.conv import FastConv2d, FastConvTranspose2d
from .kernels.linear import FastLinear
from .nn.conv import Conv2d, ConvTranspose2d
from .nn.dropout import Dropout
from .nn.linear import Linear
from .nn.reshape import Flatten, Unflatten
from .specs import SpecError

__all__ = ["KERNELS", "check_kernels", "flat_buffers", "init_params", "interpret_layers", "layer_classes",
           "model_dtype", "pack_layout"]

#: ``kernels=``: "fast", numpy_vae.kernels' tuned layers (the default), or "reference", numpy_vae.nn's
KERNELS = ("fast", "reference")


def check_kernels(kernels) -> str:
    """``kernels`` if it is one of KERNELS, else SpecError."""
    if kernels not in KERNELS:
        raise SpecError(f"kernels={kernels!r}: expected one of {KERNELS}")
    return kernels


def layer_classes(kernels: str) -> tuple:
    """(Linear, Conv2d, ConvTranspose2d) of ``kernels``: numpy_vae.kernels' or numpy_vae.nn's."""
    if check_kernels(kernels) == "fast":
        return FastLinear, FastConv2d, FastConvTranspose2d
    return Linear, Conv2d, ConvTranspose2d


def model_dtype(dtype) -> np.dtype:
    """float32 or float64 as a NumPy dtype, else SpecError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.float32, np.float64):
        raise SpecError(f"dtype={dtype!r}: expected float32 or float64")
    return dt


def pack_layout(order: list[str], shapes: dict) -> dict[str, tuple[int, int]]:
    """Name -> (start, stop) of each parameter in a flat buffer, packed one after another in ``order``."""
    layout, offset = {}, 0
    for name in order:
        size = math.prod(shapes[name])
        layout[name] = (offset, offset + size)
        offset += size
    return layout


def flat_buffers(shapes: dict, layout: dict, dtype):
    """(flat, grad_flat, params, grads): the zeroed parameter and gradient buffers and, by name, in ``shapes``'
    order, each parameter's view into them."""
    total = max(stop for _, stop in layout.values())
    flat, grad_flat = np.zeros(total, dtype), np.zeros(total, dtype)
    params = {n: flat[slice(*layout[n])].reshape(s) for n, s in shapes.items()}
    grads = {n: grad_flat[slice(*layout[n])].reshape(s) for n, s in shapes.items()}
    return flat, grad_flat, params, grads


def interpret_layers(prefix: str, layer_specs, params: dict, grads: dict, buffers: dict,
                     kernels: str = "fast") -> list:
    """The NumPy layers of ``layer_specs`` (layer ``i`` named ``prefix.i``), their parameters the arrays
    ``params[prefix.i.weight]`` ... (views into a model's flat buffer), their gradients likewise."""
    linear, conv, conv_t = layer_classes(kernels)
    layers = []
    for i, s in enumerate(layer_specs):
        w, b = (f"{prefix}.{i}.weight", f"{prefix}.{i}.bias")
        if isinstance(s, specs.Linear):
            layers.append(linear(params[w], params[b], grads[w], grads[b]))
        elif isinstance(s, specs.Conv2d):
            layers.append(conv(params[w], params[b], grads[w], grads[b], s.stride, s.padding))
        elif isinstance(s, specs.ConvTranspose2d):
            layers.append(conv_t(params[w], params[b], grads[w], grads[b], s.stride, s.padding, s.output_padding))
        elif isinstance(s, specs.Flatten):
            layers.append(Flatten())
        elif isinstance(s, specs.Unflatten):
            layers.append(Unflatten(s.shape))
        elif isinstance(s, specs.BatchNorm1d):
            p = f"{prefix}.{i}"
            layers.append(BatchNorm1d(params[w], params[b], grads[w], grads[b],
                                      buffers[f"{p}.running_mean"], buffers[f"{p}.running_var"],
                                      buffers[f"{p}.num_batches_tracked"], s.eps, s.momentum))
        elif isinstance(s, specs.Dropout):
            layers.append(Dropout(s.p))
        elif isinstance(s, specs.ReLU):
            # In place where its input is a fresh output of the layer before, which nobody else holds.
            fresh = (specs.Linear, specs.Conv2d, specs.ConvTranspose2d, specs.BatchNorm1d)
            layers.append(ReLU(inplace=i > 0 and isinstance(layer_specs[i - 1], fresh)))
        elif isinstance(s, specs.Sigmoid):
            layers.append(Sigmoid())
        elif isinstance(s, specs.Tanh):
            layers.append(Tanh())
        else:
            raise SpecError(f"{prefix}.{i}: numpy_vae has no layer for {s!r}")
    return layers


def init_params(spec, params: dict, seed: int | np.random.Generator) -> None:
    """torch's default init for each layer of ``spec.modules()``, in that order: weight and bias
    ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BatchNorm's weight 1 and bias 0 (no draw)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    for prefix, layer in spec.modules():
        names = layer.param_shapes()
        if isinstance(layer, specs.BatchNorm1d):
            params[f"{prefix}.weight"][...] = 1
            params[f"{prefix}.bias"][...] = 0
        elif "weight" in names:
            bound = 1.0 / math.sqrt(layer.fan_in)
            for name in ("weight", "bias"):
                param = params[f"{prefix}.{name}"]
                param[...] = rng.uniform(-bound, bound, param.shape)

"""Weights between the two implementations, either way, without a mapping table.

``numpy_vae``'s ``model.params`` keys *are* ``torch_vae``'s ``state_dict()`` keys and
both store Linear weights (out, in), so a conversion is a copy per key.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def to_torch(params: dict[str, np.ndarray], module: nn.Module) -> nn.Module:
    """Copy NumPy arrays (name -> array of the parameter's shape) into ``module``, strictly.

    Every parameter of the module must be given and nothing else; values are
    cast to the module's dtype and moved to its device.  Returns the module.
    Raises KeyError for missing/unexpected names, ValueError for a wrong shape
    (as ``numpy_vae``'s ``load_params`` does).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(params))
    unexpected = sorted(set(params) - set(own))
    if missing or unexpected:
        raise KeyError(f"parameter names do not match this model: missing {missing}, unexpected {unexpected}")
    tensors = {}
    for name, value in params.items():
        value = np.asarray(value)
        if tuple(value.shape) != tuple(own[name].shape):
            raise ValueError(f"parameter {name}: expected shape {tuple(own[name].shape)}, got {value.shape}")
        tensors[name] = torch.from_numpy(np.ascontiguousarray(value))
    module.load_state_dict(tensors, strict=True)
    return module


def to_numpy(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's parameters as fresh NumPy arrays (name -> array), in ``state_dict()`` order."""
    return {name: t.detach().cpu().numpy().copy() for name, t in module.state_dict().items()}

"""Presets: named training configurations, the TrainConfig fields each sets (explicit options override them).

``vae train --preset NAME``, ``vae sweep --configs A,B`` and ``vae parity --preset NAME`` read them
here, so the CLI and torch_vae share one list; ``linear-W-L`` names any one-hidden-layer VAE.
"""
from __future__ import annotations

import re

#: Named starting points; explicit options override them.  Also ``linear-W-L``: see :func:`check_preset`.
PRESETS = {
    "default": {},                                   # the standard run: TrainConfig's defaults
    "quick": {"epochs": 1, "train_limit": 5000},     # a fast smoke run, about a minute on a laptop CPU
    "mlp": {"arch": "mlp", "hidden": (512, 256), "latent": 20},   # the default model, 1,082,680 parameters
    "mlp-400": {"arch": "mlp", "hidden": (400,), "latent": 20},   # the PyTorch example's 784-400-20, 652,824
    "conv": {"arch": "conv", "latent": 20},                       # the convolutional VAE, 258,025
    # 784-256-128 with BatchNorm1d, ReLU, Dropout(0.2) after each hidden layer, a 2-D latent: 470,804
    "mlp-bn": {"arch": "mlp", "hidden": (256, 128), "latent": 2, "batchnorm": True, "dropout": 0.2},
    # 784-256-64-10, decoder 10-64-256-784 + sigmoid, Gaussian likelihood with variance 1/2
    # (so its data term is the summed squared error): 437,540
    "mse": {"arch": "mlp", "hidden": (256, 64), "latent": 10, "likelihood": "gaussian", "likelihood_variance": 0.5},
    # Burda et al. (2015)'s one-stochastic-layer MNIST model and schedule: 784-200-200-50 tanh, dynamically
    # binarized data, batch 20, Adam eps 1e-4, lr 1e-3 * 10^(-i/7) for 3^i epochs, 3,280 epochs: 425,284
    "burda": {"arch": "mlp", "hidden": (200, 200), "latent": 50, "activation": "tanh", "binarize": "dynamic",
              "batch_size": 20, "lr": 1e-3, "lr_schedule": "burda", "adam_eps": 1e-4, "epochs": 3280},
    # Burda et al.'s two-stochastic-layer model (numpy_vae.specs.burda2_spec: h1 of 100, h2 of 50), the same
    # data, optimizer and schedule; trains log w of the whole chain (k=1, or --objective iwae --samples K): 521,084
    "burda2": {"arch": "burda2", "latent": 50, "hidden": (200, 200), "activation": "tanh", "binarize": "dynamic",
               "batch_size": 20, "lr": 1e-3, "lr_schedule": "burda", "adam_eps": 1e-4, "epochs": 3280},
}
LINEAR_PRESET = re.compile(r"linear-([1-9][0-9]*)-([1-9][0-9]*)")


class PresetError(ValueError):
    """An unknown preset name; the message lists the known ones."""


def check_preset(text: str) -> str:
    """A name of PRESETS, or linear-W-L: one hidden layer of width W and a latent of L (LinearVAE)."""
    if text in PRESETS or LINEAR_PRESET.fullmatch(text):
        return text
    raise PresetError(f"invalid choice: {text!r} (choose from {', '.join(sorted(PRESETS))}, or "
                      f"linear-W-L: one hidden layer of width W, latent L, e.g. linear-128-16)")


def preset_values(name: str) -> dict:
    """The TrainConfig fields a preset sets."""
    match = LINEAR_PRESET.fullmatch(name)
    if match:
        return {"arch": "mlp", "hidden": (int(match[1]),), "latent": int(match[2])}
    return PRESETS[name]

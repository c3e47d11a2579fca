"""Named random streams: every random draw of the project comes from one of these Generators.

Each stream is a ``numpy.random.Generator`` seeded by the run's seed and a fixed
stream number, so two streams never share draws, and the noise both backends
see (the batch order, eps, the evaluation noise) is defined once, here.

    shuffle_stream(seed)        the permutation of the training images, one per epoch
    noise_stream(seed)          eps of every training step, in order
    eval_noise_stream(seed)     eps of the test-set evaluation after every epoch (same draw each time)
    iwae_stream(seed, i)        the K importance samples of test image i (``vae evaluate``)
    report_stream(seed, part)   the report's draws: "samples", "interpolations", "tsne", "class_samples"
    synthetic_stream(seed)      stand-in images where MNIST is absent (``vae parity``)
    dropout_stream(seed)        the Dropout keep-masks of every training step, in order
    binarize_stream(seed)       dynamic binarization: a fresh Bernoulli draw of every training batch
    static_binarize_stream(seed)  static binarization: the one draw of the training set
    heldout_binarize_stream()   the fixed binarization of the test set (the same for every run and seed)
    live_stream(seed, part, *key)  the live page's and TensorBoard's draws: "samples", "generate", "tensorboard"
"""
from __future__ import annotations

import numpy as np

# Stream numbers.  IWAE and SYNTHETIC share 5 but never a draw: [seed, 5, i] and [seed, 5] are different seeds.
SHUFFLE, NOISE, EVAL_NOISE, IWAE, SYNTHETIC = 1, 2, 3, 5, 5
DROPOUT, BINARIZE, STATIC_BINARIZE, HELDOUT_BINARIZE = 6, 7, 8, 9
REPORT_PARTS = {"samples": 40, "interpolations": 41, "tsne": 42, "class_samples": 43}


def shuffle_stream(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, SHUFFLE])


def noise_stream(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, NOISE])


def eval_noise_stream(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, EVAL_NOISE])


def iwae_stream(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, IWAE, index])


def report_stream(seed: int, part: str) -> np.random.Generator:
    return np.random.default_rng([seed, REPORT_PARTS[part]])


def synthetic_stream(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, SYNTHETIC])


def dropout_stream(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, DROPOUT])


def binarize_stream(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, BINARIZE])


def static_binarize_stream(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, STATIC_BINARIZE])


def heldout_binarize_stream() -> np.random.Generator:
    """Not seeded by the run: every run, and `vae evaluate`, sees the same binarized test set."""
    return np.random.default_rng([0, HELDOUT_BINARIZE])


def binarize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A Bernoulli draw of every pixel: 1 with probability x (grey levels in [0, 1]), else 0; same shape and dtype."""
    return (rng.random(x.shape, dtype=np.float32) < x).astype(x.dtype)


def draw_masks(spec, rng: np.random.Generator, batch: int, dtype=np.float32) -> dict[str, np.ndarray]:
    """Keep-masks for every Dropout layer of ``spec`` (a VAESpec), in layer order: 1 with probability 1 - p."""
    from .nn.dropout import draw_dropout_mask
    p = spec.dropout_layers()
    return {name: draw_dropout_mask(rng, shape, p[name], dtype) for name, shape in spec.mask_shapes(batch).items()}


def draw_eps(rng: np.random.Generator, batch: int, latent: int, dtype=np.float32) -> np.ndarray:
    """Standard normal noise (batch, latent) from an explicit Generator, to feed any backend."""
    return rng.standard_normal((batch, latent), dtype=np.dtype(dtype).type)


# The live views (appended): ``vae serve``'s page and ``vae train --tensorboard``'s images.
LIVE_PARTS = {"samples": 50, "generate": 51, "tensorboard": 52}


def live_stream(seed: int, part: str, *key: int) -> np.random.Generator:
    """The live views' draws: "samples" (the page's prior samples), "generate" (the page's "generate digit";
    ``key`` is the request's seed), "tensorboard" (the prior samples logged each epoch)."""
    return np.random.default_rng([seed, LIVE_PARTS[part], *key])

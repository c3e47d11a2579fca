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
"""
from __future__ import annotations

import numpy as np

# Stream numbers.  IWAE and SYNTHETIC share 5 but never a draw: [seed, 5, i] and [seed, 5] are different seeds.
SHUFFLE, NOISE, EVAL_NOISE, IWAE, SYNTHETIC = 1, 2, 3, 5, 5
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


def draw_eps(rng: np.random.Generator, batch: int, latent: int, dtype=np.float32) -> np.ndarray:
    """Standard normal noise (batch, latent) from an explicit Generator, to feed any backend."""
    return rng.standard_normal((batch, latent), dtype=np.dtype(dtype).type)

"""What a training backend is: the interface the loop, the report and ``vae evaluate`` drive.

Everything crosses it as NumPy arrays, so the batches and the noise are drawn
once, in NumPy, and both backends see the same ones.  ``NumpyBackend`` and
``torch_vae.backend.TorchBackend`` implement it; :class:`Backend` states it as a
``typing.Protocol`` (``isinstance`` checks the methods are there).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


class NonFiniteError(FloatingPointError):
    """The loss or a gradient became NaN or infinite."""


def clip_coefficient(total_norm: float, max_norm: float) -> float:
    """torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (total_norm + 1e-6))."""
    return min(1.0, max_norm / (total_norm + 1e-6))


def limit_threads(threads: int | None):
    """Cap the BLAS and OpenMP thread pools of this process at ``threads`` (None: leave them); returns the
    threadpoolctl limiter, which keeps the cap until it is released or the process ends."""
    if threads is None:
        return None
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=int(threads))


@runtime_checkable
class Backend(Protocol):
    """A model and its optimizer.  x (B, 784) in [0, 1], eps and z (B, L), all NumPy."""

    name: str
    dtype: np.dtype
    spec: object                                 # the model's numpy_vae.specs spec (checkpoints store it)
    param_shapes: dict[str, tuple[int, ...]]     # the parameters, state_dict() order
    state_shapes: dict[str, tuple[int, ...]]     # parameters and buffers (BatchNorm's statistics), state_dict() order

    def draw_masks(self, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray] | None:
        """Dropout keep-masks for one step (layer name -> (B, F) of 0s and 1s), None without Dropout."""

    def train_step(self, x: np.ndarray, eps: np.ndarray, masks=None) -> tuple[float, float, float]:
        """One optimizer step in training mode; (loss, recon, kl) of the batch before it.  NonFiniteError on NaN/inf."""

    def set_lr(self, lr: float) -> None: ...

    def set_beta(self, beta: float) -> None: ...

    def evaluate(self, x: np.ndarray, eps: np.ndarray) -> tuple[float, float, float]:
        """(loss, recon, kl) batch means in evaluation mode, no update."""

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mu (B, L), logvar (B, L)."""

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Pixel probabilities (B, 784)."""

    def decode_logits(self, z: np.ndarray) -> np.ndarray:
        """The decoder's output (B, 784): Bernoulli logits, or the gaussian's mean."""

    def get_params(self) -> dict[str, np.ndarray]:
        """Fresh copies of parameters and buffers, named as state_dict() keys."""

    def set_params(self, params: dict[str, np.ndarray]) -> None: ...

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """step, and each moment flattened per parameter and concatenated in state_dict() order."""

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None: ...

"""SGD and Adam, written out as torch.optim computes them: the reference.

Both update one parameter array in place (the model keeps every parameter in one flat
array, ``model.flat``, and every gradient in another, ``model.grad_flat``).  This is the
form to read; ``numpy_vae.kernels.adam.FastAdam`` is the tuned one that training uses by
default, proven equal to this one by tests/test_kernels.py.

Derivation: docs/gradients.md#adam
"""
from __future__ import annotations

import math

import numpy as np


def check_adam_hyperparameters(params: np.ndarray, lr, betas, eps, weight_decay) -> None:
    """ValueError naming the first hyperparameter Adam cannot use (both Adams call this)."""
    if not 0 < eps < math.inf:
        raise ValueError(f"Adam: eps must be a finite number > 0, got eps={eps} (with eps = 0, a coordinate "
                         f"whose gradient has always been 0 has m = v = 0 and its update divides 0 by 0)")
    if not lr >= 0 or not weight_decay >= 0 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"Adam: need lr >= 0, weight_decay >= 0 and 0 <= betas < 1; "
                         f"got lr={lr}, betas={betas}, weight_decay={weight_decay}")
    if params.ndim != 1 or not params.flags.c_contiguous or params.dtype.kind != "f":
        raise ValueError("Adam works on one flat contiguous floating-point buffer (model.flat)")


def check_adam_state(state: dict[str, np.ndarray], shape) -> None:
    """ValueError unless ``state``'s moments have the parameters' ``shape`` (both Adams' load_state_dict)."""
    for key in ("exp_avg", "exp_avg_sq"):
        if np.shape(state[key]) != shape:
            raise ValueError(f"Adam state {key}: expected shape {shape}, got {np.shape(state[key])}")


class SGD:
    """p <- p - lr * (g + weight_decay * p), optionally with momentum, as torch.optim.SGD."""

    def __init__(self, params: np.ndarray, lr: float = 1e-2, momentum: float = 0.0, weight_decay: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        self.params, self.lr, self.momentum, self.weight_decay = params, lr, momentum, weight_decay
        self.buf = None
        self.step_count = 0

    def step(self, grad: np.ndarray) -> None:
        g = grad + self.weight_decay * self.params if self.weight_decay else grad
        if self.momentum:
            # b <- momentum * b + g   (b = g on the first step, as torch does)
            self.buf = g.copy() if self.buf is None else np.add(self.momentum * self.buf, g, out=self.buf)
            g = self.buf
        self.params -= self.lr * g
        self.step_count += 1

    def state_dict(self) -> dict[str, np.ndarray]:
        """A snapshot: copies, which later steps leave as they were."""
        state = {"step": np.array(self.step_count, np.int64)}
        if self.buf is not None:
            state["momentum_buffer"] = self.buf.copy()
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.step_count = int(state["step"])
        self.buf = np.array(state["momentum_buffer"], self.params.dtype) if "momentum_buffer" in state else None


class Adam:
    """torch.optim.Adam (amsgrad=False, maximize=False) on one flat parameter array, updated in place.

    ``exp_avg`` (m) and ``exp_avg_sq`` (v) are torch's two moment arrays, plain attributes;
    ``step_count`` is torch's ``step``.  A step with gradient g (t counts from 1):

        g <- g + weight_decay p                                       (L2 decay, into the gradient)
        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g g
        p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    eps is added after the square root and after the division by sqrt(1 - b2^t), as torch
    does.  The learning rate may change between steps (``lr`` is read at every step).
    """

    def __init__(self, params: np.ndarray, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        check_adam_hyperparameters(params, lr, betas, eps, weight_decay)
        self.params, self.lr, self.betas, self.eps, self.weight_decay = params, lr, tuple(betas), eps, weight_decay
        self.exp_avg = np.zeros_like(params)
        self.exp_avg_sq = np.zeros_like(params)
        self.step_count = 0

    def step(self, grad: np.ndarray) -> None:
        """One update with ``grad`` (same shape as params; not modified)."""
        if grad.shape != self.params.shape:
            raise ValueError(f"Adam: grad has shape {grad.shape}, params {self.params.shape}")
        b1, b2 = self.betas
        self.step_count += 1
        t = self.step_count
        g = grad + self.weight_decay * self.params if self.weight_decay else grad
        self.exp_avg[...] = b1 * self.exp_avg + (1 - b1) * g
        self.exp_avg_sq[...] = b2 * self.exp_avg_sq + (1 - b2) * g * g      # (1 - b2) g first: overflows as late as torch's
        bias_correction1 = 1 - b1 ** t
        bias_correction2 = 1 - b2 ** t
        step_size = self.lr / bias_correction1
        denom = np.sqrt(self.exp_avg_sq) / math.sqrt(bias_correction2) + self.eps
        self.params -= step_size * self.exp_avg / denom

    def state_dict(self) -> dict[str, np.ndarray]:
        """A snapshot: copies of the moments, which later steps leave as they were."""
        return {"step": np.array(self.step_count, np.int64), "exp_avg": self.exp_avg.copy(),
                "exp_avg_sq": self.exp_avg_sq.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy ``state`` (what ``state_dict`` returns) into this optimizer."""
        check_adam_state(state, self.params.shape)
        self.step_count = int(state["step"])
        self.exp_avg[...] = state["exp_avg"]
        self.exp_avg_sq[...] = state["exp_avg_sq"]

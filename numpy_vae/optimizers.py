"""SGD and Adam over one flat parameter buffer, with exactly torch.optim's semantics.

The model keeps every parameter in one flat array (``model.flat``) and every
gradient in another (``model.grad_flat``), so an update is a handful of
in-place passes over one array instead of a loop over a dozen small ones.
``adam_reference`` is the textbook update written the way torch.optim.Adam's
documentation writes it; ``Adam.step`` computes the same numbers without
temporaries, and the tests hold the two equal.
"""
from __future__ import annotations

import math

import numpy as np


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
        state = {"step": np.array(self.step_count, np.int64)}
        if self.buf is not None:
            state["momentum_buffer"] = self.buf
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.step_count = int(state["step"])
        self.buf = np.array(state["momentum_buffer"], self.params.dtype) if "momentum_buffer" in state else None


def adam_reference(p, g, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """One Adam step, written as in torch.optim.Adam's documentation; returns new (p, m, v).

    g <- g + wd p;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)      (t counts from 1)
    """
    b1, b2 = betas
    g = g + weight_decay * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    denom = np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps
    return p - lr / (1 - b1 ** t) * m / denom, m, v


class Adam:
    """torch.optim.Adam (amsgrad=False, maximize=False) on a flat buffer, updated in place.

    Same bias correction, eps added after the square root and the division by
    sqrt(1 - b2^t), and L2 weight decay added to the gradient, as torch does.

    The update walks the buffer in blocks of ``block`` elements: the dozen
    elementwise passes then run on data that stays in the CPU's L2 cache,
    instead of streaming five 4 MB arrays through memory a dozen times.
    """

    def __init__(self, params: np.ndarray, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, block: int = 32768):
        if not lr >= 0 or not eps >= 0 or not weight_decay >= 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: need lr >= 0, eps >= 0, weight_decay >= 0 and 0 <= betas < 1; "
                             f"got lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        if params.ndim != 1 or not params.flags.c_contiguous:
            raise ValueError("Adam works on one flat contiguous buffer (model.flat)")
        self.params, self.lr, self.betas, self.eps, self.weight_decay = params, lr, tuple(betas), eps, weight_decay
        self.exp_avg = np.zeros_like(params)
        self.exp_avg_sq = np.zeros_like(params)
        self.block = block
        self._scratch = np.empty(min(block, params.size), params.dtype)
        self.step_count = 0

    def step(self, grad: np.ndarray) -> None:
        """One update with ``grad`` (same shape as params; not modified)."""
        self.step_count += 1
        t = self.step_count
        step_size = self.lr / (1 - self.betas[0] ** t)
        bias_correction2_sqrt = math.sqrt(1 - self.betas[1] ** t)
        for start in range(0, self.params.size, self.block):
            block = slice(start, start + self.block)
            self._update(self.params[block], grad[block], self.exp_avg[block], self.exp_avg_sq[block],
                         step_size, bias_correction2_sqrt)
        if t % self.FLUSH_EVERY == 0:
            self._flush_subnormals()

    # A parameter whose gradient stays 0 (weights from MNIST's always-blank border pixels, dead
    # ReLU units) has exp_avg *= b1 every step, which sinks into the subnormal range below
    # finfo.tiny (1.2e-38 in float32) and stays there ~150 steps.  x86 CPUs take a slow
    # microcode path for every subnormal operand: with a fifth of exp_avg subnormal, Adam ran
    # 3x slower by epoch 3.  So every FLUSH_EVERY steps the moments below tiny are set to 0;
    # the parameter they would move is changed by less than lr * 1e-30.
    FLUSH_EVERY = 16

    def _flush_subnormals(self) -> None:
        tiny = np.finfo(self.params.dtype).tiny
        for moment in (self.exp_avg, self.exp_avg_sq):
            for start in range(0, moment.size, self.block):
                block = moment[start:start + self.block]
                s = self._scratch[:block.size]
                np.abs(block, out=s)
                block *= s >= tiny

    def _update(self, p, g, m, v, step_size, bias_correction2_sqrt) -> None:
        """adam_reference's arithmetic, in place on one block, in 12 passes.

        Dividing sqrt(v) by sqrt(1 - b2^t) is folded into the two scalars, which
        saves a pass and changes nothing but the last bit:
            step_size * m / (sqrt(v) / c + eps)  ==  (step_size c) * m / (sqrt(v) + eps c)
        """
        b1, b2 = self.betas
        s = self._scratch[:p.size]
        if self.weight_decay:
            g = g + self.weight_decay * p
        # m <- b1 m + (1 - b1) g
        m *= b1
        np.multiply(g, 1 - b1, out=s)
        m += s
        # v <- b2 v + (1 - b2) g^2     ((1 - b2) g first, as torch's addcmul: g^2 alone overflows float32 for |g| > 1.8e19)
        np.multiply(g, 1 - b2, out=s)
        s *= g
        v *= b2
        v += s
        # p <- p - (step_size c) m / (sqrt(v) + eps c),   c = sqrt(1 - b2^t)
        np.sqrt(v, out=s)
        s += self.eps * bias_correction2_sqrt
        np.divide(m, s, out=s)
        s *= step_size * bias_correction2_sqrt
        p -= s

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"step": np.array(self.step_count, np.int64), "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for key in ("exp_avg", "exp_avg_sq"):
            if np.shape(state[key]) != self.params.shape:
                raise ValueError(f"Adam state {key}: expected shape {self.params.shape}, got {np.shape(state[key])}")
        self.step_count = int(state["step"])
        self.exp_avg[...] = state["exp_avg"]
        self.exp_avg_sq[...] = state["exp_avg_sq"]

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
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:             # not Linux
        return max(1, os.cpu_count() or 1)


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

    Every element's update depends on that element alone, so ``threads``
    threads (default: one per available core, at most 4) each take a
    contiguous run of whole blocks; NumPy releases the GIL inside every pass.
    The result is bitwise the same for any number of threads and any block size.

    One departure from torch.optim.Adam, which keeps subnormal moments: every
    ``FLUSH_EVERY`` steps the moments below finfo.tiny are set to 0 (see
    ``_flush_subnormals``), which moves a parameter by less than about
    1.5e-29 * lr in total.
    """

    def __init__(self, params: np.ndarray, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, block: int = 65536, threads: int | None = None):
        if not lr >= 0 or not eps >= 0 or not weight_decay >= 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: need lr >= 0, eps >= 0, weight_decay >= 0 and 0 <= betas < 1; "
                             f"got lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        if params.ndim != 1 or not params.flags.c_contiguous:
            raise ValueError("Adam works on one flat contiguous buffer (model.flat)")
        self.params, self.lr, self.betas, self.eps, self.weight_decay = params, lr, tuple(betas), eps, weight_decay
        self.exp_avg = np.zeros_like(params)
        self.exp_avg_sq = np.zeros_like(params)
        if threads is not None and (int(threads) != threads or threads < 1):
            raise ValueError(f"Adam: threads must be a positive integer, got {threads!r}")
        self.block = block
        n_blocks = -(-params.size // block)
        self.threads = max(1, min(int(threads or min(4, available_cores())), n_blocks))
        # Thread k updates elements [bounds[k], bounds[k + 1]): whole blocks, as evenly shared as they go.
        self._bounds = [min(params.size, (n_blocks * k // self.threads) * block) for k in range(self.threads + 1)]
        self._scratch = [np.empty(min(block, params.size), params.dtype) for _ in range(self.threads)]
        self._pool = None                      # the helper threads, started by the first step that needs them
        self.step_count = 0

    def step(self, grad: np.ndarray) -> None:
        """One update with ``grad`` (same shape as params; not modified)."""
        self.step_count += 1
        t = self.step_count
        args = (grad, self.lr / (1 - self.betas[0] ** t), math.sqrt(1 - self.betas[1] ** t), t % self.FLUSH_EVERY == 0)
        if self.threads == 1:
            self._update_span(0, *args)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="adam")
        helpers = [self._pool.submit(self._update_span, k, *args) for k in range(1, self.threads)]
        self._update_span(0, *args)
        for helper in helpers:
            helper.result()

    def _update_span(self, k: int, grad, step_size: float, bias_correction2_sqrt: float, flush: bool) -> None:
        """Thread k's share: every block in [bounds[k], bounds[k + 1]), with its own scratch."""
        for start in range(self._bounds[k], self._bounds[k + 1], self.block):
            block = slice(start, min(start + self.block, self._bounds[k + 1]))
            p, m, v = self.params[block], self.exp_avg[block], self.exp_avg_sq[block]
            s = self._scratch[k][:p.size]
            self._update(p, grad[block], m, v, s, step_size, bias_correction2_sqrt)
            if flush:
                self._flush_subnormals(m, v, s)

    # A parameter whose gradient stays 0 (weights from MNIST's always-blank border pixels, dead
    # ReLU units) has exp_avg *= b1 every step, which sinks into the subnormal range below
    # finfo.tiny (1.2e-38 in float32), takes ~150 steps to cross it, and then never leaves:
    # rounding to nearest, b1 * m gives m back once m is 4 or fewer ulps of 2^-149 (torch's
    # lerp_ too).  x86 CPUs that take a slow microcode path for subnormal operands made Adam,
    # with a fifth of exp_avg subnormal, 3x slower by epoch 3.  (A 2-core AMD EPYC, Zen 3, shows
    # no such penalty: a 1.08 M-element step took 3.14 ms with a fifth subnormal, 3.02 ms without,
    # medians of 9; the flush step itself 4.7 ms.)
    # So every FLUSH_EVERY steps the moments below tiny are set to 0; the parameter a flushed
    # exp_avg would move is changed by less than about 1.5e-30 * lr a step, 1.5e-29 * lr in
    # all (10 tiny / eps, times the bias correction 1 / (1 - 0.9^16)); the few ulps that would
    # never decay add under 6e-37 * lr a step (4 * 2^-149 / eps).
    FLUSH_EVERY = 16

    @staticmethod
    def _flush_subnormals(m, v, s) -> None:
        """Set the entries of m and v below finfo.tiny in magnitude to 0 (s: scratch of their size)."""
        tiny = np.finfo(m.dtype).tiny
        for moment in (m, v):
            np.abs(moment, out=s)
            moment *= s >= tiny

    def _update(self, p, g, m, v, s, step_size, bias_correction2_sqrt) -> None:
        """adam_reference's arithmetic, in place on one block (s: scratch of its size), in 12 passes.

        Dividing sqrt(v) by sqrt(1 - b2^t) is folded into the two scalars, which
        saves a pass and changes nothing but the last bit:
            step_size * m / (sqrt(v) / c + eps)  ==  (step_size c) * m / (sqrt(v) + eps c)
        """
        b1, b2 = self.betas
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
        """A snapshot: copies of the moments, which later steps (updating them in place) leave as they were."""
        return {"step": np.array(self.step_count, np.int64), "exp_avg": self.exp_avg.copy(),
                "exp_avg_sq": self.exp_avg_sq.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for key in ("exp_avg", "exp_avg_sq"):
            if np.shape(state[key]) != self.params.shape:
                raise ValueError(f"Adam state {key}: expected shape {self.params.shape}, got {np.shape(state[key])}")
        self.step_count = int(state["step"])
        self.exp_avg[...] = state["exp_avg"]
        self.exp_avg_sq[...] = state["exp_avg_sq"]

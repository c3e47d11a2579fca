"""The NumPy Adam as it was before issue 15, kept only so the benchmark can show what changed.

``PreviousAdam.step`` is the earlier ``numpy_vae.nn.optimizers.Adam`` at its defaults on one
thread: moments stored at torch's scale, blocks of 65,536 elements, 12 elementwise passes a
step (m: 3, v: 4, the update: 5), all subnormal moments flushed every 16th step.  Same numbers
as the current Adam to rounding; the benchmark times the two side by side ("the optimizer alone").
"""
from __future__ import annotations

import math

import numpy as np


class PreviousAdam:
    FLUSH_EVERY = 16

    def __init__(self, params: np.ndarray, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 block: int = 65536):
        self.params, self.lr, self.betas, self.eps, self.block = params, lr, tuple(betas), eps, block
        self.exp_avg, self.exp_avg_sq = np.zeros_like(params), np.zeros_like(params)
        self._scratch = np.empty(min(block, params.size), params.dtype)
        self.step_count = 0

    def step(self, grad: np.ndarray) -> None:
        self.step_count += 1
        t, (b1, b2) = self.step_count, self.betas
        step_size, c = self.lr / (1 - b1 ** t), math.sqrt(1 - b2 ** t)
        flush = t % self.FLUSH_EVERY == 0
        for start in range(0, self.params.size, self.block):
            block = slice(start, min(start + self.block, self.params.size))
            p, g, m, v = self.params[block], grad[block], self.exp_avg[block], self.exp_avg_sq[block]
            s = self._scratch[:p.size]
            m *= b1
            np.multiply(g, 1 - b1, out=s)
            m += s
            np.multiply(g, 1 - b2, out=s)
            s *= g
            v *= b2
            v += s
            np.sqrt(v, out=s)
            s += self.eps * c
            np.divide(m, s, out=s)
            s *= step_size * c
            p -= s
            if flush:
                tiny = np.finfo(m.dtype).tiny
                for moment in (m, v):
                    np.abs(moment, out=s)
                    moment *= s >= tiny

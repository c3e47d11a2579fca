"""SGD and Adam over one flat parameter buffer, with exactly torch.optim's semantics.

The model keeps every parameter in one flat array (``model.flat``) and every
gradient in another (``model.grad_flat``), so an update is a handful of
in-place passes over one array instead of a loop over a dozen small ones.
``adam_reference`` is the textbook update written the way torch.optim.Adam's
documentation writes it; ``Adam.step`` computes the same numbers without
temporaries, and the tests hold the two equal.
"""
from __future__ import annotations

import itertools
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def default_threads() -> int:
    """The most threads Adam tries when none are asked for: one per available core, at most 2 (see Adam)."""
    return min(2, available_cores())


class ThreadTuner:
    """Picks, and keeps re-picking, the faster of a few thread counts from the steps' own wall times.

    Every ``period`` steps (and from step ``first`` on) a trial runs ``trial`` steps with each
    option in turn; the option with the lowest median is used until the next trial.  Which
    threads run a step never changes its result (Adam is bitwise the same for any), only its
    time, so this is safe to do in the middle of a run: on a quiet machine two threads win, and
    when another process takes a core, one thread does (measured: see benchmarks/load.py).
    """

    def __init__(self, options, period: int = 256, trial: int = 3, first: int = 3):
        self.options, self.period, self.trial = list(options), period, trial
        self.choice = self.options[-1]
        self.start = first
        self.times = {o: [] for o in self.options}
        self.history: list[tuple[int, int]] = []          # (step, choice) after each trial

    def _slot(self, t: int) -> int:
        return t - self.start

    def threads(self, t: int) -> int:
        k = self._slot(t)
        return self.options[k % len(self.options)] if 0 <= k < self.trial * len(self.options) else self.choice

    def record(self, t: int, threads: int, seconds: float) -> None:
        k = self._slot(t)
        if not 0 <= k < self.trial * len(self.options):
            return
        self.times[threads].append(seconds)
        if k == self.trial * len(self.options) - 1:
            self.choice = min(self.options, key=lambda o: (float(np.median(self.times[o])), o))
            self.history.append((t, self.choice))
            self.times = {o: [] for o in self.options}
            self.start = t + 1 + self.period


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

    The numbers are torch's: bias correction, eps added after the square root and the
    division by sqrt(1 - b2^t), L2 weight decay added to the gradient (``adam_reference``
    writes them out; the tests hold the two equal).  What differs is how they are stored,
    so that a step costs 10 elementwise passes over the buffer instead of 12.

    Stored moments.  With scales cm, cv > 0, the buffers hold
        M = m * cm / (1 - b1)        V = v * cv / (1 - b2)
    (m, v: torch's exp_avg, exp_avg_sq).  A step picks a new scale c' for both; then
        s = c' g;   M <- (b1 c'/cm) M + s;   s <- s g;   V <- (b2 c'/cv) V + s
    is torch's m <- b1 m + (1 - b1) g and v <- b2 v + (1 - b2) g^2 (one product c' g serves
    both moments), and the update p <- p - S m / (sqrt(v) / C + eps), S = lr / (1 - b1^t),
    C = sqrt(1 - b2^t), is
        p <- p - k M / (sqrt(V) + e),   e = eps C sqrt(c' / (1 - b2)),
        k = S C (1 - b1) / sqrt(c' (1 - b2)).
    c' is picked to make k = 1, c' = (S C (1 - b1))^2 / (1 - b2), so the update has no
    scalar multiply: 10 passes (s = c'g; M *= ; M += s; s *= g; V *= ; V += s; sqrt; + e;
    M / s; p -= s).  c' is kept in [c_lo, min(1 - b1, 1 - b2)]: at most 1 - b2, so
    c' g^2 overflows no sooner than torch's (1 - b2) g g (and M <= m, V <= v); at least
    c_lo, so that a V too small to be a normal float is one whose sqrt(v) / C is under
    2^-20 eps (it cannot matter beside eps).  Outside those bounds (lr >~ 0.01 at the
    default betas) the k multiply comes back: 11 passes; at lr = 0 only the moments move
    (6 passes).  Weight decay adds 2 (g + wd p, into a second scratch buffer).  The learning
    rate may change between steps (``set_lr``); betas, eps and weight_decay are fixed at
    construction.

    ``exp_avg`` and ``exp_avg_sq`` read the moments at torch's scale: reading either brings
    both buffers to c = 1 - b1 and c = 1 - b2 in place (one rounding of each moment) and
    returns the live buffers, so what is saved is exactly what is stored, and a run that
    saves and one that resumes from the save continue bit for bit.  (Reading is therefore
    not free of effect: it rounds the moments once, as a step does.)

    The update walks the buffer in blocks of ``block`` elements, and ``threads`` threads take
    the blocks one at a time from a shared counter, so a thread that the OS holds back
    (another process on its core) takes fewer blocks instead of holding up the step.  NumPy
    releases the GIL inside every pass.  Every element's update depends on that element
    alone, so the result is bitwise the same for any number of threads and any block size.
    ``threads=None`` (the default) lets a ``ThreadTuner`` choose between 1 and
    ``default_threads()`` from the steps' own times, trial after trial: two threads on a
    quiet machine, one when another process keeps a core busy.

    One departure from torch.optim.Adam, which keeps subnormal moments: every step, one
    block in ``FLUSH_EVERY`` (a rotating choice) has its stored moments below finfo.tiny
    set to 0 (see ``_flush_subnormals``).
    """

    FLUSH_EVERY = 16

    def __init__(self, params: np.ndarray, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, block: int = 65536, threads: int | None = None):
        if not 0 < eps < math.inf:
            raise ValueError(f"Adam: eps must be a finite number > 0, got eps={eps} (with eps = 0, a coordinate "
                             f"whose gradient has always been 0 has m = v = 0 and its update divides 0 by 0)")
        if not lr >= 0 or not weight_decay >= 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: need lr >= 0, weight_decay >= 0 and 0 <= betas < 1; "
                             f"got lr={lr}, betas={betas}, weight_decay={weight_decay}")
        if params.ndim != 1 or not params.flags.c_contiguous or params.dtype.kind != "f":
            raise ValueError("Adam works on one flat contiguous floating-point buffer (model.flat)")
        if threads is not None and (int(threads) != threads or threads < 1):
            raise ValueError(f"Adam: threads must be a positive integer, got {threads!r}")
        if int(block) != block or block < 1:
            raise ValueError(f"Adam: block must be a positive integer, got {block!r}")
        self.params, self.lr, self.betas, self.eps, self.weight_decay = params, lr, tuple(betas), eps, weight_decay
        b1, b2 = self.betas
        self._m = np.zeros_like(params)                 # M = m * cm / (1 - b1)
        self._v = np.zeros_like(params)                 # V = v * cv / (1 - b2)
        self._cm, self._cv = 1 - b1, 1 - b2            # the buffers' scales: at torch's scale to begin with
        self.block = int(block)
        self._slices = [slice(i, min(i + self.block, params.size)) for i in range(0, params.size, self.block)]
        self._views = [(params[s], self._m[s], self._v[s]) for s in self._slices]
        most = max(1, min(int(threads or default_threads()), len(self._slices)))
        self.tuner = ThreadTuner([1, most]) if threads is None and most > 1 else None
        self.threads = most                    # this step's threads (the tuner's choice, when there is a tuner)
        self._scratch = [np.empty(min(self.block, params.size), params.dtype) for _ in range(most)]
        self._scratch2 = [np.empty_like(s) for s in self._scratch] if weight_decay else None
        self._pool = None                      # the helper threads, started by the first step that needs them
        self.step_count = 0

    # ------------------------------------------------------------------ the moments
    @property
    def exp_avg(self) -> np.ndarray:
        """torch's exp_avg, the live buffer (see the class docstring: reading normalizes it)."""
        self._to_torch_scale()
        return self._m

    @property
    def exp_avg_sq(self) -> np.ndarray:
        """torch's exp_avg_sq, the live buffer (see the class docstring: reading normalizes it)."""
        self._to_torch_scale()
        return self._v

    def _to_torch_scale(self) -> None:
        b1, b2 = self.betas
        for buf, scale, target in ((self._m, self._cm, 1 - b1), (self._v, self._cv, 1 - b2)):
            if scale != target:
                buf *= buf.dtype.type(target / scale)
        self._cm, self._cv = 1 - b1, 1 - b2

    # ---------------------------------------------------------------------- a step
    def _scalars(self, t: int) -> tuple:
        """Step t's scale c' and the scalars of the passes (see the class docstring)."""
        b1, b2 = self.betas
        S = self.lr / (1 - b1 ** t)
        C = math.sqrt(1 - b2 ** t)
        ideal = (S * C * (1 - b1)) ** 2 / (1 - b2)
        c_hi = min(1 - b1, 1 - b2)
        if ideal == 0:                           # lr = 0: no update, the moments at the scale that keeps most
            c, k = c_hi, 0.0
        else:
            tiny = float(np.finfo(self.params.dtype).tiny)
            c_lo = tiny * (1 - b2) / (self.eps * C * 2.0 ** -20) ** 2
            c = min(max(ideal, c_lo), c_hi)
            k = 1.0 if c == ideal else S * C * (1 - b1) / math.sqrt(c * (1 - b2))
        T = self.params.dtype.type
        return c, (T(c), T(b1 * c / self._cm), T(b2 * c / self._cv),
                   T(self.eps * C * math.sqrt(c / (1 - b2))), None if k == 1.0 else T(k), T(self.weight_decay))

    def step(self, grad: np.ndarray) -> None:
        """One update with ``grad`` (same shape and dtype as params; not modified)."""
        if grad.shape != self.params.shape:
            raise ValueError(f"Adam: grad has shape {grad.shape}, params {self.params.shape}")
        self.step_count += 1
        t = self.step_count
        c, scalars = self._scalars(t)
        flush = t % self.FLUSH_EVERY
        if self.tuner is not None:
            self.threads = self.tuner.threads(t)
            t0 = time.perf_counter()
        if self.threads == 1:
            self._work(0, grad, scalars, flush, iter(range(len(self._slices))))
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(len(self._scratch) - 1, thread_name_prefix="adam")
            blocks = itertools.count()           # next() is atomic: each block is taken by one thread
            helpers = [self._pool.submit(self._work, k, grad, scalars, flush, blocks) for k in range(1, self.threads)]
            self._work(0, grad, scalars, flush, blocks)
            for helper in helpers:
                helper.result()
        if self.tuner is not None:
            self.tuner.record(t, self.threads, time.perf_counter() - t0)
        self._cm = self._cv = c

    def _work(self, k: int, grad, scalars, flush: int, blocks) -> None:
        """Take blocks from ``blocks`` until none is left; thread k's own scratch."""
        n = len(self._slices)
        for i in blocks:
            if i >= n:
                return
            p, m, v = self._views[i]
            s = self._scratch[k] if p.size == self.block else self._scratch[k][:p.size]
            g = grad[self._slices[i]]
            if self._scratch2 is not None:          # weight decay: g + wd p, in scratch
                g = np.multiply(p, scalars[5], out=self._scratch2[k][:p.size])
                g += grad[self._slices[i]]
            self._update(p, g, m, v, s, *scalars[:5])
            if i % self.FLUSH_EVERY == flush:
                self._flush_subnormals(m, v, s)

    @staticmethod
    def _update(p, g, m, v, s, c, a1, a2, e, k) -> None:
        """One block, in place, 10 passes (11 with k): see the class docstring."""
        np.multiply(g, c, out=s)            # s = c' g
        m *= a1
        m += s                              # M <- b1 r M + c' g
        s *= g                              # s = c' g^2   (c' <= 1 - b2: overflows no sooner than torch's)
        v *= a2
        v += s                              # V <- b2 r V + c' g^2
        if k is not None and k == 0:        # lr = 0: the moments move, the parameters do not
            return
        np.sqrt(v, out=s)
        s += e
        np.divide(m, s, out=s)
        if k is not None:
            s *= k
        p -= s

    # A parameter whose gradient stays 0 (weights from MNIST's always-blank border pixels, dead
    # ReLU units) has its moments multiplied by b1 (b2) every step, which sinks them into the
    # subnormal range below finfo.tiny (1.2e-38 in float32), and then they never leave: rounding
    # to nearest, b1 * m gives m back once m is 4 or fewer ulps of 2^-149 (torch's lerp_ too).
    # x86 CPUs that take a slow microcode path for subnormal operands made Adam, with a fifth of
    # exp_avg subnormal, 3x slower by epoch 3.  (A 2-core AMD EPYC, Zen 3, shows no such penalty.)
    # So each step the stored moments of one block in FLUSH_EVERY that are below tiny are set to 0:
    # every element is visited every FLUSH_EVERY steps, and each step costs the same (no slow
    # step every 16th).  A stored M below tiny is an m below tiny (1 - b1) / c, which would move
    # its parameter by less than S tiny (1 - b1) / (c eps) a step: in float32 at the default lr
    # (c >= 1e-6) under 1.2e-25 S, at any lr (c >= c_lo) under 2^-40 (1 - b1) eps C^2 / (1 - b2) S,
    # about 1e-18 S; a V below tiny is a v whose sqrt(v) / C < 2^-20 eps, nothing beside eps.
    @staticmethod
    def _flush_subnormals(m, v, s) -> None:
        """Set the entries of m and v below finfo.tiny in magnitude to 0 (s: scratch of their size)."""
        tiny = np.finfo(m.dtype).tiny
        np.abs(m, out=s)
        m *= s >= tiny
        v *= v >= tiny                      # v >= 0

    # ----------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, np.ndarray]:
        """A snapshot at torch's scale: copies of the moments, which later steps leave as they were."""
        return {"step": np.array(self.step_count, np.int64), "exp_avg": self.exp_avg.copy(),
                "exp_avg_sq": self.exp_avg_sq.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for key in ("exp_avg", "exp_avg_sq"):
            if np.shape(state[key]) != self.params.shape:
                raise ValueError(f"Adam state {key}: expected shape {self.params.shape}, got {np.shape(state[key])}")
        self.step_count = int(state["step"])
        self._m[...] = state["exp_avg"]
        self._v[...] = state["exp_avg_sq"]
        self._cm, self._cv = 1 - self.betas[0], 1 - self.betas[1]

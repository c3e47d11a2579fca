"""The tuned Adam that training runs by default: torch.optim.Adam's numbers, stored at a scale of its own,
in blocks, on one or two threads.  The reference it is proven equal to is ``numpy_vae.nn.optimizers.Adam``
(tests/test_kernels.py: within a bound derived from the rounding; the threaded and single-threaded runs
bitwise equal).  Derivation of the rescaled moments: docs/gradients.md#adam.
"""
from __future__ import annotations

import itertools
import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..nn.optimizers import check_adam_hyperparameters, check_adam_state
from .threads import ThreadTuner, default_threads


class FastAdam:
    """torch.optim.Adam (amsgrad=False, maximize=False) on a flat buffer, updated in place.

    The numbers are torch's: bias correction, eps added after the square root and the
    division by sqrt(1 - b2^t), L2 weight decay added to the gradient (``numpy_vae.nn.Adam``
    writes them out; tests/test_kernels.py holds the two equal).  What differs is how they are stored,
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

    ``exp_avg``, ``exp_avg_sq`` and ``state_dict()`` give the moments at torch's scale, as
    new arrays (the stored ones times (1 - b1) / cm, (1 - b2) / cv); reading changes nothing.
    ``rescale_to_torch()`` brings the stored buffers themselves to torch's scale (one
    rounding of each moment, the same multiplication the reading does): a run that saves
    its state calls it first (``NumpyBackend.optimizer_state``), so that the run going on
    and one resumed from the save continue from the same bits.

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
        check_adam_hyperparameters(params, lr, betas, eps, weight_decay)
        if threads is not None and (int(threads) != threads or threads < 1):
            raise ValueError(f"FastAdam: threads must be a positive integer, got {threads!r}")
        if int(block) != block or block < 1:
            raise ValueError(f"FastAdam: block must be a positive integer, got {block!r}")
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
        """torch's exp_avg: a new array (reading changes nothing)."""
        return self._at_torch_scale(self._m, self._cm, 1 - self.betas[0])

    @property
    def exp_avg_sq(self) -> np.ndarray:
        """torch's exp_avg_sq: a new array (reading changes nothing)."""
        return self._at_torch_scale(self._v, self._cv, 1 - self.betas[1])

    @staticmethod
    def _at_torch_scale(buf: np.ndarray, scale: float, target: float) -> np.ndarray:
        """The stored moment ``buf`` (at ``scale``) at torch's ``target`` scale, as a new array."""
        return buf * buf.dtype.type(target / scale) if scale != target else buf.copy()

    def rescale_to_torch(self) -> None:
        """Store the moments at torch's scale, in place: what a save point does (see the class docstring).

        Each buffer becomes exactly what ``exp_avg`` / ``exp_avg_sq`` gave just before, so a run that
        loads those (``load_state_dict``) and this one continue bit for bit."""
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
        """A snapshot at torch's scale: new arrays, which later steps leave as they were (changes nothing)."""
        return {"step": np.array(self.step_count, np.int64), "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy ``state`` (torch's scale, as ``state_dict`` gives it) into this optimizer."""
        check_adam_state(state, self.params.shape)
        self.step_count = int(state["step"])
        self._m[...] = state["exp_avg"]
        self._v[...] = state["exp_avg_sq"]
        self._cm, self._cv = 1 - self.betas[0], 1 - self.betas[1]

"""Threads for the tuned kernels: the cores this process may use, the thread tuner, OpenBLAS's spin time.

Nothing here imports NumPy, so the command-line entry point can call
:func:`shorten_openblas_spin` before NumPy loads OpenBLAS (which reads its settings once, then).
"""
from __future__ import annotations

import os
import statistics


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:             # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """The most threads the tuned Adam tries when none are asked for: one per available core, at most 2."""
    return min(2, available_cores())


def shorten_openblas_spin(environ=os.environ) -> None:
    """Set OPENBLAS_THREAD_TIMEOUT=20 unless it is set: an explicit call, made by the ``vae`` command.

    OpenBLAS's worker threads busy-wait 2^28 cycles (about 0.1 s) after every matmul before they
    sleep, holding a core that the tuned Adam's second thread needs between one step's matmuls and
    the next (measured here: a two-thread Adam right after a matmul ran no faster than one thread).
    2^20 cycles (~0.4 ms) still bridges the gaps between one step's matmuls.  It takes effect only
    when called before NumPy loads OpenBLAS, and never overrides a value already set.  It changes
    timings only, never a result.
    """
    environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")


class ThreadTuner:
    """Picks, and keeps re-picking, the faster of a few thread counts from the steps' own wall times.

    Every ``period`` steps (and from step ``first`` on) a trial runs ``trial`` steps with each
    option in turn; the option with the lowest median is used until the next trial.  Which
    threads run a step never changes its result (the tuned Adam is bitwise the same for any), only
    its time, so this is safe to do in the middle of a run: on a quiet machine two threads win, and
    when another process takes a core, one thread does (measured: see `vae bench --load`).
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
            self.choice = min(self.options, key=lambda o: (statistics.median(self.times[o]), o))
            self.history.append((t, self.choice))
            self.times = {o: [] for o in self.options}
            self.start = t + 1 + self.period

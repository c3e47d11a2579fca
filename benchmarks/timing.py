"""Interleaved timing: every point measured once per repeat, in a fresh order each repeat.

    warm-up     each point runs a few untimed steps (CUDA: more, to load kernels and
                let cuBLAS pick its algorithms), then is calibrated: N = the number of
                steps that takes about ``target_s`` seconds.
    repeats     for r in range(repeats): for each point, in an order shuffled anew
                every repeat: time one sample of N steps -> seconds per step.
                (The shuffle keeps the points of one thread-pool family together,
                in a random family order and a random order inside each family.)
    result      median and interquartile range over the repeats, per point.

So a slow drift of the machine (another job starting, the CPU clocking down) hits
every point alike instead of whichever happened to run last, and a ratio of two
points can be taken repeat by repeat (paired).

CPU samples are timed with time.perf_counter around the N steps.  CUDA samples are
timed with torch.cuda.Event pairs recorded on the stream around the N steps, after
a torch.cuda.synchronize() so earlier work is not counted, and read after the end
event has completed; a GPU starved by Python launch overhead shows as the gaps it
really has.  The garbage collector is off during a sample (as in timeit).

When consecutive points drive different thread pools (NumPy's OpenBLAS, torch's
OpenMP runtime, the GPU), the runner sleeps ``settle_s`` first: OpenBLAS worker
threads keep polling for work after their last call (OpenBLAS's default: 2^28
cycles, about 0.1 s; the `vae` command shortens it to 2^20 through OPENBLAS_THREAD_TIMEOUT
before NumPy loads: numpy_vae.kernels.threads.shorten_openblas_spin), and OpenMP workers spin a while too; on a
two-core machine they would steal a core from the next point.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Point:
    key: tuple                      # unique identity, e.g. ("numpy-f32", "mlp-512-256", (512, 256), "train", 128)
    step: Callable[[], None]        # runs one step
    family: str                     # thread pool it drives: "numpy", "torch", "cuda"
    flops: int                      # floating-point operations of one step
    batch: int = 1                  # samples per step
    cuda: bool = False
    meta: dict = field(default_factory=dict)
    n_steps: int = 1                # steps per timed sample (set by calibrate)
    seconds: list[float] = field(default_factory=list)     # seconds per step, one per repeat
    measure: Callable[[int], float] | None = None           # seconds for n steps, if not the loop below (peers.py)


def _time_n(point: Point, n: int) -> float:
    """Seconds for n steps of ``point``."""
    if point.measure is not None:
        return point.measure(n)
    step = point.step
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if point.cuda:
            import torch
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        return time.perf_counter() - t0
    finally:
        if gc_was_enabled:
            gc.enable()


def calibrate(point: Point, target_s: float, warmup: int = 1, max_steps: int = 100_000) -> None:
    """Warm ``point`` up and set ``n_steps`` so one sample takes about ``target_s``."""
    for _ in range(warmup + (8 if point.cuda else 0)):
        point.step()
    n, elapsed = 1, _time_n(point, 1)
    while elapsed < target_s / 4 and n < max_steps:
        n = min(max_steps, n * 4 if elapsed < target_s / 40 else n * 2)
        elapsed = _time_n(point, n)
    per_step = elapsed / n
    point.n_steps = int(max(1, min(max_steps, round(target_s / per_step)))) if per_step > 0 else max_steps


def interleaved_order(points: list[Point], rng: np.random.Generator) -> list[Point]:
    """One repeat's order: the thread-pool families in a random order, each family's points shuffled.

    Grouping by family keeps the settling pauses to a few per repeat; shuffling both
    levels anew every repeat keeps any drift from lining up with any point.
    """
    families = sorted({p.family for p in points})
    order = []
    for i in rng.permutation(len(families)):
        group = [p for p in points if p.family == families[i]]
        order += [group[j] for j in rng.permutation(len(group))]
    return order


def run_interleaved(points: list[Point], repeats: int, settle_s: float = 0.2, seed: int = 0,
                    on_sample: Callable[[Point], None] | None = None) -> None:
    """Fill every point's ``seconds`` with ``repeats`` samples, interleaved; see the module docstring."""
    rng = np.random.default_rng([seed, 21])
    previous_family = None
    for _ in range(repeats):
        for point in interleaved_order(points, rng):
            if previous_family is not None and point.family != previous_family and settle_s > 0:
                time.sleep(settle_s)
            previous_family = point.family
            point.seconds.append(_time_n(point, point.n_steps) / point.n_steps)
            if on_sample is not None:
                on_sample(point)


def summarize(seconds: list[float]) -> dict:
    """Count, median, quartiles, IQR, min and max of per-step seconds."""
    a = np.asarray(seconds, dtype=float)
    if a.size == 0:
        return {"count": 0}
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"count": int(a.size), "median_s": float(med), "q1_s": float(q1), "q3_s": float(q3),
            "iqr_s": float(q3 - q1), "min_s": float(a.min()), "max_s": float(a.max()),
            "iqr_pct": float(100 * (q3 - q1) / med) if med > 0 else None}


def paired_ratio(a: list[float], b: list[float]) -> dict | None:
    """Median and IQR over repeats of a[r] / b[r] (samples of the same repeat, so drift cancels)."""
    if not a or not b or len(a) != len(b):
        return None
    r = np.asarray(a, float) / np.asarray(b, float)
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3)}

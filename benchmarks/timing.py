"""Timing and memory: every point is a ``torch.utils.benchmark.Timer``; the samples are interleaved.

    calibrate   warm a point up and size its sample (``blocked_autorange``): n steps of about ``target_s``
    interleave  every repeat times every point once (``Timer.timeit(n)``), the thread-pool families
                (numpy, torch, cuda) in a new random order and the points of each family shuffled,
                pausing ``settle_s`` between families (idle OpenBLAS/OpenMP workers spin a while)
    result      median and IQR over the repeats; the ratio of two points taken repeat by repeat
                (``paired_ratio``), so drift of a shared machine hits both alike and cancels

The Timer sets torch's threads (``num_threads``, explicit) for each sample and synchronizes CUDA
at both ends where CUDA is present.  Peak memory of one step (``peak_bytes``): NumPy's arrays
through ``tracemalloc`` (NumPy reports its allocations to it), torch on CUDA through
``torch.cuda.max_memory_allocated``, torch on the CPU through the resident set's high-water mark
(``/proc/self/status`` VmHWM, reset through ``/proc/self/clear_refs``; Linux only, else None).
"""
from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Point:
    key: tuple                          # unique identity, e.g. ("numpy-f32", "train", 128)
    step: Callable[[], None]            # one step
    family: str                         # the thread pool it drives: "numpy", "torch" or "cuda"
    flops: int = 0                      # floating-point operations of one step
    batch: int = 1
    meta: dict = field(default_factory=dict)
    after_sample: Callable[[], None] | None = None     # e.g. a PhaseClock closing its sample
    n_steps: int = 1
    seconds: list[float] = field(default_factory=list)  # seconds per step, one per repeat
    measurements: list = field(default_factory=list)    # torch.utils.benchmark Measurements, for Compare
    timer: object = None


def calibrate(point: Point, target_s: float, threads: int, warmup: int = 2) -> None:
    """Warm ``point`` up and set ``n_steps`` so that one sample takes about ``target_s``."""
    from torch.utils.benchmark import Timer
    for _ in range(warmup):
        point.step()
    point.timer = Timer(stmt="step()", globals={"step": point.step}, num_threads=threads,
                        label=point.meta.get("label", str(point.key[0])), sub_label=str(point.key[0 if "label" in
                                                                                           point.meta else 1]),
                        description=point.meta.get("description", " ".join(map(str, point.key[2:])) or "-"))
    m = point.timer.blocked_autorange(min_run_time=target_s)
    point.n_steps = max(1, round(target_s / max(m.median, 1e-9)))


def run_interleaved(points: list[Point], repeats: int, settle_s: float = 0.2, seed: int = 0, tick=None) -> None:
    """Fill every point's ``seconds`` with ``repeats`` samples, interleaved (see the module docstring)."""
    rng = np.random.default_rng([seed, 21])
    families = sorted({p.family for p in points})
    previous = None
    for _ in range(repeats):
        for i in rng.permutation(len(families)):
            group = [p for p in points if p.family == families[i]]
            for j in rng.permutation(len(group)):
                point = group[j]
                if previous not in (None, point.family) and settle_s > 0:
                    time.sleep(settle_s)
                previous = point.family
                m = point.timer.timeit(point.n_steps)
                point.measurements.append(m)
                point.seconds.append(m.median)
                if point.after_sample:
                    point.after_sample()
                if tick:
                    tick()


def summarize(seconds: list[float]) -> dict:
    """Count, median, quartiles, IQR (also as % of the median) of per-step seconds."""
    if not seconds:
        return {"count": 0}
    q1, med, q3 = np.percentile(seconds, [25, 50, 75])
    return {"count": len(seconds), "median_s": float(med), "q1_s": float(q1), "q3_s": float(q3),
            "iqr_s": float(q3 - q1), "iqr_pct": float(100 * (q3 - q1) / med) if med > 0 else None}


def paired_ratio(a: list[float], b: list[float]) -> dict | None:
    """Median and IQR over repeats of a[r] / b[r]: samples of the same repeat, so drift cancels."""
    if not a or not b or len(a) != len(b):
        return None
    q1, med, q3 = np.percentile(np.asarray(a) / np.asarray(b), [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3)}


def compare_text(points: list[Point]) -> str:
    """torch.utils.benchmark.Compare's table of every point's samples."""
    from torch.utils.benchmark import Compare, Measurement
    merged = [m for p in points if p.measurements for m in Measurement.merge(p.measurements)]
    if not merged:
        return ""
    compare = Compare(merged)
    compare.trim_significant_figures()
    return str(compare)


def _vm_kb(name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith(name + ":")), None)
    except OSError:
        return None


def peak_bytes(step: Callable[[], None], library: str, cuda: bool = False) -> int | None:
    """Memory one call of ``step`` needs beyond what was held before it (see the module docstring)."""
    if cuda:
        import torch
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    if library == "numpy":
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            step()
            return tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                 # reset VmHWM to the current resident set
    except OSError:
        return None
    before = _vm_kb("VmRSS")
    step()
    peak = _vm_kb("VmHWM")
    return None if before is None or peak is None else max(0, peak - before) * 1024

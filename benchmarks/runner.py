"""The benchmark run: build every point, time them interleaved, measure memory, analyse, write the report.

    points   for each architecture, backend, batch size and mode (train, infer): one Point;
             plus the width sweep (train, at ``scaling_batch``, hidden widths scaled) and
             the matmul-peak points.  All are timed together, interleaved (timing.py).
    memory   per backend and batch, in fresh processes (memory.py) started first and finished
             before the timing starts (they overlap this process's set-up, not its timing).
    breakdown  where one training step's time goes per backend, at ``scaling_batch`` (breakdown.py).
    epoch    optionally, the end-to-end epoch comparison (epoch.py).
    analysis medians, GFLOP/s, fraction of the matmul peak, paired ratios to numpy-f32,
             the overhead-bound knee and the a + b*B fit, the issue's bar.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import flops as flops_mod
from .constants import DEFAULT_BACKENDS, KNEE_FALL, MODES
from .timing import Point, calibrate, paired_ratio, run_interleaved, summarize

# The project's architectures; a future one slots in here (and in steps.make_model).
ARCHITECTURES = {"mlp-512-256": dict(arch="mlp", hidden=(512, 256), latent=20)}
DEFAULT_ARCH = "mlp-512-256"

ALL_BATCHES = [2 ** k for k in range(13)]          # 1 .. 4096
QUICK_BATCHES = [1, 32, 128, 1024]
ALL_WIDTHS = [64, 128, 256, 512, 1024, 2048]
QUICK_WIDTHS = [128, 512, 1024]


@dataclass
class BenchConfig:
    batches: list[int] = field(default_factory=lambda: list(ALL_BATCHES))
    backends: list[str] = field(default_factory=lambda: list(DEFAULT_BACKENDS))
    archs: dict = field(default_factory=lambda: dict(ARCHITECTURES))
    hidden_widths: list[int] = field(default_factory=lambda: list(ALL_WIDTHS))
    scaling_batch: int = 128
    repeats: int = 15
    target_s: float = 0.2           # seconds per timed sample
    settle_s: float = 0.2           # pause when the next point drives another thread pool
    matmul_n: int = 2048
    memory: bool = True
    breakdown: bool = True
    epoch: bool = False
    epoch_repeats: int = 3
    data_dir: str = "data"
    out: str = "bench_results"
    seed: int = 0
    quick: bool = False
    progress: bool = True

    def to_json(self) -> dict:
        d = asdict(self)
        d["archs"] = {k: {**v, "hidden": list(v["hidden"])} for k, v in self.archs.items()}
        return d


def scaled_hidden(hidden, width: int) -> tuple[int, ...]:
    """The architecture's hidden sizes scaled so the first one is ``width`` (512,256 -> width, width/2)."""
    return tuple(max(1, round(h * width / hidden[0])) for h in hidden)


def _tqdm(progress: bool, **kw):
    from tqdm.auto import tqdm
    return tqdm(disable=not progress, dynamic_ncols=True, leave=False, **kw)


def build_points(config: BenchConfig, backends: list[str], pool) -> list[Point]:
    from .steps import BACKENDS, make_model
    points: dict[tuple, Point] = {}
    for arch_name, arch in config.archs.items():
        latent = arch["latent"]
        grid = [(tuple(arch["hidden"]), b, "grid") for b in config.batches]
        grid += [(scaled_hidden(arch["hidden"], w), config.scaling_batch, "width") for w in config.hidden_widths]
        for backend in backends:
            models = {}
            for hidden, batch, role in grid:
                modes = MODES if role == "grid" else ("train",)
                # One model per batch size, as in a real run: buffers a backend keeps between
                # steps (sized by the batch) are never re-made because another point ran in between.
                if (hidden, batch) not in models:
                    models[hidden, batch] = make_model(backend, hidden, latent, seed=config.seed)
                train, infer = models[hidden, batch].closures(pool, batch)
                for mode in modes:
                    key = (backend, arch_name, hidden, mode, batch)
                    if key in points:
                        points[key].meta["roles"].add(role)
                        continue
                    points[key] = Point(key=key, step=train if mode == "train" else infer,
                                        family=BACKENDS[backend].family, batch=batch,
                                        flops=flops_mod.step_flops(mode, batch, hidden, latent),
                                        cuda=BACKENDS[backend].device == "cuda",
                                        meta={"backend": backend, "arch": arch_name, "hidden": hidden,
                                              "latent": latent, "mode": mode, "batch": batch, "roles": {role}})
    return list(points.values())


# ------------------------------------------------------------------ analysis
def _point_record(p: Point, peaks: dict) -> dict:
    s = summarize(p.seconds)
    backend = p.meta["backend"]
    peak = peaks.get("torch-cuda-f32" if p.cuda else "numpy-f32")
    own_peak = peaks.get(backend) if backend in ("numpy-f64",) else peak
    rec = {**{k: (list(v) if isinstance(v, (tuple, set)) else v) for k, v in p.meta.items()},
           "roles": sorted(p.meta["roles"]), "steps_per_sample": p.n_steps, "seconds": p.seconds, **s,
           "flops": p.flops}
    if s.get("count"):
        med = s["median_s"]
        rec.update({"ms_per_step": med * 1e3, "ms_iqr": s["iqr_s"] * 1e3, "ms_per_sample": med * 1e3 / p.batch,
                    "samples_per_s": p.batch / med, "gflops": p.flops / med / 1e9})
        rec["pct_of_matmul_peak"] = 100 * rec["gflops"] / peak if peak else None
        rec["pct_of_own_dtype_peak"] = 100 * rec["gflops"] / own_peak if own_peak else None
    return rec


def _knee(batches: list[int], ms_per_sample: list[float]) -> int | None:
    """First batch B from which the next measured batch B' cuts time per sample by less than KNEE_FALL
    per doubling: (t(B') / t(B)) ** (1 / log2(B'/B)) > 1 - KNEE_FALL.  None if it never happens.

    Why 25%: with T(B) = a + b B (a fixed per-step overhead, b per sample), doubling B
    from B = a/b cuts a/B + b by exactly 25%; so the knee is where the overhead a stops
    exceeding the per-sample work b B: below it the step is overhead-bound.
    """
    for (b0, t0), (b1, t1) in zip(zip(batches, ms_per_sample), zip(batches[1:], ms_per_sample[1:])):
        if (t1 / t0) ** (1 / math.log2(b1 / b0)) > 1 - KNEE_FALL:
            return b0
    return None


def _fit_overhead(batches: list[int], ms_per_step: list[float]) -> dict | None:
    """Least-squares fit T(B) = a + b B in relative error (weights 1/T); knee_fit = a / b."""
    if len(batches) < 2:
        return None
    B, T = np.asarray(batches, float), np.asarray(ms_per_step, float)
    A = np.stack([np.ones_like(B), B], axis=1) / T[:, None]
    (a, b), *_ = np.linalg.lstsq(A, np.ones_like(T), rcond=None)
    return {"overhead_ms": float(a), "ms_per_sample": float(b),
            "knee_batch_fit": float(a / b) if a > 0 and b > 0 else None}


def analyse(points: list[Point], matmul: list[Point], config: BenchConfig) -> dict:
    peaks = {p.key[1]: p.flops / float(np.median(p.seconds)) / 1e9 for p in matmul if p.seconds}
    matmul_rec = {p.key[1]: {**p.meta, **summarize(p.seconds), "gflops": peaks.get(p.key[1]),
                             "steps_per_sample": p.n_steps, "seconds": p.seconds} for p in matmul}
    records = [_point_record(p, peaks) for p in points]
    by_key = {p.key: p for p in points}
    for p, rec in zip(points, records):          # paired ratio to numpy-f32, repeat by repeat
        ref = by_key.get(("numpy-f32", *p.key[1:]))
        r = paired_ratio(p.seconds, ref.seconds) if ref is not None else None
        rec["time_ratio_to_numpy_f32"] = r["median"] if r else None
        rec["time_ratio_to_numpy_f32_iqr"] = [r["q1"], r["q3"]] if r else None

    knees, widths = [], []
    backends = sorted({p.meta["backend"] for p in points}, key=DEFAULT_BACKENDS.index)
    for arch_name, arch in config.archs.items():
        hidden = tuple(arch["hidden"])
        for backend in backends:
            for mode in MODES:
                rows = sorted((r for r in records if r["backend"] == backend and r["arch"] == arch_name
                               and tuple(r["hidden"]) == hidden and r["mode"] == mode and "grid" in r["roles"]
                               and r.get("count")), key=lambda r: r["batch"])
                if not rows:
                    continue
                bs = [r["batch"] for r in rows]
                knees.append({"backend": backend, "arch": arch_name, "mode": mode,
                              "knee_batch": _knee(bs, [r["ms_per_sample"] for r in rows]),
                              **(_fit_overhead(bs, [r["ms_per_step"] for r in rows]) or {})})
            rows = sorted((r for r in records if r["backend"] == backend and r["arch"] == arch_name
                           and r["mode"] == "train" and r["batch"] == config.scaling_batch
                           and "width" in r["roles"] and r.get("count")), key=lambda r: r["hidden"][0])
            widths += [{"backend": backend, "arch": arch_name, "width": r["hidden"][0], "hidden": r["hidden"],
                        "batch": r["batch"], "ms_per_step": r["ms_per_step"], "gflops": r["gflops"],
                        "pct_of_matmul_peak": r["pct_of_matmul_peak"], "flops": r["flops"]} for r in rows]
    return {"matmul_peak": matmul_rec, "points": records, "knees": knees, "width_scaling": widths,
            "bar": _bar(by_key, records)}


def _bar(by_key: dict, records: list[dict]) -> dict:
    """The issue's targets, as numbers (the test suite never asserts on them)."""
    arch = DEFAULT_ARCH
    hidden = tuple(ARCHITECTURES[arch]["hidden"])

    def rec(backend, mode, batch):
        return next((r for r in records if (r["backend"], r["arch"], tuple(r["hidden"]), r["mode"], r["batch"])
                     == (backend, arch, hidden, mode, batch) and r.get("count")), None)

    def pair(a, b, mode, batch):
        pa, pb = by_key.get((a, arch, hidden, mode, batch)), by_key.get((b, arch, hidden, mode, batch))
        return paired_ratio(pa.seconds, pb.seconds) if pa and pb and pa.seconds and pb.seconds else None

    bar = {}
    speed = pair("torch-cpu-f32", "numpy-f32", "train", 128)
    if speed:
        bar["train_b128_numpy_speedup_over_torch_cpu"] = {**speed, "target": 1.2, "met": speed["median"] >= 1.2,
                                                          "meaning": "torch-cpu-f32 time / numpy-f32 time, paired per repeat"}
    r = rec("numpy-f32", "train", 128)
    if r and r.get("pct_of_matmul_peak") is not None:
        bar["train_b128_numpy_pct_of_matmul_peak"] = {"value": r["pct_of_matmul_peak"], "target": 50.0,
                                                      "met": r["pct_of_matmul_peak"] >= 50.0}
    infer1 = pair("torch-cpu-f32", "numpy-f32", "infer", 1)
    if infer1:
        bar["infer_b1_numpy_speedup_over_torch_cpu"] = {**infer1, "meaning": "torch-cpu-f32 time / numpy-f32 time"}
    return bar


# ---------------------------------------------------------------------- run
def run_benchmarks(config: BenchConfig, log=print) -> dict:
    """Everything: returns the results dict and writes JSON, Markdown and figures into ``config.out``."""
    from . import machine, report
    from .matmul_peak import matmul_points
    from .steps import BACKENDS, DataPool, unavailable_reason

    t_start = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    skipped = {b: reason for b in config.backends if (reason := unavailable_reason(b))}
    backends = [b for b in config.backends if b not in skipped]
    uses_torch = any(BACKENDS[b].library == "torch" for b in config.backends) or config.epoch
    try:
        info = machine.describe(torch_needed=uses_torch)
    except ImportError:
        info = machine.describe(torch_needed=False)
    for b, reason in skipped.items():
        log(f"bench: skipping {b}: {reason}")

    # The memory probes run in their own processes while this one sets up; they are
    # done before any timing starts (memory is not disturbed by a neighbour, time is).
    probes = _start_memory_probes(config, backends) if config.memory else []
    rows = max([*config.batches, config.scaling_batch])
    pool = DataPool.load(config.data_dir, rows=max(rows, 16384), seed=config.seed)
    points = build_points(config, backends, pool)
    matmul = matmul_points(backends, n=config.matmul_n, seed=config.seed)
    everything = points + matmul

    phases = {"setup_s": time.perf_counter() - t_start}
    t = time.perf_counter()
    memory = _collect_memory(probes, config.progress)
    phases["memory_wait_s"] = time.perf_counter() - t
    t = time.perf_counter()
    bar = _tqdm(config.progress, total=len(everything), desc="warm-up", unit="point")
    for p in everything:
        calibrate(p, config.target_s)
        bar.update()
    bar.close()
    phases["warmup_s"] = time.perf_counter() - t
    bar = _tqdm(config.progress, total=len(everything) * config.repeats, desc="timing", unit="sample")
    t = time.perf_counter()
    run_interleaved(everything, config.repeats, settle_s=config.settle_s, seed=config.seed,
                    on_sample=lambda p: bar.update())
    bar.close()
    phases["timing_s"] = time.perf_counter() - t

    results = {"machine": info, "label": machine.label(info), "config": config.to_json(),
               "data": pool.source, "skipped_backends": skipped, "backends": backends,
               "flops_formula": flops_mod.FORMULA,
               "flops": {name: flops_mod.breakdown(1, a["hidden"], a["latent"]) for name, a in config.archs.items()},
               "method": {"timing": "interleaved round-robin, order reshuffled every repeat; median and IQR over "
                                    "repeats of (time of N steps) / N; CUDA timed with torch.cuda.Event",
                          "ratio": "time ratio to numpy-f32 (>1 = slower than numpy-f32), median over repeats of "
                                   "the per-repeat ratio",
                          "knee": f"first batch from which doubling the batch cuts time per sample by less than "
                                  f"{KNEE_FALL:.0%}",
                          "torch_adam": "torch.optim.Adam defaults (single-tensor loop on CPU, foreach on CUDA)"},
               **analyse(points, matmul, config)}
    del points, matmul, everything

    if config.breakdown:
        from .breakdown import measure_breakdown
        arch = next(iter(config.archs.values()))
        t = time.perf_counter()
        log(f"bench: timing the phases of one training step at batch {config.scaling_batch}")
        results["breakdown"] = measure_breakdown(
            backends, pool, tuple(arch["hidden"]), arch["latent"], config.scaling_batch, config.repeats,
            target_s=config.target_s, settle_s=config.settle_s, seed=config.seed,
            matmul_peak_gflops=results["matmul_peak"].get("numpy-f32", {}).get("gflops"))
        phases["breakdown_s"] = time.perf_counter() - t
    if config.memory:
        results["memory"] = memory
    if config.epoch:
        from .epoch import compare_epochs
        t = time.perf_counter()
        results["epoch"] = compare_epochs(config.data_dir, repeats=config.epoch_repeats, log=log)
        phases["epoch_s"] = time.perf_counter() - t
    results["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["phases"] = phases
    t = time.perf_counter()
    report.write_all(results, out)           # the figures first, then the JSON with every number
    phases["report_s"] = time.perf_counter() - t
    phases["total_s"] = time.perf_counter() - t_start
    (out / "bench.json").write_text(report.to_json(results))
    return results


def _start_memory_probes(config: BenchConfig, backends: list[str]) -> list:
    from .memory import Probe
    return [(arch_name, backend, Probe(backend, arch["hidden"], arch["latent"], config.batches))
            for arch_name, arch in config.archs.items() for backend in backends]


def _collect_memory(probes: list, progress: bool) -> list[dict]:
    records = []
    bar = _tqdm(progress, total=len(probes), desc="memory", unit="backend")
    for arch_name, backend, probe in probes:
        for batch, r in probe.collect().items():
            records.append({"backend": backend, "arch": arch_name, "batch": batch, **r})
        bar.update()
    bar.close()
    return records

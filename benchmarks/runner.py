"""The run: build every point, time them all interleaved, measure memory, analyse; one ``results`` dict.

    points     each contestant x batch x mode (train, infer); the width sweep (train at ``scaling_batch``,
               hidden sizes scaled); the machine's rates (matmul, memory pass); the optimizer alone; the
               conv VAE's layers (``--conv``).  All timed together by timing.run_interleaved.
    breakdown  the phases of each contestant's step at ``scaling_batch`` (steps.PhaseClock), interleaved.
    memory     peak memory of one step per contestant and batch (timing.peak_bytes), after the timing.
    analysis   medians, IQRs, samples/s, GFLOP/s, % of the matmul rate, the floor (flops.floor_seconds),
               ratios to numpy-f32 paired per repeat, the best torch per batch, the overhead knee and fit.
    load       (``--load``) the same timing with 1 or 2 threads, with and without a busy core.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import flops as F
from .steps import CONTESTANTS, DataPool, PhaseClock, family, layer_points, make_backend, optimizer_points
from .steps import phases as step_phases
from .steps import rate_points, step
from .timing import Point, calibrate, compare_text, paired_ratio, peak_bytes, run_interleaved, summarize

KNEE_FALL = 0.25    # overhead-bound while doubling the batch cuts time per sample by more than 25%
TARGET = {1: 1.0, 16: 1.0, 128: 1.0, 1024: 1.0}     # issue 24: best torch time / NumPy time >= 1 at these batches


@dataclass
class Config:
    preset: str = "full"                    # full, peers, conv or load: what is written (bench, peers, conv, load)
    contestants: list = field(default_factory=lambda: ["numpy-f32", "numpy-f64", "torch-fused"])
    batches: list = field(default_factory=lambda: [2 ** k for k in range(13)])
    modes: tuple = ("train", "infer")
    arch: str = "mlp"
    hidden: tuple = (512, 256)
    latent: int = 20
    widths: list = field(default_factory=list)      # first hidden widths of the width sweep
    scaling_batch: int = 128
    repeats: int = 15
    target_s: float = 0.2
    settle_s: float = 0.2
    device: str = "cpu"
    threads: int | None = None
    compile_batches: tuple = (128,)
    compile_timeout: float = 300.0
    breakdown: bool = True
    memory: bool = True
    alone: bool = True
    epoch: bool = False
    matmul_n: int = 2048
    data_dir: str | None = "data"
    out: str = "bench_results"
    seed: int = 0
    progress: bool = True


def _bar(progress: bool, **kw):
    from tqdm.auto import tqdm
    return tqdm(disable=not progress, dynamic_ncols=True, leave=False, **kw)


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(' '.join(str(e).split()) or '').split('. ')[0][:200]}"


def _bounded(seconds: float, fn):
    """fn(), stopped with TimeoutError after ``seconds`` (SIGALRM, main thread only; else unbounded)."""
    import signal
    import threading
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return fn()

    def alarm(*_):
        raise TimeoutError(f"torch.compile's warm-up took longer than {seconds:.0f} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def build(cfg: Config, pool: DataPool, log) -> tuple[list[Point], dict, dict]:
    """The contestants' points (and the backends kept for the breakdown and memory); failures by key."""
    points, failed, backends = [], {}, {}
    grid = [(tuple(cfg.hidden), b, m) for b in cfg.batches for m in cfg.modes]
    grid += [(tuple(max(1, round(h * w / cfg.hidden[0])) for h in cfg.hidden), cfg.scaling_batch, "train")
             for w in cfg.widths if w != cfg.hidden[0] or cfg.scaling_batch not in cfg.batches]
    for name in cfg.contestants:
        c = CONTESTANTS[name]
        for hidden, batch, mode in grid:
            key = (name, hidden, mode, batch)
            if c.compile and batch not in cfg.compile_batches:
                failed[key] = "not compiled at this batch"
                continue
            try:
                backend = backends.get((name, hidden, batch)) or make_backend(
                    name, cfg.arch, hidden, cfg.latent, cfg.device, cfg.threads, cfg.seed)
                backends[name, hidden, batch] = backend
                fn = step(backend, mode, pool.batches(batch, cfg.latent, c.dtype))
                t0 = time.perf_counter()
                _bounded(cfg.compile_timeout, lambda: [fn() for _ in range(3)]) if c.compile else fn()
                if c.compile:
                    log(f"bench: torch.compile warm-up at batch {batch}: {time.perf_counter() - t0:.0f} s")
            except Exception as e:          # noqa: BLE001 - any failure of a contestant is its row's reason
                failed[key] = _one_line(e)
                log(f"bench: {name} {mode} at batch {batch}: {failed[key]}")
                continue
            flops = F.spec_step_flops(backend.model.spec, mode, batch)
            meta = {"label": mode, "description": f"batch {batch}" + (
                f", hidden {'-'.join(map(str, hidden))}" if hidden != tuple(cfg.hidden) and cfg.arch == "mlp" else "")}
            if c.library == "torch":
                from .steps import adam_kind
                meta["adam"] = adam_kind(backend.optimizer)
            points.append(Point(key, fn, family(c.library, cfg.device), flops, batch, meta))
    return points, failed, backends


def run(cfg: Config, log=print) -> dict:
    """Everything of one preset; see the module docstring."""
    from . import machine
    if cfg.device == "cuda":
        machine.check_cuda()
    t_start = time.perf_counter()
    info = machine.describe()
    pool = DataPool(cfg.data_dir, max(4096, 4 * max([*cfg.batches, cfg.scaling_batch])), cfg.seed)
    import torch
    from threadpoolctl import threadpool_limits
    limits = threadpool_limits(limits=cfg.threads, user_api="blas") if cfg.threads else None
    threads = cfg.threads or torch.get_num_threads()
    try:
        points, failed, backends = build(cfg, pool, log)
        params = next(iter(backends.values())).model.spec.num_params
        extra = rate_points(cfg.contestants, cfg.device, cfg.matmul_n, params, cfg.seed)
        if cfg.alone:
            from numpy_vae.kernels.threads import available_cores
            extra += optimizer_points(cfg.hidden, cfg.latent, cfg.device,
                                      [cfg.threads] if cfg.threads else sorted({1, min(2, available_cores())}), cfg.seed)
        if cfg.arch == "conv":
            np_b = next(b for (n, _, _), b in backends.items() if n.startswith("numpy"))
            t_b = next(b for (n, _, _), b in backends.items() if n.startswith("torch"))
            extra += layer_points(np_b, t_b, cfg.scaling_batch, cfg.seed)
        clocks = {}
        if cfg.breakdown and cfg.arch == "mlp":
            for (name, hidden, batch), backend in backends.items():
                if hidden == tuple(cfg.hidden) and batch == cfg.scaling_batch and not CONTESTANTS[name].compile:
                    c = CONTESTANTS[name]
                    clocks[name] = PhaseClock(step_phases(backend, c.library, pool.batches(batch, cfg.latent, c.dtype),
                                                          cfg.hidden, cfg.latent, batch))
                    extra.append(Point(("phases", name), clocks[name].step, family(c.library, cfg.device), 0, batch,
                                       after_sample=clocks[name].close_sample))
        everything = points + extra
        bar = _bar(cfg.progress, total=len(everything), desc="warm-up", unit="point")
        for p in everything:
            calibrate(p, cfg.target_s, threads)
            bar.update()
        bar.close()
        for clock in clocks.values():
            clock.reset()                   # forget what the warm-up spent
        meter = machine.LoadMeter().start()
        bar = _bar(cfg.progress, total=len(everything) * cfg.repeats, desc="timing", unit="sample")
        run_interleaved(everything, cfg.repeats, cfg.settle_s, cfg.seed, tick=bar.update)
        bar.close()
        quiet = meter.stop()
        memory = _memory(points, cfg) if cfg.memory else []
    finally:
        if limits is not None:
            limits.restore_original_limits()
    results = {"machine": info, "label": machine.label(info), "config": {**asdict(cfg), "threads_used": threads},
               "data": pool.source, "quiet": quiet, "flops_formula": F.FORMULA, "params": params,
               **analyse(points, failed, extra, cfg, params), "memory": memory,
               "compare": compare_text(points + [p for p in extra if p.key[0] in ("alone", "matmul")])}
    if clocks:
        results["breakdown"] = _breakdown(clocks, cfg, results["rates"])
    if cfg.epoch:
        from .epoch import compare_epochs
        results["epoch"] = compare_epochs(cfg.data_dir, repeats=max(1, cfg.repeats // 5), log=log)
    results["seconds"] = time.perf_counter() - t_start
    return results


def _memory(points: list[Point], cfg: Config) -> list[dict]:
    rows = {}
    for p in points:
        name, hidden, mode, batch = p.key
        if hidden != tuple(cfg.hidden):
            continue
        lib = CONTESTANTS[name].library
        mb = peak_bytes(p.step, lib, cuda=lib == "torch" and cfg.device == "cuda")
        rows.setdefault((name, batch), {"backend": name, "batch": batch})[f"{mode}_mb"] = \
            None if mb is None else mb / 2 ** 20
    return list(rows.values())


# ------------------------------------------------------------------- analysis
def analyse(points: list[Point], failed: dict, extra: list[Point], cfg: Config, params: int) -> dict:
    med = {p.key: float(np.median(p.seconds)) for p in extra if p.seconds}
    rates = {}
    for p in extra:
        if p.key[0] == "matmul" and p.key in med:
            rates.setdefault(p.key[1], {}).update(gflops=p.flops / med[p.key] / 1e9, n=p.meta["n"])
        elif p.key[0] == "pass" and p.key in med:
            rates.setdefault(p.key[1], {})["pass_gbytes"] = p.meta["bytes"] / med[p.key] / 1e9
    by_key = {p.key: p for p in points}
    records = []
    for p in points:
        name, hidden, mode, batch = p.key
        c = CONTESTANTS[name]
        # the machine's rate: NumPy's float32 (float64) matmul for every CPU contestant, torch's on the GPU
        rate = rates.get("torch-cuda" if c.library == "torch" and cfg.device == "cuda" else f"numpy-{c.dtype}", {})
        s = summarize(p.seconds)
        floor = F.floor_seconds(p.flops, F.num_params(hidden, cfg.latent) if cfg.arch == "mlp" else params, np.dtype(c.dtype).itemsize, rate.get("gflops"),
                                rate.get("pass_gbytes"), mode)
        ref = by_key.get(("numpy-f32", hidden, mode, batch))
        r = {"backend": name, "hidden": list(hidden), "mode": mode, "batch": batch, "adam": p.meta.get("adam"),
             "role": "grid" if tuple(hidden) == tuple(cfg.hidden) and batch in cfg.batches else "width",
             "seconds": p.seconds, **s, "flops": p.flops, "ms": s["median_s"] * 1e3,
             "samples_per_s": batch / s["median_s"], "gflops": p.flops / s["median_s"] / 1e9,
             "pct_of_matmul": 100 * p.flops / s["median_s"] / 1e9 / rate["gflops"] if rate.get("gflops") else None,
             "floor_ms": floor * 1e3 if floor else None, "pct_of_floor": 100 * floor / s["median_s"] if floor else None,
             "ratio_to_numpy": paired_ratio(p.seconds, ref.seconds) if ref is not None and ref is not p else None}
        records.append(r)
    records += [{"backend": k[0], "hidden": list(k[1]), "mode": k[2], "batch": k[3], "failed": why,
                 "role": "grid"} for k, why in failed.items()]
    headline = []
    for batch in cfg.batches:
        ref = by_key.get(("numpy-f32", tuple(cfg.hidden), "train", batch))
        torch_points = [p for p in points if p.key[1:] == (tuple(cfg.hidden), "train", batch)
                        and CONTESTANTS[p.key[0]].library == "torch"]
        if ref is None or not torch_points:
            continue
        best = min(torch_points, key=lambda p: float(np.median(p.seconds)))
        ratio = paired_ratio(best.seconds, ref.seconds)
        line = {"batch": batch, "best": best.key[0], "best_torch_over_numpy": ratio}
        if batch in TARGET and cfg.arch == "mlp":
            line.update(target=TARGET[batch], met=ratio["median"] >= TARGET[batch])
        headline.append(line)
    alone = [{"what": p.key[1], "params": p.meta["params"], **summarize(p.seconds)} for p in extra
             if p.key[0] == "alone"]
    layers = [{"layer": p.key[1], "numpy_ms": med[p.key] * 1e3, "torch_ms": med[("layer", p.key[1], "torch")] * 1e3}
              for p in extra if p.key[0] == "layer" and p.key[2] == "numpy"]
    return {"rates": rates, "points": records, "headline": headline, "alone": alone, "layers": layers,
            "knees": _knees(records)}


def knee(batches: list[int], ms_per_sample: list[float]) -> int | None:
    """First batch B from which the next measured batch cuts time per sample by less than KNEE_FALL per
    doubling.  With T(B) = a + b B, doubling B from a / b cuts a / B + b by exactly 25%: below the knee the
    fixed per-step overhead a exceeds the per-sample work b B."""
    for (b0, t0), (b1, t1) in zip(zip(batches, ms_per_sample), zip(batches[1:], ms_per_sample[1:])):
        if (t1 / t0) ** (1 / math.log2(b1 / b0)) > 1 - KNEE_FALL:
            return b0
    return None


def fit_overhead(batches: list[int], ms_per_step: list[float]) -> dict | None:
    """Least-squares fit T(B) = a + b B in relative error (weights 1/T); knee_batch_fit = a / b."""
    if len(batches) < 2:
        return None
    B, T = np.asarray(batches, float), np.asarray(ms_per_step, float)
    (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(B), B], axis=1) / T[:, None], np.ones_like(T), rcond=None)
    return {"overhead_ms": float(a), "ms_per_sample": float(b), "knee_batch_fit": float(a / b) if a > 0 < b else None}


def _knees(records: list[dict]) -> list[dict]:
    out = []
    for name in dict.fromkeys(r["backend"] for r in records):
        for mode in ("train", "infer"):
            rows = sorted((r for r in records if r["backend"] == name and r["mode"] == mode and r["role"] == "grid"
                           and r.get("count")), key=lambda r: r["batch"])
            if len(rows) >= 2:
                bs = [r["batch"] for r in rows]
                out.append({"backend": name, "mode": mode, "knee_batch": knee(bs, [r["ms"] / r["batch"] for r in rows]),
                            **(fit_overhead(bs, [r["ms"] for r in rows]) or {})})
    return out


def _breakdown(clocks: dict, cfg: Config, rates: dict) -> dict:
    """Per contestant: the median of each phase, and the repeat whose whole step was fastest (its phases add up)."""
    mm_flops = F.forward_flops(cfg.scaling_batch, cfg.hidden, cfg.latent) + \
        F.backward_flops(cfg.scaling_batch, cfg.hidden, cfg.latent)
    peak = rates.get("numpy-float32", {}).get("gflops")
    rows = []
    for name, clock in clocks.items():
        s = clock.samples
        fastest = int(np.argmin(np.sum([s[p] for p in ("forward", "backward", "optimizer")], axis=0)))
        for stat, ms in (("median", {k: float(np.median(v)) for k, v in s.items()}),
                         ("fastest", {k: v[fastest] for k, v in s.items()})):
            gflops = mm_flops / ms["matmuls"] / 1e6
            rows.append({"backend": name, "stat": stat, "ms": ms, "step_ms": ms["forward"] + ms["backward"] +
                         ms["optimizer"], "other_ms": ms["forward"] + ms["backward"] - ms["matmuls"],
                         "matmul_gflops": gflops, "matmul_pct": 100 * gflops / peak if peak else None})
    return {"batch": cfg.scaling_batch, "matmul_flops": mm_flops, "rows": rows,
            "samples_ms": {n: c.samples for n, c in clocks.items()}}


# ------------------------------------------------------------------ threads under load
def run_load(cfg: Config, log=print) -> dict:
    """``--load``: the steps with 1 and 2 threads (OpenBLAS, torch, Adam alike), without and with another
    process keeping one core busy (``while True: pass``, started before the timing and ended after it)."""
    runs = {}
    for threads in (1, 2):
        for busy in (False, True):
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                time.sleep(0.5 if busy else 0)
                r = run(Config(**{**asdict(cfg), "threads": threads, "preset": "load", "memory": False,
                                  "alone": False, "breakdown": False, "widths": []}), log)
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
            runs[threads, busy] = {(p["backend"], p["batch"]): p["ms"] for p in r["points"] if "ms" in p}
            log(f"bench: load: {threads} thread(s), {'one core busy' if busy else 'quiet'} done")
    rows = [{"backend": name, "batch": batch, **{f"t{t}_{'busy' if b else 'quiet'}_ms": runs[t, b].get((name, batch))
                                                 for t in (1, 2) for b in (False, True)}}
            for name, batch in runs[1, False]]
    from . import machine
    info = machine.describe()
    return {"machine": info, "label": machine.label(info), "config": asdict(cfg), "rows": rows,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}

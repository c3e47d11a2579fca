"""The headline: NumPy's training step against the torch steps a performance-minded user would pick.

    vae bench --peers-only [--device cuda] [--peer-batches 1,16,128,1024] [--threads N] [--no-compile]

The peers (float32, the default 784-512-256-20 MLP unless --hidden says otherwise).  Every one
runs a backend's own ``train_step``, the code ``vae train`` runs (input checks, forward, backward,
the gradient-norm check, Adam), on the same batches and noise:

    numpy           NumpyBackend.train_step: hand-written forward and backward, numpy_vae's Adam
    torch-default   TorchBackend.train_step with ``torch.optim.Adam(params, lr)``, no flags: what
                    torch picks by itself (CPU: the single-tensor loop; CUDA: foreach)
    torch-foreach   the same with Adam(foreach=True)
    torch-fused     the same with Adam(fused=True) (fused CPU kernels since torch 2.4)
    torch-compile   the same with the model wrapped in torch.compile, and Adam(fused=True)

Each peer's optimizer is made here, explicitly, replacing the backend's own, so the table does not
change meaning when TorchBackend changes its Adam (its own is reported beside the table).
On CUDA the torch peers run on the GPU (each step uploads its batch, as ``vae train`` does) and
the NumPy peer on the CPU, as ever.

Timing: one ``torch.utils.benchmark.Timer`` per point (explicit ``num_threads``, the garbage
collector off, the accelerator synchronized at both ends of a sample).  ``blocked_autorange``
warms each point up and sizes its sample to about ``target_s``; then the samples are interleaved
(timing.run_interleaved: every repeat times every point once, in a fresh order, pausing between
thread pools), so that a ratio of two points can be taken repeat by repeat and drift cancels.
torch.compile's warm-up (its compilation) runs before any timing, bounded by
``compile_timeout`` seconds; a peer that fails or overruns gets its one-line reason in the table.

Headline: each peer's median ms per step and IQR; the best torch peer at each batch (lowest
median); and best-torch time / NumPy time, the median over repeats of the per-repeat ratio (above
1: NumPy is faster).  The bar of issue 15: that ratio >= 0.85 at batch 128 and >= 0.7 at batch 1.
Beside it: the optimizer alone (each Adam on the model's 1.08 M parameters) and where each peer's
step goes (forward, backward, optimizer, and the matmuls alone: the floor; breakdown.py).
The quiet-machine check (machine.LoadMeter) says how much CPU other processes took meanwhile.
"""
from __future__ import annotations

import itertools
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import flops as flops_mod
from .timing import Point, paired_ratio, run_interleaved, summarize


@dataclass(frozen=True)
class Peer:
    name: str
    short: str                  # the headline's column
    label: str                  # what the peer is, in full
    library: str                # "numpy" or "torch"
    adam: dict | None = None    # torch.optim.Adam's keyword arguments (beyond lr)
    compile: bool = False


PEERS = (
    Peer("numpy", "NumPy", "NumpyBackend.train_step: hand-written forward and backward, numpy_vae's Adam", "numpy"),
    Peer("torch-default", "torch, default Adam", "TorchBackend.train_step, eager, torch.optim.Adam(params, lr) with no "
         "flags: torch's own pick", "torch", {}),
    Peer("torch-foreach", "torch, foreach Adam", "TorchBackend.train_step, eager, Adam(foreach=True)", "torch",
         {"foreach": True}),
    Peer("torch-fused", "torch, fused Adam", "TorchBackend.train_step, eager, Adam(fused=True)", "torch",
         {"fused": True}),
    Peer("torch-compile", "torch.compile, fused Adam", "TorchBackend.train_step with the model wrapped in "
         "torch.compile (default mode), Adam(fused=True)", "torch", {"fused": True}, compile=True),
)
PEER_NAMES = [p.name for p in PEERS]
BY_NAME = {p.name: p for p in PEERS}
DEFAULT_PEER_BATCHES = [1, 16, 128, 1024]
BAR = {128: 0.85, 1: 0.7}        # best torch time / NumPy time must reach these (issue 15)


@dataclass
class PeerConfig:
    batches: list[int] = field(default_factory=lambda: list(DEFAULT_PEER_BATCHES))
    peers: list[str] = field(default_factory=lambda: list(PEER_NAMES))
    device: str = "cpu"
    hidden: tuple = (512, 256)
    latent: int = 20
    repeats: int = 15
    target_s: float = 0.2
    settle_s: float = 0.2
    threads: int | None = None          # torch threads, OpenBLAS threads and Adam threads; None: the defaults
    compile_batches: list[int] | None = None     # None: every batch
    compile_timeout: float = 300.0      # seconds for one torch.compile warm-up
    breakdown: bool = True
    breakdown_batch: int = 128
    optimizer_alone: bool = True
    seed: int = 0
    data_dir: str | None = "data"
    progress: bool = True

    def to_json(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


try:
    from numpy_vae.config import ConfigError as _DeviceErrorBase
except ImportError:                     # pragma: no cover - the benchmark ships with numpy_vae
    _DeviceErrorBase = RuntimeError


class CudaUnavailable(_DeviceErrorBase):
    """--device cuda on a machine where torch sees no GPU (a ConfigError: `vae` prints one line, exit 1)."""


def check_device(device: str) -> None:
    """Fail fast, in one line, when the device cannot run the torch peers."""
    if device == "cpu":
        return
    if device != "cuda":
        raise ValueError(f"--device {device}: the benchmark runs on cpu or cuda")
    try:
        import torch
    except ImportError as e:
        raise CudaUnavailable(f"--device cuda: torch cannot be imported ({e})") from None
    if not torch.cuda.is_available():
        raise CudaUnavailable(f"--device cuda: CUDA is not available on this machine (torch {torch.__version__}, "
                              f"built for CUDA {torch.version.cuda or 'none'}: torch.cuda.is_available() is False)")


# ----------------------------------------------------------------- the peers
def adam_kind(optimizer) -> str:
    """Which implementation a torch.optim.Adam runs: 'fused', 'foreach' or 'single-tensor'."""
    d = optimizer.defaults
    if d.get("fused"):
        return "fused"
    if d.get("foreach"):
        return "foreach"
    if d.get("foreach") is None and d.get("fused") is None:      # torch decides at the first step
        from torch.optim.optimizer import _default_to_fused_or_foreach
        params = [p for g in optimizer.param_groups for p in g["params"]]
        fused, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
        return "fused" if fused else "foreach" if foreach else "single-tensor"
    return "single-tensor"


def model_config(hidden, latent: int) -> dict:
    return {"arch": "mlp", "latent": latent, "hidden": tuple(hidden), "beta": 1.0, "dtype": np.dtype(np.float32)}


def make_backend(peer: Peer, config: PeerConfig):
    """The peer's backend, its optimizer made here (see the module docstring)."""
    if peer.library == "numpy":
        from numpy_vae.backends import NumpyBackend
        backend = NumpyBackend(model_config(config.hidden, config.latent), lr=1e-3, seed=config.seed)
        if config.threads is not None:
            from numpy_vae.kernels.adam import FastAdam as Adam
            backend.optimizer = Adam(backend.model.flat, lr=1e-3, threads=config.threads)
        return backend
    import torch
    from torch_vae.backend import TorchBackend
    backend = TorchBackend(model_config(config.hidden, config.latent), lr=1e-3, seed=config.seed,
                           device=config.device)
    backend.optimizer = torch.optim.Adam(backend.params, lr=1e-3, **peer.adam)
    if peer.compile:
        backend.model = torch.compile(backend.model)
    return backend


def _stepper(backend, pool, batch: int, latent: int):
    """One train_step per call, cycling through a few distinct batches of the pool."""
    x_all, e_all = pool.numpy("float32", latent)
    data = itertools.cycle([(x_all[s], e_all[s]) for s in pool.batches(batch)])

    def step() -> None:
        backend.train_step(*next(data))
    return step


class WarmupTimeout(Exception):
    pass


def bounded(seconds: float | None, fn, what: str):
    """fn(), stopped with WarmupTimeout after ``seconds`` (SIGALRM; unbounded off the main thread)."""
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return fn()

    def on_alarm(signum, frame):
        raise WarmupTimeout(f"{what} took longer than {seconds:.0f} s (--compile-timeout)")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    first = text.split(". ")[0]
    return f"{type(e).__name__}: {first[:200]}"


def make_timer(step, num_threads: int, label: str, sub_label: str, description: str):
    """(timer, measure(n) -> seconds for n steps, samples): torch.utils.benchmark where torch is there."""
    samples: list = []
    try:
        from torch.utils.benchmark import Timer
    except ImportError:                                   # NumPy alone: the plain loop of timing.py
        return None, None, samples
    timer = Timer(stmt="step()", globals={"step": step}, num_threads=num_threads, label=label,
                  sub_label=sub_label, description=description)

    def measure(n: int) -> float:
        m = timer.timeit(n)       # (a warm-up of max(n // 100, 2) steps first: caches as a real loop leaves them)
        samples.append(m)
        return m.median * n
    return timer, measure, samples


def calibrate_timer(point: Point, timer, target_s: float, cuda: bool) -> None:
    """Warm up and size the point's sample (~target_s) with blocked_autorange (or the plain loop)."""
    for _ in range(2 + (8 if cuda else 0)):
        point.step()
    if timer is None:
        from .timing import calibrate
        calibrate(point, target_s, warmup=0)
        return
    m = timer.blocked_autorange(min_run_time=min(target_s, 1.0))
    point.n_steps = max(1, int(round(target_s / max(m.median, 1e-9))))


def torch_threads(config: PeerConfig) -> int:
    try:
        import torch
    except ImportError:
        return 1
    return config.threads or torch.get_num_threads()


def _tqdm(progress: bool, **kw):
    from tqdm.auto import tqdm
    return tqdm(disable=not progress, dynamic_ncols=True, leave=False, **kw)


# ----------------------------------------------------------------- the run
def run_peers(config: PeerConfig, pool=None, log=print) -> dict:
    """Everything of the headline: returns the results (peers.json's content)."""
    from . import machine
    from .steps import DataPool

    check_device(config.device)
    t_start = time.perf_counter()
    uses_torch = any(BY_NAME[n].library == "torch" for n in config.peers)
    info = machine.describe(torch_needed=uses_torch)
    if pool is None:
        pool = DataPool.load(config.data_dir, rows=max(16384, 8 * max(config.batches)), seed=config.seed)
    limits = _thread_limits(config.threads)
    try:
        return _run(config, pool, info, log, t_start)
    finally:
        if limits is not None:
            limits.restore_original_limits()


def _thread_limits(threads):
    if threads is None:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=threads, user_api="blas")


def _run(config: PeerConfig, pool, info: dict, log, t_start: float) -> dict:
    from . import machine
    peers = [BY_NAME[n] for n in config.peers]
    n_threads = torch_threads(config)
    cuda = config.device == "cuda"
    compile_batches = set(config.batches if config.compile_batches is None else config.compile_batches)
    points, failed, timers = {}, {}, {}
    backend_adam = _torch_backend_adam(config) if any(p.library == "torch" for p in peers) else None
    t = time.perf_counter()
    bar = _tqdm(config.progress, total=len(peers) * len(config.batches), desc="peers: warm-up", unit="point")
    for peer in peers:
        for batch in config.batches:
            bar.update()
            key = (peer.name, batch)
            if peer.compile and batch not in compile_batches:
                failed[key] = "not compiled at this batch (--compile-batches)"
                continue
            try:
                backend = make_backend(peer, config)
                step = _stepper(backend, pool, batch, config.latent)
                if peer.compile:
                    t0 = time.perf_counter()
                    bounded(config.compile_timeout, lambda: [step() for _ in range(3)],
                            f"torch.compile's warm-up at batch {batch}")
                    log(f"bench: torch.compile warm-up at batch {batch}: {time.perf_counter() - t0:.0f} s")
            except Exception as e:          # noqa: BLE001 - any failure of a peer is its row's reason
                failed[key] = one_line(e)
                log(f"bench: {peer.name} at batch {batch}: {failed[key]}")
                continue
            family = "numpy" if peer.library == "numpy" else ("cuda" if cuda else "torch")
            timer, measure, samples = make_timer(step, n_threads, "train_step", peer.label, f"batch {batch}")
            point = Point(key=key, step=step, family=family, batch=batch, cuda=cuda and peer.library == "torch",
                          flops=flops_mod.step_flops("train", batch, config.hidden, config.latent), measure=measure,
                          meta={"peer": peer.name, "batch": batch})
            try:
                calibrate_timer(point, timer, config.target_s, point.cuda)
            except Exception as e:          # noqa: BLE001
                failed[key] = one_line(e)
                continue
            if peer.library == "torch":
                point.meta["adam"] = adam_kind(backend.optimizer)
            points[key] = point
            timers[key] = samples
    bar.close()
    phases = {"warmup_s": time.perf_counter() - t}

    alone = _optimizer_points(config) if config.optimizer_alone else []
    everything = list(points.values()) + alone
    meter = machine.LoadMeter().start()
    t = time.perf_counter()
    bar = _tqdm(config.progress, total=len(everything) * config.repeats, desc="peers: timing", unit="sample")
    run_interleaved(everything, config.repeats, settle_s=config.settle_s, seed=config.seed,
                    on_sample=lambda p: bar.update())
    bar.close()
    phases["timing_s"] = time.perf_counter() - t
    quiet = meter.stop()

    results = {"machine": info, "label": machine.label(info), "config": config.to_json(), "data": pool.source,
               "torch_threads": n_threads, "torch_backend_adam": backend_adam,
               "peers": [{"name": p.name, "short": p.short, "label": p.label, "library": p.library,
                          "adam": p.adam, "compile": p.compile} for p in peers],
               "method": {"timing": "torch.utils.benchmark.Timer per point (num_threads explicit, gc off, "
                                    "accelerator synchronized), sized by blocked_autorange; samples interleaved, "
                                    "order reshuffled every repeat; median and IQR over repeats",
                          "ratio": "best torch peer (lowest median) time / NumPy time, median over repeats of the "
                                   "per-repeat ratio; > 1: NumPy faster"},
               **analyse(points, failed, config), "quiet": quiet}
    results["optimizer_alone"] = [_alone_record(p) for p in alone]
    results["compare"] = _compare_text(timers)
    if config.breakdown:
        t = time.perf_counter()
        log(f"bench: timing the phases of each peer's step at batch {config.breakdown_batch}")
        names = [p.name for p in peers if not p.compile or config.breakdown_batch in compile_batches]
        names = [n for n in names if (n, config.breakdown_batch) not in failed]
        results["breakdown"] = measure_peer_breakdown(names, config, pool)
        phases["breakdown_s"] = time.perf_counter() - t
    phases["total_s"] = time.perf_counter() - t_start
    results["phases"] = phases
    return results


def _torch_backend_adam(config: PeerConfig) -> str | None:
    """Which Adam TorchBackend itself uses (reported; no peer depends on it)."""
    try:
        from torch_vae.backend import TorchBackend
        backend = TorchBackend(model_config((4,), 2), device=config.device)
        return f"Adam ({adam_kind(backend.optimizer)})"
    except Exception as e:          # noqa: BLE001
        return f"unknown ({one_line(e)})"


def analyse(points: dict, failed: dict, config: PeerConfig) -> dict:
    rows, headline = [], []
    for batch in config.batches:
        ref = points.get(("numpy", batch))
        torch_points = [p for (name, b), p in points.items() if b == batch and name != "numpy" and p.seconds]
        for name in config.peers:
            key = (name, batch)
            if key in failed:
                rows.append({"peer": name, "batch": batch, "failed": failed[key]})
                continue
            p = points.get(key)
            if p is None or not p.seconds:
                continue
            s = summarize(p.seconds)
            r = paired_ratio(p.seconds, ref.seconds) if ref is not None and name != "numpy" else None
            rows.append({"peer": name, "batch": batch, "adam": p.meta.get("adam"), "steps_per_sample": p.n_steps,
                         "seconds": p.seconds, **s, "ms": s["median_s"] * 1e3, "ms_iqr": s["iqr_s"] * 1e3,
                         "samples_per_s": batch / s["median_s"], "gflops": p.flops / s["median_s"] / 1e9,
                         "time_ratio_to_numpy": r})
        line = {"batch": batch}
        if ref is not None and ref.seconds:
            line["numpy_ms"] = float(np.median(ref.seconds)) * 1e3
        if torch_points:
            best = min(torch_points, key=lambda p: float(np.median(p.seconds)))
            line.update(best=best.key[0], best_ms=float(np.median(best.seconds)) * 1e3)
            if ref is not None and ref.seconds:
                line["best_torch_over_numpy"] = paired_ratio(best.seconds, ref.seconds)
                if batch in BAR:
                    line["target"] = BAR[batch]
                    line["met"] = line["best_torch_over_numpy"]["median"] >= BAR[batch]
        headline.append(line)
    return {"rows": rows, "headline": headline}


def _compare_text(timers: dict) -> str | None:
    """torch.utils.benchmark.Compare's table of every point's samples (the console's second view)."""
    try:
        from torch.utils.benchmark import Compare, Measurement
    except ImportError:
        return None
    merged = [m for samples in timers.values() if samples for m in Measurement.merge(samples)]
    if not merged:
        return None
    compare = Compare(merged)
    compare.trim_significant_figures()
    return str(compare)


# ---------------------------------------------------------- optimizer alone
def _optimizer_points(config: PeerConfig) -> list[Point]:
    """Each Adam alone on the model's parameters (1.08 M at the default sizes), same gradient every step."""
    from numpy_vae.kernels.adam import FastAdam as Adam
    from numpy_vae.kernels.threads import available_cores
    from numpy_vae.specs import parameter_shapes

    from .adam_alone import PreviousAdam
    shapes = list(parameter_shapes(tuple(config.hidden), config.latent).values())
    n = sum(math.prod(s) for s in shapes)
    rng = np.random.default_rng([config.seed, 41])
    grad = (rng.standard_normal(n) * 1e-3).astype(np.float32)
    points = []
    threads = [config.threads] if config.threads else sorted({1, min(2, available_cores())})
    n_threads = torch_threads(config)
    for k in threads:
        opt = Adam(rng.standard_normal(n).astype(np.float32), lr=1e-3, threads=k)
        points.append(_alone_point(("alone", f"numpy Adam, {k} thread{'s' * (k > 1)}"), "numpy",
                                   lambda opt=opt: opt.step(grad), n, n_threads))
    prev = PreviousAdam(rng.standard_normal(n).astype(np.float32), lr=1e-3)
    points.append(_alone_point(("alone", "numpy Adam before issue 15 (12 passes, 1 thread)"), "numpy",
                               lambda: prev.step(grad), n, n_threads))
    try:
        import torch
    except ImportError:
        return points
    dev = torch.device(config.device)
    for flags, what in (({"foreach": False}, "single-tensor"), ({"foreach": True}, "foreach"),
                        ({"fused": True}, "fused")):
        params = [torch.randn(s, device=dev, requires_grad=True) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        try:
            opt = torch.optim.Adam(params, lr=1e-3, **flags)
            opt.step()
        except Exception:          # noqa: BLE001 - e.g. no fused kernel for this device in this torch
            continue
        points.append(_alone_point(("alone", f"torch.optim.Adam, {what}"), "cuda" if dev.type == "cuda" else "torch",
                                   opt.step, n, n_threads, cuda=dev.type == "cuda"))
    for p in points:
        timer = p.meta.pop("timer")
        calibrate_timer(p, timer, config.target_s, p.cuda)
    return points


def _alone_point(key, family, step, n, n_threads, cuda=False) -> Point:
    timer, measure, _ = make_timer(step, n_threads, "optimizer alone", key[1], f"{n:,} parameters")
    return Point(key=key, step=step, family=family, flops=13 * n, cuda=cuda, measure=measure,
                 meta={"params": n, "timer": timer})


def _alone_record(p: Point) -> dict:
    s = summarize(p.seconds)
    return {"what": p.key[1], "params": p.meta["params"], "seconds": p.seconds, **s,
            "ms": s["median_s"] * 1e3 if s.get("count") else None}


# ------------------------------------------------------------------ report
def _cell(row: dict | None) -> str:
    if row is None:
        return "—"
    if "failed" in row:
        return f"not timed: {row['failed']}"
    return f"{row['ms']:.3g} ms ± {row['iqr_pct']:.0f}%"


def headline_table(results: dict) -> str:
    peers = [p["name"] for p in results["peers"]]
    label = {p["name"]: p["short"] for p in results["peers"]}
    rows = {(r["peer"], r["batch"]): r for r in results["rows"]}
    adam = {}
    for r in results["rows"]:
        if r.get("adam"):
            adam.setdefault(r["peer"], r["adam"])
    head = []
    for name in peers:
        text = label[name]
        if name == "torch-default" and name in adam:
            text += f" ({adam[name]})"
        head.append(text)
    lines = ["| batch | " + " | ".join(head) + " | best torch ÷ NumPy (IQR) |",
             "|---:|" + "---:|" * len(peers) + "---:|"]
    for h in results["headline"]:
        cells = [_cell(rows.get((name, h["batch"]))) for name in peers]
        ratio = h.get("best_torch_over_numpy")
        last = "—" if not ratio else (f"**{ratio['median']:.2f}** ({ratio['q1']:.2f}–{ratio['q3']:.2f}), "
                                      f"best: {h['best']}")
        lines.append(f"| {h['batch']} | " + " | ".join(cells) + f" | {last} |")
    return "\n".join(lines)


def legend(results: dict) -> str:
    return "\n".join(f"- **{p['short']}** (`{p['name']}`): {p['label']}" for p in results["peers"])


def bar_lines(results: dict) -> list[str]:
    out = []
    for h in results["headline"]:
        if "target" in h:
            r = h["best_torch_over_numpy"]
            out.append(f"- batch {h['batch']}: best torch ({h['best']}) time ÷ NumPy time = {r['median']:.2f} "
                       f"(IQR {r['q1']:.2f}–{r['q3']:.2f}); target ≥ {h['target']}: "
                       f"{'met' if h['met'] else 'not met'}")
    return out


def ratio_table(results: dict) -> str:
    lines = ["| peer | batch | ms/step (median) | IQR (% of median) | samples/s | time ÷ NumPy (IQR) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in sorted(results["rows"], key=lambda r: (r["batch"], PEER_NAMES.index(r["peer"]))):
        if "failed" in r:
            lines.append(f"| {r['peer']} | {r['batch']} | not timed: {r['failed']} | | | |")
            continue
        q = r.get("time_ratio_to_numpy")
        ratio = f"{q['median']:.2f} ({q['q1']:.2f}–{q['q3']:.2f})" if q else "1"
        lines.append(f"| {r['peer']}{' (' + r['adam'] + ')' if r.get('adam') else ''} | {r['batch']} "
                     f"| {r['ms']:.3g} | {r['iqr_pct']:.0f}% | {r['samples_per_s']:,.0f} | {ratio} |")
    return "\n".join(lines)


def alone_table(results: dict) -> str:
    rows = [r for r in results.get("optimizer_alone", []) if r.get("ms") is not None]
    if not rows:
        return ""
    lines = [f"| optimizer, alone ({rows[0]['params']:,} float32 parameters) | ms/step (median) | IQR |",
             "|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['ms']:.3g} | {r['iqr_pct']:.0f}% |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    from .breakdown import breakdown_markdown
    cfg, q = results["config"], results["quiet"]
    device = cfg["device"]
    parts = [f"# Training step: NumPy against the best torch ({device})\n",
             f"**Machine:** {results['label']}  ",
             f"**Measured:** {results['machine'].get('date')}; {cfg['repeats']} interleaved repeats of "
             f"≈{cfg['target_s']} s per point; torch threads {results['torch_threads']}"
             f"{'; OpenBLAS and Adam threads ' + str(cfg['threads']) if cfg['threads'] else ''}; "
             f"data: {results['data']}  ",
             f"**Quiet-machine check:** {q['verdict']}  ",
             f"**Model:** 784-{'-'.join(map(str, cfg['hidden']))}-{cfg['latent']} MLP, float32; "
             f"TorchBackend's own optimizer: {results.get('torch_backend_adam') or '—'} (no peer uses it)\n",
             "Every peer is a backend's `train_step` (input checks, forward, backward, gradient-norm check, "
             "Adam), on the same batches; each torch peer's Adam is made explicitly (benchmarks/peers.py). "
             "Cells: median ms per step ± IQR as % of the median. Last column: the best torch peer's time ÷ "
             "NumPy's, per repeat (paired), median and IQR: above 1, NumPy is faster.\n",
             headline_table(results), "", legend(results), ""]
    bar = bar_lines(results)
    if bar:
        parts += ["**The bar (issue 15):**\n", *bar, ""]
    parts += ["## Every peer against NumPy\n", ratio_table(results), ""]
    at = alone_table(results)
    if at:
        parts += ["## The optimizer alone\n",
                  "Each Adam on the model's parameters, the same gradient every step, interleaved with the rest. "
                  "\"Before issue 15\": the previous NumPy Adam (12 passes, torch-scale moments), kept in "
                  "benchmarks/adam_alone.py for this comparison.\n", at, ""]
    if results.get("breakdown"):
        parts += [breakdown_markdown(results["breakdown"]), ""]
    return "\n".join(parts)


def write(results: dict, out: Path) -> dict:
    from .report import to_json
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"peers_json": out / "peers.json", "peers_markdown": out / "peers.md"}
    results["files"] = {k: str(v) for k, v in files.items()}
    files["peers_markdown"].write_text(markdown(results))
    files["peers_json"].write_text(to_json(results))
    return results["files"]


def measure_peer_breakdown(names: list[str], config, pool) -> dict:
    """The phases of each peer's step (peers.py) at ``config.breakdown_batch``, with each library's matmul floor."""
    from types import SimpleNamespace

    from .breakdown import PhaseClock, _numpy_phases, _torch_phases, time_phases, torch_matmul_replay
    batch, clocks = config.breakdown_batch, {}
    for name in names:
        peer = BY_NAME[name]
        backend = make_backend(peer, config)
        wrapper = SimpleNamespace(model=backend.model, optimizer=backend.optimizer,
                                  get_optimizer=lambda backend=backend: backend.optimizer,
                                  backend=SimpleNamespace(dtype="float32"), latent=config.latent,
                                  device=getattr(backend, "device", None))
        if peer.library == "numpy":
            phases, family = _numpy_phases(wrapper, pool, batch), "numpy"
        else:
            phases = _torch_phases(wrapper, pool, batch)
            phases["matmuls"] = torch_matmul_replay(config.hidden, config.latent, batch, backend.device)
            family = "cuda" if backend.device.type == "cuda" else "torch"
        clocks[name] = (PhaseClock(phases), family)
    threads = None
    if any(BY_NAME[n].library == "torch" for n in names):
        import torch
        threads = torch.get_num_threads()
        torch.set_num_threads(torch_threads(config))
    try:
        bd = time_phases(clocks, config.hidden, config.latent, batch, config.repeats, config.target_s,
                         config.settle_s, config.seed)
    finally:
        if threads is not None:
            torch.set_num_threads(threads)
    bd["labels"] = {n: BY_NAME[n].label for n in names}
    return bd

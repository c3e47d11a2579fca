"""Threads under load: the training step with another process busy on one core, 1 thread against 2.

    vae bench --load-test [--quick] [--out DIR]

For every combination of

    threads   1 or 2: OpenBLAS (OPENBLAS_NUM_THREADS), torch (OMP_NUM_THREADS and
              torch.set_num_threads) and numpy_vae's Adam (Adam(threads=...)), all alike
    burner    off, or on: a second process running ``while True: pass`` (one busy core),
              started before the measurement and ended after it

a fresh child process (``python -m benchmarks.load --child``; thread pools are sized when the
libraries load, so each setting gets its own process) times NumpyBackend.train_step and
TorchBackend.train_step with Adam(fused=True), float32, 784-512-256-20, alternating the two,
a few samples of about ``min_time`` seconds each, and reports the median ms per step.  The
combinations run in rounds, in a new random order each round, so drift spreads over all of
them.  The burner is not pinned to a core: like any other busy process, the OS places it.

The result says, per backend and batch, how much the busy core slows each thread setting, and
which setting is faster under load: what a user should pick on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
THREADS = (1, 2)


def child_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load --child")
    p.add_argument("--child", action="store_true")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--batches", default="128")
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--hidden", default="512,256")
    p.add_argument("--latent", type=int, default=20)
    args = p.parse_args(argv)
    from numpy_vae.kernels.threads import shorten_openblas_spin
    shorten_openblas_spin()      # as `vae train` does (the parent also sets it in this child's environment)
    import torch

    from numpy_vae.backends import NumpyBackend
    from numpy_vae.kernels.adam import FastAdam as Adam
    from torch_vae.backend import TorchBackend
    torch.set_num_threads(args.threads)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    config = {"arch": "mlp", "latent": args.latent, "hidden": hidden, "beta": 1.0, "dtype": np.dtype(np.float32)}
    rng = np.random.default_rng(0)
    out = {"threads": args.threads, "torch_threads": torch.get_num_threads(), "results": []}
    for batch in (int(b) for b in args.batches.split(",")):
        data = [(rng.random((batch, 784), dtype=np.float32), rng.standard_normal((batch, args.latent),
                                                                                 dtype=np.float32)) for _ in range(4)]
        nb = NumpyBackend(config)
        nb.optimizer = Adam(nb.model.flat, lr=1e-3, threads=args.threads)
        tb = TorchBackend(config)
        tb.optimizer = torch.optim.Adam(tb.params, lr=1e-3, fused=True)
        steps = {"numpy": nb.train_step, "torch-fused": tb.train_step}
        n = {}
        for name, step in steps.items():              # warm up, then size a sample to about min_time
            for i in range(3):
                step(*data[i % 4])
            t0, k = time.perf_counter(), 0
            while time.perf_counter() - t0 < args.min_time / 3:
                step(*data[k % 4])
                k += 1
            n[name] = max(1, round(k * 3))
        samples = {name: [] for name in steps}
        for _ in range(args.samples):
            for name, step in steps.items():
                t0 = time.perf_counter()
                for i in range(n[name]):
                    step(*data[i % 4])
                samples[name].append((time.perf_counter() - t0) / n[name] * 1e3)
        for name, ms in samples.items():
            out["results"].append({"backend": name, "batch": batch, "ms": float(np.median(ms)), "samples_ms": ms})
    print(json.dumps(out))
    return 0


def _child_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")      # as `vae train` has it (numpy_vae.cli sets it before NumPy loads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_load_test(out: Path | None = None, quick: bool = False, rounds: int | None = None, batches=None,
                  min_time: float | None = None, hidden=(512, 256), latent: int = 20, log=print,
                  data_dir=None) -> dict:
    """Every (threads, burner) combination in a fresh child, in rounds; see the module docstring."""
    from .machine import describe, label
    rounds = rounds or (1 if quick else 3)
    batches = batches or ([128] if quick else [1, 128])
    min_time = min_time or (0.1 if quick else 0.3)
    combos = [(t, burn) for t in THREADS for burn in (False, True)]
    rng = np.random.default_rng(7)
    runs = []
    for r in range(rounds):
        for i in rng.permutation(len(combos)):
            threads, burn = combos[i]
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if burn else None
            try:
                time.sleep(0.2 if burn else 0)
                cmd = [sys.executable, "-m", "benchmarks.load", "--child", "--threads", str(threads),
                       "--batches", ",".join(map(str, batches)), "--min-time", str(min_time),
                       "--samples", "3" if quick else "5", "--hidden", ",".join(map(str, hidden)),
                       "--latent", str(latent)]
                t0 = time.perf_counter()
                done = subprocess.run(cmd, env=_child_env(threads), capture_output=True, text=True, timeout=600,
                                      cwd=ROOT)
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
            if done.returncode != 0:
                raise RuntimeError(f"load-test child (threads {threads}) failed: {done.stderr.strip()[-500:]}")
            child = json.loads(done.stdout.strip().splitlines()[-1])
            for res in child["results"]:
                runs.append({"round": r, "threads": threads, "burner": burn, **res})
            log(f"bench --load-test: round {r + 1}/{rounds}, threads {threads}, burner {'on' if burn else 'off'}: "
                f"{time.perf_counter() - t0:.0f} s")
    summary = []
    for backend in ("numpy", "torch-fused"):
        for batch in batches:
            row = {"backend": backend, "batch": batch}
            for threads in THREADS:
                for burn in (False, True):
                    ms = [x["ms"] for x in runs if (x["backend"], x["batch"], x["threads"], x["burner"])
                          == (backend, batch, threads, burn)]
                    row[f"t{threads}_{'busy' if burn else 'quiet'}_ms"] = float(np.median(ms)) if ms else None
            summary.append(row)
    result = {"machine": describe(), "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rounds": rounds,
              "batches": batches, "hidden": list(hidden), "latent": latent, "runs": runs, "summary": summary}
    result["label"] = label(result["machine"])
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "load.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        (out / "load.md").write_text(format_load(result) + "\n")
    return result


def format_load(result: dict) -> str:
    lines = [f"Threads under load ({'-'.join(map(str, result['hidden']))}, latent {result['latent']}, float32; "
             f"median ms per train_step over {result['rounds']} round(s) of fresh processes)",
             f"Machine: {result['label']}", "",
             "| backend | batch | 1 thread, quiet | 1 thread, one core busy | 2 threads, quiet | "
             "2 threads, one core busy | busy: 2 threads ÷ 1 thread |",
             "|---|---:|---:|---:|---:|---:|---:|"]

    def f(x):
        return "—" if x is None else f"{x:.3g}"
    for r in result["summary"]:
        a, b = r["t1_busy_ms"], r["t2_busy_ms"]
        ratio = f"{b / a:.2f}" if a and b else "—"
        lines.append(f"| {r['backend']} | {r['batch']} | {f(r['t1_quiet_ms'])} | {f(a)} | {f(r['t2_quiet_ms'])} "
                     f"| {f(b)} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if "--child" in sys.argv[1:]:
        sys.exit(child_main(sys.argv[1:]))
    print(format_load(run_load_test(out=Path("bench_results"), quick="--quick" in sys.argv)))

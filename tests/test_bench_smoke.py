"""The benchmark harness cannot rot: the runner on a tiny grid, and the FLOP formula by hand.

No timing assertions here: benchmarks measure, they do not pass or fail.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from benchmarks import flops
from benchmarks.runner import _fit_overhead, _knee

pytest.importorskip("matplotlib")


def test_flop_formula_against_a_hand_count():
    # input 4, hidden (3,), latent 2:  Linears 4->3 (encoder.0), 3->4 (both heads), 2->3, 3->4 (decoder)
    assert [(n_in, n_out) for _, n_in, n_out in flops.linear_shapes((3,), 2, input_dim=4)] == [
        (4, 3), (3, 4), (2, 3), (3, 4)]
    B = 5
    forward = 2 * B * (4 * 3 + 3 * 4 + 2 * 3 + 3 * 4)                  # 420
    backward = 2 * forward - 2 * B * 4 * 3                              # no input gradient of the first layer: 720
    params = (4 * 3 + 3) + (3 * 4 + 4) + (2 * 3 + 3) + (3 * 4 + 4)        # 56
    assert flops.num_params((3,), 2, input_dim=4) == params == 56
    assert flops.forward_flops(B, (3,), 2, input_dim=4) == forward == 420
    assert flops.backward_flops(B, (3,), 2, input_dim=4) == backward == 720
    assert flops.step_flops("infer", B, (3,), 2, input_dim=4) == forward
    assert flops.step_flops("train", B, (3,), 2, input_dim=4) == forward + backward + 13 * params == 1868
    with pytest.raises(ValueError):
        flops.step_flops("eval", B, (3,), 2, input_dim=4)


def test_flop_formula_default_model():
    # 784-512-256, latent 20: 1,082,680 parameters; forward = 2 * sum(n_in * n_out) per sample
    assert flops.num_params() == 1_082_680
    per_sample = 784 * 512 + 512 * 256 + 256 * 40 + 20 * 256 + 256 * 512 + 512 * 784
    assert flops.forward_flops(128) == 2 * 128 * per_sample


def test_knee_and_overhead_fit_on_exact_data():
    a, b = 2.0, 0.01                      # ms of overhead per step, ms per sample: equal at batch a / b = 200
    batches = [2 ** k for k in range(12)]
    step_ms = [a + b * B for B in batches]
    fit = _fit_overhead(batches, step_ms)
    assert fit["overhead_ms"] == pytest.approx(a) and fit["ms_per_sample"] == pytest.approx(b)
    assert fit["knee_batch_fit"] == pytest.approx(200)
    # per doubling, time per sample falls by less than 25% from the first batch >= a / b on
    assert _knee(batches, [t / B for t, B in zip(step_ms, batches)]) == 256
    assert _knee([1, 2], [1.0, 0.5]) is None


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29]), f"{path.name}: bad IHDR checksum"
    assert data.rstrip(b"\0")[-8:-4] == b"IEND", f"{path.name} is truncated"
    return struct.unpack(">II", data[16:24])


def test_bench_runner_smoke(tmp_path, capsys):
    pytest.importorskip("torch")
    from benchmarks.cli import main
    out = tmp_path / "bench"
    rc = main(["--batches", "1,4", "--repeats", "2", "--backends", "numpy-f32,torch-cpu-f32,torch-cuda-f32",
               "--hidden", "16,8", "--latent", "4", "--hidden-widths", "8,16", "--scaling-batch", "4",
               "--min-time", "0.002", "--settle", "0", "--matmul-size", "128", "--no-progress",
               "--data-dir", str(tmp_path / "no-mnist-here"), "--out", str(out), "--no-peers"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| numpy-f32 | 1 |" in printed

    results = json.loads((out / "bench.json").read_text())
    for key in ("machine", "label", "config", "points", "matmul_peak", "bar", "knees", "width_scaling", "memory",
                "skipped_backends", "flops_formula", "flops", "phases", "files", "breakdown"):
        assert key in results, key
    for key in ("cpu_model", "usable_cpus", "blas", "numpy", "torch", "torch_threads", "cuda_available"):
        assert key in results["machine"], key
    assert results["matmul_peak"]["numpy-f32"]["gflops"] > 0

    import torch
    ran = ["numpy-f32", "torch-cpu-f32"] + (["torch-cuda-f32"] if torch.cuda.is_available() else [])
    if not torch.cuda.is_available():
        assert "CUDA" in results["skipped_backends"]["torch-cuda-f32"]
    assert sorted(results["backends"]) == sorted(ran)
    grid = {(p["backend"], p["mode"], p["batch"]) for p in results["points"] if "grid" in p["roles"]}
    assert grid == {(b, m, n) for b in ran for m in ("train", "infer") for n in (1, 4)}
    for p in results["points"]:
        assert p["count"] == 2 and len(p["seconds"]) == 2
        assert p["ms_per_step"] > 0 and p["gflops"] > 0 and p["flops"] > 0
        assert p["time_ratio_to_numpy_f32"] is not None
    widths = {(w["backend"], w["width"]) for w in results["width_scaling"]}
    assert widths == {(b, w) for b in ran for w in (8, 16)}
    memory = {(m["backend"], m["batch"]): m for m in results["memory"]}
    assert set(memory) == {(b, n) for b in ran for n in (1, 4)}
    for m in memory.values():
        assert "error" not in m, m
        assert m["train_mb"] >= 0 and m["infer_mb"] >= 0

    bd = results["breakdown"]
    rows = {(r["backend"], r["stat"]): r for r in bd["rows"]}
    assert set(rows) == {(b, stat) for b in ran for stat in ("median", "fastest")} and bd["batch"] == 4
    for (backend, stat), r in rows.items():
        samples = bd["samples_ms"][backend]
        assert all(len(samples[phase]) == 2 for phase in ("forward", "backward", "optimizer"))
        assert all(r["ms"][phase] > 0 for phase in ("forward", "backward", "optimizer"))
        assert r["step_ms"] == pytest.approx(r["ms"]["forward"] + r["ms"]["backward"] + r["ms"]["optimizer"])
        if stat == "fastest":                  # one whole repeat: the shortest step of them all
            steps = [sum(samples[p][i] for p in ("forward", "backward", "optimizer")) for i in range(2)]
            assert r["step_ms"] == pytest.approx(min(steps))
    assert rows["numpy-f32", "median"]["ms"]["matmuls"] > 0 and rows["numpy-f32", "median"]["matmul_gflops"] > 0

    md = (out / "bench.md").read_text()
    assert "## Where the training step's time goes" in md and "| numpy-f32 |" in md
    for backend in ran:
        for batch in (1, 4):
            assert md.count(f"| {backend} | {batch} |") >= 2        # training and inference tables (and memory)
    if not torch.cuda.is_available():
        assert "| torch-cuda-f32 | — | skipped: CUDA not available" in md
    for name in ("time_per_sample.png", "memory.png", "scaling.png", "breakdown.png"):
        width, height = _png_size(out / name)
        assert width > 300 and height > 200


def test_matmul_replay_runs_exactly_the_counted_products(monkeypatch):
    """The breakdown's "matmuls alone" does the FLOPs the formula counts for forward + backward, no more."""
    import numpy as np
    from benchmarks.breakdown import matmul_replay
    from numpy_vae.model import build_model
    hidden, latent, batch = (12, 6), 3, 5
    model = build_model(hidden=hidden, latent=latent)
    replay = matmul_replay(model, batch)
    counted, real_matmul = [], np.matmul

    def counting_matmul(a, b, out=None):
        counted.append(2 * a.shape[0] * a.shape[1] * b.shape[1])
        assert out is not None and out.shape == (a.shape[0], b.shape[1])
        return real_matmul(a, b, out=out)

    monkeypatch.setattr(np, "matmul", counting_matmul)
    replay()
    assert sum(counted) == flops.forward_flops(batch, hidden, latent) + flops.backward_flops(batch, hidden, latent)
    assert len(counted) == 3 * 6 - 1       # 6 Linears (heads fused): forward, dW, dX each, no dX for the first


def test_conv_benchmark_runs_and_counts_the_conv_flops(tmp_path, capsys):
    """`vae bench --conv` on a tiny batch: both backends' train_step timed, per-layer rows, files written."""
    from benchmarks.conv import layer_flops, step_flops
    from numpy_vae.cli import main
    from numpy_vae.specs import conv_spec

    spec = conv_spec(20)
    layers = dict((name, f) for name, _, f in layer_flops(spec, 2))
    assert layers["encoder.1"] == 2 * 2 * (32 * 14 * 14) * 1 * 16          # Conv2d(1, 32, 4, 2, 1) on 28x28
    assert layers["encoder.3"] == 2 * 2 * (64 * 7 * 7) * 32 * 16
    assert layers["decoder.3"] == 2 * 2 * (64 * 7 * 7) * 32 * 16           # ConvTranspose2d(64, 32): input side
    assert layers["decoder.5"] == 2 * 2 * (32 * 14 * 14) * 1 * 16
    assert layers["heads"] == 2 * 2 * 3136 * 40 and layers["decoder.0"] == 2 * 2 * 20 * 3136
    forward = sum(layers.values())
    assert step_flops(spec, 2) == 3 * forward - layers["encoder.1"] + 13 * spec.num_params
    assert main(["bench", "--conv", "--scaling-batch", "2", "--repeats", "2", "--min-time", "0.001",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "torch time ÷ NumPy time, paired per repeat" in out and "encoder.1 Conv2d" in out
    assert (tmp_path / "conv.json").is_file() and (tmp_path / "conv.md").is_file()


# ------------------------------------------------------------------------------ the peers
REPO = Path(__file__).resolve().parents[1]
GPU_CHECK = REPO / "benchmarks" / "gpu_check.sh"


def test_peers_headline_every_peer_timed(tmp_path, capsys, monkeypatch):
    """`vae bench --peers-only` on a tiny model: every peer's train_step timed with torch.utils.benchmark,
    interleaved; best torch / NumPy paired per repeat; the optimizer alone; each peer's phases with its floor."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)       # the compile peer's path, without compiling
    from benchmarks.cli import main
    from benchmarks.peers import PEER_NAMES
    out = tmp_path / "peers"
    rc = main(["--peers-only", "--hidden", "16,8", "--latent", "4", "--peer-batches", "1,4", "--compile-batches", "4",
               "--repeats", "2", "--min-time", "0.002", "--settle", "0", "--no-progress",
               "--data-dir", str(tmp_path / "no-mnist-here"), "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "best torch ÷ NumPy" in printed and "torch.utils.benchmark.Compare" in printed

    r = json.loads((out / "peers.json").read_text())
    assert [p["name"] for p in r["peers"]] == PEER_NAMES
    rows = {(x["peer"], x["batch"]): x for x in r["rows"]}
    assert rows["torch-compile", 1]["failed"] == "not compiled at this batch (--compile-batches)"
    timed = {k for k, x in rows.items() if "failed" not in x}
    assert timed == {(p, b) for p in PEER_NAMES for b in (1, 4)} - {("torch-compile", 1)}
    for key in timed:
        x = rows[key]
        assert x["count"] == 2 and x["ms"] > 0 and x["iqr_pct"] is not None
        assert (x["time_ratio_to_numpy"] is None) == (key[0] == "numpy")
    assert {rows[p, 4]["adam"] for p in ("torch-default", "torch-foreach", "torch-fused")} == {
        "single-tensor", "foreach", "fused"}
    for h in r["headline"]:
        assert h["best"] in PEER_NAMES[1:] and h["best_torch_over_numpy"]["median"] > 0
    assert {h["batch"]: "target" in h for h in r["headline"]} == {1: True, 4: False}     # the bar's batch 1
    assert r["quiet"]["verdict"] and r["torch_backend_adam"].startswith("Adam (")
    alone = [a["what"] for a in r["optimizer_alone"]]
    assert any(a.startswith("numpy Adam, 1 thread") for a in alone) and "torch.optim.Adam, fused" in alone
    assert any("before issue 15" in a for a in alone)
    bd = {(x["backend"], x["stat"]): x for x in r["breakdown"]["rows"]}
    assert r["breakdown"]["batch"] == 4 and {b for b, _ in bd} == set(PEER_NAMES)
    for (name, stat), x in bd.items():
        assert all(x["ms"][phase] > 0 for phase in ("forward", "backward", "optimizer", "matmuls")), name
        assert x["matmul_gflops"] > 0
    md = (out / "peers.md").read_text()
    assert "| batch | NumPy | torch, default Adam (single-tensor) |" in md and "Quiet-machine check" in md
    assert "## The optimizer alone" in md and "## Where the training step's time goes" in md


def test_a_peer_that_fails_gets_its_reason_in_the_table(monkeypatch):
    torch = pytest.importorskip("torch")
    from benchmarks.peers import PeerConfig, headline_table, run_peers

    def broken(model, **kw):
        raise RuntimeError("no working C++ compiler was found. Install one")
    monkeypatch.setattr(torch, "compile", broken)
    r = run_peers(PeerConfig(batches=[2], peers=["numpy", "torch-fused", "torch-compile"], hidden=(8,), latent=2,
                             repeats=2, target_s=0.002, settle_s=0, breakdown=False, optimizer_alone=False,
                             data_dir=None, progress=False), log=lambda *a: None)
    row = next(x for x in r["rows"] if x["peer"] == "torch-compile")
    assert row["failed"] == "RuntimeError: no working C++ compiler was found"
    assert "not timed: RuntimeError: no working C++ compiler was found" in headline_table(r)
    assert r["headline"][0]["best"] == "torch-fused"


def test_a_warm_up_that_overruns_is_stopped():
    from benchmarks.peers import WarmupTimeout, bounded
    t0 = time.perf_counter()
    with pytest.raises(WarmupTimeout, match="took longer than 0 s"):
        bounded(0.2, lambda: time.sleep(5), "torch.compile's warm-up")
    assert time.perf_counter() - t0 < 2
    assert bounded(1.0, lambda: 7, "quick") == 7


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="this machine has CUDA")
def test_bench_on_cuda_without_cuda_is_one_line_and_exit_1(tmp_path, capsys):
    pytest.importorskip("torch")
    from numpy_vae.cli import main
    t0 = time.perf_counter()
    assert main(["bench", "--peers-only", "--device", "cuda", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vae: error: --device cuda: CUDA is not available on this machine") and err.count("\n") == 1
    assert time.perf_counter() - t0 < 10 and not list(tmp_path.iterdir())


def _driver_present() -> bool:
    return bool(shutil.which("nvidia-smi") or glob.glob("/dev/nvidia[0-9]*"))


def _gpu_check(out: Path, **env) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    done = subprocess.run(["bash", str(GPU_CHECK), str(out)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable, **env})
    return done, time.monotonic() - t0


@pytest.mark.skipif(_driver_present(), reason="this machine has an NVIDIA driver")
def test_gpu_check_fails_at_once_and_clearly_without_a_gpu(tmp_path):
    done, seconds = _gpu_check(tmp_path / "out")
    assert done.returncode == 3 and seconds < 5
    assert done.stderr.strip() == ("gpu_check: no CUDA here: no NVIDIA driver (no nvidia-smi on PATH, no /dev/nvidia*); "
                                   "run this on a GPU machine")
    assert (tmp_path / "out" / "summary.txt").read_text().startswith("FAILED: no CUDA here")


@pytest.mark.skipif(_has_cuda(), reason="this machine has CUDA")
def test_gpu_check_with_a_driver_but_no_cuda_in_torch_fails_fast(tmp_path):
    """A machine with nvidia-smi whose torch sees no GPU: the script asks torch, and stops there."""
    pytest.importorskip("torch")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho fake\n")
    (fake / "nvidia-smi").chmod(0o755)
    done, seconds = _gpu_check(tmp_path / "out", PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    assert done.returncode == 3 and seconds < 60
    assert "sees no GPU (torch.cuda.is_available() is False)" in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["log.txt", "summary.txt"]


def test_gpu_check_usage():
    done = subprocess.run(["bash", str(GPU_CHECK)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "usage:" in done.stderr


# ------------------------------------------------------------------------ threads under load
def test_load_test_child_times_both_backends(capsys):
    torch = pytest.importorskip("torch")
    from benchmarks import load
    threads = torch.get_num_threads()
    try:
        assert load.child_main(["--child", "--threads", "1", "--batches", "2", "--min-time", "0.003", "--samples", "2",
                                "--hidden", "8", "--latent", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["threads"] == 1 and out["torch_threads"] == 1
    assert {(x["backend"], x["batch"]) for x in out["results"]} == {("numpy", 2), ("torch-fused", 2)}
    assert all(x["ms"] > 0 and len(x["samples_ms"]) == 2 for x in out["results"])


def test_load_test_runs_every_setting_with_and_without_a_burner(tmp_path, monkeypatch):
    """The orchestration, with the children faked: each (threads, burner) once a round, the burner ended."""
    from benchmarks import load
    burners, children = [], []

    class FakeBurner:
        def __init__(self, cmd):
            self.cmd, self.killed = cmd, False
            burners.append(self)

        def kill(self):
            self.killed = True

        def wait(self):
            return -9

    def fake_run(cmd, env, **kw):
        threads = int(cmd[cmd.index("--threads") + 1])
        children.append((threads, env["OMP_NUM_THREADS"], env["OPENBLAS_NUM_THREADS"], len(burners)))
        busy = bool(burners) and not burners[-1].killed
        res = [{"backend": b, "batch": 128, "ms": 10.0 * (2 if busy else 1) / threads, "samples_ms": [1.0]}
               for b in ("numpy", "torch-fused")]
        return subprocess.CompletedProcess(cmd, 0, json.dumps({"threads": threads, "results": res}) + "\n", "")
    monkeypatch.setattr(load.subprocess, "Popen", FakeBurner)
    monkeypatch.setattr(load.subprocess, "run", fake_run)
    monkeypatch.setattr(load.time, "sleep", lambda s: None)
    r = load.run_load_test(out=tmp_path, rounds=2, batches=[128], log=lambda *a: None)
    assert len(children) == 8 and len(burners) == 4 and all(b.killed for b in burners)
    assert all(str(t) == omp == blas for t, omp, blas, _ in children)
    assert burners[0].cmd[1:] == ["-c", "while True: pass"]
    row = next(x for x in r["summary"] if x["backend"] == "numpy")
    assert row == {"backend": "numpy", "batch": 128, "t1_quiet_ms": 10.0, "t1_busy_ms": 20.0, "t2_quiet_ms": 5.0,
                   "t2_busy_ms": 10.0}
    assert "| numpy | 128 | 10 | 20 | 5 | 10 | 0.50 |" in (tmp_path / "load.md").read_text()

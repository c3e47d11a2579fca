"""The benchmark package cannot rot: every preset on a tiny model, the FLOP formula and the floor by hand.

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

import numpy as np
import pytest

from benchmarks import flops
from benchmarks.runner import fit_overhead, knee

REPO = Path(__file__).resolve().parents[1]
GPU_CHECK = REPO / "benchmarks" / "gpu_check.sh"
TINY = ["--hidden", "16,8", "--repeats", "2", "--min-time", "0.002", "--no-progress"]


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


def test_floor_is_flops_at_the_rate_plus_one_pass():
    # 2 GFLOP at 100 GFLOP/s = 20 ms; 1e6 float32 parameters: 4 arrays read and written = 32 MB at 16 GB/s = 2 ms
    assert flops.floor_seconds(2e9, 10**6, 4, 100.0, 16.0) == pytest.approx(0.022)
    assert flops.floor_seconds(2e9, 10**6, 4, 100.0, 16.0, mode="infer") == pytest.approx(0.020)
    assert flops.floor_seconds(2e9, 10**6, 4, None, 16.0) is None


def test_spec_flops_agree_with_the_mlp_formula():
    from numpy_vae.specs import mlp_spec
    for mode in ("train", "infer"):
        assert flops.spec_step_flops(mlp_spec((12, 6), 3), mode, 5) == flops.step_flops(mode, 5, (12, 6), 3)


def test_knee_and_overhead_fit_on_exact_data():
    a, b = 2.0, 0.01                      # ms of overhead per step, ms per sample: equal at batch a / b = 200
    batches = [2 ** k for k in range(12)]
    step_ms = [a + b * B for B in batches]
    fit = fit_overhead(batches, step_ms)
    assert fit["overhead_ms"] == pytest.approx(a) and fit["ms_per_sample"] == pytest.approx(b)
    assert fit["knee_batch_fit"] == pytest.approx(200)
    # per doubling, time per sample falls by less than 25% from the first batch >= a / b on
    assert knee(batches, [t / B for t, B in zip(step_ms, batches)]) == 256
    assert knee([1, 2], [1.0, 0.5]) is None


def test_paired_ratio_and_peak_memory():
    from benchmarks.timing import paired_ratio, peak_bytes
    r = paired_ratio([2.0, 4.0, 6.0], [1.0, 1.0, 2.0])          # per repeat: 2, 4, 3
    assert (r["q1"], r["median"], r["q3"]) == (2.5, 3.0, 3.5)
    assert paired_ratio([1.0], [1.0, 2.0]) is None
    assert peak_bytes(lambda: np.ones(10**6), "numpy") >= 8 * 10**6      # tracemalloc sees NumPy's arrays
    assert peak_bytes(lambda: None, "numpy") < 10**5


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29]), f"{path.name}: bad IHDR checksum"
    assert data.rstrip(b"\0")[-8:-4] == b"IEND", f"{path.name} is truncated"
    return struct.unpack(">II", data[16:24])


def test_full_run_prints_and_writes_every_table(tmp_path, capsys):
    """`vae bench` on a tiny model: every contestant, batch and mode timed through torch.utils.benchmark,
    every table of docs/benchmarks.md printed and written, the figures drawn."""
    from benchmarks.cli import main
    out = tmp_path / "bench"
    assert main([*TINY, "--batches", "1,4", "--data-dir", str(tmp_path / "no-mnist"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for heading in ("## Training step: NumPy against the best torch", "## Training step (train_step",
                    "## Inference (encode + decode)", "## The targets", "## The optimizer alone",
                    "## Where the training step's time goes", "## Peak memory", "## Scaling",
                    "torch.utils.benchmark.Compare"):
        assert heading in printed, heading
    r = json.loads((out / "bench.json").read_text())
    names = ["numpy-f32", "numpy-f64", "torch-fused"]
    grid = {(p["backend"], p["mode"], p["batch"]): p for p in r["points"] if p["role"] == "grid"}
    assert set(grid) == {(n, m, b) for n in names for m in ("train", "infer") for b in (1, 4)}
    for (name, mode, batch), p in grid.items():
        assert p["count"] == 2 and len(p["seconds"]) == 2 and p["ms"] > 0 and p["gflops"] > 0
        assert p["floor_ms"] > 0 and p["pct_of_matmul"] > 0 and p["pct_of_floor"] > 0
        assert (p["ratio_to_numpy"] is None) == (name == "numpy-f32")
    assert {(p["backend"], tuple(p["hidden"])) for p in r["points"] if p["role"] == "width"} == {
        (n, (8, 4)) for n in names}
    assert r["rates"]["numpy-float32"]["gflops"] > 0 and r["rates"]["numpy-float32"]["pass_gbytes"] > 0
    assert [h["batch"] for h in r["headline"]] == [1, 4] and r["headline"][0]["target"] == 1.0
    assert {a["what"] for a in r["alone"]} >= {"numpy Adam, 1 thread", "torch.optim.Adam, fused"}
    rows = {(x["backend"], x["stat"]): x for x in r["breakdown"]["rows"]}
    assert set(rows) == {(n, s) for n in names for s in ("median", "fastest")}
    for x in rows.values():
        assert all(x["ms"][phase] > 0 for phase in ("forward", "backward", "optimizer", "matmuls"))
        assert x["step_ms"] == pytest.approx(x["ms"]["forward"] + x["ms"]["backward"] + x["ms"]["optimizer"])
    assert {(m["backend"], m["batch"]) for m in r["memory"]} == {(n, b) for n in names for b in (1, 4)}
    assert all(m["train_mb"] > 0 for m in r["memory"] if m["backend"].startswith("numpy"))
    md = (out / "bench.md").read_text()
    assert md.count("| numpy-f64 | 4 |") >= 3           # training, inference, memory
    for name in ("time_per_step.png", "memory.png", "scaling.png", "breakdown.png"):
        width, height = _png_size(out / name)
        assert width > 300 and height > 200


def test_matmul_replay_runs_exactly_the_counted_products(monkeypatch):
    """The breakdown's "matmuls alone" does the FLOPs the formula counts for forward + backward, no more."""
    from benchmarks.steps import matmul_replay
    hidden, latent, batch = (12, 6), 3, 5
    replay = matmul_replay(hidden, latent, batch, "numpy")
    counted, real_matmul = [], np.matmul

    def counting_matmul(a, b, out=None):
        counted.append(2 * a.shape[0] * a.shape[1] * b.shape[1])
        assert out is not None and out.shape == (a.shape[0], b.shape[1])
        return real_matmul(a, b, out=out)

    monkeypatch.setattr(np, "matmul", counting_matmul)
    replay()
    assert sum(counted) == flops.forward_flops(batch, hidden, latent) + flops.backward_flops(batch, hidden, latent)
    assert len(counted) == 3 * 6 - 1       # 6 Linears (heads fused): forward, dW, dX each, no dX for the first


def test_conv_preset_counts_the_conv_flops_and_times_its_layers(tmp_path, capsys):
    from numpy_vae.cli import main
    from numpy_vae.specs import conv_spec

    spec = conv_spec(20)
    layers = dict((name, f) for name, _, f in flops.layer_flops(spec, 2))
    assert layers["encoder.1"] == 2 * 2 * (32 * 14 * 14) * 1 * 16          # Conv2d(1, 32, 4, 2, 1) on 28x28
    assert layers["encoder.3"] == 2 * 2 * (64 * 7 * 7) * 32 * 16
    assert layers["decoder.3"] == 2 * 2 * (64 * 7 * 7) * 32 * 16           # ConvTranspose2d(64, 32): input side
    assert layers["decoder.5"] == 2 * 2 * (32 * 14 * 14) * 1 * 16
    assert layers["heads"] == 2 * 2 * 3136 * 40 and layers["decoder.0"] == 2 * 2 * 20 * 3136
    forward = sum(layers.values())
    assert flops.spec_step_flops(spec, "train", 2) == 3 * forward - layers["encoder.1"] + 13 * spec.num_params
    assert main(["bench", "--conv", "--batches", "2", "--repeats", "2", "--min-time", "0.001", "--out", str(tmp_path),
                 "--no-progress", "--data-dir", str(tmp_path / "no-mnist")]) == 0
    out = capsys.readouterr().out
    assert "## Layers of the conv VAE" in out and "encoder.1 Conv2d" in out and "decoder.3 ConvTranspose2d" in out
    r = json.loads((tmp_path / "conv.json").read_text())
    assert {p["backend"] for p in r["points"]} == {"numpy-f32", "torch-fused"} and len(r["layers"]) == 5
    assert r["points"][0]["flops"] == flops.spec_step_flops(spec, "train", 2)


def test_peers_preset_times_every_torch_setup(tmp_path, capsys, monkeypatch):
    """`vae bench --peers`: NumPy against torch's default, foreach and fused Adam and torch.compile (compiled at
    the breakdown's batch only), best torch / NumPy paired per repeat, the optimizer alone, each step's phases."""
    import torch
    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)       # the compile path, without compiling
    from benchmarks.cli import main
    out = tmp_path / "peers"
    assert main([*TINY, "--peers", "--batches", "1,4", "--data-dir", str(tmp_path / "no-mnist"),
                 "--out", str(out)]) == 0
    assert "best torch ÷ NumPy" in capsys.readouterr().out
    r = json.loads((out / "peers.json").read_text())
    names = ["numpy-f32", "torch-default", "torch-foreach", "torch-fused", "torch-compile"]
    rows = {(x["backend"], x["batch"]): x for x in r["points"]}
    assert rows["torch-compile", 1]["failed"] == "not compiled at this batch"
    assert {k for k, x in rows.items() if "failed" not in x} == {(n, b) for n in names for b in (1, 4)} - {
        ("torch-compile", 1)}
    assert {rows[n, 4]["adam"] for n in ("torch-default", "torch-foreach", "torch-fused")} == {
        "single-tensor", "foreach", "fused"}
    for h in r["headline"]:
        assert h["best"] in names[1:] and h["best_torch_over_numpy"]["median"] > 0
    assert {x["backend"] for x in r["breakdown"]["rows"]} == set(names) - {"torch-compile"}
    md = (out / "peers.md").read_text()
    assert "| batch | numpy-f32 | torch-default (single-tensor Adam) |" in md and "not timed: not compiled" in md
    assert "Quiet-machine check" in md and "## The optimizer alone" in md


def test_a_contestant_that_fails_gets_its_reason_in_the_table(monkeypatch):
    import torch
    from benchmarks.report import headline_table
    from benchmarks.runner import Config, run

    def broken(model, **kw):
        raise RuntimeError("no working C++ compiler was found. Install one")
    monkeypatch.setattr(torch, "compile", broken)
    r = run(Config(preset="peers", contestants=["numpy-f32", "torch-fused", "torch-compile"], batches=[2],
                   compile_batches=(2,), modes=("train",), hidden=(8,), latent=2, repeats=2, target_s=0.002,
                   settle_s=0, breakdown=False, alone=False, memory=False, matmul_n=64, data_dir=None,
                   progress=False), log=lambda *a: None)
    row = next(x for x in r["points"] if x["backend"] == "torch-compile")
    assert row["failed"] == "RuntimeError: no working C++ compiler was found"
    assert "not timed: RuntimeError: no working C++ compiler was found" in headline_table(r)
    assert r["headline"][0]["best"] == "torch-fused"


def test_a_warm_up_that_overruns_is_stopped():
    from benchmarks.runner import _bounded
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError, match="took longer than 0 s"):
        _bounded(0.2, lambda: time.sleep(5))
    assert time.perf_counter() - t0 < 2
    assert _bounded(1.0, lambda: 7) == 7


def test_presets_that_exclude_each_other_are_one_line(capsys):
    from benchmarks.cli import main
    assert main(["--peers", "--conv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--peers, --conv and --load are separate runs" in err


def _has_cuda() -> bool:
    import torch                     # a dependency: without it these tests fail, never skip
    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="this machine has CUDA")
def test_bench_on_cuda_without_cuda_is_one_line_and_exit_1(tmp_path, capsys):
    from numpy_vae.cli import main
    t0 = time.perf_counter()
    assert main(["bench", "--cuda", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vae: error: --cuda: CUDA is not available on this machine") and err.count("\n") == 1
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
def test_load_runs_every_setting_with_and_without_a_burner(tmp_path, monkeypatch):
    """The orchestration, with the timing faked: each thread count quiet and busy, the burner ended each time."""
    from benchmarks import report, runner
    burners, settings = [], []

    class FakeBurner:
        def __init__(self, cmd):
            self.cmd, self.killed = cmd, False
            burners.append(self)

        def kill(self):
            self.killed = True

        def wait(self):
            return -9

    def fake_run(cfg, log):
        busy = bool(burners) and not burners[-1].killed
        settings.append((cfg.threads, busy))
        return {"points": [{"backend": b, "batch": 128, "ms": 10.0 * (2 if busy else 1) / cfg.threads}
                           for b in ("numpy-f32", "torch-fused")]}
    monkeypatch.setattr(runner.subprocess, "Popen", FakeBurner)
    monkeypatch.setattr(runner, "run", fake_run)
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    r = runner.run_load(runner.Config(preset="load", batches=[128], progress=False), log=lambda *a: None)
    assert settings == [(1, False), (1, True), (2, False), (2, True)]
    assert len(burners) == 2 and all(b.killed for b in burners) and burners[0].cmd[1:] == ["-c", "while True: pass"]
    assert r["rows"][0] == {"backend": "numpy-f32", "batch": 128, "t1_quiet_ms": 10.0, "t1_busy_ms": 20.0,
                            "t2_quiet_ms": 5.0, "t2_busy_ms": 10.0}
    report.write(r, tmp_path)
    assert "| numpy-f32 | 128 | 10 | 20 | 5 | 10 | 0.50 |" in (tmp_path / "load.md").read_text()


def test_layer_points_time_numpys_layers_as_the_step_runs_them(monkeypatch):
    """The conv layer table: NumPy's layers get x and dy in the step's memory layout (channels-last after a
    fast convolution), and the first layer's backward skips dx, as in the step and as torch's point does."""
    from benchmarks.steps import layer_points, make_backend
    from numpy_vae.kernels.conv import FastConv2d, FastConvTranspose2d

    np_b, t_b = (make_backend(n, "conv", (), 20) for n in ("numpy-f32", "torch-fused"))
    calls = []
    for cls in (FastConv2d, FastConvTranspose2d):
        def spy(self, x, _forward=cls.forward):
            y, backward = _forward(self, x)

            def watched(dy, need_dx=True):
                calls.append((x.transpose(0, 2, 3, 1).flags.c_contiguous, dy.transpose(0, 2, 3, 1).flags.c_contiguous,
                              need_dx))
                return backward(dy, need_dx)
            return y, watched
        monkeypatch.setattr(cls, "forward", spy)
    for p in layer_points(np_b, t_b, batch=2):
        if p.family == "numpy" and ("Conv" in p.key[1]):
            p.step()
    # encoder.1 (image input, no dx), encoder.3 (channels-last x), decoder.3 (x from a reshape: NCHW), decoder.5
    assert [c[2] for c in calls] == [False, True, True, True]
    assert calls[1][:2] == (True, True) and calls[3][:2] == (True, True)

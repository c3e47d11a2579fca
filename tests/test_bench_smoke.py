"""The benchmark harness cannot rot: the runner on a tiny grid, and the FLOP formula by hand.

No timing assertions here: benchmarks measure, they do not pass or fail.
"""
from __future__ import annotations

import json
import struct
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
               "--data-dir", str(tmp_path / "no-mnist-here"), "--out", str(out)])
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

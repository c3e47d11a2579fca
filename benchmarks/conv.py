"""The convolutional VAE's training step: NumPy against torch, with the FLOPs counted from the spec.

    vae bench --conv [--repeats N] [--batch B] [--out DIR]

Times ``NumpyBackend.train_step`` and ``TorchBackend.train_step`` (the code ``vae train`` runs:
forward, backward, gradient-norm check, Adam) on the same batches and noise, interleaved
(every repeat visits both in a new random order, as ``timing.run_interleaved`` does), and gives
medians, IQRs and the paired ratio torch ÷ NumPy per repeat.  Then each layer's forward and
backward on its own, per backend, to show where the time goes.

FLOPs of a layer's forward, from the shapes (B batch):
    Linear            2 B n_in n_out
    Conv2d            2 B C_out H_out W_out C_in kH kW
    ConvTranspose2d   2 B C_in H_in W_in C_out kH kW      (every input pixel meets every kernel tap)
Backward is twice the forward (input gradient and weight gradient), less the first layer's input
gradient, which training skips; Adam is 13 FLOPs per parameter.  Elementwise work is not counted.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from numpy_vae import specs

from .flops import K_ADAM
from .timing import Point, calibrate, paired_ratio, run_interleaved, summarize


def layer_flops(spec: specs.VAESpec, batch: int) -> list[tuple[str, str, int]]:
    """(name, description, forward FLOPs) of every layer with parameters, in the order the step runs them."""
    out, shape = [], spec.input_shape
    for prefix, layers in (("encoder", spec.encoder), ("decoder", spec.decoder)):
        if prefix == "decoder":
            head = spec.head[0]
            out.append(("heads", f"Linear({head.in_features}, 2x{head.out_features})",
                        2 * batch * head.in_features * 2 * head.out_features))
            shape = (spec.latent,)
        for i, layer in enumerate(layers):
            new = layer.output_shape(shape)
            if isinstance(layer, specs.Linear):
                out.append((f"{prefix}.{i}", repr(layer), 2 * batch * layer.in_features * layer.out_features))
            elif isinstance(layer, specs.Conv2d):
                out.append((f"{prefix}.{i}", f"Conv2d {shape} -> {new}",
                            2 * batch * math.prod(new) * layer.in_channels * math.prod(layer.kernel_size)))
            elif isinstance(layer, specs.ConvTranspose2d):
                out.append((f"{prefix}.{i}", f"ConvTranspose2d {shape} -> {new}",
                            2 * batch * math.prod(shape) * layer.out_channels * math.prod(layer.kernel_size)))
            shape = new
    return out


def step_flops(spec: specs.VAESpec, batch: int) -> int:
    layers = layer_flops(spec, batch)
    forward = sum(f for _, _, f in layers)
    return forward + (2 * forward - layers[0][2]) + K_ADAM * spec.num_params


def _layer_points(model_np, model_t, batch: int, rng) -> list[Point]:
    """Forward + backward of each layer alone, NumPy (its closures) and torch (autograd), same shapes."""
    import torch
    points = []
    h_np = rng.random((batch, model_np.input_dim)).astype(model_np.dtype)
    for stack_np, stack_t, prefix in ((model_np.encoder, model_t.encoder, "encoder"),
                                      (model_np.decoder, model_t.decoder, "decoder")):
        if prefix == "decoder":
            h_np = rng.standard_normal((batch, model_np.latent)).astype(model_np.dtype)
        for i, (layer, module) in enumerate(zip(stack_np, stack_t)):
            y = layer(h_np.copy())
            if "params" in vars(layer):
                x_np, dy_np = h_np.copy(), rng.standard_normal(y.shape).astype(model_np.dtype)
                x_t = torch.from_numpy(x_np.copy()).requires_grad_(i > 0 or prefix == "decoder")
                dy_t = torch.from_numpy(dy_np)

                def numpy_step(layer=layer, x=x_np, dy=dy_np):
                    _, backward = layer.forward(x)
                    backward(dy)

                def torch_step(module=module, x=x_t, dy=dy_t):
                    module.zero_grad(set_to_none=True)
                    module(x).backward(dy)

                name = f"{prefix}.{i} {type(module).__name__}"            # torch's name: Conv2d, ReLU, ...
                points.append(Point(("numpy", name), numpy_step, "numpy", 0, batch))
                points.append(Point(("torch", name), torch_step, "torch", 0, batch))
            h_np = y
    return points


def run_conv_benchmark(batch: int = 128, repeats: int = 15, min_time: float = 0.3, seed: int = 0,
                       out: Path | None = None, log=print) -> dict:
    """Interleaved train_step timings of the conv VAE (float32) on both backends, and the per-layer split."""
    import torch
    from numpy_vae.backends import NumpyBackend
    from torch_vae.backend import TorchBackend

    from .machine import describe

    config = {"arch": "conv", "latent": 20, "hidden": (), "beta": 1.0, "dtype": np.dtype(np.float32)}
    spec = specs.make_spec("conv", latent=20)
    rng = np.random.default_rng([seed, 13])
    data = [(rng.random((batch, 784)).astype(np.float32), rng.standard_normal((batch, 20)).astype(np.float32))
            for _ in range(8)]
    backends = {"numpy-f32": NumpyBackend(config, seed=seed), "torch-cpu-f32": TorchBackend(config, seed=seed)}
    flops = step_flops(spec, batch)

    def stepper(backend):
        cycle = iter(range(10**12))
        return lambda: backend.train_step(*data[next(cycle) % len(data)])

    points = [Point((name, "train_step"), stepper(b), name.split("-")[0], flops, batch) for name, b in backends.items()]
    points += _layer_points(backends["numpy-f32"].model, backends["torch-cpu-f32"].model, batch, rng)
    log(f"bench --conv: calibrating {len(points)} points (torch threads: {torch.get_num_threads()})")
    for p in points:
        calibrate(p, min_time)
    log(f"bench --conv: {repeats} interleaved repeats")
    run_interleaved(points, repeats, seed=seed)

    by = {p.key: p for p in points}
    steps = {name: {**summarize(by[(name, "train_step")].seconds),
                    "gflops": flops / np.median(by[(name, "train_step")].seconds) / 1e9} for name in backends}
    ratio = paired_ratio(by[("torch-cpu-f32", "train_step")].seconds, by[("numpy-f32", "train_step")].seconds)
    layers = [{"layer": key[1], "numpy_ms": 1e3 * float(np.median(by[("numpy", key[1])].seconds)),
               "torch_ms": 1e3 * float(np.median(by[("torch", key[1])].seconds))}
              for key in by if key[0] == "numpy"]
    result = {"machine": describe(), "batch": batch, "repeats": repeats, "params": spec.num_params,
              "flops_per_step": flops, "layer_flops": layer_flops(spec, batch), "train_step": steps,
              "ratio_torch_over_numpy": ratio, "layers": layers,
              "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "conv.json").write_text(json.dumps(result, indent=2, default=str))
        (out / "conv.md").write_text(format_conv(result) + "\n")
    return result


def format_conv(r: dict) -> str:
    lines = [f"Conv VAE ({r['params']:,} parameters), float32, batch {r['batch']}, train_step "
             f"({r['repeats']} interleaved repeats; {r['flops_per_step'] / 1e9:.2f} GFLOP per step)", "",
             "| backend | ms/step (median) | IQR (% of median) | GFLOP/s |", "|---|---:|---:|---:|"]
    for name, s in r["train_step"].items():
        lines.append(f"| {name} | {1e3 * s['median_s']:.1f} | {s['iqr_pct']:.0f}% | {s['gflops']:.1f} |")
    q = r["ratio_torch_over_numpy"]
    lines += ["", f"torch time ÷ NumPy time, paired per repeat: {q['median']:.2f}x "
                  f"(IQR {q['q1']:.2f}-{q['q3']:.2f})", "",
              "| layer (forward + backward alone) | NumPy ms | torch ms | NumPy ÷ torch |", "|---|---:|---:|---:|"]
    for row in r["layers"]:
        lines.append(f"| {row['layer']} | {row['numpy_ms']:.2f} | {row['torch_ms']:.2f} | "
                     f"{row['numpy_ms'] / row['torch_ms']:.2f} |")
    return "\n".join(lines)

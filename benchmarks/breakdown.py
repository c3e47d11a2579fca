"""Where one training step's time goes: forward, backward, optimizer update, and the matmuls alone.

Per backend, at one batch size (the bar's, 128, by default), every phase of the step
is timed on its own with ``time.perf_counter`` around it, summed over N steps::

    numpy   forward    model.forward(x, eps)       (input checks, matmuls, bias, ReLU, loss, KL)
            backward   model.backward(need_input_grad=False)
            optimizer  Adam.step(model.grad_flat)
            matmuls    the step's matrix products alone, replayed back to back with the
                       same shapes, memory layouts and weights: forward x W^T per Linear,
                       backward dY^T X and dY W (none for the first layer's input)
            other      forward + backward - matmuls: everything elementwise (bias, ReLU,
                       loss, KL, reparameterization, input checks) and Python overhead
    torch   forward    model(x, eps)["loss"]        (after optimizer.zero_grad(set_to_none=True))
            backward   loss.backward()
            optimizer  torch.optim.Adam.step()
            (CUDA: synchronized after each phase, so the phases add up to more than an
            asynchronous step; they still show which phase costs what.)

Repeats are interleaved across backends, as in timing.py, and reported as medians.
The matmul replay's GFLOP/s, set against the machine's matmul rate, says how much
of the step is BLAS at its best and how much is the rest.
"""
from __future__ import annotations

import itertools
import time

import numpy as np

from .flops import backward_flops, forward_flops
from .steps import BACKENDS, make_model

PHASES = ("forward", "backward", "optimizer")


def _numpy_sampler(model_wrapper, pool, batch: int):
    """sample(n) -> {phase: seconds over n steps} for a NumPy model, plus the matmul replay."""
    model, optimizer = model_wrapper.model, model_wrapper.get_optimizer()
    x_all, e_all = pool.numpy(model_wrapper.backend.dtype, model_wrapper.latent)
    data = itertools.cycle([(x_all[s], e_all[s]) for s in pool.batches(batch)])
    replay = matmul_replay(model, batch)
    clock = time.perf_counter

    def sample(n: int) -> dict[str, float]:
        spent = dict.fromkeys((*PHASES, "matmuls"), 0.0)
        for _ in range(n):
            x, eps = next(data)
            t0 = clock()
            model.forward(x, eps)
            t1 = clock()
            model.backward(need_input_grad=False)
            t2 = clock()
            optimizer.step(model.grad_flat)
            t3 = clock()
            spent["forward"] += t1 - t0
            spent["backward"] += t2 - t1
            spent["optimizer"] += t3 - t2
        t0 = clock()
        for _ in range(n):
            replay()
        spent["matmuls"] = clock() - t0
        return spent

    return sample


def matmul_replay(model, batch: int):
    """A function running the training step's matrix products once, as the step runs them.

    Same order (forward through the Linears, then backward in reverse), same shapes and
    C-contiguous operands, the model's own weights and gradient buffers; the activations
    are fixed random arrays of the right shapes.
    """
    rng = np.random.default_rng(0)
    linears = [layer for layer in model.encoder if hasattr(layer, "params")] + [model.heads] + \
              [layer for layer in model.decoder if hasattr(layer, "params")]
    work = []
    for layer in linears:
        w, gw = layer.params["weight"], layer.grads["weight"]
        n_out, n_in = w.shape
        x = rng.random((batch, n_in)).astype(w.dtype)
        dy = rng.random((batch, n_out)).astype(w.dtype)
        work.append((x, w, dy, gw, np.empty((batch, n_out), w.dtype), np.empty((batch, n_in), w.dtype)))

    def replay() -> None:
        for x, w, _, _, y, _ in work:
            np.matmul(x, w.T, out=y)
        for i, (x, w, dy, gw, _, dx) in reversed(list(enumerate(work))):
            np.matmul(dy.T, x, out=gw)
            if i > 0:
                np.matmul(dy, w, out=dx)

    return replay


def _torch_sampler(model_wrapper, pool, batch: int):
    import torch
    model, optimizer = model_wrapper.model, model_wrapper.optimizer
    x_all, e_all = pool.torch(model_wrapper.device, model_wrapper.backend.dtype, model_wrapper.latent)
    data = itertools.cycle([(x_all[s], e_all[s]) for s in pool.batches(batch)])
    sync = torch.cuda.synchronize if model_wrapper.device.type == "cuda" else (lambda: None)
    clock = time.perf_counter

    def sample(n: int) -> dict[str, float]:
        spent = dict.fromkeys(PHASES, 0.0)
        sync()
        for _ in range(n):
            x, eps = next(data)
            t0 = clock()
            optimizer.zero_grad(set_to_none=True)
            loss = model(x, eps)["loss"]
            sync()
            t1 = clock()
            loss.backward()
            sync()
            t2 = clock()
            optimizer.step()
            sync()
            t3 = clock()
            spent["forward"] += t1 - t0
            spent["backward"] += t2 - t1
            spent["optimizer"] += t3 - t2
        return spent

    return sample


def measure_breakdown(backends: list[str], pool, hidden, latent: int, batch: int, repeats: int,
                      target_s: float = 0.2, settle_s: float = 0.2, seed: int = 0, matmul_peak_gflops=None) -> dict:
    """Median ms per step of every phase, per backend; see the module docstring."""
    samplers = {}
    for name in backends:
        wrapper = make_model(name, hidden, latent, seed=seed)
        make = _numpy_sampler if BACKENDS[name].library == "numpy" else _torch_sampler
        sample = make(wrapper, pool, batch)
        sample(2)                                           # warm-up: Adam state, kernels, caches
        t0 = time.perf_counter()
        sample(1)
        per_step = max(time.perf_counter() - t0, 1e-6)
        samplers[name] = (sample, max(1, round(target_s / per_step)))

    ms = {name: {} for name in backends}
    rng = np.random.default_rng([seed, 41])
    previous = None
    for _ in range(repeats):
        for i in rng.permutation(len(backends)):
            name = backends[i]
            family = BACKENDS[name].family
            if previous is not None and family != previous and settle_s > 0:
                time.sleep(settle_s)
            previous = family
            sample, n = samplers[name]
            for phase, seconds in sample(n).items():
                ms[name].setdefault(phase, []).append(seconds / n * 1e3)

    matmul_flops = forward_flops(batch, hidden, latent) + backward_flops(batch, hidden, latent)
    rows = []
    for name in backends:
        med = {phase: float(np.median(v)) for phase, v in ms[name].items()}
        row = {"backend": name, "batch": batch, "hidden": list(hidden), "latent": latent,
               "ms": med, "samples_ms": ms[name], "step_ms": sum(med[p] for p in PHASES)}
        if "matmuls" in med:
            row["other_ms"] = med["forward"] + med["backward"] - med["matmuls"]
            row["matmul_gflops"] = matmul_flops / (med["matmuls"] / 1e3) / 1e9
            if matmul_peak_gflops:
                row["matmul_pct_of_peak"] = 100 * row["matmul_gflops"] / matmul_peak_gflops
        rows.append(row)
    return {"batch": batch, "hidden": list(hidden), "latent": latent, "repeats": repeats,
            "matmul_flops": matmul_flops, "rows": rows}

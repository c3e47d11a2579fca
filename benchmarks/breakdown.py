"""Where one training step's time goes: forward, backward, optimizer update, and the matmuls alone.

Per backend, at one batch size (the bar's, 128, by default), every phase of the step
is timed on its own with ``time.perf_counter`` around it, summed over N steps::

    numpy   forward    model.forward(x, eps)       (input checks, matmuls, bias, ReLU, loss, KL)
            backward   model.backward(need_input_grad=False)
            optimizer  Adam.step(model.grad_flat)
            matmuls    the step's matrix products alone, replayed back to back with the
                       same shapes, memory layouts and weights: forward x W^T per Linear,
                       backward dY^T X and dY W (none for the first layer's input); run as a
                       fourth phase of every timed step, so it meets the caches as the step
                       leaves them, not a loop of itself kept hot
            other      forward + backward - matmuls: everything elementwise (bias, ReLU,
                       loss, KL, reparameterization, input checks) and Python overhead
    torch   forward    model(x, eps)["loss"]        (after optimizer.zero_grad(set_to_none=True))
            backward   loss.backward()
            optimizer  torch.optim.Adam.step()
            (CUDA: synchronized after each phase, so the phases add up to more than an
            asynchronous step; they still show which phase costs what.)
            matmuls    (peers only, ``peers.measure_peer_breakdown``) the same products as NumPy's
                       replay, with torch.mm on the peer's device: torch's floor

Repeats are interleaved across backends by timing.py's own loop and reported twice: the
median of each phase, and the repeat whose whole step was fastest (on a shared machine,
the quiet moment; its phases still add up to its step).
The matmul replay's GFLOP/s, set against the machine's matmul rate, says how much
of the step is BLAS at its best and how much is the rest.
"""
from __future__ import annotations

import itertools
import time

import numpy as np

from .flops import backward_flops, forward_flops
from .steps import BACKENDS, make_model
from .timing import Point, calibrate, run_interleaved

PHASES = ("forward", "backward", "optimizer")


class PhaseClock:
    """One backend's training step with every phase timed; ``step`` is what the timing loop runs.

    ``step`` adds each phase's seconds to ``spent``; ``close_sample(n)`` turns what n steps
    spent into ms per step, appends it to ``samples`` and starts the next sample; ``reset``
    forgets everything (what calibration spent).
    """

    def __init__(self, phases):
        self.phases = phases                                   # name -> callable(), run in this order
        self.reset()

    def step(self) -> None:
        clock = time.perf_counter
        for name, run in self.phases.items():
            t0 = clock()
            run()
            self.spent[name] += clock() - t0

    def reset(self) -> None:
        self.spent = dict.fromkeys(self.phases, 0.0)
        self.samples = {name: [] for name in self.phases}

    def close_sample(self, n: int) -> None:
        for name in self.phases:
            self.samples[name].append(self.spent[name] / n * 1e3)
            self.spent[name] = 0.0


def _numpy_phases(wrapper, pool, batch: int) -> dict:
    """forward, backward, optimizer of the NumPy step, and the replay of its matrix products."""
    model, optimizer = wrapper.model, wrapper.get_optimizer()
    x_all, e_all = pool.numpy(wrapper.backend.dtype, wrapper.latent)
    data = itertools.cycle([(x_all[s], e_all[s]) for s in pool.batches(batch)])
    return {"forward": lambda: model.forward(*next(data)),
            "backward": lambda: model.backward(need_input_grad=False),
            "optimizer": lambda: optimizer.step(model.grad_flat),
            "matmuls": matmul_replay(model, batch)}


def matmul_replay(model, batch: int):
    """A function running the training step's matrix products once, as the step runs them.

    Same order (forward through the Linears, then backward in reverse), same shapes and
    C-contiguous operands, the model's own weights and gradient buffers; the activations
    are fixed random arrays of the right shapes.
    """
    rng = np.random.default_rng(0)
    linears = [layer for layer in model.encoder if hasattr(layer, "params")] + [model.head.linear] + \
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


def _torch_phases(wrapper, pool, batch: int) -> dict:
    """forward (after zero_grad), backward, optimizer of the torch step; on CUDA each ends synchronized."""
    import torch
    model, optimizer = wrapper.model, wrapper.optimizer
    x_all, e_all = pool.torch(wrapper.device, wrapper.backend.dtype, wrapper.latent)
    data = itertools.cycle([(x_all[s], e_all[s]) for s in pool.batches(batch)])
    sync = torch.cuda.synchronize if wrapper.device.type == "cuda" else (lambda: None)
    held = {}

    def forward():
        optimizer.zero_grad(set_to_none=True)
        held["loss"] = model(*next(data), check_inputs=False)["loss"]
        sync()

    def backward():
        held.pop("loss").backward()
        sync()

    def step():
        optimizer.step()
        sync()

    return {"forward": forward, "backward": backward, "optimizer": step}


def measure_breakdown(backends: list[str], pool, hidden, latent: int, batch: int, repeats: int,
                      target_s: float = 0.2, settle_s: float = 0.2, seed: int = 0, matmul_peak_gflops=None) -> dict:
    """Median ms per step of every phase, per backend; see the module docstring."""
    clocks = {}
    for name in backends:
        wrapper = make_model(name, hidden, latent, seed=seed)
        phases = (_numpy_phases if BACKENDS[name].library == "numpy" else _torch_phases)(wrapper, pool, batch)
        clocks[name] = (PhaseClock(phases), BACKENDS[name].family)
    return time_phases(clocks, hidden, latent, batch, repeats, target_s, settle_s, seed, matmul_peak_gflops)


def time_phases(clocks: dict, hidden, latent: int, batch: int, repeats: int, target_s: float = 0.2,
                settle_s: float = 0.2, seed: int = 0, matmul_peak_gflops=None) -> dict:
    """Time every (PhaseClock, family) of ``clocks`` interleaved; the rows of the breakdown table."""
    points = [Point(key=name, step=clock.step, family=family, flops=0, batch=batch)
              for name, (clock, family) in clocks.items()]
    for point in points:
        calibrate(point, target_s, warmup=2)        # warm-up: Adam's state, kernels, caches
        clocks[point.key][0].reset()                # forget what calibration spent
    run_interleaved(points, repeats, settle_s=settle_s, seed=seed,
                    on_sample=lambda p: clocks[p.key][0].close_sample(p.n_steps))

    matmul_flops = forward_flops(batch, hidden, latent) + backward_flops(batch, hidden, latent)
    rows = []
    for name, (clock, _) in clocks.items():
        samples = clock.samples
        # "fastest": the repeat whose whole step was shortest, with all its phases (the quiet
        # moment of a shared machine; unlike per-phase minima, its phases add up).
        fastest = int(np.argmin(np.sum([samples[p] for p in PHASES], axis=0)))
        for stat, ms in (("median", {phase: float(np.median(v)) for phase, v in samples.items()}),
                         ("fastest", {phase: v[fastest] for phase, v in samples.items()})):
            row = {"backend": name, "stat": stat, "batch": batch, "hidden": list(hidden), "latent": latent,
                   "ms": ms, "step_ms": sum(ms[p] for p in PHASES)}
            if "matmuls" in ms:
                row["other_ms"] = ms["forward"] + ms["backward"] - ms["matmuls"]
                row["matmul_gflops"] = matmul_flops / (ms["matmuls"] / 1e3) / 1e9
                if matmul_peak_gflops:
                    row["matmul_pct_of_peak"] = 100 * row["matmul_gflops"] / matmul_peak_gflops
            rows.append(row)
    return {"batch": batch, "hidden": list(hidden), "latent": latent, "repeats": repeats,
            "matmul_flops": matmul_flops, "samples_ms": {name: clock.samples for name, (clock, _) in clocks.items()},
            "rows": rows}


def torch_matmul_replay(hidden, latent: int, batch: int, device):
    """The torch counterpart of ``matmul_replay``: the step's products with torch.mm, same shapes and order.

    Random float32 operands on ``device`` (the heads as one 2L-wide product, as flops.py counts them);
    on CUDA the replay ends synchronized.
    """
    import torch
    from .flops import linear_shapes
    gen = torch.Generator(device="cpu").manual_seed(0)
    work = []
    for _, n_in, n_out in linear_shapes(tuple(hidden), latent):
        def rand(*shape):
            return torch.rand(*shape, generator=gen).to(device)
        work.append((rand(batch, n_in), rand(n_out, n_in), rand(batch, n_out), torch.empty(n_out, n_in, device=device),
                     torch.empty(batch, n_out, device=device), torch.empty(batch, n_in, device=device)))
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def replay() -> None:
        for x, w, _, _, y, _ in work:
            torch.mm(x, w.t(), out=y)
        for i in range(len(work) - 1, -1, -1):
            x, w, dy, gw, _, dx = work[i]
            torch.mm(dy.t(), x, out=gw)
            if i > 0:
                torch.mm(dy, w, out=dx)
        sync()

    return replay


def breakdown_markdown(bd: dict) -> str:
    """The breakdown table (report.breakdown_table) of a peers run."""
    from .report import breakdown_table
    return breakdown_table({"breakdown": bd}).replace(
        "*matmuls alone*: the step's matrix products replayed",
        "*matmuls alone* (NumPy: numpy.matmul; torch: torch.mm on the peer's device), the floor: the step's "
        "matrix products replayed")

"""What is timed: each contestant's own ``train_step`` (the code ``vae train`` runs) and inference,
the machine's rates, the optimizer alone, the phases of one step, and the conv VAE's layers.

    numpy-f32, numpy-f64   NumpyBackend: hand-written forward and backward, numpy_vae's Adam
    torch-default          TorchBackend with ``torch.optim.Adam(params, lr)``, no flags: torch's own pick
    torch-foreach          ... with Adam(foreach=True)
    torch-fused            ... with Adam(fused=True), as TorchBackend itself runs
    torch-compile          ... with the model wrapped in torch.compile, Adam(fused=True)

Each torch contestant's Adam is made here, explicitly, so a table keeps its meaning when
TorchBackend changes.  Inference: ``backend.encode(x)`` then ``backend.decode_logits(mu)``.
Everything a step reads is made before timing: a pool of images (MNIST when it is there, else
uniform noise) and pre-drawn noise ``eps``; each step cycles through a few distinct batches.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from . import flops as F
from .timing import Point

MAX_DISTINCT = 8        # distinct batches a step cycles through


@dataclass(frozen=True)
class Contestant:
    name: str
    library: str                # "numpy" or "torch"
    dtype: str = "float32"
    adam: dict | None = None    # torch.optim.Adam's flags
    compile: bool = False


CONTESTANTS = {c.name: c for c in (
    Contestant("numpy-f32", "numpy"), Contestant("numpy-f64", "numpy", "float64"),
    Contestant("torch-default", "torch", adam={}), Contestant("torch-foreach", "torch", adam={"foreach": True}),
    Contestant("torch-fused", "torch", adam={"fused": True}),
    Contestant("torch-compile", "torch", adam={"fused": True}, compile=True))}


class DataPool:
    """The images and noise every step reads."""

    def __init__(self, data_dir: str | None, rows: int, seed: int = 0):
        rng = np.random.default_rng([seed, 11])
        self.source = "synthetic uniform [0, 1) (MNIST not found)"
        images = None
        if data_dir is not None:
            try:
                from numpy_vae.data import MnistDataError, load_mnist
                train_x, _ = load_mnist(data_dir, "train")
                images = train_x[rng.integers(0, len(train_x), rows)]
                self.source = f"MNIST train images from {data_dir}"
            except (MnistDataError, OSError):
                pass
        self.images = np.ascontiguousarray(images if images is not None else rng.random((rows, 784)), np.float32)
        self.seed = seed

    def batches(self, batch: int, latent: int, dtype: str = "float32") -> list[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, 12, latent])
        n = max(1, min(MAX_DISTINCT, len(self.images) // batch))
        return [(self.images[i * batch:(i + 1) * batch].astype(dtype),
                 rng.standard_normal((batch, latent)).astype(dtype)) for i in range(n)]


def make_backend(name: str, arch: str, hidden, latent: int, device: str = "cpu", threads=None, seed: int = 0):
    c = CONTESTANTS[name]
    config = {"arch": arch, "latent": latent, "hidden": tuple(hidden) if arch == "mlp" else (), "beta": 1.0,
              "dtype": np.dtype(c.dtype)}
    if c.library == "numpy":
        from numpy_vae.backends import NumpyBackend
        return NumpyBackend(config, lr=1e-3, seed=seed, threads=threads)
    import torch
    from torch_vae.backend import TorchBackend
    backend = TorchBackend(config, lr=1e-3, seed=seed, device=device)
    backend.optimizer = torch.optim.Adam(backend.params, lr=1e-3, **c.adam)
    if c.compile:
        backend.model = torch.compile(backend.model)
    return backend


def adam_kind(optimizer) -> str:
    """Which implementation a torch.optim.Adam runs: 'fused', 'foreach' or 'single-tensor'."""
    d = optimizer.defaults
    if d.get("fused"):
        return "fused"
    if d.get("foreach") is None:             # torch decides at the first step
        from torch.optim.optimizer import _default_to_fused_or_foreach
        params = [p for g in optimizer.param_groups for p in g["params"]]
        return "foreach" if _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)[1] \
            else "single-tensor"
    return "foreach" if d.get("foreach") else "single-tensor"


def step(backend, mode: str, data: list):
    """One train_step, or one encode + decode, per call, cycling through ``data``."""
    cycle = itertools.cycle(data)
    if mode == "train":
        return lambda: backend.train_step(*next(cycle))

    def infer():
        mu, _ = backend.encode(next(cycle)[0])
        backend.decode_logits(mu)
    return infer


def family(library: str, device: str) -> str:
    return "numpy" if library == "numpy" else ("cuda" if device == "cuda" else "torch")


# ------------------------------------------------------------ the machine's rates
def rate_points(names: list[str], device: str, n: int, params: int, seed: int = 0) -> list[Point]:
    """The machine's rates: NumPy's n x n matmul (2 n^3 FLOPs; float32, and float64 where a contestant uses it)
    and one memory pass over 4 P elements; on CUDA torch's, with an 8192 x 8192 matmul."""
    rng = np.random.default_rng([seed, 31])
    points = []
    for dtype in sorted({"float32"} | {CONTESTANTS[c].dtype for c in names if CONTESTANTS[c].library == "numpy"}):
        a, b, out = (rng.standard_normal((n, n)).astype(dtype) for _ in range(3))
        buf = np.ones(4 * params, dtype)
        points += [Point(("matmul", f"numpy-{dtype}"), lambda a=a, b=b, out=out: np.matmul(a, b, out=out), "numpy",
                         2 * n ** 3, meta={"n": n}),
                   Point(("pass", f"numpy-{dtype}"), lambda buf=buf: np.multiply(buf, 1.0, out=buf), "numpy",
                         meta={"bytes": 2 * buf.nbytes})]
    if device == "cuda":
        import torch
        a, b, out = (torch.randn(8192, 8192, device=device) for _ in range(3))
        buf = torch.ones(4 * params, device=device)
        points += [Point(("matmul", "torch-cuda"), lambda: torch.mm(a, b, out=out), "cuda", 2 * 8192 ** 3,
                         meta={"n": 8192}),
                   Point(("pass", "torch-cuda"), lambda: buf.mul_(1.0), "cuda", meta={"bytes": 8 * buf.numel()})]
    return points


def optimizer_points(hidden, latent: int, device: str, threads: list[int], seed: int = 0) -> list[Point]:
    """Each Adam alone on the model's parameters (1,082,680 at the default sizes), the same gradient every step."""
    import torch
    from numpy_vae.kernels.adam import FastAdam
    shapes = list(F.parameter_shapes(tuple(hidden), latent).values())
    n = F.num_params(hidden, latent)
    rng = np.random.default_rng([seed, 41])
    grad = (rng.standard_normal(n) * 1e-3).astype(np.float32)
    points = []
    for k in threads:
        opt = FastAdam(rng.standard_normal(n).astype(np.float32), lr=1e-3, threads=k)
        points.append(Point(("alone", f"numpy Adam, {k} thread{'s' * (k > 1)}"), lambda opt=opt: opt.step(grad),
                            "numpy", F.K_ADAM * n, meta={"params": n}))
    for flags, what in (({"foreach": False}, "single-tensor"), ({"foreach": True}, "foreach"), ({"fused": True}, "fused")):
        params = [torch.randn(s, device=device, requires_grad=True) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        opt = torch.optim.Adam(params, lr=1e-3, **flags)
        points.append(Point(("alone", f"torch.optim.Adam, {what}"), opt.step, family("torch", device),
                            F.K_ADAM * n, meta={"params": n}))
    return points


# -------------------------------------------------------------- the phases of a step
class PhaseClock:
    """A training step with each phase timed by perf_counter; the Timer runs ``step``; after each sample
    ``close_sample`` turns what the calls since the last one spent into ms per step."""

    def __init__(self, phases: dict):
        import time
        self.phases, self.clock = phases, time.perf_counter
        self.reset()

    def step(self) -> None:
        for name, run in self.phases.items():
            t0 = self.clock()
            run()
            self.spent[name] += self.clock() - t0
        self.calls += 1

    def reset(self) -> None:
        self.samples = {name: [] for name in self.phases}
        self.spent, self.calls = dict.fromkeys(self.phases, 0.0), 0

    def close_sample(self) -> None:
        for name in self.phases:
            self.samples[name].append(self.spent[name] / max(self.calls, 1) * 1e3)
        self.spent, self.calls = dict.fromkeys(self.phases, 0.0), 0


def phases(backend, library: str, data: list, hidden, latent: int, batch: int) -> dict:
    """forward, backward, optimizer of the step, and the step's matrix products alone (the floor)."""
    cycle = itertools.cycle(data)
    if library == "numpy":
        model, opt = backend.model, backend.optimizer
        return {"forward": lambda: model.forward(*next(cycle)),
                "backward": lambda: model.backward(need_input_grad=False),
                "optimizer": lambda: opt.step(model.grad_flat),
                "matmuls": matmul_replay(hidden, latent, batch, "numpy", dtype=str(model.dtype))}
    import torch
    model, opt, device = backend.model, backend.optimizer, backend.device
    data = itertools.cycle([(torch.from_numpy(x).to(device), torch.from_numpy(e).to(device)) for x, e in data])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    held = {}

    def forward():
        opt.zero_grad(set_to_none=True)
        held["loss"] = model(*next(data), check_inputs=False)["loss"]
        sync()

    def backward():
        held.pop("loss").backward()
        sync()

    return {"forward": forward, "backward": backward, "optimizer": lambda: (opt.step(), sync()),
            "matmuls": matmul_replay(hidden, latent, batch, "torch", device)}


def matmul_replay(hidden, latent: int, batch: int, library: str, device="cpu", dtype: str = "float32"):
    """The step's matrix products, in its order and shapes (flops.linear_shapes): forward x W^T per Linear,
    backward dY^T X and dY W (no input gradient for the first layer): exactly the counted forward + backward."""
    if library == "numpy":
        rng = np.random.default_rng(0)
        rand, empty, mm, sync = (lambda *s: rng.random(s).astype(dtype)), (lambda *s: np.empty(s, dtype)), \
            (lambda a, b, out: np.matmul(a, b, out=out)), (lambda: None)
    else:
        import torch
        gen = torch.Generator().manual_seed(0)
        rand = lambda *s: torch.rand(*s, generator=gen).to(device)           # noqa: E731
        empty = lambda *s: torch.empty(*s, device=device)                     # noqa: E731
        mm = lambda a, b, out: torch.mm(a, b, out=out)                        # noqa: E731
        sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    work = [(rand(batch, n_in), rand(n_out, n_in), rand(batch, n_out), empty(n_out, n_in), empty(batch, n_out),
             empty(batch, n_in)) for _, n_in, n_out in F.linear_shapes(tuple(hidden), latent)]

    def replay() -> None:
        for x, w, _, _, y, _ in work:
            mm(x, w.T, y)
        for i in range(len(work) - 1, -1, -1):
            x, w, dy, gw, _, dx = work[i]
            mm(dy.T, x, gw)
            if i > 0:
                mm(dy, w, dx)
        sync()
    return replay


def layer_points(np_backend, torch_backend, batch: int, seed: int = 0) -> list[Point]:
    """Forward + backward of each layer with parameters alone, NumPy (its closures) and torch (autograd)."""
    import torch
    rng = np.random.default_rng([seed, 13])
    model_np, model_t, points = np_backend.model, torch_backend.model, []
    h = rng.random((batch, model_np.input_dim)).astype(np.float32)
    for stack_np, stack_t, prefix in ((model_np.encoder, model_t.encoder, "encoder"),
                                      (model_np.decoder, model_t.decoder, "decoder")):
        if prefix == "decoder":
            h = rng.standard_normal((batch, model_np.latent)).astype(np.float32)
        for i, (layer, module) in enumerate(zip(stack_np, stack_t)):
            y = layer(h.copy(order="K"))
            if "params" in vars(layer):
                # NumPy's x and dy keep the memory layout they have in the step (the fast convolutions'
                # outputs, and so their inputs and gradients, are channels-last); torch's are its own
                # (NCHW); the first layer with parameters computes no dx, in either, as in the step
                x, dy = h.copy(order="K"), rng.standard_normal(y.shape).astype(np.float32)
                need_dx = prefix == "decoder" or any("params" in vars(l) for l in stack_np[:i])
                x_t, dy_t = torch.from_numpy(h.copy()).requires_grad_(need_dx), torch.from_numpy(dy)
                dy_np = np.empty_like(y)
                dy_np[...] = dy

                def numpy_step(layer=layer, x=x, dy=dy_np, need_dx=need_dx):
                    layer.forward(x)[1](dy, need_dx)

                def torch_step(module=module, x=x_t, dy=dy_t):
                    module.zero_grad(set_to_none=True)
                    module(x).backward(dy)
                name = f"{prefix}.{i} {type(module).__name__}"
                points += [Point(("layer", name, "numpy"), numpy_step, "numpy", batch=batch),
                           Point(("layer", name, "torch"), torch_step, "torch", batch=batch)]
            h = y
    return points

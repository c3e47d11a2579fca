"""The measured operations: per backend, a ``train()`` and an ``infer()`` closure that run one step.

    train  NumPy:  model.loss(x, eps); model.backward(need_input_grad=False); Adam.step(model.grad_flat)
           torch:  optimizer.zero_grad(set_to_none=True); model(x, eps)["loss"].backward(); optimizer.step()
                   (torch.optim.Adam with its defaults: the single-tensor loop on CPU, foreach on CUDA)
    infer  NumPy:  mu, logvar = model.encode(x); model.decode(mu)
           torch:  the same under torch.inference_mode()

Everything a step reads is made before timing starts: the images as arrays or
tensors already on the device and in the backend's dtype, and the noise ``eps``
pre-drawn.  Each closure cycles through a few distinct batches (real MNIST
images when the data is there), so the model keeps seeing ordinary data and
gradients, as in training, rather than one batch it learns by heart.

Nothing here imports torch until a torch backend is asked for, so a NumPy-only
run (and a NumPy memory probe) never loads it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np

POOL_ROWS = 16384       # images kept in memory for the timed steps, per dtype
MAX_DISTINCT = 8        # distinct batches a closure cycles through


@dataclass(frozen=True)
class Backend:
    name: str
    library: str        # "numpy" or "torch"
    dtype: str          # "float32" or "float64"
    device: str         # "cpu" or "cuda"

    @property
    def family(self) -> str:
        """Which thread pools the backend drives (the runner pauses between families)."""
        return self.library if self.device == "cpu" else self.device


BACKENDS = {b.name: b for b in (
    Backend("numpy-f32", "numpy", "float32", "cpu"),
    Backend("numpy-f64", "numpy", "float64", "cpu"),
    Backend("torch-cpu-f32", "torch", "float32", "cpu"),
    Backend("torch-cuda-f32", "torch", "float32", "cuda"),
)}


def unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot run on this machine, or None if it can."""
    backend = BACKENDS[name]
    if backend.library == "torch":
        try:
            import torch
            import torch_vae  # noqa: F401
        except ImportError as e:
            return f"torch_vae/torch cannot be imported ({e})"
        if backend.device == "cuda" and not torch.cuda.is_available():
            return "CUDA not available (torch.cuda.is_available() is False)"
    return None


# ---------------------------------------------------------------------- data
class DataPool:
    """The images and noise every step reads, made once per dtype and device."""

    def __init__(self, images: np.ndarray, source: str, seed: int = 0):
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.source = source
        self.seed = seed
        self._cache: dict = {}

    @classmethod
    def load(cls, data_dir: str | None, rows: int = POOL_ROWS, seed: int = 0) -> "DataPool":
        """The first ``rows`` MNIST training images (shuffled), or uniform noise in [0, 1) without MNIST."""
        rng = np.random.default_rng([seed, 11])
        if data_dir is not None:
            try:
                from numpy_vae.data import MnistDataError, load_mnist
                train_x, _ = load_mnist(data_dir, "train")
                idx = rng.permutation(len(train_x))
                while len(idx) < rows:
                    idx = np.concatenate([idx, rng.permutation(len(train_x))])
                return cls(train_x[idx[:rows]], f"MNIST train images from {data_dir}", seed)
            except (MnistDataError, OSError):
                pass
        return cls(rng.random((rows, 784), dtype=np.float32), "synthetic uniform [0, 1) (MNIST not found)", seed)

    def batches(self, batch: int) -> list[slice]:
        rows = len(self.images)
        if batch > rows:
            raise ValueError(f"batch {batch} larger than the data pool ({rows} rows)")
        n = max(1, min(MAX_DISTINCT, rows // batch))
        return [slice(i * batch, (i + 1) * batch) for i in range(n)]

    def eps(self, latent: int) -> np.ndarray:
        key = ("eps", latent)
        if key not in self._cache:
            rng = np.random.default_rng([self.seed, 12, latent])
            self._cache[key] = rng.standard_normal((len(self.images), latent), dtype=np.float32)
        return self._cache[key]

    def numpy(self, dtype: str, latent: int) -> tuple[np.ndarray, np.ndarray]:
        key = ("numpy", dtype, latent)
        if key not in self._cache:
            self._cache[key] = (self.images.astype(dtype, copy=False), self.eps(latent).astype(dtype, copy=False))
        return self._cache[key]

    def torch(self, device, dtype: str, latent: int):
        import torch
        key = ("torch", str(device), dtype, latent)
        if key not in self._cache:
            x, e = self.numpy(dtype, latent)
            # On the CPU torch.from_numpy shares NumPy's memory; on CUDA this is one upload.
            self._cache[key] = (torch.from_numpy(x).to(device), torch.from_numpy(e).to(device))
        return self._cache[key]


# --------------------------------------------------------------------- models
class NumpyModel:
    """One NumPy model + Adam (the runner makes one per backend, architecture and batch size).

    Adam's moments are allocated by the first training step (torch.optim.Adam also
    makes its state lazily), so an inference-only measurement holds neither.
    """

    def __init__(self, backend: Backend, hidden, latent: int, seed: int = 0):
        from numpy_vae.model import build_model
        from numpy_vae.kernels.adam import FastAdam as Adam      # what training runs by default
        self.model = build_model("mlp", latent=latent, hidden=tuple(hidden), dtype=np.dtype(backend.dtype), seed=seed)
        self._adam = Adam
        self.optimizer = None          # made by the first training step, as torch.optim.Adam makes its state
        self.backend, self.latent = backend, latent

    def get_optimizer(self):
        if self.optimizer is None:
            self.optimizer = self._adam(self.model.flat, lr=1e-3)
        return self.optimizer

    def closures(self, pool: DataPool, batch: int) -> tuple[Callable[[], None], Callable[[], None]]:
        x_all, e_all = pool.numpy(self.backend.dtype, self.latent)
        data = [(x_all[s], e_all[s]) for s in pool.batches(batch)]
        model, optimizer = self.model, None
        train_data, infer_data = itertools.cycle(data), itertools.cycle(data)

        def train() -> None:
            nonlocal optimizer
            if optimizer is None:
                optimizer = self.get_optimizer()
            x, eps = next(train_data)
            model.loss(x, eps)
            model.backward(need_input_grad=False)
            optimizer.step(model.grad_flat)

        def infer() -> None:
            x, _ = next(infer_data)
            mu, _ = model.encode(x)
            model.decode(mu)

        return train, infer


class TorchModel:
    """One torch_vae model + torch.optim.Adam (the runner makes one per backend, architecture and batch size)."""

    def __init__(self, backend: Backend, hidden, latent: int, seed: int = 0):
        import torch
        import torch_vae
        self.device = torch.device(backend.device)
        dtype = {"float32": torch.float32, "float64": torch.float64}[backend.dtype]
        self.model = torch_vae.build_model(arch="mlp", latent=latent, hidden=tuple(hidden), beta=1.0, dtype=dtype,
                                           seed=seed, device=self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.backend, self.latent = backend, latent

    def closures(self, pool: DataPool, batch: int) -> tuple[Callable[[], None], Callable[[], None]]:
        import torch
        x_all, e_all = pool.torch(self.device, self.backend.dtype, self.latent)
        data = [(x_all[s], e_all[s]) for s in pool.batches(batch)]
        model, optimizer = self.model, self.optimizer
        train_data, infer_data = itertools.cycle(data), itertools.cycle(data)

        def train() -> None:
            x, eps = next(train_data)
            optimizer.zero_grad(set_to_none=True)
            model(x, eps, check_inputs=False)["loss"].backward()     # the pool is checked: no sync
            optimizer.step()

        def infer() -> None:
            x, _ = next(infer_data)
            with torch.inference_mode():
                mu, _ = model.encode(x, check_inputs=False)
                model.decode(mu, check_inputs=False)

        return train, infer


def make_model(backend_name: str, hidden, latent: int, seed: int = 0):
    backend = BACKENDS[backend_name]
    return (NumpyModel if backend.library == "numpy" else TorchModel)(backend, hidden, latent, seed)


def synchronizer(backend_name: str) -> Callable[[], None] | None:
    """What waits for the device to finish (None on the CPU, where every step is synchronous)."""
    if BACKENDS[backend_name].device == "cuda":
        import torch
        return torch.cuda.synchronize
    return None

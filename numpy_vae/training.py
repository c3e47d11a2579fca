"""The training loop, shared by both backends.

Everything random is drawn here, in NumPy, from explicit Generators seeded by
the run's seed: the shuffle of each epoch and the noise ``eps`` of each step.
So the NumPy and the torch backend see the same batches and the same noise,
and a resumed run sees exactly what the uninterrupted run would have seen.

A run folder ``runs/NAME/`` receives::

    config.json     the full configuration
    metrics.csv     one row per epoch: train and test loss, recon, kl, seconds
    last.npz        checkpoint after the latest epoch (the final one once the run ends)
    best.npz        checkpoint of the epoch with the lowest test loss
    reconstructions.png, samples.png
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .backend import NonFiniteError, NumpyBackend
from .checkpoint import atomic_write, check_params, load_checkpoint, save_checkpoint
from .data import load_mnist, fetch_mnist, MnistDataError
from .reparameterize import draw_eps

METRIC_FIELDS = ["epoch", "train_loss", "train_recon", "train_kl", "test_loss", "test_recon", "test_kl",
                 "lr", "seconds"]
EVAL_BATCH = 1000


@dataclass
class TrainConfig:
    backend: str = "numpy"
    device: str = "cpu"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"    # "constant" or "cosine" (decays to 0 over the run)
    weight_decay: float = 0.0
    clip_grad_norm: float | None = None
    latent: int = 20
    hidden: tuple[int, ...] = (512, 256)
    beta: float = 1.0
    dtype: str = "float32"
    seed: int = 0
    data_dir: str = "data"
    runs_dir: str = "runs"
    name: str | None = None
    train_limit: int | None = None   # use only the first N training images (quick runs, tests)

    def model_config(self) -> dict:
        return {"arch": "mlp", "latent": self.latent, "hidden": tuple(self.hidden), "beta": self.beta,
                "dtype": np.dtype(self.dtype)}

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)


class TrainingError(RuntimeError):
    """Training stopped; the message says at which step and what was kept."""


class ConfigError(ValueError):
    """A training configuration that cannot run (unknown backend, no CUDA, ...); says what to change."""


def make_backend(config: TrainConfig):
    """The backend named by ``config.backend``: 'numpy' here, others registered as entry points.

    ``numpy_vae`` never imports ``torch_vae``: the torch backend announces itself in
    pyproject.toml under the entry-point group ``vae_from_scratch.backends``.
    """
    kwargs = dict(model_config=config.model_config(), lr=config.lr, weight_decay=config.weight_decay,
                  seed=config.seed, clip_grad_norm=config.clip_grad_norm, device=config.device)
    if config.backend == "numpy":
        return NumpyBackend(**kwargs)
    found = {ep.name: ep for ep in metadata.entry_points(group="vae_from_scratch.backends")}
    if config.backend not in found:
        raise ConfigError(f"unknown backend {config.backend!r}; available: {sorted({'numpy', *found})}")
    return found[config.backend].load()(**kwargs)


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    raise ConfigError(f"unknown lr_schedule {config.lr_schedule!r}; use 'constant' or 'cosine'")


def evaluate(backend, images: np.ndarray, seed: int, dtype, batch_size: int = EVAL_BATCH) -> dict[str, float]:
    """Mean (loss, recon, kl) per sample over ``images``, with noise drawn afresh from ``seed``.

    The same seed gives the same noise every call, so epochs, backends and a
    reloaded checkpoint are compared on equal terms.
    """
    rng = np.random.default_rng([seed, 3])
    totals = np.zeros(3)
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        eps = draw_eps(rng, len(x), backend.param_shapes["fc_mu.bias"][0], dtype)
        totals += np.array(backend.evaluate(x, eps)) * len(x)
    loss, recon, kl = totals / len(images)
    return {"loss": loss, "recon": recon, "kl": kl}


def _write_metrics(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def _run_dir(config: TrainConfig) -> Path:
    name = config.name or time.strftime(f"{config.backend}-%Y%m%d-%H%M%S")
    run_dir = Path(config.runs_dir) / name
    if (run_dir / "last.npz").exists():
        raise ConfigError(f"run folder {run_dir} already holds a run; continue it with --resume {run_dir} "
                          f"or choose another --name")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _point_latest_at(run_dir: Path) -> None:
    """runs/latest -> the newest run folder (a symlink, replaced atomically; skipped where unsupported)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{run_dir.name}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name)
        tmp.replace(link)
    except OSError:
        tmp.unlink(missing_ok=True)


def train(config: TrainConfig, resume: str | Path | None = None, progress: bool = True,
          figures: bool = True, log=print) -> Path:
    """Train, writing the run folder; returns its path.  ``resume`` continues a run folder."""
    if resume is not None:
        run_dir = Path(resume)
        _, _, meta = load_checkpoint(run_dir / "last.npz")
        config = TrainConfig.from_json(meta["config"])
    learning_rate(config, 0, 1)                       # refuse a bad schedule before anything is written
    backend = make_backend(config)                    # likewise an unknown backend or a missing device
    try:
        train_x, _ = load_mnist(config.data_dir, "train")
    except MnistDataError:
        fetch_mnist(config.data_dir, progress=progress)
        train_x, _ = load_mnist(config.data_dir, "train")
    test_x, _ = load_mnist(config.data_dir, "test")
    if config.train_limit:
        train_x = train_x[:config.train_limit]
    dtype = np.dtype(config.dtype)
    if resume is None:
        run_dir = _run_dir(config)
    _point_latest_at(run_dir)
    shuffle_rng = np.random.default_rng([config.seed, 1])
    noise_rng = np.random.default_rng([config.seed, 2])
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    rows: list[dict] = []
    start_epoch, step, best = 0, 0, math.inf

    if resume is not None:
        params, optim, meta = load_checkpoint(run_dir / "last.npz")
        check_params(params, backend.param_shapes, run_dir / "last.npz")
        backend.set_params(params)
        backend.load_optimizer_state(optim)
        shuffle_rng.bit_generator.state = meta["rng"]["shuffle"]
        noise_rng.bit_generator.state = meta["rng"]["noise"]
        rows, start_epoch, step = meta["metrics"], meta["epoch"], meta["step"]
        best = min((r["test_loss"] for r in rows), default=math.inf)
        log(f"resuming {run_dir} after epoch {start_epoch}")
    else:
        atomic_write(run_dir / "config.json", lambda f: f.write(json.dumps(config.to_json(), indent=2).encode()))

    n_params = sum(math.prod(shape) for shape in backend.param_shapes.values())
    log(f"training {config.backend} VAE ({n_params:,} parameters) on {len(train_x):,} images for {config.epochs} epochs -> {run_dir}")
    for epoch in range(start_epoch + 1, config.epochs + 1):
        t0 = time.perf_counter()
        order = shuffle_rng.permutation(len(train_x))
        sums = np.zeros(3)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}", disable=not progress,
                   unit="batch", leave=True, dynamic_ncols=True)
        for i in bar:
            idx = order[i * config.batch_size:(i + 1) * config.batch_size]
            x = train_x[idx]
            eps = draw_eps(noise_rng, len(idx), config.latent, dtype)
            backend.set_lr(learning_rate(config, step, total_steps))
            try:
                metrics = backend.train_step(x, eps)
            except NonFiniteError as e:
                bar.close()
                raise TrainingError(f"training stopped at epoch {epoch}, step {step + 1}: {e}. "
                                    f"The last good checkpoint ({run_dir / 'last.npz'}) is kept; "
                                    f"try a lower --lr or --clip-grad-norm") from None
            step += 1
            sums += np.array(metrics) * len(idx)
            if i % 20 == 0 or i == steps_per_epoch - 1:
                bar.set_postfix(loss=f"{metrics[0]:.2f}", recon=f"{metrics[1]:.2f}", kl=f"{metrics[2]:.2f}")
        bar.close()
        train_m = sums / len(train_x)
        test_m = evaluate(backend, test_x, config.seed, dtype)
        row = {"epoch": epoch, "train_loss": train_m[0], "train_recon": train_m[1], "train_kl": train_m[2],
               "test_loss": test_m["loss"], "test_recon": test_m["recon"], "test_kl": test_m["kl"],
               "lr": learning_rate(config, step - 1, total_steps), "seconds": time.perf_counter() - t0}
        rows.append(row)
        meta = {"config": config.to_json(), "epoch": epoch, "step": step, "metrics": rows,
                "rng": {"shuffle": shuffle_rng.bit_generator.state, "noise": noise_rng.bit_generator.state},
                "backend": config.backend}
        params = backend.get_params()
        save_checkpoint(run_dir / "last.npz", params, backend.optimizer_state(), meta)
        if row["test_loss"] < best:
            best = row["test_loss"]
            save_checkpoint(run_dir / "best.npz", params, None, meta)
        _write_metrics(run_dir / "metrics.csv", rows)
        log(f"epoch {epoch:3d}  train loss {train_m[0]:8.3f}  test loss {test_m['loss']:8.3f} "
            f"(recon {test_m['recon']:.3f}, kl {test_m['kl']:.3f})  {row['seconds']:.1f} s")

    final = rows[-1]["test_loss"] if rows else float("nan")
    log(f"test negative ELBO: {final:.2f} nats per sample (best {best:.2f}); run folder {run_dir}")
    if figures:
        from .figures import save_training_figures
        save_training_figures(backend, test_x, run_dir, seed=config.seed)
    return run_dir

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
    report.html and the diagnostic figures (numpy_vae.report), unless figures=False

Crash safety.  Every file is written atomically (``checkpoint.atomic_write``).
After each epoch metrics.csv and best.npz are written first and last.npz last:
last.npz is the commit point.  It holds parameters, optimizer state, epoch,
step, both Generators' states, the config and the metrics rows, so
``train(None, resume=RUN_DIR)`` continues exactly where it was written and
ends with the same parameters, bit for bit, as a run never interrupted.  A
kill after metrics.csv or best.npz but before last.npz only means the resumed
run redoes that epoch, and rewrites those files with identical contents.
A NaN or infinite loss, gradient or parameter stops the run before anything
non-finite is saved (:class:`TrainingError` names the epoch and step).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .backend import NumpyBackend
from .checkpoint import (CheckpointError, atomic_write, check_meta, check_optimizer_state, check_params,
                         load_checkpoint, remove_stale_temporaries, save_checkpoint)
from .data import load_mnist, fetch_mnist, MnistDataError
from .model import parameter_shapes
from .reparameterize import draw_eps

METRIC_FIELDS = ["epoch", "train_loss", "train_recon", "train_kl", "test_loss", "test_recon", "test_kl",
                 "lr", "seconds"]
EVAL_BATCH = 1000
MAX_PARAMETERS = 200_000_000      # a model larger than this is refused before anything is allocated


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


def available_backends() -> list[str]:
    """'numpy' and the names registered under the entry-point group ``vae_from_scratch.backends``."""
    return sorted({"numpy", *(ep.name for ep in metadata.entry_points(group="vae_from_scratch.backends"))})


def validate_config(config: TrainConfig) -> None:
    """Refuse a configuration that cannot run, naming the field (ConfigError); allocates nothing."""
    def real(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def integer(v):
        return isinstance(v, int) and not isinstance(v, bool)

    checks = [
        ("epochs", integer(config.epochs) and config.epochs >= 1, "an integer >= 1"),
        ("batch_size", integer(config.batch_size) and config.batch_size >= 1, "an integer >= 1"),
        ("latent", integer(config.latent) and config.latent >= 1, "an integer >= 1"),
        ("hidden", isinstance(config.hidden, tuple) and len(config.hidden) >= 1
         and all(integer(h) and h >= 1 for h in config.hidden), "one or more integers >= 1"),
        ("lr", real(config.lr) and config.lr > 0, "a finite number > 0"),
        ("lr_schedule", config.lr_schedule in ("constant", "cosine"), "'constant' or 'cosine'"),
        ("weight_decay", real(config.weight_decay) and config.weight_decay >= 0, "a finite number >= 0"),
        ("clip_grad_norm", config.clip_grad_norm is None or (real(config.clip_grad_norm) and config.clip_grad_norm > 0),
         "None or a finite number > 0"),
        ("beta", real(config.beta) and config.beta >= 0, "a finite number >= 0"),
        ("dtype", config.dtype in ("float32", "float64"), "'float32' or 'float64'"),
        ("seed", integer(config.seed) and config.seed >= 0, "an integer >= 0"),
        ("train_limit", config.train_limit is None or (integer(config.train_limit) and config.train_limit >= 1),
         "None or an integer >= 1"),
        ("backend", isinstance(config.backend, str), "a backend name"),
        ("device", isinstance(config.device, str), "a device name"),
        ("data_dir", isinstance(config.data_dir, str), "a path"),
        ("runs_dir", isinstance(config.runs_dir, str), "a path"),
        ("name", config.name is None or (isinstance(config.name, str) and _valid_name(config.name)),
         "None or a plain folder name (no '/', not '.', '..' or 'latest')"),
    ]
    for field, ok, what in checks:
        if not ok:
            raise ConfigError(f"{field}={getattr(config, field)!r}: expected {what}")
    n = sum(math.prod(s) for s in parameter_shapes(config.hidden, config.latent).values())
    if n > MAX_PARAMETERS:
        raise ConfigError(f"hidden={','.join(map(str, config.hidden))}, latent={config.latent} makes {n:,} parameters, "
                          f"more than the {MAX_PARAMETERS:,} supported")


def _valid_name(name: str) -> bool:
    return bool(name) and name not in (".", "..", "latest") and "/" not in name and "\\" not in name \
        and "\0" not in name


def make_backend(config: TrainConfig):
    """The backend named by ``config.backend``: 'numpy' here, others registered as entry points.

    ``numpy_vae`` never imports ``torch_vae``: the torch backend announces itself in
    pyproject.toml under the entry-point group ``vae_from_scratch.backends``.
    A backend that cannot be loaded or cannot use the device raises ConfigError, and so
    does a config that fails :func:`validate_config` (checked first, so a config read from
    an untrusted checkpoint cannot make a model of absurd size).
    """
    validate_config(config)
    kwargs = dict(model_config=config.model_config(), lr=config.lr, weight_decay=config.weight_decay,
                  seed=config.seed, clip_grad_norm=config.clip_grad_norm, device=config.device)
    if config.backend == "numpy":
        factory = NumpyBackend
    else:
        found = {ep.name: ep for ep in metadata.entry_points(group="vae_from_scratch.backends")}
        if config.backend not in found:
            raise ConfigError(f"unknown backend {config.backend!r}; available: {available_backends()}")
        try:
            factory = found[config.backend].load()
        except ImportError as e:
            raise ConfigError(f"backend {config.backend!r} cannot be loaded ({e}); is its package installed?") from None
    try:
        return factory(**kwargs)
    except ConfigError:
        raise
    except ValueError as e:          # e.g. NumpyBackend on a device other than the CPU
        raise ConfigError(str(e)) from None


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
    """The run folder, created; a named one may exist without a checkpoint, an automatic name is never reused."""
    if config.name:
        run_dir = Path(config.runs_dir) / config.name
        if (run_dir / "last.npz").exists():
            raise ConfigError(f"run folder {run_dir} already holds a run; continue it with --resume {run_dir} "
                              f"or choose another --name")
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    Path(config.runs_dir).mkdir(parents=True, exist_ok=True)
    stem = time.strftime(f"{config.backend}-%Y%m%d-%H%M%S")
    for k in range(1, 1000):
        run_dir = Path(config.runs_dir) / (stem if k == 1 else f"{stem}-{k}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise ConfigError(f"cannot find a free run folder name {stem}-N in {config.runs_dir}; pass --name")


def _resume_state(run_dir: Path, data_dir) -> tuple[TrainConfig, dict, dict, dict]:
    """Read RUN_DIR/last.npz and refuse it unless a resume can continue it exactly."""
    ckpt = run_dir / "last.npz"
    params, optim, meta = load_checkpoint(ckpt)
    check_meta(meta, ckpt, METRIC_FIELDS)
    try:
        config = TrainConfig.from_json(meta["config"])
        validate_config(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt}: its saved config cannot run ({e})") from None
    if meta["backend"] != config.backend:
        raise CheckpointError(f"{ckpt}: written by backend {meta['backend']!r} but its config names "
                              f"{config.backend!r}: corrupt or edited checkpoint")
    if meta["epoch"] > config.epochs:
        raise CheckpointError(f"{ckpt}: at epoch {meta['epoch']}, beyond its config's {config.epochs} epochs")
    config_json = run_dir / "config.json"
    if config_json.exists():
        try:
            on_disk = json.loads(config_json.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{config_json} is unreadable ({e}); the checkpoint's config is authoritative: "
                                  f"delete config.json to have it rewritten") from None
        if on_disk != meta["config"]:
            diff = sorted(k for k in set(on_disk) | set(meta["config"]) if on_disk.get(k) != meta["config"].get(k))
            shown = ", ".join(f"{k}: {on_disk.get(k)!r} in config.json, {meta['config'].get(k)!r} in last.npz"
                              for k in diff[:3])
            raise CheckpointError(f"{config_json} disagrees with {ckpt} ({shown}); a resume continues the "
                                  f"checkpoint's config exactly: restore config.json, or start a new run")
    if data_dir is not None:                      # where MNIST lives does not change the result
        config = dataclasses.replace(config, data_dir=str(data_dir))
    return config, params, optim, meta


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


class _RunLock:
    """An exclusive flock on the run folder itself, held while a process trains into it.

    The kernel drops it when the process ends, however it ends (SIGKILL included),
    so there is never a stale lock to clean up.  Where flock does not exist or the
    file system refuses it, training goes on unlocked.
    """

    def __init__(self, run_dir: Path):
        self._fd = None
        try:
            import fcntl
            fd = os.open(run_dir, os.O_RDONLY)
        except (ImportError, OSError):
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"run folder {run_dir} is being written by another vae process; "
                              f"let it finish (or stop it) first") from None
        except OSError:
            os.close(fd)
            return
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _kept(run_dir: Path, epoch: int) -> str:
    """What survives a stop in ``epoch``, for TrainingError's message."""
    if epoch > 1 and (run_dir / "last.npz").exists():
        return (f"The last good checkpoint, {run_dir / 'last.npz'} (after epoch {epoch - 1}), is kept; "
                f"try a lower --lr or --clip-grad-norm")
    return "No checkpoint was written (the first epoch did not complete); try a lower --lr or --clip-grad-norm"


def train(config: TrainConfig | None, resume: str | Path | None = None, progress: bool = True,
          figures: bool = True, log=print, data_dir: str | Path | None = None) -> Path:
    """Train, writing the run folder; returns its path.

    ``resume`` continues a run folder from its last.npz, with the checkpoint's
    config (``config`` is ignored then; ``data_dir`` may point at another copy of
    MNIST).  Raises ConfigError (bad config), CheckpointError (a checkpoint that
    cannot be continued exactly), MnistDataError, or TrainingError (NaN/inf).
    """
    if resume is not None:
        run_dir = Path(resume)
        if run_dir.is_symlink():                      # runs/latest: the real folder, so latest is not pointed at itself
            run_dir = run_dir.resolve()
        config, params, optim, meta = _resume_state(run_dir, data_dir)
    else:
        validate_config(config)
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
    shuffle_rng = np.random.default_rng([config.seed, 1])
    noise_rng = np.random.default_rng([config.seed, 2])
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    rows: list[dict] = []
    start_epoch, step, best = 0, 0, math.inf

    if resume is not None:
        ckpt = run_dir / "last.npz"
        if meta["step"] != meta["epoch"] * steps_per_epoch:
            raise CheckpointError(f"{ckpt}: step {meta['step']} after epoch {meta['epoch']} does not fit "
                                  f"{steps_per_epoch} steps per epoch ({len(train_x)} images, batch "
                                  f"{config.batch_size}): the data or the checkpoint changed")
        check_params(params, backend.param_shapes, ckpt, dtype=dtype)
        check_optimizer_state(optim, backend.optimizer_state(), ckpt)
        backend.set_params(params)
        try:
            backend.load_optimizer_state(optim)
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{ckpt}: the optimizer state does not fit ({e})") from None
        for name, rng in (("shuffle", shuffle_rng), ("noise", noise_rng)):
            try:
                rng.bit_generator.state = meta["rng"][name]
            except (KeyError, TypeError, ValueError, OverflowError) as e:
                raise CheckpointError(f"{ckpt}: its meta field 'rng.{name}' is not a {type(rng.bit_generator).__name__} "
                                      f"state ({type(e).__name__}: {e})") from None
        rows, start_epoch, step = meta["metrics"], meta["epoch"], meta["step"]
        best = min((r["test_loss"] for r in rows), default=math.inf)
    else:
        run_dir = _run_dir(config)
    lock = _RunLock(run_dir)                          # one process at a time writes a run folder
    try:
        if resume is not None:
            for tmp in remove_stale_temporaries(run_dir):
                log(f"removed {tmp}, left by an interrupted write")
            _write_metrics(run_dir / "metrics.csv", rows)   # drops a row of an epoch that never reached last.npz
            log(f"resuming {run_dir} after epoch {start_epoch} (step {step})")
        else:
            atomic_write(run_dir / "config.json", lambda f: f.write(json.dumps(config.to_json(), indent=2).encode()))
        _point_latest_at(run_dir)

        n_params = sum(math.prod(shape) for shape in backend.param_shapes.values())
        log(f"training {config.backend} VAE ({n_params:,} parameters) on {len(train_x):,} images for "
            f"{config.epochs} epochs -> {run_dir}")
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
                    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # checked below, by value
                        metrics = backend.train_step(x, eps)
                except FloatingPointError as e:              # NonFiniteError, from either backend
                    bar.close()
                    raise TrainingError(f"training stopped at epoch {epoch}, step {step + 1} (batch {i + 1} of "
                                        f"{steps_per_epoch}): {e}. {_kept(run_dir, epoch)}") from None
                step += 1
                sums += np.array(metrics) * len(idx)
                if i % 20 == 0 or i == steps_per_epoch - 1:
                    bar.set_postfix(loss=f"{metrics[0]:.2f}", recon=f"{metrics[1]:.2f}", kl=f"{metrics[2]:.2f}")
            bar.close()
            train_m = sums / len(train_x)
            params = backend.get_params()
            bad = next((k for k, v in params.items() if not np.isfinite(v).all()), None)
            if bad is not None:
                raise TrainingError(f"training stopped after epoch {epoch}, step {step}: parameter {bad} became NaN or "
                                    f"infinite. {_kept(run_dir, epoch)}")
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                test_m = evaluate(backend, test_x, config.seed, dtype)
            if not all(math.isfinite(v) for v in test_m.values()):
                raise TrainingError(f"training stopped after epoch {epoch}, step {step}: the test loss is "
                                    f"{test_m['loss']} (recon {test_m['recon']}, kl {test_m['kl']}). {_kept(run_dir, epoch)}")
            row = {"epoch": epoch, "train_loss": train_m[0], "train_recon": train_m[1], "train_kl": train_m[2],
                   "test_loss": test_m["loss"], "test_recon": test_m["recon"], "test_kl": test_m["kl"],
                   "lr": learning_rate(config, step - 1, total_steps), "seconds": time.perf_counter() - t0}
            row = {k: (v if k == "epoch" else float(v)) for k, v in row.items()}
            rows.append(row)
            meta = {"config": config.to_json(), "epoch": epoch, "step": step, "metrics": rows,
                    "rng": {"shuffle": shuffle_rng.bit_generator.state, "noise": noise_rng.bit_generator.state},
                    "backend": config.backend}
            # last.npz is the commit point: written after metrics.csv and best.npz (see the module docstring)
            _write_metrics(run_dir / "metrics.csv", rows)
            if row["test_loss"] < best:
                best = row["test_loss"]
                save_checkpoint(run_dir / "best.npz", params, None, meta)
            save_checkpoint(run_dir / "last.npz", params, backend.optimizer_state(), meta)
            log(f"epoch {epoch:3d}  train loss {train_m[0]:8.3f}  test loss {test_m['loss']:8.3f} "
                f"(recon {test_m['recon']:.3f}, kl {test_m['kl']:.3f})  {row['seconds']:.1f} s")
    finally:
        lock.release()

    final = rows[-1]["test_loss"] if rows else float("nan")
    log(f"test negative ELBO: {final:.2f} nats per sample (best {best:.2f}); run folder {run_dir}")
    if figures:
        from .report import write_report
        write_report(run_dir, backend=backend, data_dir=config.data_dir, progress=progress, log=log)
    return run_dir

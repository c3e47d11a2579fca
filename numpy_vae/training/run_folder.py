"""The run folder: what a run writes where, and what a resume must find there.

    config.json     the full configuration (TrainConfig.to_json)
    metrics.csv     one row per epoch, METRIC_FIELDS
    last.npz        checkpoint after the latest epoch: the commit point of a resume
    best.npz        checkpoint of the epoch with the lowest test loss

``new_run_dir`` picks and creates the folder, ``read_resume_state`` reads a
folder's last.npz and refuses it unless a resume can continue it exactly,
``RunLock`` keeps a second process out while one trains into it.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from pathlib import Path

from ..config import ConfigError, TrainConfig, validate_config
from .checkpoint import CheckpointError, atomic_write, check_meta, load_checkpoint, remove_stale_temporaries
from .restore import saved_spec

#: Columns every row has (a resumable checkpoint's rows must have them); METRIC_FIELDS adds newer ones,
#: left empty in the rows of runs written before they existed.
REQUIRED_METRIC_FIELDS = ["epoch", "train_loss", "train_recon", "train_kl", "test_loss", "test_recon", "test_kl",
                          "lr", "seconds"]
METRIC_FIELDS = [*REQUIRED_METRIC_FIELDS[:-1], "beta", "backend", "seconds"]
#: Fields a resume may change (``vae train --resume R --backend torch``): config.json and the checkpoint
#: may differ in them after a resume was interrupted before its first checkpoint.
SWITCHABLE_FIELDS = ("backend", "device")


def write_metrics(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def write_config(run_dir: Path, config: TrainConfig) -> None:
    atomic_write(run_dir / "config.json", lambda f: f.write(json.dumps(config.to_json(), indent=2).encode()))


def new_run_dir(config: TrainConfig) -> Path:
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


def read_resume_state(run_dir: Path, data_dir, backend: str | None = None,
                      device: str | None = None) -> tuple[TrainConfig, dict, dict, dict]:
    """Read RUN_DIR/last.npz and refuse it unless a resume can continue it exactly; ``backend`` and
    ``device`` (if given) continue it on another backend (device default: cpu for numpy, else the run's)."""
    ckpt = run_dir / "last.npz"
    params, optim, meta = load_checkpoint(ckpt)
    check_meta(meta, ckpt, REQUIRED_METRIC_FIELDS)
    try:
        config = TrainConfig.from_json(meta["config"])
        validate_config(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt}: its saved config cannot run ({e})") from None
    spec, _ = saved_spec(meta, config, ckpt)          # the loader's one reading of the checkpoint's model
    if spec != config.spec():
        raise CheckpointError(f"{ckpt}: its model spec ({spec.summary()}) is not the one its config describes "
                              f"({config.spec().summary()}): corrupt or edited checkpoint")
    if meta["backend"] != config.backend:
        raise CheckpointError(f"{ckpt}: written by backend {meta['backend']!r} but its config names "
                              f"{config.backend!r}: corrupt or edited checkpoint")
    if meta["epoch"] > config.epochs:
        raise CheckpointError(f"{ckpt}: at epoch {meta['epoch']}, beyond its config's {config.epochs} epochs")
    config_json = run_dir / "config.json"
    if config_json.exists():
        try:
            on_disk = json.loads(config_json.read_text())
        except RecursionError:
            raise CheckpointError(f"{config_json} is nested too deeply to be a run configuration; the checkpoint's "
                                  f"config is authoritative: delete config.json to have it rewritten") from None
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{config_json} is unreadable ({e}); the checkpoint's config is authoritative: "
                                  f"delete config.json to have it rewritten") from None
        # Both read the same way: a field a file predates takes its default, so a config.json written
        # before a field existed (threads) agrees with a checkpoint that holds that field at its default.
        try:
            written = TrainConfig.from_json(on_disk) if isinstance(on_disk, dict) else None
        except (TypeError, ValueError):
            written = None
        if written is None:
            raise CheckpointError(f"{config_json} is not a run configuration; the checkpoint's config is "
                                  f"authoritative: delete config.json to have it rewritten")
        diff = [f.name for f in dataclasses.fields(config) if getattr(written, f.name) != getattr(config, f.name)
                and f.name not in SWITCHABLE_FIELDS]
        if diff:
            shown = ", ".join(f"{k}: {getattr(written, k)!r} in config.json, {getattr(config, k)!r} in last.npz"
                              for k in diff[:3])
            raise CheckpointError(f"{config_json} disagrees with {ckpt} ({shown}); a resume continues the "
                                  f"checkpoint's config exactly: restore config.json, or start a new run")
    if data_dir is not None:                      # where MNIST lives does not change the result
        config = dataclasses.replace(config, data_dir=str(data_dir))
    if backend is not None or device is not None:
        backend = backend or config.backend
        device = device or ("cpu" if backend == "numpy" else config.device)
        config = dataclasses.replace(config, backend=backend, device=device)
        try:
            validate_config(config)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return config, params, optim, meta


def read_unstarted_config(run_dir: Path, data_dir) -> TrainConfig:
    """The config.json of a run folder stopped before its first checkpoint (killed in its first epoch), which a
    resume starts over; CheckpointError naming the file where it is not a runnable configuration."""
    path = run_dir / "config.json"
    try:
        config = TrainConfig.from_json(json.loads(path.read_text()))
        validate_config(config)
    except RecursionError:
        raise CheckpointError(f"{path} is nested too deeply to be a run configuration; start a new run") from None
    except (OSError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: no last.npz beside it and it cannot be run again ({e}); start a new "
                              f"run") from None
    if data_dir is not None:
        config = dataclasses.replace(config, data_dir=str(data_dir))
    return config


#: What a run writes before its first last.npz, removed again when it stops before that.
UNSTARTED_FILES = ("config.json", "metrics.csv", "best.npz")


def discard_unstarted(run_dir: Path, remove_folder: bool) -> None:
    """Remove what a new run wrote into ``run_dir`` before its first checkpoint (and the folder itself if this
    run created it and it is empty now), so a run that stops in its first epoch leaves nothing half-written."""
    remove_stale_temporaries(run_dir)
    for name in UNSTARTED_FILES:
        (run_dir / name).unlink(missing_ok=True)
    if remove_folder:
        try:
            run_dir.rmdir()
        except OSError:
            pass                                  # something else is in there: leave it


def point_latest_at(run_dir: Path) -> None:
    """runs/latest -> the newest run folder (a symlink, replaced atomically; skipped where unsupported)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{run_dir.name}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name)
        tmp.replace(link)
    except OSError:
        tmp.unlink(missing_ok=True)


class RunLock:
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

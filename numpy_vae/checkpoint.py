"""Checkpoints as plain ``.npz`` files: arrays only, loaded with ``allow_pickle=False``.

Layout of one file:
    params/<name>     every model parameter, named as torch_vae's state_dict() keys
    optim/<key>       the optimizer's state (step, exp_avg, exp_avg_sq, ... as flat arrays)
    meta              a JSON string: model config, training config, epoch, step,
                      random generator states, metrics so far

Either backend writes and reads this format, so a model trained by one is
evaluated or resumed by the other.  Writes are atomic: a temporary file in the
same folder, flushed and fsynced, then renamed over the target.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit the model; the message says which and why."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path, params: dict, optim: dict | None = None, meta: dict | None = None) -> None:
    """Write params (name -> array), optimizer state and JSON-able meta to ``path`` atomically."""
    arrays = {f"params/{k}": np.asarray(v) for k, v in params.items()}
    arrays.update({f"optim/{k}": np.asarray(v) for k, v in (optim or {}).items()})
    arrays["meta"] = np.array(json.dumps(meta or {}))
    atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def load_checkpoint(path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """Read (params, optim, meta) from ``path``; never unpickles anything."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the .npz written by `vae train` (runs/NAME/last.npz)")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            params = {k[len("params/"):]: z[k] for k in names if k.startswith("params/")}
            optim = {k[len("optim/"):]: z[k] for k in names if k.startswith("optim/")}
            meta = json.loads(str(z["meta"])) if "meta" in names else {}
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is not a readable vae checkpoint ({type(e).__name__}: {e}); "
                              f"it may be truncated or foreign: retrain or pick another file") from None
    if not params:
        raise CheckpointError(f"checkpoint {path} holds no parameters (no 'params/...' arrays): not a vae checkpoint")
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: its 'meta' entry is not a JSON object")
    return params, optim, meta


def check_params(params: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], source) -> None:
    """Refuse parameters whose names, shapes or dtypes do not fit the model, naming the first misfit."""
    missing = [k for k in expected if k not in params]
    unexpected = [k for k in params if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{source}: parameters do not match the model: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}; was it written for another architecture?")
    for name, shape in expected.items():
        value = params[name]
        if tuple(value.shape) != tuple(shape):
            raise CheckpointError(f"{source}: parameter {name} has shape {tuple(value.shape)}, the model expects {tuple(shape)}")
        if value.dtype not in (np.float32, np.float64):
            raise CheckpointError(f"{source}: parameter {name} has dtype {value.dtype}, expected float32 or float64")
        if not np.isfinite(value).all():
            raise CheckpointError(f"{source}: parameter {name} contains NaN or infinite values")

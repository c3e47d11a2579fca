"""Checkpoints as plain ``.npz`` files: arrays only, never unpickled.

Layout of one file:
    params/<name>     every model parameter, named as torch_vae's state_dict() keys
    optim/<key>       the optimizer's state (step, exp_avg, exp_avg_sq, ... as flat arrays)
    meta              a JSON string: the model's spec (``spec``: numpy_vae.specs' to_json, read back by
                      training.restore, the one loader), the training config, epoch, step,
                      random generator states, metrics so far

Either backend writes and reads this format, so a model trained by one is
evaluated or resumed by the other.  Writes are atomic: a temporary file in the
same folder, flushed and fsynced, then renamed over the target (and the folder
fsynced), so a crash leaves either the old file or the new one, never half of one.

Reading trusts nothing in the file.  The ``.npz`` is read member by member
(the equivalent of ``np.load(..., allow_pickle=False)``, with its limits made
explicit): object arrays (pickles) are refused, every array's header must agree
with the bytes the member really holds, and the zip may not claim more than
:data:`MAX_CHECKPOINT_BYTES` uncompressed, so a hostile file cannot make us
allocate more than it can justify.  A plain PyTorch ``state_dict`` saved with
``torch.save`` (zip format) is accepted too, read with
``torch.load(weights_only=True, map_location="cpu")``.  Every failure raises
:class:`CheckpointError` naming the file and what is wrong with it.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

#: Largest total uncompressed size a checkpoint may declare (all members together).
MAX_CHECKPOINT_BYTES = 1 << 30
#: Most members (arrays) a checkpoint may hold.
MAX_MEMBERS = 4096

# Exceptions the zip / .npy / JSON readers raise on malformed input.
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, OverflowError, NotImplementedError,
                RuntimeError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError, MemoryError, IndexError)
_TORCH_PICKLE = re.compile(r"^[^/]+/data\.pkl$")


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit the model; the message says which and why."""


# ------------------------------------------------------------------ writing
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp makes files readable by their owner only; a finished file gets the usual permissions.
_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, write) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it into place.

    An OSError (a full disk, ``path`` a folder, ...) leaves ``path`` as it was and is raised
    naming ``path``, not the temporary file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, _FILE_MODE)
        except OSError:
            pass
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (skipped where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path, names=("last.npz", "best.npz", "metrics.csv", "config.json")) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write` left in ``folder``; return them."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def save_checkpoint(path, params: dict, optim: dict | None = None, meta: dict | None = None) -> None:
    """Write params (name -> array), optimizer state and JSON-able meta to ``path`` atomically."""
    arrays = {f"params/{k}": np.asarray(v) for k, v in params.items()}
    arrays.update({f"optim/{k}": np.asarray(v) for k, v in (optim or {}).items()})
    arrays["meta"] = np.array(json.dumps(meta or {}))
    atomic_write(Path(path), lambda f: np.savez(f, **arrays))


# ------------------------------------------------------------------ reading
def _unreadable(path: Path, e: BaseException) -> CheckpointError:
    detail = " ".join(str(e).split())[:200]
    return CheckpointError(f"checkpoint {path} is not a readable vae checkpoint ({type(e).__name__}: {detail}); "
                           f"it may be truncated or foreign: retrain or pick another file")


def _check_zip_sizes(path: Path, zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(f"checkpoint {path} holds {len(infos)} members, more than the limit of {MAX_MEMBERS}: "
                              f"not a vae checkpoint")
    total = sum(info.file_size for info in infos)
    if total > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"checkpoint {path} claims {total:,} bytes of content, more than the limit of "
                              f"{MAX_CHECKPOINT_BYTES:,}: refused before reading (corrupt or hostile file)")
    return infos


def _read_npy(f, member_size: int, key: str, path: Path) -> np.ndarray:
    """One ``.npy`` member: header checked against the member's size before any array is allocated."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise CheckpointError(f"checkpoint {path}: array {key!r} has unsupported .npy format version {version}")
    except CheckpointError:
        raise
    except Exception as e:  # NumPy parses the header text with tokenize/literal_eval: many failure types
        detail = " ".join(str(e).split())[:120]
        raise CheckpointError(f"checkpoint {path}: array {key!r} has a malformed .npy header "
                              f"({type(e).__name__}: {detail}): corrupt or foreign file") from None
    if dtype.hasobject:
        raise CheckpointError(f"checkpoint {path}: array {key!r} holds Python objects (dtype {dtype}), which would "
                              f"need unpickling; refused (checkpoints hold plain numbers only)")
    nbytes = math.prod(shape) * dtype.itemsize
    held = member_size - f.tell()
    if nbytes != held:
        raise CheckpointError(f"checkpoint {path}: array {key!r} claims shape {shape} of {dtype} ({nbytes:,} bytes) "
                              f"but its member holds {held:,} bytes: corrupt or foreign file")
    data = f.read(nbytes)                     # at most what the member really holds
    if len(data) != nbytes:
        raise CheckpointError(f"checkpoint {path}: array {key!r} is truncated ({len(data):,} of {nbytes:,} bytes)")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def _read_npz(path: Path, zf: zipfile.ZipFile) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for info in _check_zip_sizes(path, zf):
        if not info.filename.endswith(".npy"):
            raise CheckpointError(f"checkpoint {path}: member {info.filename!r} is not a .npy array: "
                                  f"not a vae checkpoint")
        key = info.filename[:-len(".npy")]
        if key in arrays:
            raise CheckpointError(f"checkpoint {path}: array {key!r} appears twice: corrupt or hostile file")
        with zf.open(info) as f:
            arrays[key] = _read_npy(f, info.file_size, key, path)
    return arrays


def _is_torch_zip(zf: zipfile.ZipFile) -> bool:
    return any(_TORCH_PICKLE.match(name) for name in zf.namelist())


def _load_torch_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A ``torch.save(model.state_dict())`` file, loaded with weights_only=True; torch imported only here."""
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"checkpoint {path} is a PyTorch file; reading it needs torch installed") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types (UnpicklingError, RuntimeError, ...) for bad files
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if unsupported or "Weights only load failed" in text:
            what = f" (it names {unsupported.group(1)})" if unsupported else ""
            raise CheckpointError(f"checkpoint {path}: its pickle holds more than tensors and plain containers{what}; "
                                  f"torch.load(weights_only=True) refuses it: never load it unrestricted") from None
        detail = " ".join(text.split())[:200]
        raise CheckpointError(f"checkpoint {path}: torch.load(weights_only=True) cannot read it "
                              f"({type(e).__name__}: {detail})") from None
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"checkpoint {path}: a PyTorch file holding {type(obj).__name__}, not a state_dict "
                              f"(a non-empty dict of parameter name -> tensor)")
    params = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: entry {name!r} of the PyTorch file is "
                                  f"{type(value).__name__}, not a tensor: not a state_dict")
        try:
            params[name] = value.detach().cpu().numpy().copy()
        except (TypeError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {path}: tensor {name!r} (dtype {value.dtype}) cannot become a "
                                  f"NumPy array ({e})") from None
    return params


def load_checkpoint(path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """Read (params, optim, meta) from ``path``; never unpickles anything.

    ``path`` is a ``.npz`` written by :func:`save_checkpoint`, or a PyTorch
    state_dict written by ``torch.save`` (then ``optim`` and ``meta`` are empty).
    Raises :class:`CheckpointError` for anything else.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; pass the file itself (e.g. {path / 'last.npz'})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the .npz written by `vae train` (runs/NAME/last.npz)")
    try:
        with zipfile.ZipFile(path) as zf:
            if _is_torch_zip(zf):
                _check_zip_sizes(path, zf)
                torch_file = True
            else:
                torch_file = False
                arrays = _read_npz(path, zf)
        if torch_file:
            return _load_torch_state_dict(path), {}, {}
        params = {k[len("params/"):]: v for k, v in arrays.items() if k.startswith("params/")}
        optim = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
        meta = {}
        if "meta" in arrays:
            raw = arrays["meta"]
            if raw.shape != () or raw.dtype.kind != "U":
                raise CheckpointError(f"checkpoint {path}: its 'meta' entry is {raw.dtype} of shape {raw.shape}, "
                                      f"not a JSON string")
            meta = json.loads(str(raw))
    except CheckpointError:
        raise
    except _READ_ERRORS as e:
        raise _unreadable(path, e) from None
    if not params:
        raise CheckpointError(f"checkpoint {path} holds no parameters (no 'params/...' arrays): not a vae checkpoint")
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: its 'meta' entry is not a JSON object")
    return params, optim, meta


# ----------------------------------------------------------------- checking
def check_params(params: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], source,
                 dtype=None) -> None:
    """Refuse parameters whose names, shapes or dtypes do not fit the model, naming the first misfit.

    ``dtype`` (optional) demands exactly that dtype, as an exact resume does.
    """
    missing = [k for k in expected if k not in params]
    unexpected = [k for k in params if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{source}: parameters do not match the model: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}; was it written for another architecture?")
    for name, shape in expected.items():
        value = params[name]
        if tuple(value.shape) != tuple(shape):
            raise CheckpointError(f"{source}: parameter {name} has shape {tuple(value.shape)}, the model expects {tuple(shape)}")
        if name.endswith(".num_batches_tracked"):          # BatchNorm's batch counter, torch's int64
            if value.dtype.kind not in "iu" or (value < 0).any():
                raise CheckpointError(f"{source}: buffer {name} is {value.dtype} {value}, expected an integer >= 0")
            continue
        if value.dtype not in (np.float32, np.float64):
            raise CheckpointError(f"{source}: parameter {name} has dtype {value.dtype}, expected float32 or float64")
        if dtype is not None and value.dtype != np.dtype(dtype):
            raise CheckpointError(f"{source}: parameter {name} has dtype {value.dtype}, the run uses {np.dtype(dtype)}")
        if not np.isfinite(value).all():
            raise CheckpointError(f"{source}: parameter {name} contains NaN or infinite values")


def check_optimizer_state(state: dict[str, np.ndarray], expected: dict[str, np.ndarray], source,
                          step: int | None = None) -> None:
    """Refuse optimizer state whose keys, shapes or kinds differ from ``expected`` (a fresh optimizer's state),
    whose moments are not finite, whose ``exp_avg_sq`` (a mean of squares) is negative, or whose ``step``
    differs from the checkpoint's ``step`` (Adam's bias corrections count from it)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{source}: optimizer state does not match the optimizer: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    for key, ref in expected.items():
        value, ref = state[key], np.asarray(ref)
        if value.shape != ref.shape:
            raise CheckpointError(f"{source}: optimizer state {key} has shape {value.shape}, expected {ref.shape}")
        if ref.dtype.kind in "iu":
            if value.dtype.kind not in "iu":
                raise CheckpointError(f"{source}: optimizer state {key} has dtype {value.dtype}, expected an integer")
            if (value < 0).any():
                raise CheckpointError(f"{source}: optimizer state {key} is negative")
        elif ref.dtype.kind == "f":
            if value.dtype not in (np.float32, np.float64):
                raise CheckpointError(f"{source}: optimizer state {key} has dtype {value.dtype}, expected float32 or float64")
            if not np.isfinite(value).all():
                raise CheckpointError(f"{source}: optimizer state {key} contains NaN or infinite values")
            if key == "exp_avg_sq" and (value < 0).any():
                raise CheckpointError(f"{source}: optimizer state exp_avg_sq has negative entries (min "
                                      f"{value.min():.3g}); a mean of squared gradients is >= 0: the file was altered")
    if step is not None and "step" in state and int(state["step"]) != step:
        raise CheckpointError(f"{source}: optimizer state step is {int(state['step'])}, the checkpoint's step is "
                              f"{step}; Adam's bias corrections would be wrong: the file was altered")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_meta(meta: dict, source, metric_fields=()) -> dict:
    """Refuse a ``meta`` that lacks what a resume needs, naming the first missing or malformed field.

    Needed: config (object), backend (string), epoch (int >= 1), step (int >= 0),
    rng.shuffle and rng.noise (NumPy bit-generator states, objects), metrics
    (one row per epoch, each an object with ``metric_fields`` as numbers).
    Returns ``meta``.
    """
    def need(cond, field, what):
        if not cond:
            raise CheckpointError(f"{source}: its meta field {field!r} is missing or malformed (expected {what}); "
                                  f"not a resumable vae checkpoint")

    need(isinstance(meta.get("config"), dict), "config", "an object")
    need(isinstance(meta.get("backend"), str), "backend", "a string")
    need(_is_int(meta.get("epoch")) and meta["epoch"] >= 1, "epoch", "an integer >= 1")
    need(_is_int(meta.get("step")) and meta["step"] >= 0, "step", "an integer >= 0")
    rng = meta.get("rng")
    need(isinstance(rng, dict), "rng", "an object")
    for name in ("shuffle", "noise"):
        need(isinstance(rng.get(name), dict), f"rng.{name}", "a NumPy bit-generator state")
    rows = meta.get("metrics")
    need(isinstance(rows, list) and len(rows) == meta["epoch"], "metrics", f"a list of {meta['epoch']} rows")
    for i, row in enumerate(rows):
        need(isinstance(row, dict) and all(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)
                                           for k in metric_fields),
             f"metrics[{i}]", f"an object with numbers {list(metric_fields)}")
    return meta

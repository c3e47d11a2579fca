"""What the live page shows of one run folder, computed on demand and never written anywhere.

:class:`RunFolder` reads what the run writes (config.json, metrics.csv, the
report's PNG figures) and serves its own files through a fixed allowlist.
:class:`RunView` adds the model: the run's latest checkpoint (last.npz) is
loaded through the backend interface (either backend) and kept, with
everything computed from it, until the file's mtime changes; the MNIST test
set is loaded once.  Every draw comes from ``streams.live_stream``, seeded by
the run's seed, so a page shows the same digits for the same checkpoint.

Nothing here writes a file: the server never changes the run folder.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..nn import functional as F
from ..streams import draw_eps, live_stream
from . import images
from .params import ServeError

#: The run folder's files the page may fetch by name (besides *.png figures), with their content types.
SERVED_FILES = {"config.json": "application/json", "metrics.csv": "text/csv; charset=utf-8",
                "report.html": "text/html; charset=utf-8", "evaluation.json": "application/json"}
FIGURE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.png")
MAX_FILE_BYTES = 64 << 20          # larger files are not served (figures and tables are far smaller)
MAX_TABLE_BYTES = 16 << 20         # config.json and metrics.csv are read up to this size

MAX_COUNT = 64                     # "generate digit": at most this many test digits a request
SAMPLES_PER_DIGIT = 6              # decodes around each test digit's posterior
MAX_SEED = 2 ** 32 - 1
LATENT_LIMIT = 10.0                # latent coordinates accepted by the 2-D map, |z_i| <= this
MAP_POINTS = 2000                  # test digits on the latent map (the first ones of the test set)
RECONSTRUCTED = 20                 # reconstructions: the first two test digits of each class
PRIOR_SAMPLES = 40                 # prior samples shown (4 rows of 10)
MAX_PENDING = 4                    # pictures computed or waiting to be, at most; more: 503 + Retry-After
RETRY_AFTER = 1                    # seconds a refused picture request is told to wait
TRAINING_CHECK_SECONDS = 0.5       # how long the page's "training now?" answer is kept


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of ``path``, None if it does not exist: a file's version, for caches."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ServeError(503, f"{path} cannot be read ({e.strerror or e})") from None
    return st.st_mtime_ns, st.st_size, st.st_ino


def json_bytes(value) -> bytes:
    """``value`` as compact JSON bytes (NaN and infinities refused: they are not JSON)."""
    return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()


def finite_or_none(value: float) -> float | None:
    """A float as JSON can hold it: NaN and infinities become None (null)."""
    return value if math.isfinite(value) else None


TEXT_COLUMNS = ("backend",)          # metrics.csv columns that hold words, not numbers


def parse_metrics(text: str, name: str = "metrics.csv") -> tuple[list[str], list[dict]]:
    """metrics.csv's text -> (columns, rows); every value a float (epoch an int), unparseable ones None;
    the text columns (``TEXT_COLUMNS``: which backend ran the epoch) as they are written.

    A table that cannot be a run's (a field over the csv module's limit, an epoch that is
    not a whole number >= 0) is a :class:`ServeError` (503) naming ``name``.
    """
    try:
        reader = csv.DictReader(io.StringIO(text))
        columns = list(reader.fieldnames or [])
        raw_rows = list(reader)
    except csv.Error as e:
        raise ServeError(503, f"{name} cannot be read as a table ({e}); was it edited?") from None
    rows = []
    for line, raw in enumerate(raw_rows, start=2):
        row = {}
        for column in columns:
            value = raw.get(column)
            if column in TEXT_COLUMNS:
                row[column] = value or None
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if column == "epoch":
                if not (number.is_integer() and number >= 0):
                    raise ServeError(503, f"{name} line {line}: epoch {str(value)[:40]!r} is not a whole number "
                                          f">= 0; was it edited?")
                row[column] = int(number)
            else:
                row[column] = finite_or_none(number) if isinstance(value, str) else None
        rows.append(row)
    return columns, rows


def _no_constant(literal: str):
    raise ValueError(f"{literal} is not JSON")


#: config.json's fields the page reads, with the types they must have (absent is fine)
CONFIG_FIELDS = {"epochs": int, "latent": int, "seed": int, "data_dir": str}


def parse_config(text: str, name: str = "config.json") -> dict:
    """config.json's text -> a dict; ServeError (503) naming ``name`` if it is not a run's config: invalid JSON
    (NaN and Infinity included), nested too deeply, not an object, or a field the page reads of the wrong type."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ServeError(503, f"{name} is nested too deeply to be a run's config; was it edited?") from None
    except ValueError as e:
        raise ServeError(503, f"{name} is not valid JSON ({' '.join(str(e).split())[:120]}); was it edited?") from None
    if not isinstance(value, dict):
        raise ServeError(503, f"{name} holds a JSON {type(value).__name__}, not an object; was it edited?")
    for key, kind in CONFIG_FIELDS.items():
        if key in value and (not isinstance(value[key], kind) or isinstance(value[key], bool)):
            raise ServeError(503, f"{name}: {key} must be {'an integer' if kind is int else 'a string'}, got "
                                  f"{json.dumps(value[key])[:40]}; was it edited?")
    return value


def flock_listed(run_dir: Path, locks: str = "/proc/locks") -> bool | None:
    """Whether Linux's /proc/locks lists an exclusive flock on ``run_dir`` (None where there is no such file)."""
    try:
        st = os.stat(run_dir)
        with open(locks) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return any("FLOCK" in fields and "WRITE" in fields and key in fields for fields in map(str.split, lines))


def training_now(run_dir: Path) -> bool | None:
    """Whether a ``vae train`` process holds the run folder's lock right now (None where it cannot be told).

    Training holds an exclusive flock on the folder (``run_folder.RunLock``).  On Linux it
    is looked up in /proc/locks, taking nothing; elsewhere a shared flock is taken and
    dropped at once (which writes nothing either).
    """
    listed = flock_listed(run_dir)
    if listed is not None:
        return listed
    try:
        import fcntl
        fd = os.open(run_dir, os.O_RDONLY)
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class RunFolder:
    """The files of one run folder, read-only: its config, metrics, figures, and the allowlisted files by name.

    config.json and metrics.csv are parsed once per version of the file (its mtime, size
    and inode), so polling them costs a stat and an open.
    """

    def __init__(self, path: Path):
        self.path = Path(path).resolve()
        self._kept: dict[str, tuple[object, tuple[int, int, int]]] = {}     # name -> (parsed, stamp)
        self._metrics_json: tuple[list, bytes] | None = None                  # (the rows encoded, their JSON)

    def _open(self, name: str, follow: bool = True):
        """The run folder's file ``name`` opened for reading as a regular file (never blocking on a FIFO),
        with its stat; None if it does not exist.  OSError as the system gives it; ServeError (404) for
        anything that is not a regular file.  The caller closes the file."""
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
        try:
            fd = os.open(self.path / name, flags)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ServeError(404, f"{name} is not a regular file")
            return os.fdopen(fd, "rb"), st
        except BaseException:
            os.close(fd)
            raise

    def _parsed(self, name: str, parse) -> tuple[object, tuple[int, int, int]] | None:
        """(``parse(text, path)``, the file's (mtime_ns, size, inode)) of the run folder's file ``name``, None if
        absent; the parsed value (shared: not to be changed) is kept until the file's stamp changes.
        ServeError (503) naming the file if it cannot be read or parsed."""
        path = self.path / name
        try:
            opened = self._open(name)
            if opened is None:
                return None
            with opened[0] as f:
                st = opened[1]
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                kept = self._kept.get(name)
                if kept is not None and kept[1] == stamp:
                    return kept
                data = f.read(MAX_TABLE_BYTES + 1)
        except ServeError as e:
            raise ServeError(503, f"{path} cannot be read: {e.message}") from None
        except OSError as e:
            raise ServeError(503, f"{path} cannot be read ({e.strerror or e})") from None
        if len(data) > MAX_TABLE_BYTES:
            raise ServeError(503, f"{path} is larger than {MAX_TABLE_BYTES >> 20} MiB; not read")
        self._kept[name] = kept = (parse(data.decode("utf-8", errors="replace"), str(path)), stamp)
        return kept

    def config(self) -> dict | None:
        """config.json as a dict, None if the run has not written it; ServeError (503) if it is not a run's config."""
        parsed = self._parsed("config.json", parse_config)
        return parsed[0] if parsed is not None else None

    def metrics(self) -> dict:
        """metrics.csv as {"columns", "rows", "mtime"} (no rows yet: empty lists, mtime None)."""
        parsed = self._parsed("metrics.csv", parse_metrics)
        if parsed is None:
            return {"columns": [], "rows": [], "mtime": None}
        (columns, rows), stamp = parsed
        return {"columns": columns, "rows": rows, "mtime": stamp[0] / 1e9}

    def metrics_json(self) -> bytes:
        """:meth:`metrics` as JSON bytes, encoded once per version of metrics.csv (the page polls it)."""
        metrics = self.metrics()
        kept = self._metrics_json
        if kept is not None and kept[0] is metrics["rows"] and metrics["rows"]:
            return kept[1]
        body = json_bytes(metrics)
        self._metrics_json = (metrics["rows"], body)
        return body

    def figures(self) -> list[dict]:
        """The run folder's PNG figures (regular files, not links), by name: [{"name", "mtime"}]."""
        found = []
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return found
        for entry in sorted(entries, key=lambda e: e.name):
            if FIGURE_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                found.append({"name": entry.name, "mtime": entry.stat(follow_symlinks=False).st_mtime_ns / 1e9})
        return found

    def has_file(self, name: str) -> bool:
        """Whether the allowlisted file ``name`` is there as a regular file."""
        try:
            return stat.S_ISREG(os.lstat(self.path / name).st_mode)
        except OSError:
            return False

    def read_file(self, name: str) -> tuple[bytes, str]:
        """(bytes, content type) of the run folder's own file ``name``.

        ``name`` is the decoded last part of /files/NAME.  Refused: anything with a path
        separator, a '..', a leading '.', a NUL (403); names off the allowlist (404);
        links, even to inside the folder, and anything not a regular file (403 / 404).
        The file is opened with O_NOFOLLOW below the resolved folder, so nothing outside
        it can be reached, even by a link made after the check.
        """
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith(".") or ".." in name:
            raise ServeError(403, f"forbidden: {name[:80]!r}; only files directly inside the run folder are served")
        if name in SERVED_FILES:
            kind = SERVED_FILES[name]
        elif FIGURE_NAME.fullmatch(name):
            kind = "image/png"
        else:
            raise ServeError(404, f"not served: {name[:80]!r}; the run folder's files served are "
                                  f"{', '.join(SERVED_FILES)} and its *.png figures")
        path = self.path / name
        try:
            opened = self._open(name, follow=False)
        except OSError as e:
            if os.path.islink(path):
                raise ServeError(403, f"forbidden: {name} is a symbolic link; only the run folder's own "
                                      f"files are served") from None
            raise ServeError(403, f"{name} cannot be read ({e.strerror or e})") from None
        if opened is None:
            raise ServeError(404, f"the run folder has no {name}")
        with opened[0] as f:
            if opened[1].st_size > MAX_FILE_BYTES:
                raise ServeError(403, f"{name} is larger than {MAX_FILE_BYTES >> 20} MiB; not served")
            return f.read(MAX_FILE_BYTES), kind


@dataclass
class LoadedModel:
    """A checkpoint loaded behind the backend interface, with what was computed from it (``derived``)."""
    backend: object
    config: object                         # numpy_vae.config.TrainConfig
    meta: dict
    stamp: tuple[int, int, int]
    derived: dict = field(default_factory=dict)

    @property
    def latent(self) -> int:
        return int(self.config.latent)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.config.dtype)


@dataclass
class Generated:
    """A "generate digit" answer: test digits (N, 784), their indices (N,), and decodes around them (N, S, 784)."""
    originals: np.ndarray
    indices: np.ndarray
    samples: np.ndarray


def generate_digit(backend, test_x: np.ndarray, test_y: np.ndarray, digit: int, count: int, run_seed: int,
                   request_seed: int, samples: int = SAMPLES_PER_DIGIT, dtype=np.float32) -> Generated:
    """``count`` test digits of class ``digit`` and ``samples`` decodes of z = mu + sigma * eps around each posterior.

    The test digits (chosen without replacement among those of the class) and eps ~ N(0, I)
    come from ``live_stream(run_seed, "generate", request_seed)``: the same request gives
    the same picture.  Shapes: originals (count, 784), samples (count, samples, 784).
    """
    rng = live_stream(run_seed, "generate", request_seed)
    pool = np.flatnonzero(np.asarray(test_y) == digit)
    if len(pool) < count:
        raise ServeError(400, f"count must be at most {len(pool)}: the test set holds {len(pool)} digits {digit}",
                         parameter="count", allowed=[1, int(len(pool))])
    indices = rng.choice(pool, size=count, replace=False)
    x = np.ascontiguousarray(test_x[indices], dtype)
    mu, logvar = backend.encode(x)
    latent = mu.shape[1]
    eps = draw_eps(rng, count * samples, latent, dtype).reshape(count, samples, latent)
    z = F.reparameterize(mu[:, None, :], logvar[:, None, :], eps)
    decoded = np.asarray(backend.decode(np.ascontiguousarray(z.reshape(-1, latent), dtype)))
    return Generated(test_x[indices], indices, decoded.reshape(count, samples, -1))


def first_of_each_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` test digits of each class 0..9, in the order 0, 1, ..., 9, 0, 1, ..."""
    labels = np.asarray(labels)
    chosen = [np.flatnonzero(labels == c)[:per_class] for c in range(10)]
    return np.array([idx[k] for k in range(per_class) for idx in chosen if k < len(idx)], dtype=np.int64)


def map_extent(points: np.ndarray, limit: float = LATENT_LIMIT) -> dict:
    """The latent map's axes for (N, 2) points: their range, padded, at least [-3, 3], within [-limit, limit]."""
    extent = {}
    for axis, name in enumerate(("x", "y")):
        values = points[:, axis][np.isfinite(points[:, axis])]
        lo, hi = (float(values.min()), float(values.max())) if len(values) else (-3.0, 3.0)
        pad = 0.05 * (hi - lo)
        extent[name] = [max(-limit, min(lo - pad, -3.0)), min(limit, max(hi + pad, 3.0))]
    return extent


class RunView:
    """One run folder as the live page sees it: its files, its latest checkpoint's model, the MNIST test set.

    ``run_dir`` may be None at first (``vae train --serve`` before the run folder exists);
    :meth:`attach` sets it later.

    Model work (a decode, an encode of the test set) runs one computation at a time,
    under its own lock, so the page never competes with itself for the CPU; at most
    MAX_PENDING computations run or wait, and a further one is refused at once (503 with
    Retry-After) rather than piling up.  Nothing else waits for that lock: reading the
    run's files, a cached picture and the loaded checkpoint take no lock at all, and
    loading a new checkpoint takes only the loading lock.
    """

    def __init__(self, run_dir: Path | None = None, backend: str = "numpy", device: str = "cpu",
                 data_dir: str | os.PathLike | None = None):
        self.backend_name = backend
        self.device = device
        self.data_dir = data_dir
        self._folder = RunFolder(run_dir) if run_dir is not None else None
        self._load_lock = threading.Lock()         # loading a checkpoint, attaching the folder
        self._work_lock = threading.Lock()         # model computations, one at a time
        self._pending = threading.BoundedSemaphore(MAX_PENDING)
        self._model: LoadedModel | None = None
        self._training_asked: tuple[float, bool | None] | None = None       # (when, training_now's answer)
        self._test_set: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ the folder
    def attach(self, run_dir: Path) -> None:
        """Show ``run_dir`` from now on (once known); a second call with another folder is refused."""
        with self._load_lock:
            if self._folder is not None and self._folder.path != Path(run_dir).resolve():
                raise ValueError(f"this page already shows {self._folder.path}")
            self._folder = RunFolder(run_dir)

    @property
    def folder(self) -> RunFolder:
        """The run folder, or a 503 while it is not known yet."""
        folder = self._folder
        if folder is None:
            raise ServeError(503, "the run has not written its run folder yet: the page fills in after the first "
                                  "epoch", pending=True)
        return folder

    def summary(self) -> dict:
        """/api/run: the run's name, config, status, checkpoint, figures and the page's limits (JSON-ready)."""
        limits = {"count": [1, MAX_COUNT], "digit": [0, 9], "seed": [0, MAX_SEED], "latent": LATENT_LIMIT,
                  "samples_per_digit": SAMPLES_PER_DIGIT}
        if self._folder is None:
            return {"pending": True, "limits": limits,
                    "message": "waiting for the run: its folder appears after the first epoch"}
        folder = self.folder
        config = folder.config()
        rows = folder.metrics()["rows"]
        checkpoint = self.checkpoint_summary()
        latent = (config or {}).get("latent", checkpoint.get("latent"))
        return {"pending": False, "run": folder.path.name, "path": str(folder.path), "config": config,
                "status": self.status(config, rows), "checkpoint": checkpoint,
                "figures": folder.figures(), "report": folder.has_file("report.html"),
                "latent": latent, "backend": self.backend_name, "limits": limits}

    def status(self, config: dict | None, rows: list[dict]) -> dict:
        """{"state": training|finished|stopped|starting, "epochs_done", "epochs", "text"} of the run."""
        epochs = (config or {}).get("epochs")
        done = rows[-1].get("epoch") if rows else 0
        busy = self._training_now()
        if busy:
            state, text = "training", f"training: {done} of {epochs} epochs done"
        elif rows and epochs is not None and done >= epochs:
            state, text = "finished", f"finished: {done} of {epochs} epochs"
        elif rows:
            state, text = "stopped", (f"stopped after epoch {done} of {epochs}: no process is training it now "
                                      f"(continue it with `vae train --resume {self.folder.path}`)")
            if busy is None:
                state, text = "unknown", f"{done} of {epochs} epochs done"
        else:
            state, text = "starting", "no epoch has finished yet"
        return {"state": state, "epochs_done": done, "epochs": epochs, "text": text}

    def _training_now(self) -> bool | None:
        """:func:`training_now` of the run folder, asked at most every TRAINING_CHECK_SECONDS: reading
        /proc/locks takes the kernel's file-lock semaphore for writing, milliseconds under load."""
        asked = self._training_asked
        if asked is not None and time.monotonic() - asked[0] < TRAINING_CHECK_SECONDS:
            return asked[1]
        busy = training_now(self.folder.path)
        self._training_asked = (time.monotonic(), busy)
        return busy

    def checkpoint_summary(self) -> dict:
        """{"file", "mtime", "epoch", "latent"} of last.npz, or {"error": why} if there is none or it is unreadable."""
        try:
            model = self.model()
        except ServeError as e:
            return {"file": "last.npz", "error": e.message}
        return {"file": "last.npz", "mtime": model.stamp[0] / 1e9, "epoch": model.meta.get("epoch"),
                "latent": model.latent}

    # ------------------------------------------------------------------ the model
    def model(self) -> LoadedModel:
        """The latest checkpoint (last.npz) loaded, reloaded only when its mtime, size or inode changed.

        The loaded one is returned without a lock; a new one is loaded under the loading
        lock (never the computations' lock), once, however many requests ask for it.
        """
        path = self.folder.path / "last.npz"
        loaded = self._model
        if loaded is not None and loaded.stamp == file_stamp(path):
            return loaded
        with self._load_lock:
            return self._current_model(path)

    def _current_model(self, path: Path) -> LoadedModel:
        """:meth:`model` under the loading lock (the caller holds it)."""
        for _ in range(3):                          # a checkpoint replaced while being read: read the new one
            stamp = file_stamp(path)
            if stamp is None:
                raise ServeError(503, f"no checkpoint yet: {path} does not exist (it is written after each "
                                      f"epoch)", checkpoint=False)
            if self._model is not None and self._model.stamp == stamp:
                return self._model
            model = self._load(path, stamp)
            if file_stamp(path) == stamp:
                self._model = model
                return model
        return model

    def _load(self, path: Path, stamp) -> LoadedModel:
        """Load ``path`` into the configured backend; ServeError (503) saying why it cannot be used."""
        from ..config import ConfigError
        from ..training.checkpoint import CheckpointError
        from ..training.restore import load_backend
        try:
            backend, config, meta = load_backend(path, backend=self.backend_name, device=self.device)
        except (CheckpointError, ConfigError) as e:
            raise ServeError(503, f"checkpoint {path} cannot be used: {' '.join(str(e).split())}",
                             checkpoint=False) from None
        except OSError as e:
            raise ServeError(503, f"checkpoint {path} cannot be read ({e.strerror or e})", checkpoint=False) from None
        return LoadedModel(backend, config, meta, stamp)

    def test_set(self) -> tuple[np.ndarray, np.ndarray]:
        """MNIST's test images (10000, 784) and labels (10000,), loaded once (the caller holds the work lock)."""
        if self._test_set is None:
            from ..data import MnistDataError, load_mnist
            config = self.folder.config() or {}
            data_dir = self.data_dir or os.environ.get("VAE_DATA_DIR") or config.get("data_dir") or "data"
            try:
                self._test_set = load_mnist(data_dir, "test")
            except MnistDataError as e:
                raise ServeError(503, f"the MNIST test set is needed here: {' '.join(str(e).split())}") from None
        return self._test_set

    def _compute(self, key: tuple, compute):
        """``compute(model)`` for the current checkpoint, kept under ``key`` until the checkpoint changes.

        A kept answer is returned at once, without a lock.  A new one waits its turn for the
        work lock, unless MAX_PENDING computations already run or wait: then a 503 with
        Retry-After says to ask again.  A model whose outputs are not finite (a diverged run)
        gives a 503 saying so.
        """
        from ..inputs import InputError
        done = self.model().derived.get(key)
        if done is not None:
            return done
        if not self._pending.acquire(blocking=False):
            raise ServeError(503, f"busy: {MAX_PENDING} pictures are being computed or waiting; ask again in "
                                  f"{RETRY_AFTER} s", busy=True, headers={"Retry-After": str(RETRY_AFTER)})
        try:
            with self._work_lock:
                model = self.model()
                done = model.derived.get(key)
                if done is not None:
                    return done
                try:
                    with np.errstate(all="ignore"):
                        done = compute(model)
                except (InputError, FloatingPointError) as e:
                    raise ServeError(503, f"the checkpoint's network gives unusable values ({' '.join(str(e).split())}); "
                                          f"a diverged run?") from None
                if len(model.derived) >= 256:         # bound the cache: drop the oldest answers
                    for old in list(model.derived)[:64]:
                        model.derived.pop(old, None)
                model.derived[key] = done
                return done
        finally:
            self._pending.release()

    def _decode(self, model: LoadedModel, z: np.ndarray) -> np.ndarray:
        """Pixel probabilities (B, 784) of latent points z (B, L)."""
        return np.asarray(model.backend.decode(np.ascontiguousarray(z, model.dtype)))

    # ------------------------------------------------------------------ the page's pictures
    def reconstructions_png(self) -> bytes:
        """PNG: the first two test digits of each class (rows 1 and 3) above their reconstructions (rows 2 and 4)."""
        def compute(model):
            test_x, test_y = self.test_set()
            x = np.ascontiguousarray(test_x[first_of_each_class(test_y, RECONSTRUCTED // 10)], model.dtype)
            mu, _ = model.backend.encode(x)
            recon = self._decode(model, mu)
            return images.grid_png(np.concatenate([x[:10], recon[:10], x[10:], recon[10:]]), 10)
        return self._compute(("reconstructions",), compute)

    def samples_png(self) -> bytes:
        """PNG: decodes of PRIOR_SAMPLES fixed draws z ~ N(0, I) (the same z for every checkpoint), 10 a row."""
        def compute(model):
            seed = int(model.config.seed)
            z = draw_eps(live_stream(seed, "samples"), PRIOR_SAMPLES, model.latent, model.dtype)
            return images.grid_png(self._decode(model, z), 10)
        return self._compute(("samples",), compute)

    def generate_png(self, digit: int, count: int, seed: int) -> bytes:
        """PNG: ``count`` test digits of class ``digit``, each followed by SAMPLES_PER_DIGIT decodes around its posterior."""
        def compute(model):
            test_x, test_y = self.test_set()
            out = generate_digit(model.backend, test_x, test_y, digit, count, int(model.config.seed), seed,
                                 dtype=model.dtype)
            return images.strips_png(out.originals, out.samples, per_row=1 if count <= 8 else 2)
        return self._compute(("generate", digit, count, seed), compute)

    def _require_2d(self, model: LoadedModel) -> None:
        if model.latent != 2:
            raise ServeError(400, f"the latent map needs a 2-D latent; this run's latent has {model.latent} "
                                  f"dimensions", latent=model.latent)

    def latent_map(self) -> dict:
        """/api/latent (2-D latent only): posterior means of the first MAP_POINTS test digits, labels and axes."""
        self._require_2d(self.model())              # a 400 needs no turn at the work lock
        def compute(model):
            self._require_2d(model)
            test_x, test_y = self.test_set()
            mu, _ = model.backend.encode(np.ascontiguousarray(test_x[:MAP_POINTS], model.dtype))
            mu = np.asarray(mu, np.float64)
            if not np.isfinite(mu).all():
                raise FloatingPointError("non-finite posterior means")
            return {"points": np.round(mu, 3).tolist(), "labels": test_y[:MAP_POINTS].astype(int).tolist(),
                    "extent": map_extent(mu), "limit": LATENT_LIMIT, "epoch": model.meta.get("epoch")}
        return self._compute(("latent",), compute)

    def decode_png(self, x: float, y: float) -> bytes:
        """PNG (28 x 28) of the decode of the 2-D latent point z = (x, y)."""
        self._require_2d(self.model())              # a 400 needs no turn at the work lock
        def compute(model):
            self._require_2d(model)
            return images.digit_png(self._decode(model, np.array([[x, y]]))[0])
        return self._compute(("decode", x, y), compute)

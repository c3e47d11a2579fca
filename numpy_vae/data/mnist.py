"""MNIST on disk: the four original IDX files, their MD5s, loading and batching.

Layout
------
Files live where torchvision puts them, so an existing torchvision MNIST
root can be reused as is::

    DATA/MNIST/raw/train-images-idx3-ubyte   (60000, 28, 28) uint8
    DATA/MNIST/raw/train-labels-idx1-ubyte   (60000,)        uint8
    DATA/MNIST/raw/t10k-images-idx3-ubyte    (10000, 28, 28) uint8
    DATA/MNIST/raw/t10k-labels-idx1-ubyte    (10000,)        uint8

Each may also be present as ``<name>.gz``; gzip is recognised by its magic
bytes (1f 8b), not by the suffix.  MD5 checksums always refer to the
*uncompressed* bytes of the original files (:data:`MNIST_FILES`).
"""

from __future__ import annotations

import errno
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import MnistArgumentError, MnistDataError, _corrupt, _fetch_hint
from .idx import PathLike, _md5_uncompressed, read_idx

__all__ = ["MNIST_FILES", "batches", "load_mnist", "raw_dir", "verify_md5"]

#: MD5 of the original, uncompressed MNIST files (as published by LeCun et al.).
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

_SPLITS = {"train": "train", "test": "t10k"}
_IMAGE_MAGIC = 0x00000803  # uint8, 3 dimensions
_LABEL_MAGIC = 0x00000801  # uint8, 1 dimension
_ROWS = _COLS = 28
_N_CLASSES = 10


# --------------------------------------------------------------------------
# Paths and checksums
# --------------------------------------------------------------------------


def raw_dir(data_dir: PathLike) -> Path:
    """Return ``data_dir/MNIST/raw``, where the IDX files live (torchvision's layout)."""
    return Path(data_dir).expanduser() / "MNIST" / "raw"


def verify_md5(path: PathLike, expected: str) -> None:
    """Check the MD5 of the uncompressed content of ``path`` (raw or gzip).

    Raises:
        MnistDataError: unreadable file, or checksum mismatch (the message
            names the file, the expected and the actual checksum, and the fix).
    """
    path = Path(path)
    got = _md5_uncompressed(path)
    if got != expected.lower():
        raise MnistDataError(
            f"{path}: MD5 mismatch: expected {expected.lower()}, got {got}; the file is "
            f"corrupt or not the original MNIST file: delete it and run {_fetch_hint(path)}"
        )


def _file_problems(raw: Path) -> dict[str, str | None]:
    """What is wrong with each of :data:`MNIST_FILES` whose uncompressed file is unusable.

    Returns ``{name: reason}`` for the bad files only, in table order:
    ``None`` when ``raw/name`` is absent, else why it fails its MD5 check.
    """
    bad: dict[str, str | None] = {}
    for name, md5 in MNIST_FILES.items():
        path = raw / name
        if not path.exists():
            bad[name] = None
            continue
        try:
            got = _md5_uncompressed(path)
        except MnistDataError as exc:
            bad[name] = f"it cannot be read: {exc}"
            continue
        if got != md5:
            bad[name] = f"its MD5 is {got}, expected {md5}"
    return bad


def _invalid_files(raw: Path) -> list[str]:
    """Names of :data:`MNIST_FILES` whose uncompressed file is absent or fails its MD5."""
    return list(_file_problems(raw))


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def _unfollowable(link: Path) -> str:
    """Why the symbolic link ``link`` leads to no file: a loop, or a target that is not there."""
    try:
        os.stat(link)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"a symbolic link loop (it points to {os.readlink(link)}, which leads back to itself)"
        return f"a symbolic link to {os.readlink(link)}, which is not there ({e.strerror})"
    return "a symbolic link"


def _find_file(raw: Path, name: str, data_dir: PathLike) -> Path:
    """``raw/name`` if it exists, else ``raw/name.gz``; error naming both otherwise."""
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.exists():
            return candidate
        if candidate.is_symlink():                    # exists() is False for a link that cannot be followed
            raise MnistDataError(f"{candidate}: {_unfollowable(candidate)}; replace it with the file, or delete it "
                                 f"and run `vae data fetch --data-dir {shlex.quote(str(data_dir))}`")
    raise MnistDataError(
        f"{raw / name}: file not found (nor {name}.gz); run "
        f"`vae data fetch --data-dir {shlex.quote(str(data_dir))}`, or point --data-dir "
        "at a torchvision MNIST root (the folder that contains MNIST/raw)"
    )


def load_mnist(
    data_dir: PathLike, split: str = "train", verify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load one MNIST split from ``data_dir/MNIST/raw``.

    Uses ``<name>`` or, if absent, ``<name>.gz``.  Nothing is cached.

    Args:
        data_dir: the data root (the folder containing ``MNIST/raw``).
        split: ``"train"`` (60000 examples) or ``"test"`` (10000 examples).
        verify: check both files against :data:`MNIST_FILES` first.  With
            ``verify=False`` any consistent set of IDX files is accepted
            (handy for small synthetic data in tests).

    Returns:
        ``(images, labels)``: ``images`` is C-contiguous float32 of shape
        ``(N, 784)`` equal to ``pixel / 255`` (so in ``[0, 1]``), rows in
        row-major 28x28 order; ``labels`` is uint8 of shape ``(N,)`` in 0..9.

    Raises:
        MnistArgumentError: unknown split (also a ValueError).
        MnistDataError: missing, corrupt or inconsistent files.
    """
    if split not in _SPLITS:
        raise MnistArgumentError(
            f"unknown MNIST split {split!r}: expected one of {sorted(_SPLITS)}"
        )
    prefix = _SPLITS[split]
    raw = raw_dir(data_dir)
    image_name, label_name = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    image_path = _find_file(raw, image_name, data_dir)
    label_path = _find_file(raw, label_name, data_dir)
    if verify:
        verify_md5(image_path, MNIST_FILES[image_name])
        verify_md5(label_path, MNIST_FILES[label_name])

    images = read_idx(image_path)
    if images.ndim != 3 or images.shape[1:] != (_ROWS, _COLS):
        raise _corrupt(
            image_path,
            f"expected images of shape (N, {_ROWS}, {_COLS}), got {images.shape}",
        )
    labels = read_idx(label_path)
    if labels.ndim != 1:
        raise _corrupt(label_path, f"expected labels of shape (N,), got {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise MnistDataError(
            f"{image_path} holds {images.shape[0]} images but {label_path} holds "
            f"{labels.shape[0]} labels; the files do not belong together: delete them "
            f"and run `vae data fetch --data-dir {shlex.quote(str(data_dir))}`"
        )
    if labels.max() >= _N_CLASSES:
        raise _corrupt(label_path, f"label {int(labels.max())} is out of range 0..9")

    n = images.shape[0]
    x = images.reshape(n, _ROWS * _COLS).astype(np.float32)  # fresh C-contiguous copy
    x /= np.float32(255)
    return x, labels


# --------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------


def batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Shuffled mini-batches of indices into ``n`` examples.

    Args:
        n: number of examples (>= 0).
        batch_size: examples per batch (>= 1).
        rng: source of the shuffle, ``rng.permutation(n)`` is drawn once.

    Returns:
        An iterator of int64 index arrays of shape ``(batch_size,)``; the last
        one is shorter when ``batch_size`` does not divide ``n`` (kept, not
        dropped).  Together they are a permutation of ``range(n)``.

    Raises:
        MnistArgumentError: ``n < 0`` or ``batch_size < 1`` (raised at call time).
    """
    if n < 0:
        raise MnistArgumentError(f"batches: n must be >= 0, got {n}")
    if batch_size < 1:
        raise MnistArgumentError(f"batches: batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n)
    return (order[i : i + batch_size] for i in range(0, n, batch_size))

"""Errors of the data layer, and the messages that name the file and the fix.

Every failure caused by files, downloads or arguments raises
:class:`MnistDataError` (or a subclass) whose message names the file and
says what to do.  Raw ``OSError``/``EOFError``/``zlib.error``/NumPy errors
never escape.  The message helpers here end in the ``vae data fetch``
command that would repair the file concerned.
"""

from __future__ import annotations

import gzip
import shlex
import zlib
from pathlib import Path

__all__ = ["MnistArgumentError", "MnistDataError", "MnistDownloadError"]


class MnistDataError(Exception):
    """A data file is missing, corrupt or could not be fetched.

    The message names the file concerned and says how to fix it.
    """


class MnistArgumentError(MnistDataError, ValueError):
    """An invalid argument (unknown split, bad batch size); also a ValueError."""


class MnistDownloadError(MnistDataError):
    """MNIST could not be downloaded from any source (e.g. no network)."""


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------


def _fetch_hint(path: Path) -> str:
    """The ``vae data fetch`` command that would repair ``path``."""
    if path.parent.name == "raw" and path.parent.parent.name == "MNIST":
        data_dir = shlex.quote(str(path.parent.parent.parent))
    else:
        data_dir = "DIR"
    return f"`vae data fetch --data-dir {data_dir}`"


def _corrupt(path: Path, what: str) -> MnistDataError:
    return MnistDataError(
        f"{path}: {what}; the file is corrupt or not an MNIST IDX file: "
        f"delete it and run {_fetch_hint(path)}"
    )


def _io_error(path: Path, exc: BaseException) -> MnistDataError:
    if isinstance(exc, FileNotFoundError):
        return MnistDataError(
            f"{path}: file not found; run {_fetch_hint(path)} "
            "(or point --data-dir at a torchvision MNIST root)"
        )
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        return _corrupt(path, f"invalid or truncated gzip data ({exc})")
    if isinstance(exc, MemoryError):
        return MnistDataError(f"{path}: out of memory while reading it")
    return MnistDataError(
        f"{path}: cannot read it ({type(exc).__name__}: {exc}); check that it is a "
        f"readable file, or delete it and run {_fetch_hint(path)}"
    )

"""IDX files: read one, raw or gzip-compressed, never trusting its header's sizes.

An IDX file is ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32
dimensions, then the elements.  Only unsigned bytes (type 0x08) in 1 to 4
dimensions are read.  gzip is recognised by its magic bytes (1f 8b), not by
the suffix.  Sizes are capped: a header may claim at most
:data:`_MAX_ELEMENTS` elements, checked before any allocation; the same cap
bounds how much a gzip file may decompress to while it is read, and how much
content (largest header included) is hashed for an MD5.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Union

import numpy as np

from .errors import MnistDataError, _corrupt, _io_error

__all__ = ["read_idx"]

PathLike = Union[str, os.PathLike]

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UINT8 = 0x08
_IDX_OTHER_TYPES = {
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
# Upper bound on the number of elements of one IDX file.  Checked before any
# allocation; also caps how much a gzip file may decompress to.
_MAX_ELEMENTS = 100_000_000
_MAX_IDX_HEADER = 4 + 4 * 4
_CHUNK = 1 << 20


@contextlib.contextmanager
def _open_maybe_gzip(path: Path) -> Iterator[tuple[IO[bytes], int | None]]:
    """Open ``path`` for reading, transparently un-gzipping it.

    Yields ``(stream, size)`` where ``size`` is the file size for an
    uncompressed file and ``None`` for a gzip one (unknown until read).
    """
    with open(path, "rb") as f:
        magic = f.read(2)
        f.seek(0)
        if magic == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                yield gz, None
        else:
            yield f, os.fstat(f.fileno()).st_size


def _read_upto(stream: IO[bytes], n: int) -> bytes:
    """Read up to ``n`` bytes, fewer only at end of stream."""
    parts = []
    while n > 0:
        part = stream.read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _readinto_full(stream: IO[bytes], buf: bytearray) -> int:
    """Fill ``buf`` from ``stream``; return the number of bytes read."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def _parse_idx(stream: IO[bytes], path: Path, size: int | None) -> np.ndarray:
    """Parse one IDX stream; ``size`` is the on-disk size if uncompressed."""
    gz_note = "" if size is None else " (uncompressed)"
    header = _read_upto(stream, 4)
    if not header:
        raise _corrupt(path, "file is empty (0 bytes)")
    if len(header) < 4:
        raise _corrupt(path, f"truncated: expected at least 4 header bytes, got {len(header)}")
    if header[0] != 0 or header[1] != 0:
        (magic,) = struct.unpack(">I", header)
        note = ""
        if path.suffix == ".gz":
            note = " (the name ends in .gz but the content is not gzip)"
        raise _corrupt(path, f"bad magic number 0x{magic:08X}, not an IDX file{note}")
    type_byte, ndim = header[2], header[3]
    if type_byte != _IDX_UINT8:
        kind = _IDX_OTHER_TYPES.get(type_byte, "unknown")
        raise _corrupt(
            path,
            f"unsupported IDX element type 0x{type_byte:02X} ({kind}); "
            "only 0x08 (unsigned byte) is supported",
        )
    if not 1 <= ndim <= 4:
        raise _corrupt(path, f"unsupported number of dimensions {ndim} (expected 1 to 4)")
    header_len = 4 + 4 * ndim
    dim_bytes = _read_upto(stream, 4 * ndim)
    if len(dim_bytes) < 4 * ndim:
        raise _corrupt(
            path,
            f"truncated header: expected {header_len} bytes, got {4 + len(dim_bytes)}",
        )
    dims = struct.unpack(f">{ndim}I", dim_bytes)
    if 0 in dims:
        raise _corrupt(path, f"header has a zero dimension {dims}")
    total = math.prod(dims)  # Python int: cannot overflow
    if total > _MAX_ELEMENTS:
        raise _corrupt(
            path,
            f"header claims dimensions {dims} = {total} elements, "
            f"more than the limit of {_MAX_ELEMENTS}",
        )
    expected = header_len + total
    if size is not None and size < expected:
        raise _corrupt(path, f"truncated: expected {expected} bytes, got {size}")
    if size is not None and size > expected:
        raise _corrupt(
            path,
            f"{size - expected} trailing bytes: expected {expected} bytes, got {size}",
        )
    if size is None:
        # gzip: how much data there really is shows only while reading, so grow the buffer
        # chunk by chunk instead of trusting the header's claim with one big allocation.
        buf = bytearray()
        while len(buf) < total and (chunk := stream.read(min(_CHUNK, total - len(buf)))):
            buf += chunk
        got = len(buf)
    else:
        buf = bytearray(total)  # the file's size was checked against the header above
        got = _readinto_full(stream, buf)
    if got < total:
        raise _corrupt(
            path, f"truncated: expected {expected} bytes{gz_note}, got {header_len + got}"
        )
    if stream.read(1):
        raise _corrupt(path, f"trailing data after the expected {expected} bytes{gz_note}")
    return np.frombuffer(buf, dtype=np.uint8).reshape(dims)


def read_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file of unsigned bytes, raw or gzip-compressed.

    Args:
        path: the file; gzip is detected by its magic bytes (1f 8b).

    Returns:
        A writable, C-contiguous ``uint8`` array whose shape is given by the
        header: ``(N,)`` for labels (magic 0x801), ``(N, 28, 28)`` for
        images (magic 0x803); in general 1 to 4 dimensions, each > 0.

    Raises:
        MnistDataError: missing or unreadable file, bad magic, unsupported
            element type or rank, zero or absurd dimensions (more than
            100 million elements, refused before allocating), truncated data
            or trailing bytes, invalid gzip.  The message names the file.
    """
    path = Path(path)
    try:
        with _open_maybe_gzip(path) as (stream, size):
            return _parse_idx(stream, path, size)
    except MnistDataError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, MemoryError) as exc:
        raise _io_error(path, exc) from exc


def _md5_uncompressed(path: Path) -> str:
    """Hex MD5 of the (uncompressed) content of ``path``, reading at most a capped amount."""
    limit = _MAX_IDX_HEADER + _MAX_ELEMENTS
    md5 = hashlib.md5()
    seen = 0
    try:
        with _open_maybe_gzip(path) as (stream, _):
            while chunk := stream.read(_CHUNK):
                seen += len(chunk)
                if seen > limit:
                    raise _corrupt(path, f"content is larger than {limit} bytes")
                md5.update(chunk)
    except MnistDataError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, MemoryError) as exc:
        raise _io_error(path, exc) from exc
    return md5.hexdigest()

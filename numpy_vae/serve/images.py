"""Digits as PNG bytes, with the standard library only (zlib): the live page's and TensorBoard's images.

Images are (N, 784) arrays of pixel values in [0, 1] (1 = ink), drawn black on
white as the report's figures are (``numpy_vae.report.figures``).  Mosaics are
made at one screen pixel per image pixel; the page scales them up.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from ..report.figures import SIDE, tile

GUTTER = 0.15          # the light grey between cells (a value in [0, 1]; drawn inverted)
SEPARATOR = 0.6        # the darker grey line between a test digit and its samples
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_gray(pixels: np.ndarray) -> bytes:
    """(H, W) uint8 grey levels -> the bytes of an 8-bit greyscale PNG of H rows and W columns."""
    pixels = np.ascontiguousarray(pixels, np.uint8)
    if pixels.ndim != 2 or 0 in pixels.shape:
        raise ValueError(f"expected a non-empty (H, W) array, got shape {pixels.shape}")
    height, width = pixels.shape
    raw = np.column_stack([np.zeros(height, np.uint8), pixels]).tobytes()   # filter type 0 before each row
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes, read from the IHDR chunk; ValueError if ``data`` is not a PNG."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def to_gray(mosaic: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1], 1 = ink -> (H, W) uint8, black ink on white (NaN drawn as white)."""
    values = np.nan_to_num(np.asarray(mosaic, np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return np.round((1.0 - np.clip(values, 0.0, 1.0)) * 255.0).astype(np.uint8)


def grid_png(images: np.ndarray, ncol: int) -> bytes:
    """(N, 784) images -> PNG bytes of their grid, ``ncol`` per row, row-major (29 pixels a cell)."""
    return png_gray(to_gray(tile(np.asarray(images, np.float32), ncol, gutter=GUTTER)))


def digit_png(image: np.ndarray) -> bytes:
    """One (784,) image -> PNG bytes of a 28 x 28 digit."""
    return png_gray(to_gray(np.asarray(image, np.float32).reshape(SIDE, SIDE)))


def sample_strip(original: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """A test digit (784,), a 3-pixel separator, then its S samples (S, 784) -> one (28, 31 + 29 S) strip."""
    first = original.reshape(SIDE, SIDE)
    line = np.full((SIDE, 3), GUTTER, np.float32)
    line[:, 1] = SEPARATOR
    return np.hstack([first, line, tile(samples, len(samples), gutter=GUTTER)])


def strips_png(originals: np.ndarray, samples: np.ndarray, per_row: int, gap: int = 8) -> bytes:
    """PNG of ``sample_strip`` for each of N test digits (N, 784) and their samples (N, S, 784),
    ``per_row`` strips side by side with ``gap`` pixels between them, 1 pixel between rows."""
    strips = [sample_strip(o, s) for o, s in zip(originals, samples)]
    height, width = strips[0].shape
    rows = -(-len(strips) // per_row)
    cols = min(per_row, len(strips))
    canvas = np.full((rows * (height + 1) - 1, cols * (width + gap) - gap), GUTTER, np.float32)
    for k, strip in enumerate(strips):
        r, c = divmod(k, per_row)
        top, left = r * (height + 1), c * (width + gap)
        canvas[top:top + height, left:left + width] = strip
    return png_gray(to_gray(canvas))

"""Figures of a trained model: image grids written as PNG with matplotlib's Agg backend."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def tile(images: np.ndarray, ncol: int, pad: int = 1) -> np.ndarray:
    """(N, 784) images in [0, 1] -> one (rows*29-1, ncol*29-1) mosaic, white gutters, row-major."""
    n = len(images)
    nrow = -(-n // ncol)
    side = 28 + pad
    canvas = np.ones((nrow * side - pad, ncol * side - pad), np.float32)
    for k, img in enumerate(np.asarray(images, np.float32).reshape(n, 28, 28)):
        r, c = divmod(k, ncol)
        canvas[r * side:r * side + 28, c * side:c * side + 28] = img
    return canvas


def save_grid(path: Path, images: np.ndarray, ncol: int, title: str | None = None) -> Path:
    """Write images (N, 784) in [0, 1] as a grid, black digits on white, to ``path`` (PNG)."""
    plt = _pyplot()
    mosaic = tile(images, ncol)
    h, w = mosaic.shape
    fig = plt.figure(figsize=(w / 40, h / 40 + (0.35 if title else 0)), dpi=100)
    ax = fig.add_axes((0, 0, 1, h / (h + (14 if title else 0))))
    ax.imshow(1 - mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9, y=0.995)
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def save_training_figures(backend, test_x: np.ndarray, run_dir: Path, seed: int = 0, n: int = 16) -> list[Path]:
    """reconstructions.png (test digits above their reconstructions) and samples.png (prior draws)."""
    run_dir = Path(run_dir)
    originals = test_x[:2 * n]
    mu, _ = backend.encode(originals)
    recon = backend.decode(mu)
    rows = np.concatenate([originals[:n], recon[:n], originals[n:], recon[n:]])
    out = [save_grid(run_dir / "reconstructions.png", rows, n, "test digits (rows 1, 3) and their reconstructions (rows 2, 4)")]
    z = np.random.default_rng([seed, 4]).standard_normal((8 * n, mu.shape[1])).astype(mu.dtype)
    out.append(save_grid(run_dir / "samples.png", backend.decode(z), n, "digits decoded from z ~ N(0, I)"))
    return out

"""Drawing: every figure of the report, from plain arrays, written as PNG with matplotlib's Agg backend.

Nothing here touches a model: ``report.py`` computes what to show (encodings,
decodes, statistics) and calls these functions.  Images are (N, 784) arrays in
[0, 1], drawn black on white.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SIDE = 28


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def tile(images: np.ndarray, ncol: int, pad: int = 1, gutter: float = 0.15) -> np.ndarray:
    """(N, 784) images in [0, 1] -> one (rows*29-1, ncol*29-1) mosaic, row-major.

    Gutters (and empty cells) hold ``gutter``: drawn inverted, a light grey between white cells.
    """
    n = len(images)
    nrow = -(-n // ncol)
    side = SIDE + pad
    canvas = np.full((nrow * side - pad, ncol * side - pad), gutter, np.float32)
    for k, img in enumerate(np.asarray(images, np.float32).reshape(n, SIDE, SIDE)):
        r, c = divmod(k, ncol)
        canvas[r * side:r * side + SIDE, c * side:c * side + SIDE] = img
    return canvas


def _show(ax, mosaic: np.ndarray) -> None:
    ax.imshow(1 - mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")


def _save(fig, path: Path) -> Path:
    """Write the figure atomically (a crash leaves the old file or the new one, never half of one)."""
    from ..training.checkpoint import atomic_write
    path = Path(path)
    try:
        atomic_write(path, lambda f: fig.savefig(f, dpi=fig.dpi, format=path.suffix.lstrip(".") or "png"))
    finally:
        _pyplot().close(fig)
    return path


def save_grid(path: Path, images: np.ndarray, ncol: int, title: str | None = None,
              row_labels: list[str] | None = None, scale: float = 1 / 40) -> Path:
    """Write images (N, 784) as a grid of ``ncol`` columns, optionally with a label left of each row."""
    plt = _pyplot()
    mosaic = tile(images, ncol)
    h, w = mosaic.shape
    left = 0.55 if row_labels else 0.05
    top = 0.4 if title else 0.05
    fig = plt.figure(figsize=(w * scale + left + 0.05, h * scale + top + 0.05), dpi=100)
    fw, fh = fig.get_size_inches()
    ax = fig.add_axes((left / fw, 0.05 / fh, w * scale / fw, h * scale / fh))
    _show(ax, mosaic)
    ax.set_xticks([])
    if row_labels:
        ax.set_yticks([r * (SIDE + 1) + SIDE / 2 for r in range(len(row_labels))], row_labels, fontsize=8)
        ax.tick_params(axis="y", length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    else:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.08 / fh, va="top")
    return _save(fig, path)


def plot_curves(path: Path, rows: list[dict]) -> Path:
    """Per-epoch negative ELBO, reconstruction term and KL term, train and test, as three panels."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=100, constrained_layout=True)
    panels = [("loss", "negative ELBO"), ("recon", "reconstruction: -E_q log p(x|z)"), ("kl", "KL(q(z|x) || p(z))")]
    for ax, (key, title) in zip(axes, panels):
        for split, style in (("train", "-o"), ("test", "--s")):
            ax.plot(epochs, [r[f"{split}_{key}"] for r in rows], style, ms=4, label=split)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    axes[0].set_ylabel("nats per image")
    axes[0].legend()
    last = rows[-1]
    fig.suptitle(f"training curves: test negative ELBO {last['test_loss']:.2f} nats after epoch {last['epoch']}",
                 fontsize=11)
    return _save(fig, path)


def plot_interpolations(path: Path, starts: np.ndarray, paths: np.ndarray, ends: np.ndarray,
                        labels: list[str]) -> Path:
    """Rows: a test digit, the decodes along a straight line in latent space, the other test digit.

    starts, ends (R, 784); paths (R, S, 784); labels, one per row ("3 -> 8").
    """
    r, s = paths.shape[:2]
    images = np.concatenate([starts[:, None], paths, ends[:, None]], axis=1).reshape(r * (s + 2), -1)
    plt = _pyplot()
    mosaic = tile(images, s + 2)
    h, w = mosaic.shape
    scale = 1 / 40
    fw, fh = w * scale + 0.7, h * scale + 0.75
    fig = plt.figure(figsize=(fw, fh), dpi=100)
    ax = fig.add_axes((0.6 / fw, 0.3 / fh, w * scale / fw, h * scale / fh))
    _show(ax, mosaic)
    for c in (1, s + 1):                       # separate the real digits from the decodes
        ax.axvline(c * (SIDE + 1) - 1, color="tab:red", lw=1.2)
    ax.set_yticks([i * (SIDE + 1) + SIDE / 2 for i in range(r)], labels, fontsize=8)
    ticks = [0] + [1 + j for j in (0, s - 1)] + [s + 1]
    ax.set_xticks([c * (SIDE + 1) + SIDE / 2 for c in ticks], ["start", "t = 0", "t = 1", "end"], fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle("interpolations: decodes of (1 - t) mu(start) + t mu(end), between test digits of different classes",
                 fontsize=9, y=1 - 0.08 / fh, va="top")
    return _save(fig, path)


def plot_latent_scatter(path: Path, points: np.ndarray, labels: np.ndarray, title: str,
                        xlabel: str, ylabel: str, equal: bool = True) -> Path:
    """Scatter of 2-D points colored by digit label, with a legend of the ten classes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100, constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    order = np.random.default_rng(0).permutation(len(points))     # no class drawn entirely on top
    ax.scatter(points[order, 0], points[order, 1], c=cmap(np.asarray(labels)[order] % 10), s=3 if len(points) > 5000 else 7, alpha=0.6,
               linewidths=0, rasterized=True)
    for d in range(10):
        ax.scatter([], [], color=cmap(d), s=25, label=str(d))
    ax.legend(title="digit", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, markerscale=1.2)
    lo, hi = np.percentile(points, [0.2, 99.8], axis=0)
    margin = 0.08 * (hi - lo)
    ax.set_xlim(lo[0] - margin[0], hi[0] + margin[0])
    ax.set_ylim(lo[1] - margin[1], hi[1] + margin[1])
    span = hi - lo + 2 * margin
    if equal and span.max() < 3 * span.min():       # equal scales, unless that squashes the cloud to a sliver
        ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.25)
    return _save(fig, path)


def plot_manifold(path: Path, images: np.ndarray, z1: np.ndarray, z2: np.ndarray) -> Path:
    """The decoded manifold of a 2-D latent: ``images`` (len(z2) * len(z1), 784), row i is z2[i] (top = largest)."""
    plt = _pyplot()
    n1, n2 = len(z1), len(z2)
    mosaic = tile(images, n1, pad=0)
    fig, ax = plt.subplots(figsize=(7.2, 7.6), dpi=100, constrained_layout=True)
    _show(ax, mosaic)
    cols = np.unique(np.linspace(0, n1 - 1, min(n1, 5)).round().astype(int))
    rows = np.unique(np.linspace(0, n2 - 1, min(n2, 5)).round().astype(int))
    ax.set_xticks(cols * SIDE + SIDE / 2, [f"{z1[c]:.2f}" for c in cols], fontsize=8)
    ax.set_yticks(rows * SIDE + SIDE / 2, [f"{z2[r]:.2f}" for r in rows], fontsize=8)
    ax.set_xlabel("z1 (quantiles of N(0, 1))")
    ax.set_ylabel("z2 (quantiles of N(0, 1))")
    ax.set_title("decoded manifold: z on a grid of Gaussian quantiles (Kingma and Welling 2014, fig. 4)", fontsize=9)
    return _save(fig, path)


def plot_collapse(path: Path, kl: np.ndarray, variance: np.ndarray, active: np.ndarray, threshold: float) -> Path:
    """Per-dimension KL (bars) and variance of the posterior mean (log scale) with the active-unit threshold."""
    plt = _pyplot()
    dims = np.arange(len(kl))
    colors = np.where(active, "tab:blue", "tab:gray")
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(6.0, 0.32 * len(kl) + 2), 5.6), dpi=100, sharex=True,
                                   constrained_layout=True)
    ax1.bar(dims, kl, color=colors)
    ax1.set_ylabel("KL (nats), mean over test set")
    ax1.set_title(f"{int(active.sum())} of {len(kl)} latent units active (Var_x[mu_u(x)] > {threshold:g}, "
                  f"Burda et al. 2015)\ntotal KL {kl.sum():.2f} nats per image", fontsize=10)
    ax1.grid(axis="y", alpha=0.3)
    ax2.bar(dims, np.maximum(variance, 1e-12), color=colors)
    ax2.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax2.set_yscale("log")
    ax2.set_ylabel("Var over test set of mu_u")
    ax2.set_xlabel("latent dimension u")
    ax2.legend(loc="best", fontsize=8)
    ax2.grid(axis="y", alpha=0.3)
    ax2.set_xticks(dims if len(dims) <= 32 else dims[::max(1, len(dims) // 16)])
    from matplotlib.patches import Patch
    ax1.legend(handles=[Patch(color="tab:blue", label="active"), Patch(color="tab:gray", label="inactive")],
               loc="best", fontsize=8)
    return _save(fig, path)


def plot_class_samples(path: Path, panels: list[tuple[str, np.ndarray, np.ndarray]], ncols: int = 2) -> Path:
    """One panel per digit class: rows of [test digit | decodes of z ~ q(z|x)].

    panels: (title, originals (E, 784), samples (E, S, 784)), all with the same E and S.
    """
    plt = _pyplot()
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    e, s = panels[0][2].shape[:2]
    scale = 1 / 40
    mosaic_w, mosaic_h = (s + 1) * (SIDE + 1) - 1, e * (SIDE + 1) - 1
    pw, ph = mosaic_w * scale, mosaic_h * scale
    gap, title_h, head = 0.3, 0.25, 0.45
    fw = ncols * pw + (ncols + 1) * gap
    fh = head + nrows * (ph + title_h) + (nrows - 1) * 0.15 + 0.1
    fig = plt.figure(figsize=(fw, fh), dpi=100)
    for k, (title, originals, samples) in enumerate(panels):
        r, c = divmod(k, ncols)
        left = gap + c * (pw + gap)
        top = head + r * (ph + title_h + 0.15) + title_h
        ax = fig.add_axes((left / fw, 1 - (top + ph) / fh, pw / fw, ph / fh))
        images = np.concatenate([originals[:, None], samples], axis=1).reshape(e * (s + 1), -1)
        _show(ax, tile(images, s + 1))
        ax.axvline(SIDE + 0.5, color="tab:red", lw=1.2)
        ax.set_axis_off()
        ax.set_title(title, fontsize=10, pad=3)
    fig.suptitle("per-class generation: test digits (left of the red line), each followed by\n"
                 "decodes of z = mu + sigma * eps drawn from its posterior q(z|x)", fontsize=10,
                 y=1 - 0.06 / fh, va="top")
    return _save(fig, path)

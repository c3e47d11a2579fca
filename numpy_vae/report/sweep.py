"""A sweep's comparison: one table, the test reconstructions side by side, every curve on one plot.

    comparison.md / .csv / .json    per configuration: parameters, test negative ELBO, active units,
                                    seconds per epoch (median), epochs
    reconstructions.png             test images (first column) and each configuration's reconstruction
    curves.png                      test negative ELBO per epoch, one line per configuration
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from ..evaluation.latent_stats import active_units, posterior_stats
from ..training.checkpoint import atomic_write
from ..training.restore import load_backend
from .figures import SIDE, _pyplot, _save, _show, tile

COLUMNS = ["config", "parameters", "latent", "test_neg_elbo", "active_units", "seconds_per_epoch", "epochs"]
RECONSTRUCTED = 8       # test images in the reconstruction figure


def summarize_run(run_dir: Path, test_x: np.ndarray, loaded=None) -> dict:
    """One row of the table for the run in ``run_dir`` (its last.npz, or ``loaded``: load_backend's result)."""
    backend, config, meta = loaded or load_backend(run_dir / "last.npz")
    rows = meta["metrics"]
    mu, _ = posterior_stats(backend.encode, test_x)
    return {"config": run_dir.name, "parameters": sum(math.prod(s) for s in backend.param_shapes.values()),
            "latent": config.latent, "test_neg_elbo": rows[-1]["test_loss"],
            "active_units": active_units(mu).count,
            "seconds_per_epoch": float(np.median([r["seconds"] for r in rows])), "epochs": meta["epoch"]}


def _markdown(rows: list[dict]) -> str:
    head = "| configuration | parameters | latent | test negative ELBO (nats) | active units | s / epoch | epochs |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['parameters']:,} | {r['latent']} | {r['test_neg_elbo']:.2f} | "
                     f"{r['active_units']}/{r['latent']} | {r['seconds_per_epoch']:.1f} | {r['epochs']} |")
    return "\n".join(lines) + "\n"


def plot_reconstructions(path: Path, originals: np.ndarray, recons: dict[str, np.ndarray]) -> Path:
    """Column 0: the test images; then one column per configuration, its reconstructions."""
    plt = _pyplot()
    n = len(originals)
    columns = [originals, *recons.values()]
    images = np.stack(columns, axis=1).reshape(n * len(columns), -1)      # row-major: image i across columns
    mosaic = tile(images, len(columns))
    h, w = mosaic.shape
    scale, left, right, bottom, top = 1 / 40, 0.05, 0.9, 0.05, 0.9     # inches; top and right hold the labels
    fw, fh = w * scale + left + right, h * scale + bottom + top
    fig = plt.figure(figsize=(fw, fh), dpi=100)
    ax = fig.add_axes((left / fw, bottom / fh, w * scale / fw, h * scale / fh))
    _show(ax, mosaic)
    ax.set_yticks([])
    ax.set_xticks([c * (SIDE + 1) + SIDE / 2 for c in range(len(columns))], ["test", *recons], rotation=35,
                  ha="left", fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return _save(fig, path)


def plot_sweep_curves(path: Path, curves: dict[str, list[dict]]) -> Path:
    """Test negative ELBO per epoch of every configuration, on one plot."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100, constrained_layout=True)
    for name, rows in curves.items():
        ax.plot([r["epoch"] for r in rows], [r["test_loss"] for r in rows], "-o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test negative ELBO (nats per image)")
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    ax.set_title("sweep: test negative ELBO per epoch", fontsize=10)
    return _save(fig, path)


def write_comparison(sweep_dir: Path, runs: dict[str, Path], test_x: np.ndarray) -> list[dict]:
    """The table and both figures for ``runs`` (name -> run folder); returns the table's rows."""
    sweep_dir = Path(sweep_dir)
    rows, recons, curves = [], {}, {}
    originals = test_x[:RECONSTRUCTED]
    for name, run_dir in runs.items():
        loaded = load_backend(run_dir / "last.npz")
        rows.append(summarize_run(run_dir, test_x, loaded))
        backend, _, meta = loaded
        mu, _ = backend.encode(originals)
        recons[name] = backend.decode(mu)
        curves[name] = meta["metrics"]
    text = _markdown(rows)
    atomic_write(sweep_dir / "comparison.md", lambda f: f.write(text.encode()))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(sweep_dir / "comparison.csv", lambda f: f.write(buf.getvalue().encode()))
    atomic_write(sweep_dir / "comparison.json", lambda f: f.write(json.dumps(rows, indent=2).encode()))
    plot_reconstructions(sweep_dir / "reconstructions.png", originals, recons)
    plot_sweep_curves(sweep_dir / "curves.png", curves)
    return rows

"""``vae report RUN_DIR``: diagnostic figures and report.html for a trained run."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from .args import UsageError, folder_path, non_negative_int


def digit_classes(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated digits 0-9 like 3,8, got {text!r}") from None
    if not values or any(not 0 <= v <= 9 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated digits 0-9 like 3,8, got {text!r}")
    return values


def register(sub) -> None:
    p = sub.add_parser("report", help="write the diagnostic figures and report.html of a run",
                       description="Write training curves, reconstructions, samples, interpolations, the latent "
                                   "space, per-dimension KL with the active-unit count, and per-class generation "
                                   "as PNGs into RUN_DIR, and report.html showing them with the run's config and "
                                   "metrics. `vae train` does this at the end of every run.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `vae train` (runs/NAME)")
    p.add_argument("--checkpoint", default="last.npz",
                   help="which checkpoint of the run to report on: last.npz (default) or best.npz")
    p.add_argument("--tsne", action="store_true",
                   help="also a t-SNE of the posterior means (latent > 2, needs scikit-learn; ~10-30 s)")
    p.add_argument("--classes", type=digit_classes, default=None,
                   help="digit classes for the per-class generation figure, e.g. 3,8 (default: all ten)")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="seed of the drawn noise and picks (default: the run's)")
    p.add_argument("--data-dir", type=folder_path, default=None,
                   help="folder holding MNIST/raw/ (default: $VAE_DATA_DIR, else the run's data_dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    """Everything is checked before the first figure is drawn; should drawing still fail (a broken model),
    the figures and report.html this run created are removed again, so the run folder is left as it was."""
    from ..report import write_report
    run_dir = Path(args.run_dir)
    if run_dir.is_file():
        raise UsageError(f"RUN_DIR {run_dir} is a file; pass a run folder written by `vae train` (runs/NAME)")
    if not run_dir.is_dir():
        raise UsageError(f"RUN_DIR {run_dir}: no such folder; pass a run folder written by `vae train` (runs/NAME)")
    if not (run_dir / args.checkpoint).is_file():
        present = sorted(p.name for p in run_dir.glob("*.npz"))
        raise UsageError(f"RUN_DIR {run_dir} has no {args.checkpoint} (checkpoints there: {present or 'none'}); "
                         f"pass a run folder written by `vae train`, or choose --checkpoint")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a folder; point it at the folder holding MNIST/raw")
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise UsageError(f"RUN_DIR {run_dir} is not writable; the figures and report.html are written into it")
    import numpy as np
    before = {p.name for p in run_dir.iterdir()}
    try:
        with np.errstate(all="ignore"):       # overflow in a broken model: one line below, not RuntimeWarnings
            write_report(run_dir, checkpoint=args.checkpoint, data_dir=args.data_dir, tsne=args.tsne,
                         classes=args.classes, seed=args.seed, progress=not args.no_progress)
    except BaseException as e:
        for p in run_dir.iterdir():           # only what this report created: PNGs and report.html
            if p.name not in before and (p.suffix == ".png" or p.name == "report.html"):
                p.unlink(missing_ok=True)
        from ..inputs import InputError
        if isinstance(e, InputError):         # the model itself gave NaN/inf: say so, in terms of the checkpoint
            from ..training.checkpoint import CheckpointError
            raise CheckpointError(f"checkpoint {run_dir / args.checkpoint}: the network gives non-finite values "
                                  f"on the test images, so its weights are unusable (a diverged run?); retrain, "
                                  f"or report another checkpoint with --checkpoint") from None
        raise
    return 0

"""``vae sweep``: train several configurations in a row, then compare them (table, reconstructions, curves).

Each configuration is a preset name of ``vae train`` (``linear-W-L``, ``mlp``, ``mlp-bn``, ...); the
default is the fifth tutorial's grid of one-hidden-layer VAEs.  ``--resume SWEEP_DIR`` continues an
interrupted sweep: finished runs are kept, the interrupted one resumes exactly, the rest start.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .args import UsageError, add_config_flags, preset
from ..presets import preset_values
from .train import _writable_folder, check_data_dir

#: The TrainConfig fields `vae sweep` sets for every run, as `vae train` declares them.
SWEEP_FIELDS = ("epochs", "backend", "batch_size", "seed", "train_limit")


def config_list(text: str) -> tuple[str, ...]:
    """Comma-separated preset names, each valid and none twice."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected one or more preset names, e.g. linear-32-4,linear-64-8")
    for n in names:
        preset(n)
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a configuration appears twice in {text!r}")
    return names


def register(sub) -> None:
    from ..training.sweep import DEFAULT_GRID
    p = sub.add_parser("sweep", help="train several configurations in a row and compare them",
                       description="Train each configuration (a `vae train` preset name) into SWEEP_DIR/NAME/, "
                                   "with one progress bar, then write SWEEP_DIR/comparison.md (parameters, test "
                                   "negative ELBO, active units, seconds per epoch), reconstructions.png (test "
                                   "images and each configuration's reconstructions side by side) and curves.png.")
    p.add_argument("--configs", type=config_list, default=DEFAULT_GRID, metavar="P1,P2,...",
                   help=f"preset names to train (default: {','.join(DEFAULT_GRID)})")
    p.add_argument("--preset", type=preset, default="default", metavar="PRESET",
                   help="base preset applied under every configuration, e.g. quick (default: default)")
    add_config_flags(p, [*SWEEP_FIELDS, "data_dir"],
                     helps={f: f"every run's {f.replace('_', ' ')} (default: the presets')" for f in SWEEP_FIELDS})
    add_config_flags(p, ["runs_dir", "name"], defaults={"runs_dir": "runs"},
                     helps={"runs_dir": "parent of the sweep folder (default: runs)",
                            "name": "sweep folder name (default: sweep-DATE-TIME)"})
    p.add_argument("--resume", metavar="SWEEP_DIR", default=None, help="continue an interrupted sweep")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def sweep_configs(args, sweep_dir: Path) -> dict:
    """name -> TrainConfig: defaults, then the base preset, the configuration's preset, the options given."""
    from ..backends import available_backends
    from ..config import TrainConfig
    given = {k: getattr(args, k) for k in SWEEP_FIELDS if getattr(args, k) is not None}
    if given.get("backend", "numpy") not in available_backends():
        raise UsageError(f"--backend {given['backend']}: unknown backend; available: {', '.join(available_backends())}")
    data_dir = args.data_dir if args.data_dir is not None else os.environ.get("VAE_DATA_DIR", "data")
    return {name: TrainConfig(**{**vars(TrainConfig()), **preset_values(args.preset), **preset_values(name), **given,
                                 "data_dir": data_dir, "runs_dir": str(sweep_dir), "name": name})
            for name in args.configs}


def run(args) -> int:
    from ..data import load_mnist
    from ..report.sweep import write_comparison
    from ..training.sweep import PLAN_FILE, plan_sweep, read_plan, run_sweep
    if args.resume is not None:
        sweep_dir = Path(args.resume)
        if not (sweep_dir / PLAN_FILE).is_file():
            raise UsageError(f"--resume {args.resume}: no {PLAN_FILE} there; pass a folder written by `vae sweep`")
        configs = read_plan(sweep_dir)
    else:
        sweep_dir = Path(args.runs_dir) / (args.name or time.strftime("sweep-%Y%m%d-%H%M%S"))
        if (sweep_dir / PLAN_FILE).exists():
            raise UsageError(f"--name {sweep_dir.name}: {sweep_dir} already holds a sweep; continue it with "
                             f"--resume {sweep_dir}, or choose another --name")
        _writable_folder(Path(args.runs_dir), "--runs-dir", "pick another --runs-dir")
        configs = sweep_configs(args, sweep_dir)
        check_data_dir(next(iter(configs.values())).data_dir)
        plan_sweep(sweep_dir, configs)
    print(f"sweep of {len(configs)} configurations -> {sweep_dir}: {', '.join(configs)}")
    runs = run_sweep(sweep_dir, progress=not args.no_progress)
    test_x, _ = load_mnist(args.data_dir or next(iter(configs.values())).data_dir, "test")
    rows = write_comparison(sweep_dir, runs, test_x)
    from ..report.sweep import _markdown
    print(_markdown(rows), end="")
    print(f"wrote {sweep_dir / 'comparison.md'}, reconstructions.png, curves.png")
    return 0

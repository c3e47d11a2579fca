"""A sweep: several configurations trained in a row into one folder, resumable, then compared.

    SWEEP_DIR/sweep.json        the plan: configuration names, their TrainConfigs, the epochs
    SWEEP_DIR/<name>/           one ordinary run folder per configuration (config.json, metrics.csv, last.npz ...)
    SWEEP_DIR/comparison.*      written by ``numpy_vae.report.sweep`` once every run has finished

Each configuration is a preset name (``linear-64-8``, ``mlp``, ``mlp-bn`` ...) applied over the
sweep's base values.  The runs are ordinary runs: a killed sweep, started again with ``resume``,
skips the finished runs, continues the interrupted one from its last.npz (bit for bit, as
``train(resume=...)`` does), and starts the rest.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..config import ConfigError, TrainConfig, validate_config
from .checkpoint import atomic_write, load_checkpoint
from .loop import train

#: The fifth tutorial's grid of one-hidden-layer VAEs ("architecture search"): width / latent.
DEFAULT_GRID = ("linear-32-4", "linear-64-8", "linear-128-16", "linear-256-32", "linear-512-64")
PLAN_FILE = "sweep.json"


def plan_sweep(sweep_dir: Path, configs: dict[str, TrainConfig]) -> Path:
    """Write SWEEP_DIR/sweep.json for ``configs`` (name -> TrainConfig with runs_dir = sweep_dir, name = name)."""
    for name, config in configs.items():
        validate_config(config)
        if Path(config.runs_dir) != Path(sweep_dir) or config.name != name:
            raise ConfigError(f"sweep configuration {name!r} must train into {sweep_dir}/{name}")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    plan = {"configs": {name: c.to_json() for name, c in configs.items()}}
    atomic_write(sweep_dir / PLAN_FILE, lambda f: f.write(json.dumps(plan, indent=2).encode()))
    return sweep_dir


def read_plan(sweep_dir: Path) -> dict[str, TrainConfig]:
    """The configurations of SWEEP_DIR/sweep.json, in order; ConfigError naming the problem."""
    path = Path(sweep_dir) / PLAN_FILE
    if not path.is_file():
        raise ConfigError(f"{sweep_dir} has no {PLAN_FILE}: not a sweep folder written by `vae sweep`")
    try:
        plan = json.loads(path.read_text())
        configs = {name: TrainConfig.from_json(d) for name, d in plan["configs"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{path} cannot be read as a sweep plan ({type(e).__name__}: {e})") from None
    for config in configs.values():
        validate_config(config)
    return configs


def epochs_done(run_dir: Path) -> int:
    """The epochs the run in ``run_dir`` has checkpointed (0: none yet)."""
    ckpt = run_dir / "last.npz"
    return load_checkpoint(ckpt)[2].get("epoch", 0) if ckpt.is_file() else 0


def run_sweep(sweep_dir: Path, progress: bool = True, log=print, on_epoch=None) -> dict[str, Path]:
    """Train every configuration of SWEEP_DIR/sweep.json that has not finished; name -> run folder.

    One progress bar counts the epochs of the whole sweep (the runs' own bars are off);
    ``on_epoch(run_dir, row, backend, config)`` is passed on to every run.
    """
    from tqdm.auto import tqdm
    sweep_dir = Path(sweep_dir)
    configs = read_plan(sweep_dir)
    total = sum(c.epochs for c in configs.values())
    runs = {}
    with tqdm(total=total, desc="sweep", unit="epoch", disable=not progress, dynamic_ncols=True) as bar:
        def tick(run_dir, row, backend, config):
            bar.update(1)
            bar.set_postfix(run=config.name, test=f"{row['test_loss']:.2f}")
            if on_epoch is not None:
                on_epoch(run_dir, row, backend, config)

        say = bar.write if progress else log
        for name, config in configs.items():
            run_dir = sweep_dir / name
            done = epochs_done(run_dir)
            bar.update(done)
            if done == config.epochs:
                say(f"{name}: finished earlier ({run_dir})")
            elif done:
                train(None, resume=run_dir, progress=False, log=say, on_epoch=tick)
            else:
                train(dataclasses.replace(config), progress=False, log=say, on_epoch=tick)
            runs[name] = run_dir
    return runs

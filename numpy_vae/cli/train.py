"""``vae train``: train a VAE on MNIST and write a run folder.

Every option is checked here, before anything is loaded or written: a bad
value ends in one line, ``vae: error: --OPTION ...``, and a non-zero exit.
The training options are generated from the fields numpy_vae.config declares.
They default to None so that an explicit one can be told apart: it overrides
the preset (or the ``--config`` file), and it is refused together with
``--resume`` (a resumed run keeps its saved configuration, which is what makes
it exact) and where it does not apply to the chosen architecture or objective.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..presets import PRESETS, preset_values
from .args import UsageError, add_config_flags, as_flag_value, flag, preset, refuse_file_as_data_dir
from .serve import port_number

#: Options a resume may change: which backend (and device) continues the run; the numbers do not depend on it
#: beyond rounding (the parity suite's trajectory tolerance), and the Adam state carries over.
RESUME_OPTIONS = ("backend", "device")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a VAE on MNIST and write a run folder",
                       description="Train a VAE on MNIST; writes runs/NAME/ with config, metrics.csv, checkpoints and "
                                   "figures. A checkpoint is written atomically after every epoch; an interrupted "
                                   "run continues exactly with --resume RUN_DIR.")
    p.add_argument("--preset", type=preset, default="default", metavar="{" + ",".join(sorted(PRESETS)) + ",linear-W-L}",
                   help="default: the standard run; quick: 1 epoch on 5000 images; mlp (784-512-256-20), mlp-400 "
                        "(784-400-20, the PyTorch example's), conv, mlp-bn (784-256-128-2 with BatchNorm and "
                        "Dropout 0.2), mse (Gaussian likelihood), burda (Burda et al.'s 784-200-200-50 tanh on "
                        "binarized MNIST, 3,280 epochs), linear-W-L (784-W-L); options given explicitly win")
    p.add_argument("--config", metavar="CONFIG_JSON", default=None,
                   help="start from a run's saved configuration (runs/NAME/config.json, or the run folder) instead "
                        "of a preset: a new run of the same configuration; options given explicitly win (the run "
                        "gets a new name unless --name is given; --data-dir, not the file, says where MNIST is)")
    # Every TrainConfig field, as numpy_vae.config declares it; data_dir None: not given (then $VAE_DATA_DIR or
    # data; with --resume, the run's own).
    add_config_flags(p, groups=True)
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last checkpoint, with its saved configuration; "
                        "the result equals the uninterrupted run bit for bit (only --data-dir may be given with "
                        "it, and --backend/--device to continue on another backend, Adam state included: then "
                        "the result tracks the run within the backends' rounding)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-figures", action="store_true", help="skip the figures and report at the end")
    p.add_argument("--serve", action="store_true",
                   help="serve the run's live page (`vae serve`) on 127.0.0.1 while it trains; prints its URL")
    p.add_argument("--port", type=port_number, default=None, help="port of --serve's page (default: 8000; 0: any free one)")
    p.add_argument("--tensorboard", action="store_true",
                   help="write TensorBoard event files into RUN_DIR/tensorboard/ every epoch (needs the "
                        "tensorboard extra)")
    p.set_defaults(func=run)


def _writable_folder(path: Path, option: str, what: str) -> None:
    """``path`` is a folder we can write in, or can be created under a writable ancestor."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(f"{option} {path}: {probe} is a file, not a folder; {what}")
    if not os.access(probe, os.W_OK | os.X_OK) or _read_only_filesystem(probe):
        raise UsageError(f"{option} {path}: {probe} is not writable; {what}")


def _read_only_filesystem(path: Path) -> bool:
    """True on a read-only mount (where even root cannot write); False where it cannot be told."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):
        return False


def check_data_dir(data_dir: str) -> None:
    """An existing folder holding MNIST/raw, or a place where `vae data fetch` could create it."""
    from ..data import raw_dir
    path = Path(data_dir).expanduser()
    refuse_file_as_data_dir(data_dir)
    if not raw_dir(path).is_dir():
        _writable_folder(path, "--data-dir", "MNIST is not there and could not be fetched into it; "
                                             "pick a folder holding MNIST/raw, or a writable one")


def run(args) -> int:
    from ..config import FIELDS
    from ..training import train
    from .serve import epoch_hooks
    given = {name: getattr(args, name) for name in FIELDS if name != "data_dir" and getattr(args, name) is not None}
    if args.resume is not None:
        fixed = [name for name in given if name not in RESUME_OPTIONS]
        if fixed or args.preset != "default" or args.config is not None:
            first = flag(fixed[0]) if fixed else "--preset" if args.preset != "default" else "--config"
            raise UsageError(f"{first} cannot be combined with --resume: a resumed run keeps the configuration "
                             f"saved in {Path(args.resume) / 'last.npz'} (only --backend, --device and "
                             f"--data-dir may be given)")
        if args.backend is not None:
            _check_backend(args.backend, args.device or "cpu")
        run_dir = _resumable(args.resume)
        if args.data_dir is not None:
            check_data_dir(args.data_dir)
        trained = []                              # a finished run trains no epoch: then no report is rewritten
        with epoch_hooks(args, run_dir) as on_epoch:
            def counted(*hook_args):
                trained.append(hook_args[1])
                if on_epoch is not None:
                    on_epoch(*hook_args)
            run_dir = train(None, resume=run_dir, progress=not args.no_progress, data_dir=args.data_dir,
                            on_epoch=counted, resume_backend=args.backend, resume_device=args.device)
            return _report(args, run_dir) if trained else 0
    config = new_config(args, given)
    with epoch_hooks(args) as on_epoch:
        return _report(args, train(config, progress=not args.no_progress, on_epoch=on_epoch))


def _resumable(resume: str) -> Path:
    """The run folder ``--resume`` names, refused unless it holds last.npz and can be written."""
    run_dir = Path(resume)
    if run_dir.is_file():
        raise UsageError(f"--resume {resume} is a file; pass the run folder that holds last.npz")
    if not run_dir.is_dir():
        raise UsageError(f"--resume {resume}: no such folder; pass a run folder written by `vae train`")
    if not (run_dir / "last.npz").is_file() and not (run_dir / "config.json").is_file():
        raise UsageError(f"--resume {resume}: no last.npz there; pass a run folder written by `vae train`")
    _writable_folder(run_dir, "--resume", "the resumed run writes its checkpoints there")
    return run_dir


def new_config(args, given: dict):
    """The configuration of a new run: TrainConfig's defaults, then the preset (or the --config file), then
    the options given; each checked here, naming its option, before anything is written."""
    from ..config import TrainConfig, not_applying
    if args.config is not None:
        if args.preset != "default":
            raise UsageError("--preset cannot be combined with --config: the saved configuration sets every field; "
                             "give the options to change explicitly")
        base = {**vars(saved_config(args.config)), "name": None}
    else:
        base = {**vars(TrainConfig()), **preset_values(args.preset)}
    values = {**base, **given}
    values["data_dir"] = args.data_dir if args.data_dir is not None else os.environ.get("VAE_DATA_DIR", "data")
    _check_backend(values["backend"], values["device"])
    refused = not_applying(TrainConfig(**values), given)
    if refused:
        name, needs, allowed = refused[0]
        only = " or ".join(f"{flag(needs)} {v}" for v in allowed)
        raise UsageError(f"{flag(name)} {as_flag_value(given[name])} with {flag(needs)} {values[needs]}: "
                         f"{flag(name)} applies only to {only}; leave it out")
    runs_dir = Path(values["runs_dir"])
    _writable_folder(runs_dir, "--runs-dir", "pick another --runs-dir")
    if values["name"] and (runs_dir / values["name"] / "last.npz").exists():
        raise UsageError(f"--name {values['name']}: {runs_dir / values['name']} already holds a run; continue it "
                         f"with --resume {runs_dir / values['name']}, or choose another --name")
    check_data_dir(values["data_dir"])
    if values["threads"] == "auto":
        from ..training.threads import auto_threads
        values["threads"] = auto_threads()
    values["threads"] = capped_threads(values["threads"])
    return TrainConfig(**values)


def _check_backend(backend: str, device: str) -> None:
    from ..backends import available_backends
    if backend not in available_backends():
        raise UsageError(f"--backend {backend}: unknown backend; available: {', '.join(available_backends())}")
    if backend == "numpy" and device != "cpu":
        raise UsageError(f"--device {device}: the numpy backend runs on the CPU; use --backend torch for cuda")


def saved_config(path: str):
    """The TrainConfig a run's config.json (or a run folder's) holds, checked; UsageError naming the file."""
    import json
    from ..config import ConfigError, TrainConfig, validate_config, without_ignored
    file = Path(path) / "config.json" if Path(path).is_dir() else Path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file; pass a run's config.json (runs/NAME/config.json)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--config {path}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    try:
        config = without_ignored(TrainConfig.from_json(json.loads(text)))   # e.g. an old conv run's hidden
        validate_config(config)
    except RecursionError:
        raise UsageError(f"--config {file}: nested too deeply to be a run configuration") from None
    except ConfigError as e:
        raise UsageError(f"--config {file}: {e}") from None
    except (TypeError, ValueError) as e:
        raise UsageError(f"--config {file} is not a run configuration written by `vae train` ({e})") from None
    return config


def capped_threads(threads):
    """``threads``, at most the usable cores (more only spin against each other: --threads 5000 made an epoch
    take 42.9 s instead of 0.6 s on 2 cores), with a warning when capped."""
    import sys
    from ..kernels.threads import available_cores
    cores = available_cores()
    if threads is not None and threads > cores:
        print(f"vae: warning: --threads {threads}: this process may use {cores} cores; training on {cores} threads",
              file=sys.stderr)
        return cores
    return threads


def _report(args, run_dir: Path) -> int:
    """The run's figures and report.html (the loop writes none), unless --no-figures."""
    if not args.no_figures:
        from ..report import write_report
        write_report(run_dir, data_dir=args.data_dir, progress=not args.no_progress)
    return 0

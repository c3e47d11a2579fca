"""``vae train``: train a VAE on MNIST and write a run folder.

Every option is checked here, before anything is loaded or written: a bad
value ends in one line, ``vae: error: --OPTION ...``, and a non-zero exit.
Training options default to None so that an explicit one can be told apart:
it overrides the preset, and it is refused together with ``--resume`` (a
resumed run keeps its saved configuration, which is what makes it exact).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..presets import PRESETS, preset_values
from .args import (UsageError, preset, adam_epsilon, add_data_dir, hidden_sizes, learning_rate, non_negative_float,
                   non_negative_int, positive_float, positive_int, refuse_file_as_data_dir)
from .serve import port_number

#: Options a resume may change: which backend (and device) continues the run; the numbers do not depend on it
#: beyond rounding (the parity suite's trajectory tolerance), and the Adam state carries over.
RESUME_OPTIONS = ("backend", "device")
# Options that set the training configuration (TrainConfig fields).
CONFIG_OPTIONS = ("backend", "device", "epochs", "batch_size", "lr", "lr_schedule", "adam_eps", "weight_decay",
                  "clip_grad_norm", "arch", "latent", "hidden", "activation", "batchnorm", "dropout", "likelihood",
                  "likelihood_variance", "beta", "kl_warmup_epochs", "binarize", "objective", "samples", "dtype",
                  "seed", "runs_dir", "name", "train_limit", "threads", "kernels")


def run_name(text: str) -> str:
    from ..config import valid_run_name
    if not valid_run_name(text):
        raise argparse.ArgumentTypeError(f"expected a plain folder name (no '/', not '.', '..' or 'latest'), got {text!r}")
    return text


def probability(text: str) -> float:
    """A dropout probability in [0, 1)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}")
    return value


def thread_count(text: str):
    """'auto' or an integer >= 1."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 1, got {text!r}") from None


def register(sub) -> None:
    from ..config import BINARIZATIONS, KERNELS, LR_SCHEDULES, OBJECTIVES, TrainConfig
    from ..specs import ACTIVATIONS, ARCHITECTURES, LIKELIHOODS
    d = TrainConfig()
    p = sub.add_parser("train", help="train a VAE on MNIST and write a run folder",
                       description="Train a VAE on MNIST; writes runs/NAME/ with config, metrics.csv, checkpoints and "
                                   "figures. A checkpoint is written atomically after every epoch; an interrupted "
                                   "run continues exactly with --resume RUN_DIR.")
    p.add_argument("--preset", type=preset, default="default", metavar="{" + ",".join(sorted(PRESETS)) + ",linear-W-L}",
                   help="default: the standard run; quick: 1 epoch on 5000 images; mlp (784-512-256-20), mlp-400 "
                        "(784-400-20, the PyTorch example's), conv, mlp-bn (784-256-128-2 with BatchNorm and "
                        "Dropout 0.2), mse (Gaussian likelihood), burda (Burda et al.'s 784-200-200-50 tanh on "
                        "binarized MNIST, 3,280 epochs), linear-W-L (784-W-L); options given explicitly win")
    p.add_argument("--backend", default=None, help=f"numpy (hand-written gradients) or torch (default: {d.backend})")
    p.add_argument("--device", default=None, help=f"cpu or cuda (torch backend only; default: {d.device})")
    p.add_argument("--epochs", type=positive_int, default=None, help=f"default: {d.epochs}")
    p.add_argument("--batch-size", type=positive_int, default=None, help=f"default: {d.batch_size}")
    p.add_argument("--lr", type=learning_rate, default=None, help=f"Adam learning rate (default: {d.lr})")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=None,
                   help=f"constant, cosine (to 0 over the run) or burda (lr 10^(-i/7) for 3^i epochs; "
                        f"default: {d.lr_schedule})")
    p.add_argument("--adam-eps", type=adam_epsilon, default=None, help=f"Adam's eps (default: {d.adam_eps})")
    p.add_argument("--weight-decay", type=non_negative_float, default=None, help=f"default: {d.weight_decay}")
    p.add_argument("--clip-grad-norm", type=positive_float, default=None,
                   help="clip the global gradient norm to this value (as torch.nn.utils.clip_grad_norm_)")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default=None,
                   help=f"architecture, a spec in numpy_vae.specs (default: {d.arch})")
    p.add_argument("--latent", type=positive_int, default=None, help=f"latent dimensions (default: {d.latent})")
    p.add_argument("--hidden", type=hidden_sizes, default=None,
                   help="encoder hidden sizes, mirrored by the decoder (default: 512,256)")
    p.add_argument("--activation", choices=ACTIVATIONS, default=None,
                   help=f"the MLP's hidden activation (default: {d.activation})")
    p.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None,
                   help="BatchNorm1d after each hidden Linear of the MLP (default: off)")
    p.add_argument("--dropout", type=probability, default=None,
                   help=f"Dropout(p) after each hidden activation of the MLP (default: {d.dropout})")
    p.add_argument("--likelihood", choices=LIKELIHOODS, default=None,
                   help="bernoulli (decoder logits) or gaussian (decoder + sigmoid is the mean, fixed variance); "
                        f"default: {d.likelihood}")
    p.add_argument("--likelihood-variance", type=positive_float, default=None,
                   help=f"the gaussian likelihood's fixed variance (default: {d.likelihood_variance}; 0.5 makes its "
                        f"data term the summed squared error)")
    p.add_argument("--beta", type=non_negative_float, default=None, help=f"weight of the KL term (default: {d.beta})")
    p.add_argument("--kl-warmup-epochs", type=non_negative_int, default=None,
                   help="raise beta linearly from 0 over this many epochs (default: 0, no warm-up)")
    p.add_argument("--binarize", choices=BINARIZATIONS, default=None,
                   help="none (grey levels as Bernoulli targets), static (one seeded draw) or dynamic (a fresh "
                        f"draw each epoch); the test set is then one fixed binarization (default: {d.binarize})")
    p.add_argument("--objective", choices=OBJECTIVES, default=None,
                   help="elbo, or iwae: the importance-weighted bound with --samples K (default: elbo)")
    p.add_argument("--samples", type=positive_int, default=None,
                   help="importance samples K per image for --objective iwae (default: 1)")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None, help=f"default: {d.dtype}")
    p.add_argument("--seed", type=non_negative_int, default=None, help=f"default: {d.seed}")
    add_data_dir(p)
    p.set_defaults(data_dir=None)    # None: not given (then $VAE_DATA_DIR or data; with --resume, the run's own)
    p.add_argument("--runs-dir", default=None, help=f"parent of run folders (default: {d.runs_dir})")
    p.add_argument("--name", type=run_name, default=None, help="run folder name (default: BACKEND-DATE-TIME)")
    p.add_argument("--train-limit", type=positive_int, default=None, help="train on the first N images only")
    p.add_argument("--threads", type=thread_count, default=None, metavar="auto|N",
                   help="BLAS/OpenMP and Adam threads; auto: 1 if other processes keep half a core busy at the "
                        "start (two threads then spin against them), else the libraries' default; recorded in "
                        "config.json, so a resumed run keeps it (default: the libraries' own)")
    p.add_argument("--kernels", choices=KERNELS, default=None,
                   help="numpy backend: fast (numpy_vae.kernels: the tuned Adam and convolutions) or reference "
                        "(numpy_vae.nn's plain ones, the form docs/gradients.md derives; slower); recorded in "
                        f"config.json, so a resumed run keeps it (default: {d.kernels})")
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


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


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
    from ..backends import available_backends
    from ..config import TrainConfig
    from ..training import train
    from .serve import epoch_hooks
    given = [dest for dest in CONFIG_OPTIONS if getattr(args, dest) is not None]
    if args.resume is not None:
        fixed = [dest for dest in given if dest not in RESUME_OPTIONS]
        if fixed or args.preset != "default":
            first = _option(fixed[0]) if fixed else "--preset"
            raise UsageError(f"{first} cannot be combined with --resume: a resumed run keeps the configuration "
                             f"saved in {Path(args.resume) / 'last.npz'} (only --backend, --device and "
                             f"--data-dir may be given)")
        if args.backend is not None and args.backend not in available_backends():
            raise UsageError(f"--backend {args.backend}: unknown backend; available: {', '.join(available_backends())}")
        if args.backend == "numpy" and args.device not in (None, "cpu"):
            raise UsageError(f"--device {args.device}: the numpy backend runs on the CPU; use --backend torch for cuda")
        run_dir = Path(args.resume)
        if run_dir.is_file():
            raise UsageError(f"--resume {args.resume} is a file; pass the run folder that holds last.npz")
        if not run_dir.is_dir():
            raise UsageError(f"--resume {args.resume}: no such folder; pass a run folder written by `vae train`")
        if not (run_dir / "last.npz").is_file():
            raise UsageError(f"--resume {args.resume}: no last.npz there; pass a run folder written by `vae train`")
        _writable_folder(run_dir, "--resume", "the resumed run writes its checkpoints there")
        if args.data_dir is not None:
            check_data_dir(args.data_dir)
        with epoch_hooks(args, run_dir) as on_epoch:
            run_dir = train(None, resume=run_dir, progress=not args.no_progress, data_dir=args.data_dir,
                            on_epoch=on_epoch, resume_backend=args.backend, resume_device=args.device)
            return _report(args, run_dir)

    values = {**vars(TrainConfig()), **preset_values(args.preset), **{k: getattr(args, k) for k in given}}
    values["data_dir"] = args.data_dir if args.data_dir is not None else os.environ.get("VAE_DATA_DIR", "data")
    if values["backend"] not in available_backends():
        raise UsageError(f"--backend {values['backend']}: unknown backend; available: {', '.join(available_backends())}")
    if values["backend"] == "numpy" and values["device"] != "cpu":
        raise UsageError(f"--device {values['device']}: the numpy backend runs on the CPU; use --backend torch for cuda")
    if values["backend"] != "numpy" and values["kernels"] != "fast":
        raise UsageError(f"--kernels {values['kernels']} with --backend {values['backend']}: --kernels chooses the "
                         f"numpy backend's kernels; {values['backend']} runs its own (leave --kernels out)")
    runs_dir = Path(values["runs_dir"])
    _writable_folder(runs_dir, "--runs-dir", "pick another --runs-dir")
    if values["name"] and (runs_dir / values["name"] / "last.npz").exists():
        raise UsageError(f"--name {values['name']}: {runs_dir / values['name']} already holds a run; continue it "
                         f"with --resume {runs_dir / values['name']}, or choose another --name")
    check_data_dir(values["data_dir"])
    if values["threads"] == "auto":
        from ..training.threads import auto_threads
        values["threads"] = auto_threads()
    config = TrainConfig(**values)
    with epoch_hooks(args) as on_epoch:
        return _report(args, train(config, progress=not args.no_progress, on_epoch=on_epoch))


def _report(args, run_dir: Path) -> int:
    """The run's figures and report.html (the loop writes none), unless --no-figures."""
    if not args.no_figures:
        from ..report import write_report
        write_report(run_dir, data_dir=args.data_dir, progress=not args.no_progress)
    return 0

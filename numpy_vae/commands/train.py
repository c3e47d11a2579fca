"""``vae train``: train a VAE on MNIST and write a run folder."""
from __future__ import annotations

import os
from pathlib import Path

from . import UsageError, add_data_dir, hidden_sizes, non_negative_float, positive_float, positive_int


def register(sub) -> None:
    from ..training import TrainConfig
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
    p.set_defaults(func=run)


def run(args) -> int:
    from ..training import TrainConfig, train
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



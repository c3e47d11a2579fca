"""``vae bench`` (also ``python -m benchmarks``): a few options and named presets (the full run, ``--quick``,
``--peers``, ``--conv``, ``--cuda``, ``--load``; see ``vae bench --help`` and docs/benchmarks.md).

Registered with ``vae`` through the entry point ``vae_from_scratch.commands: bench``; importing this
module is cheap (NumPy, torch and matplotlib load when the command runs).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from numpy_vae.cli.args import (UsageError, add_data_dir, hidden_sizes, non_negative_int, positive_float,
                                positive_int, refuse_file_as_data_dir)


def _int_list(text: str) -> list[int]:
    try:
        values = [positive_int(t) for t in text.split(",") if t.strip()]
    except argparse.ArgumentTypeError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 1,8,128, got {text!r}")
    return sorted(set(values))


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("presets (combine --quick and --cuda with the others)")
    g.add_argument("--quick", action="store_true", help="a short run: fewer batches and widths, 5 repeats of ~0.06 s")
    g.add_argument("--peers", action="store_true",
                   help="NumPy's train_step against torch's default, foreach and fused Adam and torch.compile")
    g.add_argument("--conv", action="store_true", help="the convolutional VAE's train_step and its layers")
    g.add_argument("--cuda", action="store_true", help="the torch contestants on the GPU (one line, exit 1, without)")
    g.add_argument("--load", action="store_true", help="1 against 2 threads, with and without one core kept busy")
    g.add_argument("--epoch", action="store_true", help="also one epoch of `vae train` against the PyTorch example VAE")
    p.add_argument("--batches", type=_int_list, default=None, help="comma-separated batch sizes (default: the preset's)")
    p.add_argument("--hidden", type=hidden_sizes, default=None, help="the MLP's hidden sizes (default: 512,256)")
    p.add_argument("--repeats", type=positive_int, default=None, help="interleaved repeats (default: 15; --quick: 5)")
    p.add_argument("--min-time", type=positive_float, default=None,
                   help="seconds per timed sample of one point (default: 0.2; --quick: 0.06)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads for torch, OpenBLAS and numpy_vae's Adam (default: each library's own)")
    add_data_dir(p)
    p.add_argument("--out", default="bench_results", help="output folder (default: bench_results)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the data picks and noise (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark NumPy against PyTorch (CPU, CUDA): step time, GFLOP/s, memory",
                       description="Time each backend's training step and inference, interleaved, with "
                                   "torch.utils.benchmark; write NAME.md, NAME.json (and figures) to --out.")
    add_arguments(p)
    p.set_defaults(func=run)


def config_from_args(args):
    from .runner import Config
    refuse_file_as_data_dir(args.data_dir, " (or leave it out: without MNIST the benchmark uses synthetic images)")
    if not args.out.strip():
        raise UsageError("--out '': expected a folder path; pick an --out folder (default: bench_results)")
    probe = os.path.abspath(args.out)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
        raise UsageError(f"--out {args.out}: {probe} is not a writable folder; pick another --out")
    if sum((args.peers or (args.cuda and not args.conv), args.conv, args.load)) > 1:
        raise UsageError("--peers, --conv and --load are separate runs; pick one (or none: the full run)")
    quick = args.quick
    kw = dict(repeats=args.repeats or (5 if quick else 15), target_s=args.min_time or (0.06 if quick else 0.2),
              threads=args.threads, data_dir=args.data_dir, out=args.out, seed=args.seed, epoch=args.epoch,
              progress=not args.no_progress, device="cuda" if args.cuda else "cpu")
    hidden = tuple(args.hidden or (512, 256))
    kw["matmul_n"] = 2048 if kw["target_s"] >= 0.05 else 256
    if args.conv:
        cfg = Config(preset="conv", arch="conv", contestants=["numpy-f32", "torch-fused"],
                     batches=args.batches or ([32] if quick else [128]), modes=("train",), breakdown=False,
                     alone=False, **kw)
    elif args.load:
        cfg = Config(preset="load", contestants=["numpy-f32", "torch-fused"], hidden=hidden,
                     batches=args.batches or [1, 128], modes=("train",), **{**kw, "device": "cpu"})
    elif args.peers or args.cuda:
        cfg = Config(preset="peers", contestants=["numpy-f32", "torch-default", "torch-foreach", "torch-fused",
                                                  "torch-compile"], hidden=hidden,
                     batches=args.batches or [1, 16, 128, 1024], modes=("train",), memory=False, **kw)
    else:
        widths = [hidden[0] // 2, hidden[0]] if args.hidden else [128, 512, 1024] if quick else \
            [64, 128, 256, 512, 1024, 2048]
        cfg = Config(preset="full", hidden=hidden, widths=widths,
                     batches=args.batches or ([1, 32, 128, 1024] if quick else [2 ** k for k in range(13)]), **kw)
    cfg.scaling_batch = 128 if 128 in cfg.batches else max(cfg.batches)
    cfg.compile_batches = (cfg.scaling_batch,)          # torch.compile's warm-up takes minutes on a CPU
    cfg.compile_timeout = 60.0 if quick else 300.0
    cfg.settle_s = min(0.2, cfg.target_s)
    return cfg


def run(args) -> int:
    from . import report
    from .runner import run as run_bench
    from .runner import run_load
    cfg = config_from_args(args)
    if cfg.device == "cuda":
        from .machine import check_cuda
        check_cuda()                        # before anything slow: one line, exit 1, without a GPU
    t0 = time.perf_counter()
    log = print if cfg.progress else (lambda *a: None)
    results = run_load(cfg, log) if cfg.preset == "load" else run_bench(cfg, log)
    files = report.write(results, cfg.out)
    md = report.markdown(results)
    print(md.split("## torch.utils.benchmark.Compare")[0].rstrip())
    if results.get("compare"):
        print("\ntorch.utils.benchmark.Compare of the same samples:\n" + results["compare"])
    print(f"\nwrote {', '.join(files)} in {time.perf_counter() - t0:.0f} s")
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """A usage error is one line and exit status 2, as with ``vae``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())} (see `{self.prog} --help`)\n")


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks") -> int:
    """``python -m benchmarks``: the same options as ``vae bench``, the same one-line errors."""
    from numpy_vae.config import ConfigError
    from numpy_vae.data import MnistDataError
    parser = _OneLineParser(prog=prog, description="Benchmark NumPy against PyTorch; the same as `vae bench`.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (UsageError, MnistDataError, ConfigError) as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"{prog}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1

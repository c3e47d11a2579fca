"""``vae bench`` (also ``python -m benchmarks``): the options, and the run.

Registered with ``vae`` through the entry point ``vae_from_scratch.commands: bench``;
importing this module is cheap (the runner loads NumPy, torch and matplotlib only
when the command runs).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from numpy_vae.cli.args import (UsageError, add_data_dir, hidden_sizes, non_negative_float, non_negative_int,
                                positive_float, positive_int, refuse_file_as_data_dir)

BACKEND_NAMES = ["numpy-f32", "numpy-f64", "torch-cpu-f32", "torch-cuda-f32"]


def _int_list(text: str) -> list[int]:
    try:
        values = [positive_int(t) for t in text.split(",") if t.strip()]
    except argparse.ArgumentTypeError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 1,8,128, got {text!r}")
    return sorted(set(values))


def _backend_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in BACKEND_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown backend(s) {unknown or text!r}; choose from {','.join(BACKEND_NAMES)}")
    return list(dict.fromkeys(names))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="a short run: batches 1,32,128,1024, widths 128,512,1024, 5 repeats of ~0.06 s "
                        "(explicit options still win)")
    p.add_argument("--batches", type=_int_list, default=None,
                   help="comma-separated batch sizes (default: 1,2,4,...,4096; --quick: 1,32,128,1024)")
    p.add_argument("--backends", type=_backend_list, default=None,
                   help=f"comma-separated, from {','.join(BACKEND_NAMES)} (default: all; "
                        f"one that cannot run here is reported as skipped)")
    p.add_argument("--archs", default=None,
                   help="comma-separated architecture names from benchmarks.runner.ARCHITECTURES (default: all)")
    p.add_argument("--hidden", type=hidden_sizes, default=None,
                   help="benchmark one custom MLP with these hidden sizes instead, e.g. 64,32")
    p.add_argument("--latent", type=positive_int, default=20, help="latent size with --hidden (default: 20)")
    p.add_argument("--hidden-widths", type=_int_list, default=None,
                   help="first hidden widths of the width sweep, the other layers scaled alike "
                        "(default: 64,...,2048; --quick: 128,512,1024; 0 widths: pass --no-width-sweep)")
    p.add_argument("--no-width-sweep", action="store_true", help="skip the hidden-width sweep")
    p.add_argument("--scaling-batch", type=positive_int, default=128, help="batch of the width sweep (default: 128)")
    p.add_argument("--repeats", type=positive_int, default=None, help="interleaved repeats (default: 15; --quick: 5)")
    p.add_argument("--min-time", type=positive_float, default=None,
                   help="seconds per timed sample of one point (default: 0.2; --quick: 0.06)")
    p.add_argument("--settle", type=non_negative_float, default=0.2,
                   help="seconds to pause when the next point uses another thread pool (default: 0.2)")
    p.add_argument("--matmul-size", type=positive_int, default=2048,
                   help="n of the n x n float32 matmul that measures the machine's rate (default: 2048)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    p.add_argument("--no-breakdown", action="store_true",
                   help="skip timing the phases of one training step (forward, backward, optimizer, matmuls alone)")
    p.add_argument("--epoch", action="store_true",
                   help="also time one epoch of `vae train` against the PyTorch example VAE (about a minute)")
    p.add_argument("--epoch-repeats", type=positive_int, default=None, help="epoch pairs (default: 3; --quick: 1)")
    add_data_dir(p)
    p.add_argument("--conv", action="store_true",
                   help="benchmark the convolutional VAE's train_step instead (NumPy vs torch, float32, batch "
                        "--scaling-batch), with a per-layer split; writes conv.json and conv.md to --out")
    p.add_argument("--out", default="bench_results", help="output folder (default: bench_results)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the data picks and noise (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark NumPy against PyTorch (CPU, CUDA): step time, GFLOP/s, memory",
                       description="Time the training step and inference of every backend over batch sizes, "
                                   "interleaved; write bench.json, bench.md and figures to --out.")
    add_arguments(p)
    p.set_defaults(func=run)


def config_from_args(args):
    from .runner import (ALL_BATCHES, ALL_WIDTHS, ARCHITECTURES, QUICK_BATCHES, QUICK_WIDTHS, BenchConfig)
    quick = args.quick
    if args.hidden is not None:
        archs = {"mlp-" + "-".join(map(str, args.hidden)): dict(arch="mlp", hidden=args.hidden, latent=args.latent)}
    elif args.archs is not None:
        names = [a.strip() for a in args.archs.split(",") if a.strip()]
        unknown = [a for a in names if a not in ARCHITECTURES]
        if unknown or not names:
            what = f"unknown {unknown}" if unknown else "no architecture named"
            raise UsageError(f"--archs {args.archs!r}: {what}; available: {', '.join(ARCHITECTURES)}")
        archs = {a: ARCHITECTURES[a] for a in names}
    else:
        archs = dict(ARCHITECTURES)
    refuse_file_as_data_dir(args.data_dir, " (or leave it out: without MNIST the benchmark uses synthetic images)")
    out = args.out
    if not out.strip():
        raise UsageError("--out '': expected a folder path; pick an --out folder (default: bench_results)")
    probe = os.path.abspath(out)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
        raise UsageError(f"--out {out}: {probe} is not a writable folder; pick another --out")
    widths = [] if args.no_width_sweep else (args.hidden_widths or (QUICK_WIDTHS if quick else ALL_WIDTHS))
    return BenchConfig(
        batches=args.batches or (QUICK_BATCHES if quick else ALL_BATCHES),
        backends=args.backends or list(BACKEND_NAMES),
        archs=archs, hidden_widths=list(widths), scaling_batch=args.scaling_batch,
        repeats=args.repeats or (5 if quick else 15),
        target_s=args.min_time or (0.06 if quick else 0.2),
        settle_s=args.settle, matmul_n=args.matmul_size, memory=not args.no_memory,
        breakdown=not args.no_breakdown,
        epoch=args.epoch, epoch_repeats=args.epoch_repeats or (1 if quick else 3),
        data_dir=args.data_dir, out=out, seed=args.seed, quick=quick, progress=not args.no_progress)


def run(args) -> int:
    from .report import bar_table, breakdown_table, table
    from .runner import MODES, run_benchmarks
    config = config_from_args(args)
    t0 = time.perf_counter()
    if args.conv:
        from pathlib import Path

        from .conv import format_conv, run_conv_benchmark
        result = run_conv_benchmark(batch=args.scaling_batch, repeats=args.repeats or (5 if args.quick else 15),
                                    min_time=args.min_time or (0.1 if args.quick else 0.3), seed=args.seed,
                                    out=Path(config.out), log=print if not args.no_progress else (lambda *a: None))
        from .machine import label
        print(f"\nMachine: {label(result['machine'])}\n\n{format_conv(result)}")
        print(f"\nwrote {Path(config.out) / 'conv.json'} and conv.md in {time.perf_counter() - t0:.0f} s")
        return 0
    results = run_benchmarks(config)
    print()
    print(f"Machine: {results['label']}")
    peak = results["matmul_peak"].get("numpy-f32", {})
    if peak.get("gflops"):
        print(f"float32 matmul rate ({peak['n']}x{peak['n']} numpy.matmul): {peak['gflops']:.1f} GFLOP/s")
    bt = bar_table(results)
    if bt:
        print("\n" + bt)
    for arch in config.archs:
        for mode in MODES:
            print(f"\n{mode} ({arch}):\n" + table(results, mode, arch))
    bd = breakdown_table(results)
    if bd:
        print("\n" + bd)
    print(f"\nwrote {', '.join(results['files'].values())} in {time.perf_counter() - t0:.0f} s")
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """A usage error is one line and exit status 2, as with ``vae``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())} (see `{self.prog} --help`)\n")


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks") -> int:
    """``python -m benchmarks``: the same options as ``vae bench``, the same one-line errors."""
    from numpy_vae.data import MnistDataError
    parser = _OneLineParser(prog=prog, description="Benchmark NumPy against PyTorch; the same as `vae bench`.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (UsageError, MnistDataError) as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"{prog}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1

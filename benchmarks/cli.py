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
PEER_NAMES = ["numpy", "torch-default", "torch-foreach", "torch-fused", "torch-compile"]   # = peers.PEER_NAMES


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


def _peer_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in PEER_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {unknown or text!r}; choose from {','.join(PEER_NAMES)}")
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
    g = p.add_argument_group("peers (the headline: NumPy's train_step against the best torch; benchmarks/peers.py)")
    g.add_argument("--peers-only", action="store_true",
                   help="time only the peers (and their optimizer-alone and per-phase rows): writes peers.json and "
                        "peers.md to --out and nothing else")
    g.add_argument("--no-peers", action="store_true", help="skip the peers in a full run")
    g.add_argument("--peers", type=_peer_list, default=None,
                   help=f"comma-separated, from {','.join(PEER_NAMES)} (default: all)")
    g.add_argument("--peer-batches", type=_int_list, default=None, help="batch sizes of the peers (default: 1,16,128,1024)")
    g.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where the torch peers run (default: cpu); cuda fails at once, in one line, without a GPU")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="threads for torch (Timer num_threads), OpenBLAS (threadpoolctl) and numpy_vae's Adam "
                        "(default: each library's own default, as `vae train` runs)")
    g.add_argument("--no-compile", action="store_true", help="leave out the torch.compile peer")
    g.add_argument("--compile-batches", type=_int_list, default=None,
                   help="batches at which to time torch.compile (default: every peer batch; each compiles anew)")
    g.add_argument("--compile-timeout", type=positive_float, default=300.0,
                   help="seconds allowed for one torch.compile warm-up before that row is given up (default: 300)")
    g.add_argument("--load-test", action="store_true",
                   help="instead: the threads-under-load test (benchmarks/load.py): step times with and without a "
                        "busy process on one core, 1 vs 2 threads; writes load.json and load.md to --out")
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


def peer_config_from_args(args, config):
    from .peers import DEFAULT_PEER_BATCHES, PeerConfig
    arch = next(iter(config.archs.values()))
    peers = args.peers or list(PEER_NAMES)
    if args.no_compile:
        peers = [p for p in peers if p != "torch-compile"]
    batches = args.peer_batches or list(DEFAULT_PEER_BATCHES)
    breakdown_batch = 128 if 128 in batches else batches[len(batches) // 2]
    return PeerConfig(batches=batches, peers=peers, device=args.device, hidden=tuple(arch["hidden"]),
                      latent=arch["latent"], repeats=config.repeats, target_s=config.target_s,
                      settle_s=config.settle_s, threads=args.threads, compile_batches=args.compile_batches,
                      compile_timeout=args.compile_timeout, breakdown=config.breakdown,
                      breakdown_batch=breakdown_batch, seed=config.seed, data_dir=config.data_dir,
                      progress=config.progress)


def run_peers_and_print(args, config) -> dict:
    from pathlib import Path

    from . import peers as peers_mod
    pc = peer_config_from_args(args, config)
    results = peers_mod.run_peers(pc, log=print if config.progress else (lambda *a: None))
    files = peers_mod.write(results, Path(config.out))
    print(f"\nMachine: {results['label']}\n{results['quiet']['verdict']}\n")
    print(peers_mod.headline_table(results))
    for line in peers_mod.bar_lines(results):
        print(line)
    alone = peers_mod.alone_table(results)
    if alone:
        print("\n" + alone)
    if results.get("breakdown"):
        from .breakdown import breakdown_markdown
        print("\n" + breakdown_markdown(results["breakdown"]))
    if results.get("compare"):
        print("\ntorch.utils.benchmark.Compare of the same samples:\n" + results["compare"])
    print(f"wrote {', '.join(files.values())}")
    return results


def run(args) -> int:
    from .report import bar_table, breakdown_table, table
    from .runner import MODES, run_benchmarks
    config = config_from_args(args)
    t0 = time.perf_counter()
    if args.load_test:
        from pathlib import Path

        from .load import format_load, run_load_test
        result = run_load_test(out=Path(config.out), quick=args.quick, log=print if config.progress else
                               (lambda *a: None), data_dir=config.data_dir)
        print("\n" + format_load(result))
        print(f"\nwrote {Path(config.out) / 'load.json'} and load.md in {time.perf_counter() - t0:.0f} s")
        return 0
    if args.peers_only or args.device == "cuda":
        from .peers import check_device
        check_device(args.device)          # before anything slow: one line, exit 1, without a GPU
    if args.peers_only:
        run_peers_and_print(args, config)
        print(f"in {time.perf_counter() - t0:.0f} s")
        return 0
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
    print(f"\nwrote {', '.join(results['files'].values())}")
    if not args.no_peers:
        del results
        run_peers_and_print(args, config)
    print(f"in {time.perf_counter() - t0:.0f} s")
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

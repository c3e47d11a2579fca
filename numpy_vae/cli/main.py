"""The ``vae`` command.

    vae train [options]          train a VAE (NumPy by default), writing runs/NAME/
    vae sweep [--configs ...]    several configurations in a row, compared in one table and figure
    vae report RUN_DIR           diagnostic figures and report.html of a run
    vae evaluate CHECKPOINT      test negative ELBO and importance-weighted NLL
    vae paper-table [DIR]        committed burda/burda2 runs beside Burda et al.'s Table 1
    vae data fetch [--data-dir]  get MNIST, verified against the original MD5s
    vae serve RUN_DIR [--port N] a live page of a run in the browser: curves, pictures, "generate digit"
    vae parity, vae bench        from torch_vae and benchmarks (entry points)

Each subcommand is a module of ``numpy_vae.cli`` with ``register(subparsers)``.
Other packages add theirs (``vae parity``, ``vae bench``) through the entry-point
group ``vae_from_scratch.commands`` (numpy_vae never imports them).  Every error
a user can cause ends in one line on stderr and a non-zero exit status.
"""
from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from importlib import metadata

from . import data, evaluate, paper_table, report, serve, sweep, train
from .args import UsageError

BUILTIN_COMMANDS = [train, sweep, report, evaluate, paper_table, data, serve]
DISTRIBUTION = "vae-from-scratch"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, ``vae: error: ...``, and exit status 2 (not the whole usage).

    Subparsers inherit the class (argparse makes them with ``type(parent)``), so
    every subcommand, including those added through entry points, behaves alike.
    ``--help`` is untouched.
    """

    def error(self, message: str):
        message = " ".join(str(message).split())
        self.exit(2, f"vae: error: {message} (see `{self.prog} --help`)\n")


def version() -> str:
    """The installed distribution's version (pyproject.toml's), or "(not installed)" when run from a checkout."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "(not installed: run from a source tree)"


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``vae`` parser.  Given ``argv`` naming a built-in command, the entry-point
    commands are not loaded: ``vae train`` then never pays for importing torch."""
    parser = OneLineParser(prog="vae", description="A VAE on MNIST, in NumPy by hand and in PyTorch.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in BUILTIN_COMMANDS:
        module.register(sub)
    if argv is not None:
        first = next((a for a in argv if not a.startswith("-")), None)
        if first in sub.choices or (first is None and "--version" in argv):
            return parser
    for ep in metadata.entry_points(group="vae_from_scratch.commands"):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``vae`` command.  Its first act is the thread setting that must come before NumPy loads
    (numpy_vae.kernels.threads.shorten_openblas_spin); nothing up to here imports NumPy."""
    from ..kernels.threads import shorten_openblas_spin
    shorten_openblas_spin()
    from ..config import ConfigError
    from ..data import MnistDataError
    from ..inputs import InputError
    from ..specs import SpecError
    from ..training import TrainingError
    from ..training.checkpoint import CheckpointError
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("vae: interrupted; the last completed epoch's checkpoint is kept (resume with --resume RUN_DIR)",
              file=sys.stderr)
        return 130
    except (UsageError, ConfigError, MnistDataError, CheckpointError, InputError, SpecError, TrainingError) as e:
        print(f"vae: error: {_one_line(e)}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    except MemoryError:
        print("vae: error: out of memory; try a smaller --batch-size, --hidden or --latent", file=sys.stderr)
        return 1
    except OSError as e:            # a full disk, a folder that became unwritable, ...
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"vae: error: {where}{e.strerror or _one_line(e)}{_what_is_kept(args, e)}", file=sys.stderr)
        return 1


def _what_is_kept(args, e: OSError) -> str:
    """After a failed write of `vae train` into its run folder: what is kept and how to go on.

    Every file there is written whole or not at all (``atomic_write``), so the last checkpoint
    written, if any, is intact."""
    if args.command != "train" or not getattr(e, "filename", None):
        return ""
    fix = "free some space, then " if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    last = Path(e.filename).parent / "last.npz"
    if last.is_file():
        return f"; nothing was half-written: the last checkpoint written, {last}, is kept ({fix}continue with " \
               f"`vae train --resume {last.parent}`)"
    return f"; nothing was half-written, and no checkpoint had been written yet ({fix}start the run again)"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


if __name__ == "__main__":
    sys.exit(main())

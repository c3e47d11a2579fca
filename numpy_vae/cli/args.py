"""The ``vae`` subcommands, one module each; each module has ``register(subparsers)``.

Shared argument types live here, so every command validates its options the
same way: a bad value ends in one line naming the option and a non-zero exit.
"""
from __future__ import annotations

import argparse
import os


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


def non_negative_int(text: str) -> int:
    """An integer >= 0: every ``--seed`` (NumPy's generators refuse negative seeds) and ``--steps``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def folder_path(text: str) -> str:
    """A non-empty path (an empty one would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder path, got {text!r}")
    return text


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def learning_rate(text: str) -> float:
    """Adam's learning rate, in (0, numpy_vae.config.LR_MAX]."""
    from ..config import LR_MAX
    value = positive_float(text)
    if value > LR_MAX:
        raise argparse.ArgumentTypeError(f"expected a learning rate in (0, {LR_MAX:g}], got {text} (Adam moves each "
                                         f"parameter by about lr a step; larger values only overflow)")
    return value


def adam_epsilon(text: str) -> float:
    """Adam's eps, in numpy_vae.config.ADAM_EPS_RANGE."""
    from ..config import ADAM_EPS_RANGE
    lo, hi = ADAM_EPS_RANGE
    value = positive_float(text)
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"expected a number in [{lo:g}, {hi:g}], got {text} (smaller values "
                                         f"underflow in Adam's float32 arithmetic)")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(positive_int(t) for t in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 512,256, got {text!r}") from None


def refuse_file_as_data_dir(data_dir, otherwise: str = "") -> None:
    """UsageError if ``--data-dir`` names a file: MNIST lives in a folder (DATA/MNIST/raw).

    ``otherwise`` is added to the message (what happens when the option is left out)."""
    path = None if data_dir is None else os.path.expanduser(data_dir)
    if path is not None and os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--data-dir {data_dir} is a file, not a folder; point it at the folder holding "
                         f"MNIST/raw{otherwise}")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=folder_path, default=os.environ.get("VAE_DATA_DIR") or "data",
                        help="folder holding MNIST/raw/ as torchvision lays it out (default: data, or $VAE_DATA_DIR)")


def preset(text: str) -> str:
    """argparse type: a preset name (``numpy_vae.presets``), or the usage error listing them."""
    from ..presets import PresetError, check_preset
    try:
        return check_preset(text)
    except PresetError as e:
        raise argparse.ArgumentTypeError(str(e)) from None

"""The ``vae`` subcommands, one module each; each module has ``register(subparsers)``.

Shared argument types live here, so every command validates its options the
same way: a bad value ends in one line naming the option and a non-zero exit.
"""
from __future__ import annotations

import argparse
import os

# The value parsers every command shares (one place: numpy_vae.values, which the configuration's fields use too).
from ..values import (folder_path, hidden_sizes, non_negative_float, non_negative_int, positive_float,  # noqa: F401
                      positive_int)


class UsageError(Exception):
    """A bad command-line value; the message names the option and the fix."""


def refuse_file_as_data_dir(data_dir, otherwise: str = "") -> None:
    """UsageError if ``--data-dir`` names a file: MNIST lives in a folder (DATA/MNIST/raw).

    ``otherwise`` is added to the message (what happens when the option is left out)."""
    path = None if data_dir is None else os.path.expanduser(data_dir)
    if path is not None and os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--data-dir {data_dir} is a file, not a folder; point it at the folder holding "
                         f"MNIST/raw{otherwise}")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` as TrainConfig declares it, defaulting to $VAE_DATA_DIR or data."""
    add_config_flags(parser, ["data_dir"], defaults={"data_dir": os.environ.get("VAE_DATA_DIR") or "data"})


def flag(name: str) -> str:
    """The command-line flag of the TrainConfig field ``name``: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


def as_flag_value(value) -> str:
    """A value as a command line gives it: (512, 256) -> 512,256."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def add_config_flags(parser, names=None, *, defaults: dict | None = None, helps: dict | None = None,
                     groups: bool = False) -> None:
    """One flag per TrainConfig field (``names``: those only, in that order; default: all), generated from the
    field's declaration in numpy_vae.config: its kind gives the parser (or choices, or --x/--no-x), its help
    text and default the help.  Each flag's argparse default is None (left out, so an explicit value can be
    told apart from a preset's) unless ``defaults`` gives one; ``helps`` replaces a field's help text (default
    included).
    ``groups``: one help section per configuration part (model, objective, ...)."""
    import dataclasses
    from ..config import FIELDS, PARTS
    defaults, helps = defaults or {}, helps or {}
    sections = {}
    if groups:
        for part, cls in PARTS.items():
            group = parser.add_argument_group(f"{part} ({cls.__name__})")
            sections.update({f.name: group for f in dataclasses.fields(cls)})
    for name in (names if names is not None else FIELDS):
        f = FIELDS[name]
        kind, meta = f.metadata["kind"], f.metadata
        default = defaults.get(name)
        shown = meta["shown"] if meta["shown"] is not None else "%(default)s" if default is not None \
            else as_flag_value(f.default)
        help_text = helps.get(name, f"{meta['help']} (default: {shown})")
        kwargs = {"default": default, "help": help_text.replace("%", "%%").replace("%%(default)s", "%(default)s")}
        if kind.flag_action is not None:
            kwargs["action"] = kind.flag_action
        elif kind.choices is not None:
            kwargs["choices"] = kind.choices
        elif kind.parse is not None:
            kwargs["type"] = kind.parse
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        sections.get(name, parser).add_argument(flag(name), **kwargs)


def preset(text: str) -> str:
    """argparse type: a preset name (``numpy_vae.presets``), or the usage error listing them."""
    from ..presets import PresetError, check_preset
    try:
        return check_preset(text)
    except PresetError as e:
        raise argparse.ArgumentTypeError(str(e)) from None

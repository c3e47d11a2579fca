"""What a configuration value may be, said once for the command line and once for everything else.

A :class:`Kind` pairs the parser of a command-line value (text -> value, or
``argparse.ArgumentTypeError`` saying what was expected: argparse turns that into
``vae: error: argument --OPTION: expected ...``) with the check of a value that
arrives any other way (a config.json, a checkpoint's meta, the Python API), so
``numpy_vae.config`` declares each field's kind and both follow from it.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable


def integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def real(v) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------- parsers of command-line text
def _number(convert, ok, unparsable: str, bad: str, show_text: bool):
    """A parser: ``convert(text)``, refused (ArgumentTypeError) as ``unparsable`` where it cannot be converted
    and as ``bad`` where ``ok(value)`` is false (showing the text, or the value)."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {unparsable}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {bad}, got {text if show_text else value}")
        return value
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer", "a positive integer", False)
#: An integer >= 0: every ``--seed`` (NumPy's generators refuse negative seeds) and ``--steps``.
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0", "an integer >= 0", False)
positive_float = _number(float, lambda v: 0 < v < math.inf, "a positive number", "a positive finite number", True)
non_negative_float = _number(float, lambda v: 0 <= v < math.inf, "a number >= 0", "a finite number >= 0", True)


def folder_path(text: str) -> str:
    """A non-empty path (an empty one would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder path, got {text!r}")
    return text


def probability(text: str) -> float:
    """A dropout probability in [0, 1)."""
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}")
    return value


def hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(positive_int(t) for t in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 512,256, got {text!r}") from None


def valid_run_name(name) -> bool:
    """A plain folder name: no path separators, not '.', '..' or 'latest'."""
    return isinstance(name, str) and bool(name) and name not in (".", "..", "latest") and "/" not in name \
        and "\\" not in name and "\0" not in name


def run_name(text: str) -> str:
    if not valid_run_name(text):
        raise argparse.ArgumentTypeError(f"expected a plain folder name (no '/', not '.', '..' or 'latest'), got {text!r}")
    return text


def thread_count(text: str):
    """'auto' or an integer >= 1."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 1, got {text!r}") from None


# ---------------------------------------------------------------- kinds: parser + check
@dataclass(frozen=True)
class Kind:
    """A value's kind: ``parse`` reads command-line text (None: the text itself), ``check`` accepts a value
    from anywhere else, ``what`` says what is expected; ``choices`` (a closed set) and ``flag_action`` (an
    argparse action, for booleans) shape the generated flag."""
    check: Callable[[Any], bool]
    what: str
    parse: Callable[[str], Any] | None = None
    choices: tuple | None = None
    flag_action: Any = None


def one_of(choices) -> Kind:
    choices = tuple(choices)
    return Kind(lambda v: isinstance(v, str) and v in choices, f"one of {choices}", choices=choices)


def optional(kind: Kind) -> Kind:
    """``kind`` or None (the flag itself is the same: leaving it out gives None)."""
    return Kind(lambda v: v is None or kind.check(v), f"None or {kind.what}", kind.parse, kind.choices,
                kind.flag_action)


POSITIVE_INT = Kind(lambda v: integer(v) and v >= 1, "an integer >= 1", positive_int)
NON_NEGATIVE_INT = Kind(lambda v: integer(v) and v >= 0, "an integer >= 0", non_negative_int)
POSITIVE_FLOAT = Kind(lambda v: real(v) and v > 0, "a finite number > 0", positive_float)
NON_NEGATIVE_FLOAT = Kind(lambda v: real(v) and v >= 0, "a finite number >= 0", non_negative_float)
PROBABILITY = Kind(lambda v: real(v) and 0 <= v < 1, "a probability in [0, 1)", probability)
SIZES = Kind(lambda v: isinstance(v, tuple) and len(v) >= 1 and all(integer(h) and h >= 1 for h in v),
             "one or more integers >= 1", hidden_sizes)
BOOL = Kind(lambda v: isinstance(v, bool), "True or False", flag_action=argparse.BooleanOptionalAction)
FOLDER = Kind(lambda v: isinstance(v, str) and bool(v.strip()), "a folder path", folder_path)
RUN_NAME = Kind(valid_run_name, "a plain folder name (no '/', not '.', '..' or 'latest')", run_name)
THREADS = Kind(lambda v: v is None or (integer(v) and v >= 1), "None or an integer >= 1", thread_count)


def text(what: str) -> Kind:
    """Any string (its meaning is checked where it is used, e.g. a backend's name against the installed ones)."""
    return Kind(lambda v: isinstance(v, str), what)

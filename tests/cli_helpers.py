"""Shared by the CLI tests: run `vae` in-process and capture what it printed."""
from __future__ import annotations

from numpy_vae.cli import main


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``vae ARGS``; argparse's own errors exit through SystemExit."""
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err

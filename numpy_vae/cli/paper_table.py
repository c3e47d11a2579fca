"""``vae paper-table [RESULTS_DIR]``: the committed runs beside Burda et al.'s Table 1, as a table and a figure."""
from __future__ import annotations

from pathlib import Path

from .args import UsageError


def register(sub) -> None:
    p = sub.add_parser("paper-table", help="the paper's table: committed burda and burda2 runs beside Burda et al. (2015)",
                       description="Read every run folder under RESULTS_DIR (its last.npz and the k = 5000 "
                                   "evaluations `vae evaluate` saved in its evaluations.csv) and print, as the "
                                   "markdown table of docs/results.md, each run's latest importance-weighted NLL beside "
                                   "Burda et al. (2015)'s Table 1 (1 and 2 stochastic layers; the rows this "
                                   "project reproduces are listed even without a run), with epochs trained and "
                                   "wall time; "
                                   "with --figure, also draw how each run approached its row.")
    p.add_argument("results_dir", metavar="RESULTS_DIR", nargs="?", default="docs/results",
                   help="folder of run folders (default: docs/results)")
    p.add_argument("--figure", metavar="PNG", default=None,
                   help="also write the figure here (e.g. docs/figures/paper_table.png)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report.paper import markdown, plot_progress, read_results
    figure = Path(args.figure) if args.figure else None
    if figure is not None and (figure.suffix.lower() != ".png" or not figure.parent.is_dir()):
        raise UsageError(f"--figure {figure}: name a .png file in an existing folder (e.g. docs/figures/paper_table.png)")
    try:
        rows = read_results(Path(args.results_dir))
    except ValueError as e:                      # an evaluations.csv that is not one: the message names the line
        raise UsageError(str(e)) from None
    print(markdown(rows), end="")
    if figure is not None:
        print(f"wrote {plot_progress(figure, rows)}")
    return 0

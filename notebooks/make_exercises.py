"""Write the exercise notebooks from the worked ones: every cell tagged "solution" becomes a stub.

    python notebooks/make_exercises.py            # (re)write notebooks/exercises/NN_*.py   (= make exercises)
    python notebooks/make_exercises.py --check    # exit 1, naming the files, if they are out of date
    python notebooks/make_exercises.py --ipynb    # also each missing .ipynb (worked ones executed; make notebooks)

The exercises are generated, not committed (notebooks/exercises/ is ignored by git): one source, no copy
to fall out of date.

A solution cell carries a ``hint`` in its header (``# %% tags=["solution"] hint="..."``).  Its stub keeps
the cell's leading comment lines (the task), lists the names the solution assigns, and raises
``NotImplementedError`` with the hint, so a learner's run stops exactly there; the cells after it
(``cmp`` against autograd) check the answer.  Everything else is copied, so the exercises cannot
drift from the worked notebooks.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import jupytext

HERE = Path(__file__).resolve().parent
EXERCISES = HERE / "exercises"
SOLUTION, EXERCISE = "solution", "exercise"


def worked_notebooks(folder: Path = HERE) -> list[Path]:
    """The worked notebooks' sources, in reading order: notebooks/NN_name.py."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.py"))


def assigned_names(source: str) -> list[str]:
    """The names a cell's top-level statements assign, in order (what the learner must define)."""
    names: list[str] = []

    def add(target):
        if isinstance(target, ast.Name) and target.id not in names:
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                add(t)

    for node in ast.parse(source).body:
        for target in (node.targets if isinstance(node, ast.Assign) else
                       [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []):
            add(target)
    return names


def stub(cell, where: str) -> str:
    """The exercise stub that replaces a solution cell's source."""
    hint = cell.metadata.get("hint")
    if not hint:
        raise SystemExit(f"{where}: a solution cell needs a hint in its header: # %% tags=[\"solution\"] hint=\"...\"")
    lines = cell.source.splitlines()
    task = [ln for ln in lines[:next((i for i, ln in enumerate(lines) if not ln.startswith("#")), len(lines))]]
    names = assigned_names(cell.source)
    todo = f"# Your code here: compute {', '.join(names)}." if names else "# Your code here."
    message = f"Exercise: {', '.join(names) + ': ' if names else ''}{hint}"
    return "\n".join([*task, todo, f"raise NotImplementedError({message!r})"])


def exercise_text(path: Path) -> str:
    """The exercise notebook generated from the worked notebook at ``path``, as py:percent text."""
    nb = jupytext.read(path)
    solutions = 0
    for i, cell in enumerate(nb.cells):
        tags = list(cell.metadata.get("tags", []))
        if cell.cell_type == "code" and SOLUTION in tags:
            cell.source = stub(cell, f"{path.name}, cell {i}")
            cell.metadata["tags"] = [EXERCISE if t == SOLUTION else t for t in tags]
            del cell.metadata["hint"]                  # it is in the stub's message
            solutions += 1
        elif cell.cell_type == "markdown":     # one folder deeper: ../docs/... becomes ../../docs/...
            cell.source = re.sub(r"\]\(\.\./", "](../../", cell.source)
    if not solutions:
        raise SystemExit(f"{path.name}: no cell is tagged {SOLUTION!r}, so there is no exercise to make")
    note = nb.cells[0].source if nb.cells and nb.cells[0].cell_type == "markdown" else None
    banner = (f"**Exercise version** of [{path.name}](../{path.name}), written by `make exercises`: edit the worked "
              f"notebook, not this file. Each cell that raises `NotImplementedError` is yours to fill in; the "
              f"`cmp` rows after it turn red, naming the gradient, until your answer is right.")
    if note is not None:
        nb.cells[0].source = note + "\n\n" + banner
    # no jupytext version in the header: the text must not depend on which jupytext wrote it
    nb.metadata.setdefault("jupytext", {})["notebook_metadata_filter"] = "-jupytext.text_representation"
    text = jupytext.writes(nb, fmt="py:percent")
    return text.replace("#     notebook_metadata_filter: -jupytext.text_representation\n", "")


def write_ipynb(log=print) -> None:
    """An .ipynb beside every notebook source that has none (one you have worked in is never overwritten).

    The worked notebooks are executed first (nbclient, the python3 kernel), so their tables and figures
    are there on opening; the exercises are left unexecuted.
    """
    import nbformat
    from nbclient import NotebookClient

    for source in [*worked_notebooks(), *worked_notebooks(EXERCISES)]:
        target = source.with_suffix(".ipynb")
        if target.exists():
            continue
        nb = jupytext.read(source)
        if source.parent == HERE:
            log(f"executing {source.relative_to(HERE.parent)} ...")
            NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,   # an error shows in it
                           resources={"metadata": {"path": str(HERE)}}).execute()
        nbformat.write(nb, target)
        log(f"wrote {target.relative_to(HERE.parent)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EXERCISES, help="the folder to write (default notebooks/exercises)")
    parser.add_argument("--check", action="store_true", help="only check that that folder is up to date")
    parser.add_argument("--ipynb", action="store_true",
                        help="then write each missing .ipynb, the worked ones executed (what `make notebooks` runs)")
    args = parser.parse_args(argv)
    stale, out = [], args.out
    wanted = {out / p.name: exercise_text(p) for p in worked_notebooks()}
    if not args.check:
        out.mkdir(parents=True, exist_ok=True)
    extra = sorted(set(out.glob("[0-9][0-9]_*.py")) - set(wanted))
    for target, text in wanted.items():
        if not target.exists() or target.read_text() != text:
            stale.append(target)
            if not args.check:
                target.write_text(text)
    if args.check:
        if stale or extra:
            print("out of date (run `make exercises`): " + ", ".join(p.name for p in [*stale, *extra]), file=sys.stderr)
            return 1
        return 0
    for p in extra:
        p.unlink()
    print(f"{len(wanted)} exercise notebooks in {out}/ "
          f"({len(stale)} rewritten, {len(extra)} removed)")
    if args.ipynb:
        write_ipynb()
    return 0


if __name__ == "__main__":
    sys.exit(main())

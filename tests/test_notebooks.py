"""The notebooks run: every worked notebook end to end, every exercise stopping exactly at its stubs.

One kernel per notebook checks both (see test_notebook_runs_and_its_exercise_stops_exactly_at_its_stubs).

Each notebook is read from its jupytext source (notebooks/NN_name.py) and executed by nbclient in a
real Jupyter kernel (ipykernel's python3, from the dev extra), in the notebook's folder, with
matplotlib's inline backend (Agg, no display). A missing kernel or missing package fails these tests;
nothing here skips.
"""
from __future__ import annotations

import importlib.util
import re
import sys
import time
from pathlib import Path

import pytest

import jupytext          # the dev extra's; an ImportError fails the module, it never skips
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT = 90           # seconds for any one cell
NOTEBOOK_LIMIT = 90         # seconds for a whole notebook (each takes 5-20 s on a busy 2-core machine)


def _make_exercises():
    spec = importlib.util.spec_from_file_location("make_exercises", NOTEBOOKS / "make_exercises.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_exercises = _make_exercises()
WORKED = make_exercises.worked_notebooks()
IDS = [p.stem for p in WORKED]


@pytest.fixture(scope="session")
def this_python_kernel(tmp_path_factory) -> Path:
    """A folder for JUPYTER_PATH whose python3 kernel is this interpreter (ipykernel's own spec), so that a
    python3 kernel installed elsewhere (~/.local/share/jupyter, say) cannot run the notebooks instead."""
    from ipykernel.kernelspec import write_kernel_spec      # the dev extra's; an ImportError fails, never skips
    root = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(root / "kernels" / "python3")
    return root


@pytest.fixture(autouse=True)
def kernel_env(monkeypatch, real_mnist_dir, this_python_kernel):
    """The kernel inherits this environment: this Python's kernel, the inline backend (no display), the test's MNIST."""
    monkeypatch.setenv("JUPYTER_PATH", str(this_python_kernel))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("VAE_DATA_DIR", str(real_mnist_dir))


def _client(nb, folder: Path) -> NotebookClient:
    return NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", shutdown_kernel="immediate",
                          resources={"metadata": {"path": str(folder)}})


def _outputs(cell) -> str:
    """A code cell's printed text and error messages, ANSI colours kept."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
    return "".join(parts)


def test_the_python3_kernel_is_this_python():
    """ipykernel (dev extra) provides the python3 kernel that every notebook test starts: this interpreter."""
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.language == "python" and spec.argv[0] == sys.executable, spec.argv


def test_seven_worked_notebooks_in_order():
    assert len(WORKED) == 7, [p.name for p in WORKED]
    assert [p.name[:2] for p in WORKED] == [f"{i:02d}" for i in range(1, 8)]


def test_make_exercises_writes_one_exercise_per_notebook_and_checks_it(tmp_path, capsys):
    """`make exercises`: a stub per solution cell, everything else copied; --check names a stale file."""
    assert make_exercises.main(["--out", str(tmp_path)]) == 0
    written = sorted(tmp_path.glob("*.py"))
    assert [p.name for p in written] == [p.name for p in WORKED]
    for worked, exercise in zip(WORKED, written):
        text = exercise.read_text()
        assert text == make_exercises.exercise_text(worked)
        assert text.count("raise NotImplementedError(") == len(_solutions(worked)) > 0
        assert "jupytext_version" not in text                   # the same text whichever jupytext wrote it
    assert make_exercises.main(["--out", str(tmp_path), "--check"]) == 0
    written[2].write_text(written[2].read_text() + "\n# edited\n")
    assert make_exercises.main(["--out", str(tmp_path), "--check"]) == 1
    assert written[2].name in capsys.readouterr().err


def _solutions(path: Path) -> list[str]:
    return [c.source for c in jupytext.read(path).cells
            if c.cell_type == "code" and make_exercises.SOLUTION in c.metadata.get("tags", [])]


def _exercise(path: Path):
    """The exercise version of the worked notebook ``path``, as `make exercises` writes it."""
    return jupytext.reads(make_exercises.exercise_text(path), fmt="py:percent")


def _run_exercise(path: Path, answers: list[str | None]):
    """Execute the exercise version of ``path`` cell by cell in one kernel.

    At the i-th stub: it must raise NotImplementedError; then ``answers[i]`` (None: the worked solution)
    replaces it and runs. Returns (the notebook as executed, the solutions, the stubs' error names, and
    (index, CellExecutionError) of the first other cell that failed, where execution stopped, or None).
    """
    nb = _exercise(path)
    solutions = _solutions(path)
    assert len(answers) == len(solutions)
    client = _client(nb, NOTEBOOKS)
    stub_errors = []
    with client.setup_kernel():
        stub = 0
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if make_exercises.EXERCISE in cell.metadata.get("tags", []):
                with pytest.raises(CellExecutionError) as raised:
                    client.execute_cell(cell, index)
                stub_errors.append(raised.value.ename)
                cell.source = solutions[stub] if answers[stub] is None else answers[stub]
                stub += 1
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as e:
                return nb, solutions, stub_errors, (index, e)
    return nb, solutions, stub_errors, None


@pytest.mark.parametrize("path", WORKED, ids=IDS)
def test_notebook_runs_and_its_exercise_stops_exactly_at_its_stubs(path):
    """One kernel per notebook does both checks: the exercise version, run cell by cell, raises
    NotImplementedError at each stub and nowhere else; each stub's solution is then put back and run, so
    the kernel executes the worked notebook's cells in its order, every one of them (checked below), and
    they must all pass within the limit, print cmp rows, and draw a figure."""
    stubs = [c for c in _exercise(path).cells if make_exercises.EXERCISE in c.metadata.get("tags", [])]
    assert stubs and all("raise NotImplementedError(" in c.source for c in stubs)
    start = time.monotonic()
    nb, solutions, errors, failure = _run_exercise(path, [None] * len(stubs))
    elapsed = time.monotonic() - start
    assert failure is None, failure[1]
    assert errors == ["NotImplementedError"] * len(stubs) == ["NotImplementedError"] * len(solutions)
    worked = jupytext.read(path)
    assert [c.source for c in nb.cells][1:] == [c.source for c in worked.cells][1:]   # the worked notebook ran
    assert elapsed < NOTEBOOK_LIMIT, f"{path.name} took {elapsed:.0f} s (limit {NOTEBOOK_LIMIT} s)"

    text = "".join(_outputs(c) for c in nb.cells if c.cell_type == "code")
    assert re.search(r"\x1b\[32m\S+.*\bok\x1b\[0m", text), f"{path.name} printed no cmp row"
    for cell in nb.cells:      # a red row only where the notebook shows one on purpose (cmp(..., check=False))
        if cell.cell_type == "code" and "WRONG" in _outputs(cell):
            assert "check=False" in cell.source, cell.source
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no figure"
    assert "../docs/gradients.md#" in worked.cells[0].source, f"{path.name} links no docs/gradients.md section"


def test_a_wrong_backward_turns_its_cmp_row_red_and_names_the_gradient():
    """A learner who forgets the 1/2 in the KL's dlogvar sees the dlogvar row red and an error naming it."""
    path = NOTEBOOKS / "03_reparameterization_kl.py"
    solutions = _solutions(path)
    kl = next(i for i, s in enumerate(solutions) if "dlogvar_kl" in s)
    wrong = "dmu_kl = mu\ndlogvar_kl = np.expm1(logvar)          # forgot the 1/2"
    answers = [None] * len(solutions)
    answers[kl] = wrong
    nb, _, errors, failure = _run_exercise(path, answers)
    assert failure is not None, "the wrong dlogvar went unnoticed"
    index, error = failure
    assert errors == ["NotImplementedError"] * (kl + 1)                   # it stopped after the wrong answer
    assert "cmp(" in nb.cells[index].source                               # in the cmp cell that follows it
    assert error.ename == "GradientMismatch"
    assert error.evalue.startswith("dlogvar does not match autograd"), error.evalue
    printed = _outputs(nb.cells[index])
    assert re.search(r"\x1b\[32mdmu\s.*ok\x1b\[0m", printed), printed            # dmu is right: green
    assert re.search(r"\x1b\[31mdlogvar\s.*WRONG\x1b\[0m", printed), printed     # dlogvar is wrong: red

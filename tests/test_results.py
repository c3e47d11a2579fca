"""The committed results re-evaluate to their committed figures.

``docs/results/*/`` holds runs too long to repeat in a test (the paper's table): each folder's
``last.npz`` (parameters, Adam state: resumable), ``config.json``, ``metrics.csv``, the K = 5000
``evaluation.json``, and ``check.json``: the same evaluation at a size a test can afford, which this
test repeats with `vae evaluate` and compares.  The numbers depend on the CPU's last bits only.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from numpy_vae.cli import main

RESULTS = sorted(p.parent for p in (Path(__file__).resolve().parents[1] / "docs" / "results").glob("*/check.json"))


def test_there_are_committed_results():
    assert RESULTS, "docs/results/*/check.json: the paper's table has no committed run"


def reevaluate(folder: Path, data_dir: Path, capsys) -> None:
    """`vae evaluate` at check.json's size gives check.json's estimate; evaluation.json is the k = 5000 one."""
    check = json.loads((folder / "check.json").read_text())
    assert main(["evaluate", str(folder / "last.npz"), "-k", str(check["k"]), "--limit", str(check["images"]),
                 "--seed", str(check["seed"]), "--no-save", "--no-progress", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"test set: {check['test_set']}" in out
    line = next(l for l in out.splitlines() if l.startswith(f"test NLL, IWAE (K = {check['k']})"))
    value = float(line.split("±")[0].split()[-1])                   # printed to 2 decimals
    assert value == pytest.approx(check["iwae_nll"], abs=0.006), line
    full = json.loads((folder / "evaluation.json").read_text())
    assert full["k"] == 5000 and full["test_set"] == "binarized"


@pytest.mark.parametrize("folder", RESULTS, ids=[p.name for p in RESULTS])
def test_committed_checkpoint_reevaluates_to_its_figure(folder, real_mnist_dir, capsys):
    reevaluate(folder, real_mnist_dir, capsys)


def test_a_two_layer_folder_reevaluates_as_the_committed_ones_will(small_burda2_run, real_mnist_dir, tmp_path, capsys):
    """A burda2 folder made as docs/results' are (check.json: a small evaluation; evaluation.json: k = 5000), and a
    wrong check figure is caught."""
    folder = tmp_path / "burda2"
    shutil.copytree(small_burda2_run, folder)
    assert main(["evaluate", str(folder), "-k", "20", "--limit", "20", "--no-progress",
                 "--data-dir", str(real_mnist_dir)]) == 0
    (folder / "evaluation.json").rename(folder / "check.json")
    assert main(["evaluate", str(folder), "-k", "5000", "--limit", "2", "--no-progress",
                 "--data-dir", str(real_mnist_dir)]) == 0
    capsys.readouterr()
    reevaluate(folder, real_mnist_dir, capsys)
    check = json.loads((folder / "check.json").read_text())
    (folder / "check.json").write_text(json.dumps({**check, "iwae_nll": check["iwae_nll"] + 0.01}))
    with pytest.raises(AssertionError):
        reevaluate(folder, real_mnist_dir, capsys)

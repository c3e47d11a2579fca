"""`vae paper-table`: the committed runs beside Burda et al.'s Table 1, read from what the runs wrote."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from numpy_vae.cli import main
from numpy_vae.report.evaluations import read_history
from numpy_vae.report.paper import PAPER_ROWS, REPRODUCED, is_paper_setup, read_results, stochastic_layers
from numpy_vae.training.checkpoint import load_checkpoint, save_checkpoint
from numpy_vae.training.restore import read_saved

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def run_cli(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_the_committed_table_reads_what_the_runs_wrote(tmp_path, capsys):
    figure = tmp_path / "paper_table.png"
    rc, out, err = run_cli(["paper-table", str(RESULTS), "--figure", str(figure)], capsys)
    assert rc == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    folders = sorted(p.parent for p in RESULTS.glob("*/last.npz"))
    assert len(rows) == len(folders) >= 2
    held = set()
    for folder in folders:
        saved = read_saved(folder / "last.npz")
        meta, config = saved.meta, saved.meta["config"]
        assert is_paper_setup(config, saved.spec)
        key = (stochastic_layers(saved.spec), config["objective"],
               config["samples"] if config["objective"] == "iwae" else 1)
        held.add(key)
        label, paper = PAPER_ROWS[key]
        row = next(r for r in rows if r.startswith(f"| `{folder.name}` "))
        latest = read_history(folder)[-1]
        assert f"| {label} | {paper:.2f} |" in row
        assert f"{latest['iwae_nll']:.2f} ± {latest['iwae_nll_se']:.2f}" in row
        if latest["images"] == 10_000:
            assert f"{latest['iwae_nll'] - paper:+.2f}" in row
        else:
            assert "(first " in row and "| — (a prefix of the test set) |" in row
        assert f"| {meta['epoch']:,} of 3,280 |" in row
        assert f"| {sum(r['seconds'] for r in meta['metrics']) / 3600:.1f} h |" in row
    assert rows[0].split("|")[3].strip() == "86.76"            # the paper's order: the VAE row first
    for key in set(REPRODUCED) - held:                        # the reproduced rows without a committed run
        label, paper = PAPER_ROWS[key]
        assert f"| — | {label} | {paper:.2f} | no committed run | — | — | — |" in out
    table = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(table) == len(folders) + len(set(REPRODUCED) - held) >= 4
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 20_000


def test_every_committed_evaluation_is_of_its_checkpoint():
    """evaluation.json and the last row of evaluations.csv are the same evaluation, of last.npz's epoch."""
    for folder in sorted(p.parent for p in RESULTS.glob("*/last.npz")):
        epoch = load_checkpoint(folder / "last.npz")[2]["epoch"]
        latest = json.loads((folder / "evaluation.json").read_text())
        history = read_history(folder)
        assert latest["epoch"] == history[-1]["epoch"] == epoch, folder.name
        assert latest["iwae_nll"] == history[-1]["iwae_nll"] and latest["k"] == history[-1]["k"] == 5000
        assert [h["epoch"] for h in history] == sorted(h["epoch"] for h in history)


def test_a_run_of_another_setup_has_no_paper_figure_and_a_stale_estimate_says_its_epoch(small_run, tmp_path,
                                                                                         capsys):
    results = tmp_path / "results"
    run = results / "tiny"
    shutil.copytree(small_run, run)
    rc, out, err = run_cli(["paper-table", str(results)], capsys)
    assert rc == 0, err
    assert "(not the paper's setup) | — | not evaluated at k = 5000" in out
    epoch = load_checkpoint(run / "last.npz")[2]["epoch"]
    assert run_cli(["evaluate", str(run), "-k", "5000", "--limit", "2", "--no-progress"], capsys)[0] == 0
    params, optim, meta = load_checkpoint(run / "last.npz")
    save_checkpoint(run / "last.npz", params, optim, {**meta, "epoch": epoch + 1})
    (row,) = read_results(results)
    assert row.paper is None and row.latest["epoch"] == epoch and row.epoch == epoch + 1
    rc, out, err = run_cli(["paper-table", str(results)], capsys)
    assert rc == 0, err
    assert f"(first 2 test images, at epoch {epoch}) | — |" in out


@pytest.mark.parametrize("make, argv, needle", [
    (lambda d: None, ["missing"], "no such folder"),
    (lambda d: (d / "empty").mkdir(), ["empty"], "holds no run folder"),
    (lambda d: None, [str(RESULTS), "--figure", "FOLDER/x.png"], "name a .png file in an existing folder"),
    (lambda d: None, [str(RESULTS), "--figure", "FOLDER/x.txt"], "name a .png file"),
])
def test_bad_input_is_one_line(make, argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    argv = [a.replace("FOLDER", str(tmp_path / "nowhere" if a.endswith(".png") else tmp_path)) for a in argv]
    rc, out, err = run_cli(["paper-table", *argv], capsys)
    assert rc != 0 and out == ""
    assert err.count("\n") == 1 and needle in err, err


def test_a_broken_history_is_one_line_naming_the_line(small_run, tmp_path, capsys):
    run = tmp_path / "results" / "tiny"
    shutil.copytree(small_run, run)
    (run / "evaluations.csv").write_text("epoch,k,images,iwae_nll,iwae_nll_se\n3,5000,two,90.1,1.0\n")
    rc, out, err = run_cli(["paper-table", str(run.parent)], capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "evaluations.csv, line 2" in err, err


def test_a_two_layer_run_has_its_row_and_a_prefix_estimate_is_not_compared(small_burda2_run, tmp_path, capsys):
    """A burda2 run of the paper's setup takes the 2-layer VAE row (85.33); the 2-layer IWAE row stays without a
    run; its estimate on the first 2 test images is labelled so and never compared with the paper."""
    results = tmp_path / "results"
    run = results / "burda2-vae"
    shutil.copytree(small_burda2_run, run)
    params, optim, meta = load_checkpoint(run / "last.npz")
    spec = read_saved(run).spec
    assert not is_paper_setup(meta["config"], spec)           # 1 epoch: not the paper's schedule
    meta["config"] = {**meta["config"], "epochs": 3280}
    assert not is_paper_setup(meta["config"], spec)           # 40 training images: not the paper's data
    meta["config"]["train_limit"] = None
    save_checkpoint(run / "last.npz", params, optim, meta)
    assert is_paper_setup(meta["config"], spec) and stochastic_layers(spec) == 2
    rc, out, err = run_cli(["paper-table", str(results)], capsys)
    assert rc == 0, err
    assert "| `burda2-vae` | 2 stochastic layers, VAE, trained with k = 1 | 85.33 | not evaluated at k = 5000" in out
    assert "| 1 of 3,280 |" in out
    assert run_cli(["evaluate", str(run), "-k", "5000", "--limit", "2", "--no-progress"], capsys)[0] == 0
    figure = tmp_path / "t.png"
    rc, out, err = run_cli(["paper-table", str(results), "--figure", str(figure)], capsys)
    assert rc == 0, err
    lines = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [line.split("|")[2].strip() for line in lines] == [
        "1 stochastic layer, VAE, trained with k = 1", "1 stochastic layer, IWAE, trained with k = 5",
        "2 stochastic layers, VAE, trained with k = 1", "2 stochastic layers, IWAE, trained with k = 5"]
    row = lines[2]
    assert "(first 2 test images) | — (a prefix of the test set) |" in row
    assert lines[0].startswith("| — |") and "no committed run" in lines[3]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

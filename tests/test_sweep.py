"""`vae sweep`: several runs in a row into one folder, interrupted and resumed exactly, then compared."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from cli_helpers import run_main
from numpy_vae.cli import main
from numpy_vae.training import sweep as sweep_module
from numpy_vae.training.checkpoint import load_checkpoint

ARGS = ["--configs", "linear-16-2,linear-24-3", "--epochs", "2", "--train-limit", "200", "--batch-size", "50",
        "--no-progress"]


class Stop(Exception):
    pass


def test_interrupted_sweep_resumes_to_the_uninterrupted_result(real_mnist_dir, tmp_path, monkeypatch, capsys):
    common = [*ARGS, "--data-dir", str(real_mnist_dir), "--runs-dir", str(tmp_path)]
    assert main(["sweep", *common, "--name", "whole"]) == 0

    # Stop the second sweep after the first epoch of its second run (that epoch's checkpoint written).
    original = sweep_module.train

    def train_then_stop(config, **kwargs):
        def on_epoch(run_dir, row, backend, cfg):
            kwargs_on_epoch(run_dir, row, backend, cfg)
            if cfg.name == "linear-24-3" and row["epoch"] == 1:
                raise Stop
        kwargs_on_epoch = kwargs.pop("on_epoch")
        return original(config, on_epoch=on_epoch, **kwargs)

    monkeypatch.setattr(sweep_module, "train", train_then_stop)
    with pytest.raises(Stop):
        main(["sweep", *common, "--name", "cut"])
    monkeypatch.setattr(sweep_module, "train", original)
    cut = tmp_path / "cut"
    assert load_checkpoint(cut / "linear-24-3" / "last.npz")[2]["epoch"] == 1
    assert not (cut / "comparison.md").exists()

    assert main(["sweep", "--resume", str(cut), "--no-progress", "--data-dir", str(real_mnist_dir)]) == 0
    out = capsys.readouterr().out
    assert "linear-16-2: finished earlier" in out and f"resuming {cut / 'linear-24-3'} after epoch 1" in out
    for name in ("linear-16-2", "linear-24-3"):
        p_whole, o_whole, _ = load_checkpoint(tmp_path / "whole" / name / "last.npz")
        p_cut, o_cut, _ = load_checkpoint(cut / name / "last.npz")
        assert all(np.array_equal(p_whole[k], p_cut[k]) for k in p_whole), name
        assert all(np.array_equal(o_whole[k], o_cut[k]) for k in o_whole), name

    rows = list(csv.DictReader(open(cut / "comparison.csv")))
    assert [r["config"] for r in rows] == ["linear-16-2", "linear-24-3"]
    assert [int(r["parameters"]) for r in rows] == [26_004, 38_686]     # 784-16-2 and 784-24-3
    whole_rows = list(csv.DictReader(open(tmp_path / "whole" / "comparison.csv")))
    assert [r["test_neg_elbo"] for r in rows] == [r["test_neg_elbo"] for r in whole_rows]
    for figure in ("reconstructions.png", "curves.png"):
        assert (cut / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_refuses_bad_input_in_one_line(tmp_path, capsys):
    for argv, message in [
        (["--configs", "linear-16-2,nonsense"], "invalid choice: 'nonsense'"),
        (["--configs", "mlp,mlp"], "appears twice"),
        (["--resume", str(tmp_path)], "no sweep.json there"),
    ]:
        code, out, err = run_main(["sweep", *argv, "--runs-dir", str(tmp_path)], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err

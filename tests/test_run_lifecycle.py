"""A run folder's life: what a run that stops in its first epoch leaves (nothing, or a folder a resume starts
over), where runs/latest points, and what a resume of a finished run, or of one that lost best.npz, does
(issue 22.3).  Every test here failed before the fix it names."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_main
from numpy_vae.config import TrainConfig
from numpy_vae.training import train
from numpy_vae.training.checkpoint import CheckpointError, load_checkpoint
from test_resume import TINY, child_env, copy_run, finished_run, kill_at_step, mnist, poison_step, tamper  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
TINY_ARGS = ["--epochs", "2", "--train-limit", "256", "--batch-size", "64", "--hidden", "16", "--latent", "2",
             "--seed", "3", "--no-progress", "--no-figures"]


def quiet(*_):
    pass


def snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None) for p in folder.iterdir()}


def test_an_error_in_the_first_epoch_leaves_nothing_and_latest_where_it_was(mnist, tmp_path, monkeypatch, capsys):
    (tmp_path / "earlier").mkdir()
    (tmp_path / "latest").symlink_to("earlier")
    poison_step(monkeypatch, 2, "loss")
    code, _, err = run_main(["train", *TINY_ARGS, "--data-dir", str(mnist), "--runs-dir", str(tmp_path),
                             "--name", "run"], capsys)
    assert code == 1 and "No checkpoint was written" in err
    assert not (tmp_path / "run").exists()                       # was: a folder holding only config.json
    assert os.readlink(tmp_path / "latest") == "earlier"         # was: latest -> run, and `vae report` failed


def test_an_automatically_named_run_that_fails_leaves_no_folder(mnist, tmp_path, monkeypatch, capsys):
    poison_step(monkeypatch, 1, "loss")
    code, _, _ = run_main(["train", *TINY_ARGS, "--data-dir", str(mnist), "--runs-dir", str(tmp_path)], capsys)
    assert code == 1 and list(tmp_path.iterdir()) == []


def test_a_run_killed_in_its_first_epoch_is_resumed_and_its_name_reused(mnist, tmp_path):
    """SIGKILL (no cleanup possible) in the first epoch: latest has not moved; --resume starts the folder
    over and ends with the very parameters of a run never interrupted; a new run of that --name removes the
    temporary files a kill leaves."""
    args = [*TINY_ARGS, "--data-dir", str(mnist), "--runs-dir", str(tmp_path)]
    kill_at_step("numpy", 2, [*args, "--name", "killed"])
    killed = tmp_path / "killed"
    assert sorted(p.name for p in killed.iterdir()) == ["config.json"]
    assert not (tmp_path / "latest").exists()
    subprocess.run([sys.executable, "-m", "numpy_vae.cli", "train", "--resume", str(killed), "--no-progress",
                    "--no-figures"], env=child_env(), check=True, capture_output=True, timeout=300)
    subprocess.run([sys.executable, "-m", "numpy_vae.cli", "train", *args, "--name", "whole"], env=child_env(),
                   check=True, capture_output=True, timeout=300)
    resumed, whole = load_checkpoint(killed / "last.npz"), load_checkpoint(tmp_path / "whole" / "last.npz")
    assert all(np.array_equal(resumed[0][k], whole[0][k]) for k in whole[0])
    assert all(np.array_equal(resumed[1][k], whole[1][k]) for k in whole[1])
    assert resumed[2]["epoch"] == 2

    kill_at_step("numpy", 1, [*args, "--name", "again"])
    (tmp_path / "again" / ".last.npz.x1y2.tmp").write_bytes(b"half a checkpoint")   # a kill inside atomic_write
    logs = []
    config = TrainConfig(**{**TINY, "data_dir": str(mnist), "runs_dir": str(tmp_path), "name": "again"})
    train(config, progress=False, log=logs.append)
    assert not list((tmp_path / "again").glob(".*.tmp")) and any("interrupted write" in line for line in logs)
    assert os.readlink(tmp_path / "latest") == "again"


def test_resuming_a_finished_run_says_so_and_touches_nothing(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    train(None, resume=run, progress=False, log=quiet)                       # now 2 of 2 epochs
    (tmp_path / "other").mkdir()
    (tmp_path / "latest").unlink()
    (tmp_path / "latest").symlink_to("other")
    before = snapshot(run)
    code, out, err = run_main(["train", "--resume", str(run), "--no-progress"], capsys)   # figures not skipped
    assert code == 0 and err == ""
    assert "is finished (2 of 2 epochs); nothing to do" in out and f"resuming {run} after" not in out
    assert snapshot(run) == before                                          # no report, no metrics rewrite
    assert os.readlink(tmp_path / "latest") == "other"


def test_resume_without_best_npz_says_so_and_writes_it(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    (run / "best.npz").unlink()
    # epoch 1's test loss made unbeatable: before the fix, best.npz was never written again
    tamper(run, meta=lambda m: {**m, "metrics": [{**m["metrics"][0], "test_loss": 1.0}]})
    logs = []
    train(None, resume=run, progress=False, log=logs.append)
    assert any("best.npz is missing: the next epoch writes it" in line for line in logs)
    assert load_checkpoint(run / "best.npz")[2]["epoch"] == 2
    assert "(best 1.00)" not in logs[-1]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_resume_refuses_a_non_finite_saved_test_loss(finished_run, tmp_path, bad):
    run = copy_run(finished_run, tmp_path / "run")
    tamper(run, meta=lambda m: {**m, "metrics": [{**m["metrics"][0], "test_loss": bad}]})
    before = snapshot(run)
    with pytest.raises(CheckpointError, match=r"last\.npz: its meta field 'metrics\[0\]\.test_loss' is (nan|inf)"):
        train(None, resume=run, progress=False, log=quiet)
    assert snapshot(run) == before


def test_resume_with_a_deeply_nested_config_json_is_one_line(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    (run / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    proc = subprocess.run([sys.executable, "-m", "numpy_vae.cli", "train", "--resume", str(run), "--no-progress"],
                          env={**child_env(), "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"vae: error: {run / 'config.json'} is nested too deeply"), proc.stderr


def test_resume_of_an_unstarted_folder_with_a_bad_config_json_names_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"epochs": "ten"}))
    with pytest.raises(CheckpointError, match=r"run/config\.json: no last\.npz beside it.*epochs='ten'"):
        train(None, resume=run, progress=False, log=quiet)


def test_an_unstarted_folder_resumed_on_the_other_backend_starts_over_there(mnist, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = TrainConfig(**{**TINY, "epochs": 1, "data_dir": str(mnist), "runs_dir": str(tmp_path), "name": "run"})
    (run / "config.json").write_text(json.dumps(config.to_json()))
    train(None, resume=run, progress=False, log=quiet, resume_backend="torch")
    assert json.loads((run / "config.json").read_text())["backend"] == "torch"
    assert load_checkpoint(run / "last.npz")[2]["metrics"][0]["backend"] == "torch"

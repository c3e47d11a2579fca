"""Bad input to every ``vae`` subcommand but train (tests/test_cli_validation.py has train): exactly one
line on stderr, ``vae: error: ...`` naming the thing and the fix, a non-zero exit, no traceback, and
nothing written (not even a figure before the error: a failing ``vae report`` leaves its run folder as
it was).

Most cases call ``numpy_vae.cli.main`` in-process; a few run ``python -m numpy_vae.cli`` to check the
whole path.  The run folder is a real one, trained on 300 images (about a second).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: F401  (a dependency: without it these tests fail, never skip)

from cli_helpers import run_main
from numpy_vae.cli import main
from numpy_vae.training.checkpoint import load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time: a rewritten file shows too."""
    return {str(p.relative_to(root)): ((p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0))
            for p in root.rglob("*")}


@pytest.fixture(scope="module")
def tiny_run(real_mnist_dir, tmp_path_factory) -> Path:
    """A run folder from `train` on 300 images, 784-16-2, one epoch, without figures."""
    from numpy_vae.config import TrainConfig
    from numpy_vae.training import train
    config = TrainConfig(epochs=1, train_limit=300, latent=2, hidden=(16,), data_dir=str(real_mnist_dir),
                         runs_dir=str(tmp_path_factory.mktemp("cli_errors")), name="tiny")
    return train(config, progress=False, log=lambda *a: None)


def _broken_copy(run: Path, dest: Path, change) -> Path:
    shutil.copytree(run, dest)
    params, optim, meta = load_checkpoint(dest / "last.npz")
    save_checkpoint(dest / "last.npz", {k: change(v) for k, v in params.items()}, optim, meta)
    return dest


@pytest.fixture
def sandbox(tmp_path, monkeypatch, tiny_run, real_mnist_dir):
    """cwd = a folder holding a file, an empty folder, garbage checkpoints, the tiny run and two broken copies."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAE_DATA_DIR", str(real_mnist_dir))
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.npz").write_bytes(b"this is not a checkpoint")
    (tmp_path / "garbage-run").mkdir()
    (tmp_path / "garbage-run" / "last.npz").write_bytes(b"PK\x03\x04 truncated")
    shutil.copytree(tiny_run, tmp_path / "run")
    _broken_copy(tiny_run, tmp_path / "nan-run", lambda v: np.full_like(v, np.nan))
    # finite weights that overflow: the network gives inf/NaN on every image (a diverged run)
    _broken_copy(tiny_run, tmp_path / "diverged-run", lambda v: v * np.float32(1e30))
    return tmp_path


def assert_one_line_error(code, err, expected):
    assert code not in (0, None), err
    assert err.count("\n") == 1 and err.startswith("vae: error: "), err
    assert expected in err, err
    assert "Traceback" not in err


# (arguments, text the one line must contain, exit status)
EVALUATE = [
    (["evaluate", "run", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1", 2),
    (["evaluate", "run", "--seed", "x"], "argument --seed: expected an integer >= 0, got 'x'", 2),
    (["evaluate", "run", "--limit", "1"], "--limit 1: the standard error over the test images needs at least 2", 2),
    (["evaluate", "run", "--limit", "0"], "argument --limit: expected a positive integer, got 0", 2),
    (["evaluate", "run", "--limit", "2.5"], "argument --limit", 2),
    (["evaluate", "run", "-k", "0"], "-k/--importance-samples: expected a positive integer", 2),
    (["evaluate", "run", "-k", "-3"], "-k/--importance-samples", 2),
    (["evaluate", "run", "--max-rows", "0"], "--max-rows", 2),
    (["evaluate", "run", "--device", "cuda"], "--device cuda: the numpy backend runs on the CPU", 2),
    (["evaluate", "run", "--data-dir", "a-file"], "--data-dir a-file is a file, not a folder", 2),
    (["evaluate", "run", "--data-dir", ""], "argument --data-dir: expected a folder path", 2),
    (["evaluate", "run", "--frobnicate"], "unrecognized arguments: --frobnicate", 2),
    (["evaluate"], "the following arguments are required: CHECKPOINT", 2),
    (["evaluate", "nowhere"], "checkpoint nowhere does not exist", 1),
    (["evaluate", "nowhere/last.npz"], "checkpoint nowhere/last.npz does not exist", 1),
    (["evaluate", "empty"], "empty is a folder without last.npz", 1),
    (["evaluate", "a-file"], "checkpoint a-file is not a readable vae checkpoint", 1),
    (["evaluate", "garbage.npz"], "checkpoint garbage.npz is not a readable vae checkpoint", 1),
    (["evaluate", "garbage-run"], "checkpoint garbage-run/last.npz is not a readable vae checkpoint", 1),
    (["evaluate", "run/config.json"], "run/config.json is not a readable vae checkpoint", 1),
    (["evaluate", "run", "--backend", "jax"], "unknown backend 'jax'", 1),
    (["evaluate", "nan-run"], "parameter encoder.0.weight contains NaN or infinite values", 1),
    (["evaluate", "diverged-run", "-k", "2", "--limit", "3", "--no-progress"],
     "checkpoint diverged-run/last.npz: the network gives non-finite values", 1),
]
REPORT = [
    (["report", "run", "--seed", "-1", "--no-progress"], "argument --seed: expected an integer >= 0, got -1", 2),
    (["report", "run", "--seed", "2.5"], "argument --seed", 2),
    (["report", "nowhere"], "RUN_DIR nowhere: no such folder", 2),
    (["report", "a-file"], "RUN_DIR a-file is a file", 2),
    (["report", "empty"], "RUN_DIR empty has no last.npz", 2),
    (["report", "run", "--checkpoint", "nope.npz"], "RUN_DIR run has no nope.npz", 2),
    (["report", "run", "--classes", "3,12"], "argument --classes: expected comma-separated digits 0-9", 2),
    (["report", "run", "--classes", ""], "argument --classes", 2),
    (["report", "run", "--data-dir", "a-file"], "--data-dir a-file is not a folder", 2),
    (["report", "run", "--data-dir", "nowhere"], "--data-dir nowhere is not a folder", 2),
    (["report", "run", "--data-dir", ""], "argument --data-dir: expected a folder path", 2),
    (["report", "run", "--data-dir", "empty", "--no-progress"], "run `vae data fetch --data-dir empty`", 1),
    (["report"], "the following arguments are required: RUN_DIR", 2),
    (["report", "garbage-run"], "checkpoint garbage-run/last.npz is not a readable vae checkpoint", 1),
    (["report", "run", "--checkpoint", "config.json"], "run/config.json is not a readable vae checkpoint", 1),
    (["report", "nan-run"], "parameter encoder.0.weight contains NaN or infinite values", 1),
    (["report", "diverged-run", "--no-progress"], "checkpoint diverged-run/last.npz: the network gives non-finite", 1),
]
DATA = [
    (["data"], "the following arguments are required: data_command", 2),
    (["data", "frobnicate"], "invalid choice: 'frobnicate'", 2),
    (["data", "fetch", "--frobnicate"], "unrecognized arguments: --frobnicate", 2),
    (["data", "fetch", "--data-dir", "a-file"], "--data-dir a-file is a file, not a folder", 2),
    (["data", "fetch", "--data-dir", "a-file/sub"], "--data-dir a-file/sub: a-file is a file", 2),
    (["data", "fetch", "--data-dir", "garbage.npz"], "--data-dir garbage.npz is a file", 2),
    (["data", "fetch", "--data-dir", ""], "argument --data-dir: expected a folder path, got ''", 2),
]
PARITY = [
    (["parity", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1", 2),
    (["parity", "--seed", "x"], "argument --seed", 2),
    (["parity", "--batch-size", "0"], "argument --batch-size: expected a positive integer, got 0", 2),
    (["parity", "--batch-size", "-2"], "argument --batch-size", 2),
    (["parity", "--steps", "-1"], "argument --steps: expected an integer >= 0, got -1", 2),
    (["parity", "--steps", "1.5"], "argument --steps", 2),
    (["parity", "--latent", "0"], "argument --latent", 2),
    (["parity", "--hidden", "0"], "argument --hidden", 2),
    (["parity", "--beta", "-1"], "argument --beta", 2),
    (["parity", "--lr", "0"], "argument --lr", 2),
    (["parity", "--dtype", "float16"], "argument --dtype: invalid choice: 'float16'", 2),
    (["parity", "--device", "tpu"], "argument --device: invalid choice: 'tpu'", 2),
    (["parity", "--data-dir", "a-file"], "--data-dir a-file is a file, not a folder", 2),
    (["parity", "--batch-size", "6000", "--steps", "2", "--device", "cpu", "--dtype", "float64"],
     "--batch-size 6000 x --steps 2 needs 12,000 images, and there are 10,000 MNIST test images", 2),
    (["parity", "--batch-size", "20000", "--steps", "0", "--device", "cpu", "--dtype", "float64"],
     "--batch-size 20000 needs 20,000 images, and there are 10,000 MNIST test images", 2),
    (["parity", "--checkpoint", "nowhere.npz"], "checkpoint nowhere.npz does not exist", 1),
    (["parity", "--checkpoint", "garbage.npz"], "checkpoint garbage.npz is not a readable vae checkpoint", 1),
    (["parity", "--checkpoint", "empty"], "empty is a folder without last.npz", 1),
    (["parity", "--checkpoint", "nan-run/last.npz"], "contains NaN or infinite values", 1),
]
BENCH = [
    (["bench", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1", 2),
    (["bench", "--seed", "1.5"], "argument --seed", 2),
    (["bench", "--batches", "0"], "argument --batches: expected comma-separated positive integers", 2),
    (["bench", "--batches", "1,x"], "argument --batches", 2),
    (["bench", "--hidden", "0"], "argument --hidden", 2),
    (["bench", "--repeats", "0"], "argument --repeats", 2),
    (["bench", "--min-time", "nan"], "argument --min-time", 2),
    (["bench", "--out", "a-file"], "a-file is not a writable folder", 2),
    (["bench", "--out", "a-file/sub"], "a-file is not a writable folder", 2),
    (["bench", "--out", ""], "--out '': expected a folder path", 2),
    (["bench", "--data-dir", "a-file", "--epoch"], "--data-dir a-file is a file, not a folder", 2),
    (["bench", "--threads", "0"], "argument --threads", 2),
    (["bench", "--conv", "--load"], "--peers, --conv and --load are separate runs; pick one", 2),
    (["bench", "--frobnicate"], "unrecognized arguments: --frobnicate", 2),
]
BAD = EVALUATE + REPORT + DATA + PARITY + BENCH
# Put before each case's own options (which win): should a case stop being refused, the command it then
# runs is small, so the test fails in seconds instead of evaluating K = 5000 or benchmarking for minutes.
CHEAP = {"evaluate": ["-k", "2", "--limit", "3", "--no-progress"],
         "parity": ["--hidden", "8", "--latent", "2", "--steps", "1", "--batch-size", "4", "--device", "cpu"],
         "bench": ["--quick", "--conv", "--batches", "1", "--repeats", "1", "--min-time", "0.001", "--no-progress"]}


def _never_fetch(*args, **kwargs):
    raise AssertionError("`vae data fetch` got past its checks and started fetching")


@pytest.mark.parametrize(("args", "expected", "code"), BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input_is_one_line_and_writes_nothing(sandbox, capsys, monkeypatch, args, expected, code):
    import numpy_vae.data
    monkeypatch.setattr(numpy_vae.data, "fetch_mnist", _never_fetch)
    args = [args[0], *CHEAP.get(args[0], []), *args[1:]]
    before = snapshot(sandbox)
    got, _, err = run_main(args, capsys)
    assert_one_line_error(got, err, expected)
    assert got == code, err
    assert snapshot(sandbox) == before


@pytest.mark.parametrize("command", [["train"], ["evaluate", "run"], ["report", "run"], ["parity"], ["bench"]])
def test_every_seed_is_an_integer_at_least_zero(sandbox, capsys, command):
    for value in ("-1", "x", "1.5"):
        code, _, err = run_main([*command, *CHEAP.get(command[0], []), "--seed", value], capsys)
        assert_one_line_error(code, err, "argument --seed: expected an integer >= 0, got ")
        assert code == 2


@pytest.mark.parametrize(("run", "args", "expected"), [
    ("run", ["--seed", "-1"], "argument --seed"),
    ("diverged-run", [], "the network gives non-finite values"),
], ids=["bad seed", "diverged model"])
def test_failing_report_leaves_the_run_folder_as_it_was(sandbox, capsys, run, args, expected):
    """The file list of the run folder is the same after a failing report: a bad option is refused before
    anything is drawn, and a diverged model, which fails decoding after curves.png is drawn from the
    metrics, has that figure removed again."""
    files = sorted(p.name for p in (sandbox / run).iterdir())
    assert not any(f.endswith(".png") for f in files)
    code, _, err = run_main(["report", run, "--no-progress", *args], capsys)
    assert_one_line_error(code, err, expected)
    assert sorted(p.name for p in (sandbox / run).iterdir()) == files


def test_evaluation_json_is_strict_json_and_the_summary_shows_no_nan(sandbox, capsys):
    code, out, err = run_main(["evaluate", "run", "-k", "3", "--limit", "2", "--no-progress"], capsys)
    assert code == 0, err
    assert "nan" not in out.lower()

    def refuse(name):
        raise AssertionError(f"{name} in evaluation.json")
    saved = json.loads((sandbox / "run" / "evaluation.json").read_text(), parse_constant=refuse)
    assert saved["images"] == 2 and all(np.isfinite(saved[k]) for k in ("iwae_nll_se", "neg_elbo_se", "gap_se"))


def test_a_nan_estimate_never_reaches_the_file(sandbox, capsys, monkeypatch):
    """Whatever makes the estimate NaN, evaluate stops with one line, prints no nan, writes no file."""
    import numpy_vae.evaluation.iwae as iwae
    nan = np.array([np.nan, 1.0])
    monkeypatch.setattr(iwae, "importance_weighted_nll",
                        lambda *a, **kw: iwae.Estimate(nll=nan, neg_elbo=nan, neg_elbo_mc=nan, k=2, seconds=0.0))
    before = snapshot(sandbox)
    code, out, err = run_main(["evaluate", "run", "-k", "2", "--limit", "2", "--no-progress"], capsys)
    assert_one_line_error(code, err, "non-finite values")
    assert "nan" not in out.lower() and snapshot(sandbox) == before


def test_data_fetch_into_an_unwritable_folder_is_refused(sandbox, capsys, monkeypatch):
    """Simulated (root passes every os.access test): the check is the one `vae train` uses."""
    import numpy_vae.cli.train as train_command
    import numpy_vae.data
    monkeypatch.setattr(numpy_vae.data, "fetch_mnist", _never_fetch)
    locked = sandbox / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(train_command.os, "access",
                        lambda path, mode: False if Path(path).resolve() == locked else real_access(path, mode))
    before = snapshot(sandbox)
    code, _, err = run_main(["data", "fetch", "--data-dir", "locked/sub"], capsys)
    assert_one_line_error(code, err, "--data-dir locked/sub: locked is not writable")
    assert snapshot(sandbox) == before


def test_python_m_benchmarks_gives_the_same_one_line(sandbox, capsys):
    from benchmarks.cli import main as bench_main
    for args, expected in [(["--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
                           (["--out", "a-file"], "a-file is not a writable folder")]:
        try:
            code = bench_main(args)
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("python -m benchmarks: error: ")
        assert expected in err


@pytest.mark.parametrize(("args", "code", "expected"), [
    (["evaluate", "run", "--seed", "-1"], 2, "vae: error: argument --seed: expected an integer >= 0, got -1"),
    (["report", "run", "--seed", "-1"], 2, "vae: error: argument --seed: expected an integer >= 0, got -1"),
    (["evaluate", "garbage-run"], 1, "vae: error: checkpoint garbage-run/last.npz is not a readable"),
    (["parity", "--batch-size", "6000", "--steps", "2", "--device", "cpu"], 2,
     "vae: error: --batch-size 6000 x --steps 2 needs 12,000 images"),
])
def test_from_the_outside(sandbox, args, code, expected):
    before = snapshot(sandbox)
    proc = subprocess.run([sys.executable, "-m", "numpy_vae.cli", *args], cwd=sandbox, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(expected), proc.stderr
    assert proc.stdout == "" and snapshot(sandbox) == before

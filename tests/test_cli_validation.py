"""Every bad command line ends in one line, ``vae: error: ...`` naming the option, a non-zero exit,
no traceback, and nothing written.

Most cases call ``numpy_vae.cli.main`` in-process (an argparse error is a
SystemExit there); a few run the real ``python -m numpy_vae.cli`` to check the
same from the outside.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numpy_vae.training.checkpoint import save_checkpoint
from cli_helpers import run_main
from numpy_vae.cli import main

REPO = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1) for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """cwd = an empty folder holding a file, a run folder and an empty folder to point options at."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAE_DATA_DIR", raising=False)
    (tmp_path / "a-file").write_text("not a folder")
    run = tmp_path / "runs" / "done"
    run.mkdir(parents=True)
    save_checkpoint(run / "last.npz", {"w": np.zeros(1, np.float32)}, None, {})
    (tmp_path / "runs" / "no-checkpoint").mkdir()
    (tmp_path / "garbage-run").mkdir()
    (tmp_path / "garbage-run" / "last.npz").write_bytes(b"PK\x03\x04 this is no checkpoint")
    return tmp_path


# (arguments, text the one line must contain)
BAD = [
    ([], "the following arguments are required: command"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["train", "--batch-size", "-3"], "--batch-size: expected a positive integer, got -3"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--batch-size", "many"], "--batch-size"),
    (["train", "--epochs", "1.5"], "--epochs"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--lr", "-1e-3"], "--lr"),
    (["train", "--lr", "1e200"], "--lr: expected a learning rate in (0, 1e+06], got 1e200"),   # was OverflowError
    (["train", "--adam-eps", "1e-160"], "--adam-eps: expected a number in [1e-30, 1e+06], got 1e-160"),  # ZeroDivisionError
    (["train", "--adam-eps", "1e-310"], "--adam-eps: expected a number in [1e-30, 1e+06]"),
    (["train", "--kernels", "turbo"], "--kernels: invalid choice: 'turbo'"),
    (["train", "--kernels", "reference", "--backend", "torch"], "--kernels reference with --backend torch"),
    (["parity", "--lr", "1e200"], "--lr: expected a learning rate in (0, 1e+06]"),
    (["train", "--weight-decay", "-1"], "--weight-decay"),
    (["train", "--clip-grad-norm", "0"], "--clip-grad-norm"),
    (["train", "--beta", "nan"], "--beta"),
    (["train", "--latent", "0"], "--latent"),
    (["train", "--hidden", "64,,32"], "--hidden"),
    (["train", "--hidden", "0"], "--hidden"),
    (["train", "--hidden", "100000,100000"], "hidden=100000,100000"),       # 20 billion parameters
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--train-limit", "0"], "--train-limit"),
    (["train", "--preset", "huge"], "--preset: invalid choice: 'huge'"),
    (["train", "--preset", "linear-0-4"], "--preset: invalid choice: 'linear-0-4'"),
    (["train", "--preset", "linear-64"], "--preset: invalid choice: 'linear-64'"),
    (["train", "--lr-schedule", "linear"], "--lr-schedule"),
    (["train", "--dtype", "float16"], "--dtype"),
    (["train", "--backend", "jax"], "--backend jax: unknown backend"),
    (["train", "--device", "cuda"], "--device cuda: the numpy backend runs on the CPU"),
    (["train", "--name", "../escape"], "--name"),
    (["train", "--name", "latest"], "--name"),
    (["train", "--name", ""], "--name"),
    (["train", "--name", "done", "--runs-dir", "runs"], "--name done: runs/done already holds a run"),
    (["train", "--runs-dir", "a-file"], "--runs-dir a-file: a-file is a file"),
    (["train", "--runs-dir", "a-file/sub"], "--runs-dir a-file/sub: a-file is a file"),
    (["train", "--data-dir", "a-file"], "--data-dir a-file is a file"),
    (["train", "--data-dir", "a-file/sub"], "--data-dir a-file/sub: a-file is a file"),
    (["train", "--resume", "nowhere"], "--resume nowhere: no such folder"),
    (["train", "--resume", "a-file"], "--resume a-file is a file"),
    (["train", "--resume", "runs/no-checkpoint"], "--resume runs/no-checkpoint: no last.npz there"),
    (["train", "--resume", "runs/done", "--epochs", "5"], "--epochs cannot be combined with --resume"),
    (["train", "--resume", "runs/done", "--preset", "quick"], "--preset cannot be combined with --resume"),
    (["train", "--resume", "runs/done", "--data-dir", "a-file"], "--data-dir a-file is a file"),
    (["train", "--resume", "garbage-run"], "garbage-run/last.npz is not a readable vae checkpoint"),
    (["train", "--resume", "runs/done"], "meta field 'config' is missing"),
]


@pytest.mark.parametrize(("args", "expected"), BAD, ids=[" ".join(a) or "(nothing)" for a, _ in BAD])
def test_bad_command_line_is_one_line_and_writes_nothing(sandbox, capsys, args, expected):
    before = snapshot(sandbox)
    code, out, err = run_main(args, capsys)
    assert code not in (0, None)
    assert err.count("\n") == 1 and err.startswith("vae: error: "), err
    assert expected in err, err
    assert "Traceback" not in err and out == ""
    assert snapshot(sandbox) == before


@pytest.mark.skipif(IS_ROOT, reason="root may write into read-only folders: permissions cannot be tested")
@pytest.mark.parametrize("option", ["--runs-dir", "--data-dir"])
def test_unwritable_folder_is_refused(sandbox, capsys, option):
    locked = sandbox / "locked"
    locked.mkdir(mode=0o555)
    try:
        code, _, err = run_main(["train", option, "locked/sub"], capsys)
    finally:
        locked.chmod(0o755)
    assert code == 2 and err.count("\n") == 1 and f"{option} locked/sub: locked is not writable" in err


@pytest.mark.parametrize("option", ["--runs-dir", "--data-dir"])
def test_unwritable_folder_is_refused_even_for_root(sandbox, capsys, monkeypatch, option):
    """The same check with the permission answer simulated (root passes every os.access test)."""
    import numpy_vae.cli.train as train_command
    locked = sandbox / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(train_command.os, "access",
                        lambda path, mode: False if Path(path).resolve() == locked else real_access(path, mode))
    before = snapshot(sandbox)
    code, _, err = run_main(["train", option, "locked/sub"], capsys)
    assert code == 2 and err.count("\n") == 1 and f"{option} locked/sub: locked is not writable" in err
    assert snapshot(sandbox) == before


def test_help_is_still_whole(capsys):
    code, out, err = run_main(["train", "--help"], capsys)
    assert code == 0 and err == ""
    assert out.startswith("usage: vae train") and "--preset {burda,burda2,conv,default,mlp,mlp-400,mlp-bn,mse,quick,linear-W-L}" in out and "--resume RUN_DIR" in out
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0 and "train" in out and out.count("\n") > 3


@pytest.mark.parametrize(("args", "code", "expected"), [
    (["train", "--batch-size", "-3"], 2, "vae: error: argument --batch-size: expected a positive integer, got -3"),
    (["train", "--preset", "huge"], 2, "vae: error: argument --preset: invalid choice: 'huge'"),
    (["train", "--runs-dir", "a-file"], 2, "vae: error: --runs-dir a-file: a-file is a file"),
    (["train", "--resume", "garbage-run"], 1, "vae: error: checkpoint garbage-run/last.npz is not a readable"),
])
def test_from_the_outside(sandbox, args, code, expected):
    before = snapshot(sandbox)
    proc = subprocess.run([sys.executable, "-m", "numpy_vae.cli", *args], cwd=sandbox, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == code
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(expected), proc.stderr
    assert proc.stdout == "" and snapshot(sandbox) == before


@pytest.mark.parametrize(("args", "expected"), [
    (["--preset", "quick"], {"epochs": 1, "train_limit": 5000, "batch_size": 128}),
    (["--preset", "quick", "--epochs", "3"], {"epochs": 3, "train_limit": 5000}),
    (["--preset", "default"], {"epochs": 10, "train_limit": None}),
    (["--seed", "0", "--lr", "0.01"], {"seed": 0, "lr": 0.01, "epochs": 10}),
    (["--preset", "mlp-400"], {"arch": "mlp", "hidden": (400,), "latent": 20}),
    (["--preset", "linear-128-16"], {"arch": "mlp", "hidden": (128,), "latent": 16}),
    (["--preset", "linear-32-4", "--latent", "3"], {"hidden": (32,), "latent": 3}),
    (["--preset", "conv"], {"arch": "conv", "latent": 20}),
])
def test_presets_and_explicit_options(sandbox, capsys, monkeypatch, args, expected):
    import numpy_vae.report as report
    import numpy_vae.training as training
    seen = {}
    monkeypatch.setattr(training, "train", lambda config, **kw: seen.setdefault("config", config) and Path("runs/x"))
    monkeypatch.setattr(report, "write_report", lambda run_dir, **kw: seen.setdefault("reported", run_dir))
    assert run_main(["train", *args], capsys)[0] == 0
    assert seen["reported"] == Path("runs/x")                  # the command reports what the loop trained
    assert {k: getattr(seen["config"], k) for k in expected} == expected
    assert seen["config"].data_dir == "data"


def test_resume_passes_only_data_dir_on(sandbox, capsys, monkeypatch):
    import numpy_vae.report as report
    import numpy_vae.training as training
    seen = {}
    monkeypatch.setattr(training, "train", lambda config, **kw: seen.update(config=config, **kw) or kw["resume"])
    monkeypatch.setattr(report, "write_report", lambda run_dir, **kw: seen.setdefault("reported", run_dir))
    (sandbox / "elsewhere").mkdir()
    assert run_main(["train", "--resume", "runs/done", "--data-dir", "elsewhere", "--no-figures"], capsys)[0] == 0
    assert seen["config"] is None and seen["resume"] == Path("runs/done") and seen["data_dir"] == "elsewhere"
    assert "reported" not in seen                              # --no-figures: no report

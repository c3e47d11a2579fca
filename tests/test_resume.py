"""Crash-safe training: kill -9 mid-epoch, resume, and get the very run that was never interrupted.

The kill-and-resume test runs ``vae train`` (``numpy_vae.cli.main``) in a
subprocess whose backend's ``train_step`` SIGKILLs its own process at an exact
global step in the middle of epoch 2 (after the epoch-1 checkpoint exists; no
timing involved), resumes with ``--resume`` in a second subprocess, and compares
with the same configuration trained without interruption: parameters, optimizer
state and generator states bit for bit, metrics rows equal but for the timings.
Then: non-finite losses, gradients and parameters stop the run naming the
step and keep the last good checkpoint; a resume refuses checkpoints it cannot
continue exactly; atomic writes survive a SIGKILL in the middle of a write.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from numpy_vae.backends import NumpyBackend
from numpy_vae.training.checkpoint import CheckpointError, check_params, load_checkpoint, save_checkpoint
from numpy_vae.cli import main
from numpy_vae.config import ConfigError, TrainConfig
from numpy_vae.training import TrainingError, train

REPO = Path(__file__).resolve().parents[1]
# 50 steps per epoch (1600 images, batch 32), a small model.  The killed run dies inside its
# 75th train_step (epoch 2, batch 25 of 50), right after that step's update: last.npz then holds
# epoch 1 and the process memory holds 24 more steps that are lost.
KILL_CONFIG = ["--epochs", "2", "--train-limit", "1600", "--batch-size", "32", "--hidden", "64,32", "--latent", "4",
               "--seed", "7", "--lr-schedule", "cosine", "--clip-grad-norm", "50"]
STEPS_PER_EPOCH = 50
KILL_AT_STEP = STEPS_PER_EPOCH + 25
TINY = dict(epochs=2, train_limit=256, batch_size=64, hidden=(16,), latent=2, seed=3)

# The killed child: `vae train ARGS...` with the backend's train_step wrapped to SIGKILL the process
# (no cleanup, no atexit, no flush: as kill -9 from outside) once it has run step KILL_AT.
# argv: -c BACKEND KILL_AT ARGS...
KILL_DRIVER = textwrap.dedent("""
    import os, signal, sys
    backend, kill_at, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if backend == "numpy":
        from numpy_vae.backends import NumpyBackend as Backend
    else:
        from torch_vae.backend import TorchBackend as Backend
    from numpy_vae.cli import main

    original, calls = Backend.train_step, [0]

    def train_step(self, x, eps, masks=None):
        result = original(self, x, eps, masks)
        calls[0] += 1
        if calls[0] == kill_at:
            os.write(2, f"SIGKILL at step {calls[0]}\\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    Backend.train_step = train_step
    sys.exit(main(argv))
""")


@pytest.fixture(scope="module")
def mnist(real_mnist_dir) -> Path:
    """The verified MNIST files (conftest.py fetches them once; no skip: CI must run these tests)."""
    return real_mnist_dir


BACKENDS = ["numpy", "torch"]          # torch is a dependency: a missing torch backend fails, never skips


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "numpy_vae.cli", "train", *args]


def child_env() -> dict:
    # One thread each: results do not depend on how a BLAS splits its work, and two runs
    # side by side do not fight over the two cores.
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1"}


def kill_at_step(backend: str, step: int, args: list[str], timeout: float = 300.0) -> str:
    """Run ``vae train ARGS`` in a child that SIGKILLs itself inside its ``step``-th train_step; its stderr."""
    proc = subprocess.run([sys.executable, "-c", KILL_DRIVER, backend, str(step), "train", *args],
                          env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)
    assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}, not SIGKILL; stderr: {proc.stderr[-2000:]}"
    assert proc.stderr.endswith(f"SIGKILL at step {step}\n"), proc.stderr[-2000:]
    return proc.stderr


def strip_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def metrics_csv_without_seconds(path: Path) -> list[str]:
    return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]


# The streams a run draws beyond shuffle and eps: Dropout masks, dynamic binarization; and BatchNorm's
# running statistics (buffers in the checkpoint), a warm-up of beta.  Numpy backend only (the torch one
# reads the same streams through the same loop).
STOCHASTIC = ["--batchnorm", "--dropout", "0.2", "--binarize", "dynamic", "--kl-warmup-epochs", "2"]


@pytest.mark.parametrize("backend,extra", [
    pytest.param("numpy", [], id="numpy"),
    pytest.param("torch", [], id="torch"),
    pytest.param("numpy", STOCHASTIC, id="numpy-bn-dropout-dynamic-warmup"),
])
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(backend, extra, mnist, tmp_path):
    common = [*KILL_CONFIG, *extra, "--backend", backend, "--device", "cpu", "--data-dir", str(mnist),
              "--runs-dir", str(tmp_path), "--no-figures"]
    t0 = time.monotonic()
    reference = subprocess.Popen(cli(*common, "--name", "reference", "--no-progress"), env=child_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_at_step(backend, KILL_AT_STEP, [*common, "--name", "killed", "--no-progress"])
    epoch, done, total = 2, KILL_AT_STEP - STEPS_PER_EPOCH, STEPS_PER_EPOCH
    killed = tmp_path / "killed"
    _, _, meta = load_checkpoint(killed / "last.npz")
    assert meta["epoch"] == epoch - 1 and meta["step"] == (epoch - 1) * total, "the kill was not in epoch 2"
    assert len((killed / "metrics.csv").read_text().splitlines()) == 2          # header + epoch 1 only

    resumed = subprocess.run(cli("--resume", str(killed), "--no-progress", "--no-figures"), env=child_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {killed} after epoch {epoch - 1}" in resumed.stdout
    _, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err.decode()
    print(f"\n{backend}: killed at epoch {epoch}, step {done}/{total}; kill+resume+reference "
          f"{time.monotonic() - t0:.1f} s")

    p_ref, o_ref, m_ref = load_checkpoint(tmp_path / "reference" / "last.npz")
    p_res, o_res, m_res = load_checkpoint(killed / "last.npz")
    assert m_res["epoch"] == m_ref["epoch"] == 2 and m_res["step"] == m_ref["step"] == 2 * total
    assert p_res.keys() == p_ref.keys() and o_res.keys() == o_ref.keys()
    for name in p_ref:
        assert p_res[name].dtype == p_ref[name].dtype and np.array_equal(p_res[name], p_ref[name]), name
    for key in o_ref:
        assert np.array_equal(o_res[key], o_ref[key]), key
    assert m_res["rng"] == m_ref["rng"]
    assert strip_seconds(m_res["metrics"]) == strip_seconds(m_ref["metrics"])
    assert metrics_csv_without_seconds(killed / "metrics.csv") == \
        metrics_csv_without_seconds(tmp_path / "reference" / "metrics.csv")
    best_ref, _, _ = load_checkpoint(tmp_path / "reference" / "best.npz")
    best_res, _, _ = load_checkpoint(killed / "best.npz")
    assert all(np.array_equal(best_res[k], best_ref[k]) for k in best_ref)
    assert not list(killed.glob(".*.tmp"))


# ------------------------------------------------------------ non-finite
def tiny_config(mnist: Path, tmp_path: Path, **changes) -> TrainConfig:
    return TrainConfig(**{**TINY, "data_dir": str(mnist), "runs_dir": str(tmp_path), "name": "run", **changes})


def poison_step(monkeypatch, at_step: int, what: str) -> None:
    """Make the NumPy backend's ``at_step``-th train_step (1-based) meet a NaN/inf of kind ``what``."""
    original, calls = NumpyBackend.train_step, {"n": 0}

    def train_step(self, x, eps, masks=None):
        calls["n"] += 1
        if calls["n"] == at_step and what == "loss":
            self.model.flat[0] = np.nan                   # the forward pass then computes a NaN loss
        if calls["n"] == at_step and what == "gradient":
            backward = self.model.backward

            def poisoned_backward(*args, **kwargs):
                out = backward(*args, **kwargs)
                self.model.grad_flat[-1] = np.inf
                return out
            self.model.backward = poisoned_backward
        result = original(self, x, eps, masks)
        if calls["n"] == at_step and what == "parameter":
            self.model.flat[-1] = np.inf                   # as if the update overflowed
        return result

    monkeypatch.setattr(NumpyBackend, "train_step", train_step)


@pytest.mark.parametrize(("what", "at_step", "message"), [
    ("loss", 6, r"at epoch 2, step 6 \(batch 2 of 4\): loss is nan"),
    ("gradient", 7, r"at epoch 2, step 7 \(batch 3 of 4\): gradient norm is inf"),
    ("parameter", 8, r"after epoch 2, step 8: parameter decoder\.\d+\.bias became NaN or infinite"),
])
def test_non_finite_stops_naming_the_step_and_keeps_the_last_good_checkpoint(mnist, tmp_path, monkeypatch,
                                                                              what, at_step, message):
    poison_step(monkeypatch, at_step, what)
    config = tiny_config(mnist, tmp_path)
    with pytest.raises(TrainingError, match=message) as info:
        train(config, progress=False, log=lambda *a: None)
    assert "last good checkpoint" in str(info.value) and "after epoch 1" in str(info.value)
    params, _, meta = load_checkpoint(tmp_path / "run" / "last.npz")
    check_params(params, NumpyBackend(config.model_config()).param_shapes, "last.npz")     # finite, right shapes
    assert meta["epoch"] == 1 and meta["step"] == 4
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 2            # header + epoch 1


def test_non_finite_in_the_cli_is_one_line_and_exit_1(mnist, tmp_path, monkeypatch, capsys):
    poison_step(monkeypatch, 2, "loss")
    rc = main(["train", "--epochs", "2", "--train-limit", "256", "--batch-size", "64", "--hidden", "16", "--latent",
               "2", "--data-dir", str(mnist), "--runs-dir", str(tmp_path), "--name", "run", "--no-progress",
               "--no-figures"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("vae: error: training stopped at epoch 1, step 2")
    assert "No checkpoint was written" in err and not (tmp_path / "run" / "last.npz").exists()


def test_a_learning_rate_that_explodes_ends_in_one_line(mnist, tmp_path):
    """No monkeypatching: --lr 1e6 overflows for real; no RuntimeWarnings, one line, exit 1."""
    proc = subprocess.run(cli("--lr", "1e6", "--epochs", "2", "--train-limit", "512", "--batch-size", "64",
                              "--hidden", "16", "--latent", "2", "--data-dir", str(mnist), "--runs-dir", str(tmp_path),
                              "--name", "run", "--no-progress", "--no-figures"),
                          env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert re.match(r"vae: error: training stopped at epoch 1, step \d+ \(batch \d+ of 8\): "
                    r"(loss is nan|loss is inf|gradient norm is inf|gradient norm is nan)", proc.stderr), proc.stderr


# ---------------------------------------------------- resume refuses misfits
@pytest.fixture(scope="module")
def finished_run(mnist, tmp_path_factory) -> Path:
    """A tiny run stopped after epoch 1 of 2 (to be copied and tampered with)."""
    root = tmp_path_factory.mktemp("runs")
    config = TrainConfig(**{**TINY, "epochs": 1, "data_dir": str(mnist), "runs_dir": str(root), "name": "one"})
    run = train(config, progress=False, log=lambda *a: None)
    # Re-save as epoch 1 of 2, so that a resume has an epoch left to do.
    params, optim, meta = load_checkpoint(run / "last.npz")
    meta["config"]["epochs"] = 2
    save_checkpoint(run / "last.npz", params, optim, meta)
    (run / "config.json").write_text(json.dumps(meta["config"], indent=2))
    return run


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def tamper(run: Path, params=None, optim=None, meta=None) -> None:
    p, o, m = load_checkpoint(run / "last.npz")
    save_checkpoint(run / "last.npz", params(p) if params else p, optim(o) if optim else o, meta(m) if meta else m)


def _drop(d, key):
    d = dict(d)
    del d[key]
    return d


@pytest.mark.parametrize(("change", "message"), [
    (dict(meta=lambda m: _drop(m, "rng")), r"meta field 'rng'"),
    (dict(meta=lambda m: _drop(m, "step")), r"meta field 'step'"),
    (dict(meta=lambda m: {**m, "metrics": []}), r"meta field 'metrics'"),
    (dict(meta=lambda m: {**m, "rng": {**m["rng"], "noise": {"bit_generator": "PCG64", "state": "x"}}}),
     r"rng\.noise"),
    (dict(meta=lambda m: {**m, "backend": "torch"}), r"written by backend 'torch'"),
    (dict(meta=lambda m: {**m, "config": {**m["config"], "epochs": "two"}}), r"saved config cannot run"),
    (dict(meta=lambda m: {**m, "step": m["step"] + 1}), r"does not fit 4 steps per epoch"),
    (dict(optim=lambda o: {**o, "exp_avg": o["exp_avg"][:-1]}), r"optimizer state exp_avg has shape"),
    (dict(optim=lambda o: _drop(o, "exp_avg_sq")), r"missing \['exp_avg_sq'\]"),
    # issue 22.3: Adam state that disagrees with the checkpoint or cannot be Adam's
    (dict(optim=lambda o: {**o, "step": o["step"] + 1}), r"last\.npz: optimizer state step is 5, the checkpoint's step is 4"),
    (dict(optim=lambda o: {**o, "step": o["step"] + 1000}), r"optimizer state step is 1004, the checkpoint's step is 4"),
    (dict(optim=lambda o: {**o, "exp_avg_sq": np.where(np.arange(o["exp_avg_sq"].size) == 3, -1e-6,
                                                       o["exp_avg_sq"]).astype(o["exp_avg_sq"].dtype)}),
     r"last\.npz: optimizer state exp_avg_sq has negative entries"),
    (dict(optim=lambda o: {**o, "exp_avg": np.where(np.arange(o["exp_avg"].size) == 0, np.nan,
                                                    o["exp_avg"]).astype(o["exp_avg"].dtype)}),
     r"optimizer state exp_avg contains NaN"),
    (dict(optim=lambda o: {**o, "exp_avg_sq": np.full_like(o["exp_avg_sq"], np.inf)}),
     r"optimizer state exp_avg_sq contains NaN or infinite"),
    (dict(params=lambda p: {**p, "fc_mu.weight": p["fc_mu.weight"][:, :-1]}), r"parameter fc_mu\.weight has shape"),
    (dict(params=lambda p: {k: v.astype(np.float64) for k, v in p.items()}), r"has dtype float64, the run uses float32"),
])
def test_resume_refuses_a_checkpoint_it_cannot_continue_exactly(finished_run, tmp_path, change, message):
    run = copy_run(finished_run, tmp_path / "run")
    tamper(run, **change)
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    with pytest.raises(CheckpointError, match=message):
        train(None, resume=run, progress=False, log=lambda *a: None)
    assert {f.name: f.read_bytes() for f in run.iterdir()} == before          # nothing written


def test_a_tampered_adam_step_is_one_line_naming_the_field_and_the_file(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    tamper(run, optim=lambda o: {**o, "step": o["step"] + 1})
    assert main(["train", "--resume", str(run), "--no-progress", "--no-figures"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run / 'last.npz'}: optimizer state step is 5" in err, err


@pytest.mark.parametrize("kernels", ["fast", "reference"])
def test_a_resume_keeps_the_kernels_and_equals_the_uninterrupted_run(mnist, tmp_path, kernels):
    """--kernels is recorded in config.json and kept by --resume; with either, 1 + 1 epochs == 2 epochs, bitwise."""
    base = {**TINY, "data_dir": str(mnist), "runs_dir": str(tmp_path), "kernels": kernels}
    whole = train(TrainConfig(**{**base, "name": "whole"}), progress=False, log=lambda *a: None)
    half = train(TrainConfig(**{**base, "epochs": 1, "name": "half"}), progress=False, log=lambda *a: None)
    tamper(half, meta=lambda m: {**m, "config": {**m["config"], "epochs": 2}})
    (half / "config.json").write_text(json.dumps({**json.loads((half / "config.json").read_text()), "epochs": 2}))
    assert json.loads((half / "config.json").read_text())["kernels"] == kernels
    train(None, resume=half, progress=False, log=lambda *a: None)
    a, b = load_checkpoint(whole / "last.npz"), load_checkpoint(half / "last.npz")
    assert b[2]["config"]["kernels"] == kernels
    for x, y in zip(a[:2], b[:2]):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def test_resume_refuses_an_edited_config_json(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "lr": 0.01}))
    with pytest.raises(CheckpointError, match=r"config\.json disagrees .*lr: 0\.01 in config\.json, 0\.001 in last\.npz"):
        train(None, resume=run, progress=False, log=lambda *a: None)


def test_resume_accepts_a_config_json_that_predates_a_field(finished_run, tmp_path):
    """A config.json written before a field existed (threads) agrees with a checkpoint holding its default.

    docs/results/ keeps such a pair: its config.json is from before --threads, its last.npz from after.
    """
    run = copy_run(finished_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    assert config["threads"] is None
    del config["threads"]
    (run / "config.json").write_text(json.dumps(config))
    resumed = train(None, resume=run, progress=False, log=lambda *a: None)
    assert load_checkpoint(resumed / "last.npz")[2]["epoch"] == 2


def test_resume_refuses_a_config_json_that_predates_a_field_set_otherwise(finished_run, tmp_path):
    """The same missing field is a disagreement where the checkpoint holds it at another value."""
    run = copy_run(finished_run, tmp_path / "run")
    tamper(run, meta=lambda m: {**m, "config": {**m["config"], "threads": 1}})
    config = json.loads((run / "config.json").read_text())
    del config["threads"]
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json disagrees .*threads: None in config\.json, 1 in last\.npz"):
        train(None, resume=run, progress=False, log=lambda *a: None)


def test_resume_refuses_a_config_json_that_is_no_configuration(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    (run / "config.json").write_text(json.dumps([1, 2]))
    with pytest.raises(CheckpointError, match=r"config\.json is not a run configuration.*delete config\.json"):
        train(None, resume=run, progress=False, log=lambda *a: None)


def test_resume_cleans_up_after_a_kill_between_writes(finished_run, tmp_path):
    """A kill after metrics.csv was written but before last.npz: the extra row and temporaries are repaired."""
    run = copy_run(finished_run, tmp_path / "run")
    with open(run / "metrics.csv", "a") as f:
        f.write("2,1,1,1,1,1,1,0.001,0.5\n")                 # a row whose epoch never reached last.npz
    (run / ".last.npz.k9x2.tmp").write_bytes(b"half a checkpoint")
    logs = []
    train(None, resume=run, progress=False, log=logs.append)
    assert not (run / ".last.npz.k9x2.tmp").exists() and any("interrupted write" in line for line in logs)
    _, _, meta = load_checkpoint(run / "last.npz")
    lines = (run / "metrics.csv").read_text().splitlines()
    assert meta["epoch"] == 2 and len(lines) == 3 and not lines[2].startswith("2,1,1,1")


def test_resume_through_the_latest_link_keeps_it_pointing_at_the_run(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    (tmp_path / "latest").symlink_to("run")
    train(None, resume=tmp_path / "latest", progress=False, log=lambda *a: None)
    assert os.readlink(tmp_path / "latest") == "run"
    assert load_checkpoint(run / "last.npz")[2]["epoch"] == 2


def test_a_run_folder_being_written_is_not_resumed_twice(finished_run, tmp_path):
    """While one process trains into a folder (it holds a flock on it), a second resume is refused."""
    fcntl = pytest.importorskip("fcntl")
    run = copy_run(finished_run, tmp_path / "run")
    fd = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="being written by another vae process"):
            train(None, resume=run, progress=False, log=lambda *a: None)
    finally:
        os.close(fd)
    train(None, resume=run, progress=False, log=lambda *a: None)       # released: it goes on
    assert load_checkpoint(run / "last.npz")[2]["epoch"] == 2


# ------------------------------------------------------- atomic writes
def test_atomic_write_survives_sigkill_mid_write(tmp_path):
    target = tmp_path / "last.npz"
    target.write_bytes(b"the previous checkpoint")
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from numpy_vae.training.checkpoint import atomic_write
        def write(f):
            f.write(b"half of the new one")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        atomic_write(Path({str(target)!r}), write)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=child_env(), timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"the previous checkpoint"
    leftovers = list(tmp_path.glob(".last.npz.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].read_bytes() == b"half of the new one"


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    from numpy_vae.training.checkpoint import atomic_write
    target = tmp_path / "metrics.csv"

    def failing(f):
        f.write(b"partial")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, failing)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_gives_the_usual_permissions(tmp_path):
    """Not mkstemp's owner-only 0600: run folders stay readable as files written with open() would be."""
    from numpy_vae.training.checkpoint import atomic_write
    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write(tmp_path / "config.json", lambda f: f.write(b"{}"))
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o666 & ~mask

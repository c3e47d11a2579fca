"""Checkpoints cross backends: trained by one, evaluated and resumed by the other (real MNIST).

1. A short real training run (first 512 training images, 1 epoch) with each
   backend writes the same run folder (files, metrics.csv columns, figures);
   each run's best.npz, loaded by *both* backends, evaluates through
   ``numpy_vae.training.evaluate`` on the 10,000 test images to the same
   negative ELBO within float32 rounding, which is also the one the run wrote
   to metrics.csv.
2. A run stopped after epoch 2 and resumed for epochs 3 and 4 on the *other*
   backend (`vae train --resume R --backend OTHER`: parameters and Adam moments in
   the shared flat layout) ends where the same backend, uninterrupted, ends: every
   parameter and moment within the parity suite's trajectory tolerance (float64
   1e-9, float32 1e-3); then a fifth epoch goes back to the first backend.

Measured: both runs' best.npz evaluate to 527.2370666503906 (NumPy) and
527.2370544433594 (torch) nats whichever backend trained them: 2.3e-8 apart, the
float32 rounding of the per-batch means; metrics.csv holds the training backend's
own number.
"""
from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from numpy_vae.training.checkpoint import load_checkpoint, save_checkpoint
from numpy_vae.data import load_mnist
from numpy_vae.backends import make_backend
from numpy_vae.config import TrainConfig
from numpy_vae.report import write_report
from numpy_vae.training import evaluate, train
from numpy_vae.cli import main
from parity_helpers import assert_parity
from torch_vae.parity import TRAJECTORY_TOL

OTHER = {"numpy": "torch", "torch": "numpy"}
FLOAT32_ROUNDING = 1e-6   # relative: means of ~500-nat float32 per-batch means over 10 batches

# Test negative ELBO (nats per image, ``evaluate`` on the 10,000 test images with the eval noise of
# seed 3) of _config's model.  Measured on a 2-core AMD EPYC (NumPy 2.4.6 + OpenBLAS 0.3.31, torch 2.14.1 on
# the CPU) with the same calls as the test below: make_backend(config) then evaluate, before any training and after
# the run's single epoch (4 Adam steps on 512 images):
#   untrained, init seed 3:          546.6077 (numpy), 546.6077 (torch); init seeds 0-5: 544.12 - 546.61
#   trained, best.npz of either run: 527.23707 (numpy evaluates it), 527.23705 / 527.23706 (torch)
# So the 4 steps gain 19.4 nats.  The bound: within 0.05 nats (1e-4 relative) of 527.237, room for
# another BLAS's float32 rounding, 17 nats short of every untrained init measured; and at least
# 15 nats better than the same model untrained, which the test measures again.
TRAINED_LOSS, TRAINED_MARGIN = 527.237, 0.05
MIN_GAIN = 15.0


def _quiet(*args, **kwargs):
    pass


def _config(tmp_path, real_mnist_dir, backend, **kw) -> TrainConfig:
    base = dict(backend=backend, epochs=1, batch_size=128, train_limit=512, latent=10, hidden=(128, 64),
                seed=3, data_dir=str(real_mnist_dir), runs_dir=str(tmp_path), name=f"{backend}-run")
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def runs(tmp_path_factory, real_mnist_dir) -> dict:
    """One short real run per backend, same config and seed, figures and report included: name -> (config, dir)."""
    tmp = tmp_path_factory.mktemp("runs")
    out = {}
    for backend in ("numpy", "torch"):
        config = _config(tmp, real_mnist_dir, backend)
        run = train(config, progress=False, log=_quiet)
        write_report(run, progress=False, log=_quiet)
        out[backend] = (config, run)
    return out


def test_both_backends_write_the_same_run_folder(runs):
    (_, numpy_dir), (_, torch_dir) = runs["numpy"], runs["torch"]
    files = sorted(p.name for p in numpy_dir.iterdir())
    assert {"config.json", "metrics.csv", "last.npz", "best.npz", "reconstructions.png", "samples.png"} <= set(files)
    assert sorted(p.name for p in torch_dir.iterdir()) == files
    rows = {}
    for backend, (_, run_dir) in runs.items():
        with open(run_dir / "metrics.csv") as f:
            reader = csv.DictReader(f)
            rows[backend] = (reader.fieldnames, list(reader))
    assert rows["numpy"][0] == rows["torch"][0]
    # Same batches, same noise, same init: the float32 metrics agree to float32 rounding.
    for key in ("train_loss", "train_recon", "test_loss", "test_recon"):
        n, t = float(rows["numpy"][1][-1][key]), float(rows["torch"][1][-1][key])
        assert abs(n - t) <= 1e-5 * abs(t), (key, n, t)
    for key in ("train_kl", "test_kl"):
        n, t = float(rows["numpy"][1][-1][key]), float(rows["torch"][1][-1][key])
        assert abs(n - t) <= 1e-4 * abs(t), (key, n, t)


@pytest.mark.parametrize("trained_by", ["numpy", "torch"])
def test_checkpoint_evaluates_to_the_same_test_elbo_in_both_backends(runs, real_mnist_dir, trained_by):
    config, run_dir = runs[trained_by]
    params, _, meta = load_checkpoint(run_dir / "best.npz")
    assert meta["backend"] == trained_by
    with open(run_dir / "metrics.csv") as f:
        recorded = float(list(csv.DictReader(f))[-1]["test_loss"])
    test_x, _ = load_mnist(real_mnist_dir, "test")
    results, untrained = {}, {}
    for backend in ("numpy", "torch"):
        b = make_backend(dataclasses.replace(config, backend=backend))
        untrained[backend] = evaluate(b, test_x, config.seed, np.float32)["loss"]      # the run's initial model
        b.set_params(params)
        results[backend] = evaluate(b, test_x, config.seed, np.float32)["loss"]
    print(f"trained by {trained_by}: recorded {recorded!r}, evaluated {results}, untrained {untrained}")
    for backend, loss in results.items():
        assert abs(loss - TRAINED_LOSS) <= TRAINED_MARGIN, (backend, loss, TRAINED_LOSS)
        assert untrained[backend] - loss >= MIN_GAIN, (backend, untrained[backend], loss)
    for backend, loss in results.items():
        assert abs(loss - recorded) <= FLOAT32_ROUNDING * recorded, (backend, loss, recorded)
    assert abs(results["numpy"] - results["torch"]) <= FLOAT32_ROUNDING * results["numpy"], results


class _Stop(Exception):
    """Raised by the epoch hook: the run stops there, its last.npz written (as a kill after the commit point)."""


def _stop_after(epoch: int):
    def hook(run_dir, row, backend, config):
        if row["epoch"] == epoch:
            raise _Stop
    return hook


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("first", ["numpy", "torch"])
def test_a_run_continues_on_the_other_backend(tmp_path, real_mnist_dir, first, dtype, capsys):
    """`vae train --resume R --backend OTHER`: 2 epochs on one backend, 2 on the other (Adam state carried
    over) track 4 epochs on the first within the parity suite's trajectory tolerance; config.json and
    metrics.csv say which backend ran each epoch."""
    kw = dict(train_limit=256, batch_size=64, latent=6, hidden=(48, 24), dtype=dtype, epochs=4)
    straight = train(_config(tmp_path, real_mnist_dir, first, name="straight", **kw), progress=False, log=_quiet)
    with pytest.raises(_Stop):
        train(_config(tmp_path, real_mnist_dir, first, name="switched", **kw), progress=False, log=_quiet,
              on_epoch=_stop_after(2))
    switched = tmp_path / "switched"
    assert main(["train", "--resume", str(switched), "--backend", OTHER[first], "--no-progress",
                 "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert f"after epoch 2 (step 8) on {OTHER[first]} (cpu); it ran on {first} (cpu) so far" in out

    p_straight, o_straight, m_straight = load_checkpoint(straight / "last.npz")
    p_switched, o_switched, m_switched = load_checkpoint(switched / "last.npz")
    assert m_switched["backend"] == m_switched["config"]["backend"] == OTHER[first]
    assert json.loads((switched / "config.json").read_text())["backend"] == OTHER[first]
    with open(switched / "metrics.csv") as f:
        assert [row["backend"] for row in csv.DictReader(f)] == [first, first, OTHER[first], OTHER[first]]
    assert int(o_switched["step"]) == int(o_straight["step"]) == 16
    tol = TRAJECTORY_TOL[dtype]
    for name in p_straight:
        assert_parity(name, p_switched[name], p_straight[name], np.dtype(dtype), tol=tol)
    for key in ("exp_avg", "exp_avg_sq"):
        assert_parity(key, o_switched[key], o_straight[key], np.dtype(dtype), tol=tol)
    timeless = [[{k: v for k, v in row.items() if k != "seconds"} for row in rows[:2]]
                for rows in (m_switched["metrics"], m_straight["metrics"])]
    assert timeless[0] == timeless[1]                                     # epochs 1 and 2 are the same epochs
    np.testing.assert_allclose(m_switched["metrics"][3]["test_loss"], m_straight["metrics"][3]["test_loss"],
                               rtol=tol)

    # and back: a fifth epoch on the first backend again, from the other's Adam state
    config = json.loads((switched / "config.json").read_text())
    params, optim, meta = load_checkpoint(switched / "last.npz")
    meta["config"]["epochs"] = config["epochs"] = 5
    save_checkpoint(switched / "last.npz", params, optim, meta)
    (switched / "config.json").write_text(json.dumps(config))
    assert main(["train", "--resume", str(switched), "--backend", first, "--no-progress", "--no-figures"]) == 0
    with open(switched / "metrics.csv") as f:
        assert [row["backend"] for row in csv.DictReader(f)] == [first, first, OTHER[first], OTHER[first], first]
    assert int(load_checkpoint(switched / "last.npz")[1]["step"]) == 20


def test_a_resume_refuses_an_unknown_backend_in_one_line(tmp_path, real_mnist_dir, capsys):
    run = train(_config(tmp_path, real_mnist_dir, "numpy", train_limit=128, batch_size=64, latent=2,
                        hidden=(8,), epochs=2), progress=False, log=_quiet)
    assert main(["train", "--resume", str(run), "--backend", "jax", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vae: error: --backend jax: unknown backend") and err.count("\n") == 1
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 2
    assert "only --backend, --device and --data-dir may be given" in capsys.readouterr().err

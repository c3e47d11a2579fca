"""The training options of the tutorials' models: presets on both backends, the burda schedule, the KL
warm-up, binarization, and the refusals of combinations that cannot run."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from numpy_vae.cli import main
from numpy_vae.config import ConfigError, TrainConfig, validate_config
from numpy_vae.streams import binarize, heldout_binarize_stream
from numpy_vae.training import train
from numpy_vae.training.checkpoint import load_checkpoint
from numpy_vae.training.loop import burda_stage, kl_weight, learning_rate, scored_test_set

# Preset -> (parameters, what its config must hold); the README quotes these parameter counts.
PRESETS = {
    "mlp-bn": (470_804, {"hidden": [256, 128], "latent": 2, "batchnorm": True, "dropout": 0.2}),
    "mse": (437_540, {"hidden": [256, 64], "latent": 10, "likelihood": "gaussian", "likelihood_variance": 0.5}),
    "burda": (425_284, {"hidden": [200, 200], "latent": 50, "activation": "tanh", "binarize": "dynamic",
                        "lr_schedule": "burda", "adam_eps": 1e-4}),
    "burda2": (521_084, {"arch": "burda2", "hidden": [200, 200], "latent": 50, "activation": "tanh",
                         "binarize": "dynamic", "lr_schedule": "burda", "adam_eps": 1e-4}),
    "mlp-400": (652_824, {"hidden": [400], "latent": 20}),
    "linear-64-8": (102_816, {"hidden": [64], "latent": 8}),
}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_trains_from_the_cli(preset, backend, real_mnist_dir, tmp_path, capsys):
    params, fields = PRESETS[preset]
    code = main(["train", "--preset", preset, "--backend", backend, "--epochs", "1", "--train-limit", "200",
                 "--batch-size", "50", "--data-dir", str(real_mnist_dir), "--runs-dir", str(tmp_path),
                 "--name", "run", "--no-progress", "--no-figures"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"({params:,} parameters)" in out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert {k: config[k] for k in fields} == fields
    _, _, meta = load_checkpoint(tmp_path / "run" / "last.npz")
    row = meta["metrics"][0]
    assert math.isfinite(row["test_loss"]) and row["test_loss"] == pytest.approx(row["test_recon"] + row["test_kl"],
                                                                                 rel=1e-5)


def test_burda_schedule_stages_and_rates():
    # stage i lasts 3^i epochs: epoch 0 | 1-3 | 4-12 | 13-39 | ... | 1093-3279
    assert [burda_stage(e) for e in (0, 1, 3, 4, 12, 13, 39, 40, 1092, 1093, 3279)] == \
        [0, 1, 1, 2, 2, 3, 3, 4, 6, 7, 7]
    config = TrainConfig(lr_schedule="burda", lr=1e-3, epochs=3280)
    steps = 3000
    assert learning_rate(config, 0, 3280 * steps, steps) == 1e-3
    assert learning_rate(config, steps, 3280 * steps, steps) == pytest.approx(1e-3 * 10 ** (-1 / 7))
    assert learning_rate(config, 3279 * steps, 3280 * steps, steps) == pytest.approx(1e-4)   # 10^(-7/7)
    assert sum(3 ** i for i in range(8)) == 3280


def test_kl_warmup_rises_linearly_from_zero():
    config = TrainConfig(beta=2.0, kl_warmup_epochs=2)
    assert [kl_weight(config, s, 10) for s in (0, 5, 10, 20, 35)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    assert kl_weight(TrainConfig(beta=0.5), 0, 10) == 0.5


def test_warmup_and_beta_reach_the_metrics(real_mnist_dir, tmp_path):
    run = train(TrainConfig(epochs=2, train_limit=200, batch_size=50, hidden=(16,), latent=2, beta=0.5,
                            kl_warmup_epochs=2, data_dir=str(real_mnist_dir), runs_dir=str(tmp_path), name="w"),
                progress=False, log=lambda *a: None)
    _, _, meta = load_checkpoint(run / "last.npz")
    # the last step of epoch 1 is step 3 of 8 warm-up steps; of epoch 2, step 7
    assert [r["beta"] for r in meta["metrics"]] == [0.5 * 3 / 8, 0.5 * 7 / 8]
    assert "beta" in (run / "metrics.csv").read_text().splitlines()[0].split(",")
    for r in meta["metrics"]:      # the test loss is the negative ELBO, whatever beta trains
        assert r["test_loss"] == pytest.approx(r["test_recon"] + r["test_kl"], rel=1e-5)


def test_binarization_is_bernoulli_and_seeded():
    x = np.random.default_rng(0).random((2000, 784)).astype(np.float32)
    x[:, :10] = 0.0
    x[:, 10:20] = 1.0
    b = binarize(x, np.random.default_rng(1))
    assert b.dtype == x.dtype and set(np.unique(b)) <= {0.0, 1.0}
    assert (b[:, :10] == 0).all() and (b[:, 10:20] == 1).all()
    assert abs(b.mean() - x.mean()) < 2e-3                  # E[b] = x
    assert np.array_equal(b, binarize(x, np.random.default_rng(1)))
    assert not np.array_equal(b, binarize(x, np.random.default_rng(2)))
    # the test set's binarization does not depend on the run
    t1 = scored_test_set(TrainConfig(binarize="dynamic", seed=0), x)
    t2 = scored_test_set(TrainConfig(binarize="static", seed=5), x)
    assert np.array_equal(t1, t2) and np.array_equal(t1, binarize(x, heldout_binarize_stream()))
    assert scored_test_set(TrainConfig(), x) is x


@pytest.mark.parametrize("changes,message", [
    ({"likelihood": "gaussian", "binarize": "dynamic"}, "binarize='dynamic' with likelihood='gaussian'"),
    ({"objective": "iwae", "batchnorm": True}, "objective='iwae' with batchnorm or dropout"),
    ({"adam_eps": 0.0}, "adam_eps=0.0: expected a number in [1e-30, 1e+06]"),
    ({"adam_eps": 1e-160}, "adam_eps=1e-160: expected a number in [1e-30, 1e+06]"),
    ({"lr": 1e200}, "lr=1e+200: expected a number in (0, 1e+06]"),
    ({"kernels": "turbo"}, "kernels='turbo': expected one of ('fast', 'reference')"),
    ({"kernels": "reference", "backend": "torch"}, "kernels='reference' with backend='torch'"),
    ({"objective": "iwae", "beta": 0.5}, "the importance-weighted bound has no KL term to weight"),
    ({"objective": "iwae", "kl_warmup_epochs": 2}, "the importance-weighted bound has no KL term to weight"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"activation": "gelu"}, "activation='gelu'"),
    ({"binarize": "yes"}, "binarize='yes'"),
    ({"arch": "conv", "batchnorm": True}, "the conv architecture has fixed layers"),
])
def test_impossible_combinations_are_refused(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(TrainConfig(**changes))


def test_batchnorm_refuses_a_last_batch_of_one(real_mnist_dir, tmp_path):
    config = TrainConfig(epochs=1, train_limit=101, batch_size=50, hidden=(16,), latent=2, batchnorm=True,
                         data_dir=str(real_mnist_dir), runs_dir=str(tmp_path), name="bn")
    with pytest.raises(ConfigError, match="last batch of 1"):
        train(config, progress=False, log=lambda *a: None)
    assert not (tmp_path / "bn").exists()


@pytest.mark.parametrize("changes,test_set,note", [
    ({"binarize": "dynamic", "activation": "tanh"}, "binarized", "binarized MNIST: one fixed Bernoulli draw"),
    ({"likelihood": "gaussian", "likelihood_variance": 0.5}, "gaussian", "a Gaussian density on grey-level pixels"),
    ({}, "grey", "grey levels used as Bernoulli targets"),
])
def test_evaluate_states_which_test_set_its_numbers_are_for(changes, test_set, note, real_mnist_dir, tmp_path,
                                                           capsys):
    run = train(TrainConfig(epochs=1, train_limit=200, batch_size=50, hidden=(16,), latent=2, **changes,
                            data_dir=str(real_mnist_dir), runs_dir=str(tmp_path), name="r"),
                progress=False, log=lambda *a: None)
    capsys.readouterr()
    assert main(["evaluate", str(run), "-k", "5", "--limit", "20", "--no-progress",
                 "--data-dir", str(real_mnist_dir)]) == 0
    out = capsys.readouterr().out
    assert f"test set: {test_set}" in out and note in out
    record = json.loads((run / "evaluation.json").read_text())
    assert record["test_set"] == test_set and math.isfinite(record["iwae_nll"])
    if test_set == "binarized":     # the same checkpoint on grey levels scores differently
        assert main(["evaluate", str(run), "-k", "5", "--limit", "20", "--no-progress", "--no-save",
                     "--test-set", "grey", "--data-dir", str(real_mnist_dir)]) == 0
        assert "test set: grey" in capsys.readouterr().out


def test_threads_auto_picks_one_thread_on_a_busy_machine(monkeypatch):
    from numpy_vae.training import threads
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0.5: 1.0)
    assert threads.auto_threads(log=lambda *a: None) == 1
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0.5: 0.1)
    assert threads.auto_threads(log=lambda *a: None) is None
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0.5: None)
    assert threads.auto_threads(log=lambda *a: None) is None


def test_busy_cores_reads_the_machine():
    from numpy_vae.training.threads import busy_cores
    busy = busy_cores(0.05)
    assert busy is None or 0.0 <= busy <= (__import__("os").cpu_count() or 1)


def test_threads_are_recorded_and_refused_when_invalid(real_mnist_dir, tmp_path, capsys):
    from cli_helpers import run_main
    code, _, err = run_main(["train", "--threads", "0"], capsys)
    assert code == 2 and "--threads: expected 'auto' or an integer >= 1" in err
    with pytest.raises(ConfigError, match="threads=0"):
        validate_config(TrainConfig(threads=0))
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=None):          # gives this test process its thread pools back afterwards
        assert main(["train", "--threads", "1", "--epochs", "1", "--train-limit", "100", "--batch-size", "50",
                     "--hidden", "8", "--latent", "2", "--data-dir", str(real_mnist_dir), "--runs-dir",
                     str(tmp_path), "--name", "t", "--no-progress", "--no-figures"]) == 0
    assert json.loads((tmp_path / "t" / "config.json").read_text())["threads"] == 1

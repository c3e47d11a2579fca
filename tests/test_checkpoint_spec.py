"""The architecture is stored once and read once: every checkpoint carries its model's spec, and the one
loader (numpy_vae.training.restore.read_saved) rebuilds exactly that model for every command.

One tiny epoch of every preset is trained (100 images); then each way in (numpy_vae.load, torch_vae.load,
the backends of evaluate/report/serve, the resume, `vae evaluate`, `vae parity --checkpoint`, paper-table)
must rebuild the same spec, the same parameter names and the same values, from the checkpoint alone.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import numpy_vae
import torch_vae
from numpy_vae.backends import make_backend
from numpy_vae.config import TrainConfig
from numpy_vae.presets import preset_values
from numpy_vae.report.paper import read_run
from numpy_vae.specs import SPEC_KINDS, SpecError, VAESpec, mlp_spec, spec_from_json
from numpy_vae.training import train
from numpy_vae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from numpy_vae.training.restore import load_backend, read_saved
from numpy_vae.training.run_folder import read_resume_state

from cli_helpers import run_main

PRESETS = ["mlp", "mlp-400", "mlp-bn", "mse", "burda", "conv", "linear-16-3"]
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


@pytest.fixture(scope="module")
def runs(real_mnist_dir, tmp_path_factory) -> dict[str, tuple[Path, VAESpec]]:
    """preset -> (its run folder after one epoch on 100 images, the spec it trained)."""
    root, out = tmp_path_factory.mktemp("preset_runs"), {}
    for preset in PRESETS:
        config = TrainConfig(**{**preset_values(preset), "epochs": 1, "train_limit": 100, "batch_size": 50,
                                "data_dir": str(real_mnist_dir), "runs_dir": str(root), "name": preset})
        out[preset] = (train(config, progress=False, log=lambda *a: None), config.spec())
    return out


def _same_state(state: dict, params: dict) -> None:
    assert list(state) == list(params)
    for name, value in params.items():
        got = state[name].detach().cpu().numpy() if isinstance(state[name], torch.Tensor) else state[name]
        assert got.dtype == value.dtype and np.array_equal(got, value), name


@pytest.mark.parametrize("preset", PRESETS)
def test_every_loader_rebuilds_the_trained_model(preset, runs):
    run, spec = runs[preset]
    params, _, meta = load_checkpoint(run / "last.npz")
    assert meta["spec"] == spec.to_json() and meta["spec"]["kind"] == "vae"
    saved = read_saved(run)                                                # a run folder means its last.npz
    assert saved.spec == spec and saved.spec_source == "checkpoint"
    _same_state(saved.params, params)

    model = numpy_vae.load(run / "last.npz")                             # the Python APIs
    assert model.spec == spec and not model.training
    _same_state(model.state_dict(), params)
    module = torch_vae.load(run / "last.npz")
    assert module.spec == spec and not module.training
    _same_state(module.state_dict(), params)

    for backend in ("numpy", "torch"):                                    # evaluate, report, serve, sweep report
        loaded, config, _ = load_backend(run / "last.npz", backend=backend)
        assert loaded.spec == spec and config.backend == backend
        _same_state(loaded.get_params(), params)

    config, _, _, _ = read_resume_state(run, None)                        # train --resume
    resumed = make_backend(config)
    assert resumed.spec == spec and resumed.state_shapes == spec.state_shapes()

    assert read_run(run).name == preset                                  # paper-table reads it through the loader


@pytest.mark.parametrize("preset", ["burda", "conv", "mlp-bn"])
def test_evaluate_and_parity_print_the_spec_they_built(preset, runs, real_mnist_dir, tmp_path, capsys):
    run, spec = runs[preset]
    code, out, err = run_main(["evaluate", str(run), "-k", "2", "--limit", "2", "--no-save", "--no-progress",
                               "--data-dir", str(real_mnist_dir)], capsys)
    assert code == 0, err
    assert f"model (as the checkpoint stores it) {spec.summary()}\n" in out
    code, out, err = run_main(["parity", "--checkpoint", str(run / "last.npz"), "--dtype", "float64", "--device",
                               "cpu", "--steps", "0", "--batch-size", "4", "--data-dir", str(tmp_path)], capsys)
    assert code == 0, err + out
    assert f"model: {spec.summary()}\n" in out


def _without_spec(src: Path, dest: Path) -> Path:
    """A copy of a checkpoint as it was written before checkpoints stored their spec."""
    params, optim, meta = load_checkpoint(src)
    del meta["spec"]
    save_checkpoint(dest, params, optim, meta)
    return dest


@pytest.mark.parametrize("preset", PRESETS)
def test_an_older_checkpoint_gets_its_spec_from_its_configuration(preset, runs, tmp_path):
    run, spec = runs[preset]
    saved = read_saved(_without_spec(run / "last.npz", tmp_path / "old.npz"))
    assert saved.spec == spec and saved.spec_source == "config"
    assert numpy_vae.load(tmp_path / "old.npz").spec == spec


def test_parity_on_the_committed_tanh_checkpoint_builds_the_tanh_model(tmp_path, capsys):
    """The bug: `vae parity --checkpoint` rebuilt the model from arch, latent and hidden only, so the burda
    checkpoint (tanh, written before checkpoints stored specs) was compared as a ReLU model."""
    path = RESULTS / "burda-vae" / "last.npz"
    expected = mlp_spec(hidden=(200, 200), latent=50, activation="tanh")
    assert "spec" not in load_checkpoint(path)[2] and read_saved(path).spec == expected
    code, out, err = run_main(["parity", "--checkpoint", str(path), "--dtype", "float64", "--device", "cpu",
                               "--steps", "0", "--batch-size", "2", "--data-dir", str(tmp_path)], capsys)
    assert code == 0, err + out
    model_line = next(line for line in out.splitlines() if line.startswith("model: "))
    assert model_line == f"model: {expected.summary()}"
    assert "Tanh()" in model_line and "ReLU" not in model_line


def test_a_resume_refuses_a_spec_its_config_does_not_describe(runs, tmp_path):
    run, spec = runs["linear-16-3"]
    edited = tmp_path / "edited"
    edited.mkdir()
    params, optim, meta = load_checkpoint(run / "last.npz")
    meta["spec"] = dataclasses.replace(spec, name="other").to_json()
    save_checkpoint(edited / "last.npz", params, optim, meta)
    with pytest.raises(CheckpointError, match="its model spec .* is not the one its config describes"):
        read_resume_state(edited, None)


def test_spec_json_round_trips_by_kind():
    for spec in (mlp_spec(hidden=(8, 4), latent=2, activation="tanh", batchnorm=True, dropout=0.1),
                 numpy_vae.make_spec("conv", latent=3), mlp_spec(hidden=(5,), latent=2, likelihood="gaussian",
                                                                 likelihood_variance=0.5)):
        text = json.dumps(spec.to_json())
        assert spec_from_json(json.loads(text)) == spec
    legacy = spec.to_json()
    del legacy["kind"]                                         # a spec written before "kind" existed: a VAE
    assert spec_from_json(legacy) == spec
    assert set(SPEC_KINDS) >= {"vae"}
    with pytest.raises(SpecError, match="kind 'ladder' is unknown; known kinds"):
        spec_from_json({**spec.to_json(), "kind": "ladder"})
    with pytest.raises(SpecError, match="expected a JSON object"):
        spec_from_json([1, 2])


def test_a_checkpoint_whose_spec_does_not_fit_its_parameters_is_refused(runs, tmp_path):
    run, spec = runs["linear-16-3"]
    params, optim, meta = load_checkpoint(run / "last.npz")
    meta["spec"] = mlp_spec(hidden=(17,), latent=3).to_json()
    save_checkpoint(tmp_path / "bad.npz", params, optim, meta)
    with pytest.raises(CheckpointError, match=r"encoder.0.weight has shape \(16, 784\), the model expects \(17, 784\)"):
        numpy_vae.load(tmp_path / "bad.npz")
    meta["spec"] = {"kind": "vae", "name": "x"}
    save_checkpoint(tmp_path / "bad.npz", params, optim, meta)
    with pytest.raises(CheckpointError, match="its model spec cannot be built"):
        torch_vae.load(tmp_path / "bad.npz")


def test_a_two_layer_checkpoint_is_read_by_its_kind(real_mnist_dir, tmp_path, capsys):
    """The spec kinds are a table: a burda2 run (kind "hvae") comes back through the same loader."""
    config = TrainConfig(**{**preset_values("burda2"), "epochs": 1, "train_limit": 40, "batch_size": 20,
                            "data_dir": str(real_mnist_dir), "runs_dir": str(tmp_path), "name": "burda2"})
    run = train(config, progress=False, log=lambda *a: None)
    spec = config.spec()
    params, _, meta = load_checkpoint(run / "last.npz")
    assert meta["spec"]["kind"] == "hvae" and spec_from_json(meta["spec"]) == spec
    model = numpy_vae.load(run)
    assert isinstance(model, numpy_vae.HVAE) and model.spec == spec
    _same_state(model.state_dict(), params)
    loaded, _, _ = load_backend(run)
    assert loaded.spec == spec
    _same_state(loaded.get_params(), params)
    assert make_backend(read_resume_state(run, None)[0]).spec == spec
    code, out, err = run_main(["evaluate", str(run), "-k", "2", "--limit", "2", "--no-save", "--no-progress",
                               "--data-dir", str(real_mnist_dir)], capsys)
    assert code == 0, err
    assert f"model (as the checkpoint stores it) {spec.summary()}\n" in out
    module = torch_vae.load(run)                                          # the torch port: TorchHVAE
    assert isinstance(module, torch_vae.TorchHVAE) and module.spec == spec and not module.training
    _same_state(module.state_dict(), params)
    loaded, _, _ = load_backend(run, backend="torch")
    assert loaded.spec == spec
    _same_state(loaded.get_params(), params)


def test_a_stored_spec_of_an_absurd_size_is_refused_before_anything_is_built(runs, tmp_path):
    run, _ = runs["linear-16-3"]
    params, optim, meta = load_checkpoint(run / "last.npz")
    meta["spec"] = mlp_spec(hidden=(100_000, 100_000), latent=3).to_json()
    save_checkpoint(tmp_path / "huge.npz", params, optim, meta)
    with pytest.raises(CheckpointError, match=r"huge\.npz: its model has 20,158,100,790 parameters, more than the"):
        numpy_vae.load(tmp_path / "huge.npz")

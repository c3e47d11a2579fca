"""`vae parity`: the cmp-style report prints a row per parameter and exits 0 when all is within tolerance."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from numpy_vae.cli import main
from numpy_vae.specs import parameter_shapes
from torch_vae.parity import compare, format_table, relative_error


def test_relative_error_definition():
    assert relative_error([3.0, 4.0], [3.0, 4.0]) == 0.0
    assert relative_error([3.0, 4.0 + 1e-3], [3.0, 4.0]) == pytest.approx(1e-3 / 5)
    assert relative_error([0.0], [0.0]) == 0.0
    assert relative_error([1e-300], [0.0]) == float("inf")


def test_compare_columns():
    row = compare("w", np.array([1.0, 2.0 + 1e-12]), torch.tensor([1.0, 2.0], dtype=torch.float64), tol=1e-10)
    assert (row.exact, row.allclose, row.ok) == (False, True, True)
    assert row.max_abs_diff == pytest.approx(1e-12, rel=1e-3)
    same = compare("w", np.array([1.0, 2.0]), np.array([1.0, 2.0]), tol=1e-10)
    assert same.exact and same.rel_err == 0.0
    bad = compare("w", np.array([1.0, 3.0]), np.array([1.0, 2.0]), tol=1e-10)
    assert not bad.allclose and not bad.ok
    assert "FAIL" in format_table("t", [bad])


def test_vae_parity_prints_every_parameter_and_exits_0(capsys, tmp_path):
    code = main(["parity", "--latent", "2", "--hidden", "16,8", "--batch-size", "4", "--steps", "3",
                 "--device", "cpu", "--data-dir", str(tmp_path / "no-mnist")])
    out = capsys.readouterr().out
    assert code == 0, out
    names = list(parameter_shapes((16, 8), 2))
    for section in ("[cpu, float64] forward outputs and gradients", "[cpu, float32] forward outputs and gradients",
                    "[cpu, float64] losses, parameters and Adam moments after 3 steps",
                    "[cpu, float32] losses, parameters and Adam moments after 3 steps"):
        assert section in out
    for name in names:
        assert len(re.findall(rf"^  grad {re.escape(name)} ", out, re.M)) == 2      # float64 and float32
        assert len(re.findall(rf"^  {re.escape(name)} ", out, re.M)) == 2
    rows = re.findall(r"^  (grad \S+|loss per step|adam exp_avg_sq|adam exp_avg|loss|recon|kl|mu|logvar|z|logits|"
                      r"\S+\.\S+)(?: \(rounding-level\))?\s+\S+\s+(yes|no)\s+(yes|no)\s+(\S+)\s+(\S+)\s+(ok|FAIL.*)$",
                      out, re.M)
    # per dtype: 7 outputs, grad x and every gradient; then the per-step losses, every parameter, 2 moments
    assert len(rows) == 2 * (8 + len(names)) + 2 * (1 + len(names) + 2)
    assert all(r[5] == "ok" for r in rows)
    assert all(float(r[4]) < 1e-4 for r in rows)
    assert "synthetic images" in out and "parity: all relative errors within tolerance" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_vae_parity_cuda_without_cuda_is_one_line(capsys):
    assert main(["parity", "--device", "cuda"]) == 1
    assert capsys.readouterr().err.startswith("vae: error: CUDA is not available on this machine")


def test_vae_parity_on_a_checkpoint(tmp_path, capsys):
    from numpy_vae.training.checkpoint import save_checkpoint
    from numpy_vae import build_model
    model = build_model(latent=2, hidden=(8,), seed=5, dtype=np.float64)
    save_checkpoint(tmp_path / "c.npz", model.params, None, {"config": {"latent": 2, "hidden": [8], "beta": 0.5}})
    code = main(["parity", "--checkpoint", str(tmp_path / "c.npz"), "--dtype", "float64", "--device", "cpu",
                 "--steps", "0", "--batch-size", "2", "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "model: mlp: 784 -> Linear(784, 8), ReLU() -> fc_mu, fc_logvar Linear(8, 2)" in out
    assert "beta=0.5" in out and "weights=checkpoint" in out
    assert "Adam steps" not in out and "float32" not in out

"""`vae evaluate --per-image FILE`: each test image's importance-weighted estimate of log p(x), as CSV
(index, log_px, k), for one- and two-stochastic-layer models and either backend; a bad FILE is refused in one
line before any work, and the file is written through a temporary renamed into place (never half-written)."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from cli_helpers import run_main
from numpy_vae.evaluation import iwae
from numpy_vae.evaluation.iwae import Estimate, per_image_csv, write_per_image


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["index", "log_px", "k"]
        return list(reader)


def test_one_layer_per_image_file_holds_each_images_estimate(small_run_latent5, real_mnist_dir, tmp_path, capsys):
    out_file = tmp_path / "per_image.csv"
    code, out, err = run_main(["evaluate", str(small_run_latent5), "-k", "4", "--limit", "6", "--no-save",
                               "--no-progress", "--data-dir", str(real_mnist_dir), "--per-image", str(out_file)],
                              capsys)
    assert code == 0, err
    rows = read_rows(out_file)
    assert [int(r["index"]) for r in rows] == list(range(6)) and {r["k"] for r in rows} == {"4"}
    log_px = np.array([float(r["log_px"]) for r in rows])
    assert np.all(log_px < 0)
    printed = float(out.split("test NLL, IWAE (K = 4)")[1].split("±")[0])
    assert -log_px.mean() == pytest.approx(printed, abs=0.005 + 1e-9)
    assert f"wrote {out_file}" in out
    assert not list(tmp_path.glob(".*.tmp"))


def test_two_layer_per_image_from_both_backends(small_burda2_run, real_mnist_dir, tmp_path, capsys):
    """The estimate through the whole encoder chain, image by image: the same draws, so the two backends agree
    to float32 rounding; the file's mean is the saved evaluation's."""
    burda2_run = tmp_path / "run"
    shutil.copytree(small_burda2_run, burda2_run)
    logs = {}
    for backend in ("numpy", "torch"):
        out_file = tmp_path / f"{backend}.csv"
        code, out, err = run_main(["evaluate", str(burda2_run), "-k", "5", "--limit", "4", "--backend", backend,
                                   "--no-progress", "--data-dir", str(real_mnist_dir), "--per-image", str(out_file)],
                                  capsys)
        assert code == 0, err
        rows = read_rows(out_file)
        assert [int(r["index"]) for r in rows] == [0, 1, 2, 3] and {r["k"] for r in rows} == {"5"}
        logs[backend] = np.array([float(r["log_px"]) for r in rows])
        record = json.loads((burda2_run / "evaluation.json").read_text())
        assert -logs[backend].mean() == pytest.approx(record["iwae_nll"], rel=1e-12)
    np.testing.assert_allclose(logs["numpy"], logs["torch"], rtol=1e-5)


@pytest.mark.parametrize("where, message", [
    ("missing/p.csv", "the folder {d}/missing does not exist; create it"),
    (".", "that is a folder; give a file name, e.g. {d}/per_image.csv"),
])
def test_a_bad_per_image_path_is_one_line_before_any_work(where, message, tmp_path, capsys):
    target = tmp_path / where if where != "." else tmp_path
    code, out, err = run_main(["evaluate", str(tmp_path / "no-such-run"), "--per-image", str(target)], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and err.startswith(f"vae: error: --per-image {target}: ")
    assert message.format(d=tmp_path) in err                  # refused before the missing checkpoint is noticed


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "p.csv"
    path.write_text("old\n")
    est = Estimate(nll=np.array([90.5, 80.25]), neg_elbo=np.zeros(2), neg_elbo_mc=np.zeros(2), k=3, seconds=0.0)

    def fail(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("numpy_vae.training.checkpoint.os.fsync", fail)
    with pytest.raises(OSError, match="No space left"):
        write_per_image(path, est)
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]
    monkeypatch.undo()
    write_per_image(path, est, first_index=10)
    assert path.read_text() == per_image_csv(est, 10) == "index,log_px,k\n10,-90.5,3\n11,-80.25,3\n"


def test_cli_write_failure_is_one_line(small_run_latent5, real_mnist_dir, tmp_path, capsys, monkeypatch):
    def fail(path, estimate, first_index=0):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(iwae, "write_per_image", fail)
    code, out, err = run_main(["evaluate", str(small_run_latent5), "-k", "2", "--limit", "2", "--no-save",
                               "--no-progress", "--data-dir", str(real_mnist_dir), "--per-image",
                               str(tmp_path / "p.csv")], capsys)
    assert code == 2 and err.strip().count("\n") == 0
    assert "could not write it (Permission denied); nothing was written there" in err

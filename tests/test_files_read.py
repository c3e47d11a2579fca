"""Files the commands read, edited or broken, and the messages the commands print (issue 22, item 6).

Each case ended in a traceback or a misleading line before: a malformed evaluation.json in
`vae report`, an evaluations.csv field over the csv module's limit, an invalid saved config
in `vae evaluate` (no checkpoint named), a full disk (no file named, nothing said about the
checkpoint), metrics.csv as a folder (the temporary file named), an MNIST symbolic link loop
("file not found"), `vae parity --help` ("(default: 20) (default: None)"), parity's "after
1 steps", and no `vae --version`.
"""
import csv
import errno
import json
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_main
from numpy_vae.backends import make_backend
from numpy_vae.config import TrainConfig
from numpy_vae.data import MnistDataError, load_mnist
from numpy_vae.report import HISTORY_FILE, read_history, save_evaluation, write_report
from numpy_vae.report.evaluations import read_evaluation
from numpy_vae.training import train
from numpy_vae.training.checkpoint import atomic_write, save_checkpoint

GOOD = {"checkpoint": "last.npz", "epoch": 2, "k": 50, "images": 100, "seed": 0, "iwae_nll": 150.5,
        "iwae_nll_se": 1.5, "neg_elbo": 160.25, "neg_elbo_se": 1.75, "test_set": "grey"}


@pytest.fixture(scope="module")
def tiny_run(real_mnist_dir, tmp_path_factory) -> Path:
    config = TrainConfig(epochs=1, train_limit=200, hidden=(16,), latent=2, data_dir=str(real_mnist_dir),
                         runs_dir=str(tmp_path_factory.mktemp("files_read")), name="tiny")
    return train(config, progress=False, log=lambda *a: None)


# --------------------------------------------------------------------------- evaluation.json in `vae report`
@pytest.mark.parametrize("text, words", [
    ("[1, 2]", "holds a JSON list, not an evaluation"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "iwae_nll"}), "iwae_nll is missing, not a finite number"),
    (json.dumps({**GOOD, "iwae_nll": "150.5"}), 'iwae_nll is "150.5", not a finite number'),
    (json.dumps({**GOOD, "k": 50.5}), "k is 50.5, not an integer"),
    (json.dumps({**GOOD, "images": True}), "images is true, not an integer"),
    (json.dumps(GOOD).replace("150.5", "NaN"), "iwae_nll is NaN, not a finite number"),
    (json.dumps({**GOOD, "checkpoint": 3}), "checkpoint is not a file name"),
    ("[" * 100_000 + "]" * 100_000, "is nested too deeply"),
    ("{", "is not readable JSON"),
])
def test_a_malformed_evaluation_json_is_refused_with_the_reason(tmp_path, text, words):
    path = tmp_path / "evaluation.json"
    path.write_text(text)
    evaluation, why = read_evaluation(path)
    assert evaluation is None and str(path) in why and words in why


def test_a_saved_evaluation_is_read_back(tmp_path):
    out = save_evaluation(tmp_path, GOOD)
    assert read_evaluation(out) == (GOOD, None)


@pytest.mark.parametrize("text", ["[1, 2]", json.dumps({**GOOD, "iwae_nll": "150.5"}), "[" * 100_000])
def test_report_leaves_a_malformed_evaluation_out_with_a_note(tiny_run, tmp_path, text):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "evaluation.json").write_text(text)
    said = []
    write_report(run, progress=False, log=said.append, only={"curves"})
    assert any("left out of the report" in line and "evaluation.json" in line for line in said), said
    assert "importance-weighted NLL" not in (run / "report.html").read_text()


# --------------------------------------------------------------------------- evaluations.csv over the csv field limit
def huge_history(folder: Path) -> Path:
    path = folder / HISTORY_FILE
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["epoch", "k", "images", "iwae_nll", "iwae_nll_se", "checkpoint"])
        writer.writerow([1, 50, 100, 150.5, 1.5, "x" * 131_073])
    return path


def test_an_evaluations_csv_field_over_the_csv_limit_is_one_line_naming_the_file(tmp_path):
    path = huge_history(tmp_path)
    with pytest.raises(ValueError) as caught:
        read_history(tmp_path)
    assert str(caught.value).startswith(f"{path}, line ") and "correct or delete that line" in str(caught.value)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        save_evaluation(tmp_path, GOOD)
    assert not (tmp_path / "evaluation.json").exists()          # nothing half-saved


def test_vae_evaluate_notes_the_broken_history_after_its_results(tiny_run, tmp_path, real_mnist_dir, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    path = huge_history(run)
    code, out, err = run_main(["evaluate", str(run / "last.npz"), "--limit", "20", "-k", "2", "--no-progress",
                               "--data-dir", str(real_mnist_dir)], capsys)
    assert code == 0 and "Traceback" not in err
    assert f"note: could not save the evaluation beside {run / 'last.npz'} ({path}, line " in out
    assert "the numbers above are the result" in out


def test_vae_paper_table_names_the_broken_history(tiny_run, tmp_path, capsys):
    runs = tmp_path / "results"
    shutil.copytree(tiny_run, runs / "tiny")
    path = huge_history(runs / "tiny")
    code, out, err = run_main(["paper-table", str(runs)], capsys)
    assert code != 0 and "Traceback" not in err and str(path) in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- messages
def test_evaluate_on_a_checkpoint_with_an_invalid_saved_config_names_the_checkpoint(tmp_path, capsys):
    config = TrainConfig(latent=3, hidden=(16,))
    saved = {**config.to_json(), "latent": -1}
    path = tmp_path / "edited.npz"
    save_checkpoint(path, make_backend(config).get_params(), None,
                    {"config": saved, "epoch": 1, "metrics": [], "backend": "numpy"})
    code, out, err = run_main(["evaluate", str(path), "--limit", "2"], capsys)
    assert code == 1 and err.startswith(f"vae: error: checkpoint {path}: its saved configuration is invalid "
                                        f"(latent=-1: expected an integer >= 1)")


@pytest.mark.parametrize("make_dir", [False, True])
def test_a_failed_atomic_write_names_the_file_not_the_temporary_one_and_keeps_the_old(tmp_path, make_dir):
    path = tmp_path / "metrics.csv"
    if make_dir:
        path.mkdir()
        write = lambda f: f.write(b"epoch\n1\n")              # noqa: E731
    else:
        path.write_bytes(b"old")

        def write(f):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError) as caught:
        atomic_write(path, write)
    assert caught.value.filename == str(path) and caught.value.errno == (errno.EISDIR if make_dir else errno.ENOSPC)
    assert os.listdir(tmp_path) == ["metrics.csv"]                 # no temporary file left
    assert path.is_dir() if make_dir else path.read_bytes() == b"old"


def test_a_full_disk_during_training_names_the_file_and_says_the_checkpoint_is_kept(tmp_path, real_mnist_dir,
                                                                                    capsys, monkeypatch):
    """The disk fills up once the first checkpoint is written: every write of a file fails from then on."""
    run = tmp_path / "runs" / "full"
    fsync = os.fsync

    def full_after_a_checkpoint(fd):
        if (run / "last.npz").exists() and stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)
    monkeypatch.setattr(os, "fsync", full_after_a_checkpoint)
    code, out, err = run_main(["train", "--epochs", "3", "--train-limit", "200", "--hidden", "16", "--latent", "2",
                               "--runs-dir", str(tmp_path / "runs"), "--name", "full", "--data-dir",
                               str(real_mnist_dir), "--no-progress"], capsys)
    assert code == 1 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert re.match(rf"vae: error: {re.escape(str(run))}/[a-z.]+: No space left on device; nothing was half-written: "
                    rf"the last checkpoint written, {re.escape(str(run / 'last.npz'))}, is kept \(free some space, "
                    rf"then continue with `vae train --resume {re.escape(str(run))}`\)$", line), line
    assert ".tmp" not in line and not [p for p in os.listdir(run) if p.endswith(".tmp")]
    from numpy_vae.training.checkpoint import load_checkpoint
    assert load_checkpoint(run / "last.npz")[2]["epoch"] == 1


def test_a_full_disk_before_any_checkpoint_says_there_is_none(tmp_path, real_mnist_dir, capsys, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    code, out, err = run_main(["train", "--epochs", "1", "--train-limit", "200", "--hidden", "16", "--latent", "2",
                               "--runs-dir", str(tmp_path / "runs"), "--name", "full", "--data-dir",
                               str(real_mnist_dir), "--no-progress"], capsys)
    line = err.strip().splitlines()[-1]
    assert code == 1 and line.startswith(f"vae: error: {tmp_path / 'runs' / 'full'}/")
    assert line.endswith("No space left on device; nothing was half-written, and no checkpoint had been written "
                         "yet (free some space, then start the run again)"), line


def test_an_mnist_symlink_loop_is_called_one(real_mnist_dir, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in os.listdir(real_mnist_dir / "MNIST" / "raw"):
        if not name.startswith("t10k-images"):
            (raw / name).symlink_to(real_mnist_dir / "MNIST" / "raw" / name)
    (raw / "t10k-images-idx3-ubyte").symlink_to("t10k-images-idx3-ubyte")
    with pytest.raises(MnistDataError) as caught:
        load_mnist(tmp_path, "test")
    message = str(caught.value)
    assert "a symbolic link loop" in message and "file not found" not in message
    (raw / "t10k-images-idx3-ubyte").unlink()
    (raw / "t10k-images-idx3-ubyte").symlink_to(tmp_path / "nowhere")
    with pytest.raises(MnistDataError, match=r"a symbolic link to .*nowhere, which is not there"):
        load_mnist(tmp_path, "test")


def test_parity_help_says_each_default_once(capsys):
    code, out, _ = run_main(["parity", "--help"], capsys)
    assert code == 0 and "(default: None)" not in out
    flat = " ".join(out.split())
    assert not re.search(r"\(default: [^)]*\) \(default:", flat), flat
    for option, default in [("--latent LATENT latent dimensions", "(default: 20)"), ("--lr LR", "(default: 0.001)"),
                            ("--batch-size BATCH_SIZE", "(default: 64)")]:
        assert flat.count(default) >= 1 and option in flat


def test_parity_says_step_for_one_step(capsys, tmp_path):
    code, out, _ = run_main(["parity", "--steps", "1", "--dtype", "float64", "--device", "cpu", "--hidden", "8",
                             "--latent", "2", "--batch-size", "4", "--data-dir", str(tmp_path)], capsys)
    assert "after 1 step (" in out and "after 1 steps" not in out


def test_vae_version(capsys):
    from importlib import metadata
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0 and out.strip() == f"vae {metadata.version('vae-from-scratch')}"

"""`vae train --tensorboard`: event files in RUN_DIR/tensorboard/, read back with tensorboard's own reader.

The scalars must equal metrics.csv epoch by epoch (as float32, TensorBoard's
precision), the images must be there each epoch, and logging must not change
the run: the weights equal those of the same run trained without it.
"""
import csv
import sys

import numpy as np

from cli_helpers import run_main
from numpy_vae.report.tensorboard import TENSORBOARD_DIR, scalar_tag, scalars
from numpy_vae.serve.images import PNG_SIGNATURE, png_size
from numpy_vae.training.checkpoint import load_checkpoint

TINY = ["--train-limit", "500", "--epochs", "2", "--hidden", "32", "--latent", "2", "--no-figures", "--no-progress"]


def train_cli(capsys, root, name, data_dir, *extra) -> tuple[int, str, str]:
    return run_main(["train", *TINY, "--runs-dir", str(root), "--name", name, "--data-dir", str(data_dir), *extra],
                    capsys)


def _train_pair(root, data_dir, capsys):
    """Two runs with the same configuration: "logged" with --tensorboard, "plain" without."""
    logged = train_cli(capsys, root, "logged", data_dir, "--tensorboard")
    plain = train_cli(capsys, root, "plain", data_dir)
    return logged, plain


def accumulator(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run / TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_tensorboard_events_hold_the_metrics_and_the_images(real_mnist_dir, tmp_path, capsys):
    (code, out, err), (code2, _, err2) = _train_pair(tmp_path, real_mnist_dir, capsys)
    assert code == 0 and code2 == 0, err + err2
    run = tmp_path / "logged"
    assert list((run / TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    assert not (tmp_path / "plain" / TENSORBOARD_DIR).exists()
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    acc = accumulator(run)
    tags = set(acc.Tags()["scalars"])
    expected = {scalar_tag(c) for c in rows[0] if c not in ("epoch", "backend")}     # backend: a word, no scalar
    assert {"loss/train", "loss/test", "recon/train", "recon/test", "kl/train", "kl/test", "lr", "seconds"} <= tags
    assert tags == expected
    for column in rows[0]:
        if column in ("epoch", "backend"):
            continue
        events = acc.Scalars(scalar_tag(column))
        assert [e.step for e in events] == [int(r["epoch"]) for r in rows]
        assert [e.value for e in events] == [float(np.float32(float(r[column]))) for r in rows], column
    for tag, size in (("images/reconstructions", (289, 57)), ("images/prior_samples", (231, 115))):
        images = acc.Images(tag)
        assert [im.step for im in images] == [1, 2]
        for im in images:
            assert (im.width, im.height) == size and im.encoded_image_string.startswith(PNG_SIGNATURE)
            assert png_size(im.encoded_image_string) == size
    # logging changed nothing the run depends on
    a, _, meta_a = load_checkpoint(run / "last.npz")
    b, _, meta_b = load_checkpoint(tmp_path / "plain" / "last.npz")
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert [r["test_loss"] for r in meta_a["metrics"]] == [r["test_loss"] for r in meta_b["metrics"]]


def test_a_resumed_run_adds_its_epochs_to_the_log(real_mnist_dir, tmp_path, capsys, monkeypatch):
    import numpy_vae.training as training
    real_train = training.train

    def interrupted_train(*args, on_epoch=None, **kw):       # Ctrl-C right after epoch 1 is logged
        def hook(*a):
            on_epoch(*a)
            raise KeyboardInterrupt
        return real_train(*args, on_epoch=hook, **kw)

    monkeypatch.setattr(training, "train", interrupted_train)
    code, _, err = train_cli(capsys, tmp_path, "r", real_mnist_dir, "--tensorboard")
    assert code == 130, err
    monkeypatch.setattr(training, "train", real_train)
    code, _, err = run_main(["train", "--resume", str(tmp_path / "r"), "--tensorboard", "--no-figures",
                             "--no-progress", "--data-dir", str(real_mnist_dir)], capsys)
    assert code == 0, err
    assert len(list((tmp_path / "r" / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2
    assert [e.step for e in accumulator(tmp_path / "r").Scalars("loss/test")] == [1, 2]


def test_scalar_tags_group_train_and_test():
    assert scalar_tag("train_loss") == "loss/train" and scalar_tag("test_kl") == "kl/test"
    assert scalar_tag("lr") == "lr" and scalar_tag("seconds") == "seconds" and scalar_tag("train_iwae_nll") == "iwae_nll/train"
    assert scalars({"epoch": 3, "train_loss": 1.5, "lr": "0.001", "note": "x", "bad": float("nan")}) == \
        {"loss/train": 1.5, "lr": 0.001}


def test_without_tensorboard_the_option_names_the_extra_and_trains_nothing(real_mnist_dir, tmp_path, capsys,
                                                                           monkeypatch):
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith("tensorboard.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)          # `import tensorboard` now fails
    code, out, err = train_cli(capsys, tmp_path, "no_tb", real_mnist_dir, "--tensorboard")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--tensorboard needs the tensorboard package" in err and "pip install 'vae-from-scratch[tensorboard]'" in err
    assert not (tmp_path / "no_tb").exists()

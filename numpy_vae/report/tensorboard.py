"""``vae train --tensorboard``: every epoch's metrics and pictures as TensorBoard event files in RUN_DIR/tensorboard/.

``tensorboard --logdir runs`` then shows, with the epoch as step:

    scalars   loss/train, loss/test, recon/train, recon/test, kl/train, kl/test, lr, seconds
              (a metrics column train_X / test_X becomes X/train / X/test; any other column keeps its name)
    images    images/reconstructions   the first test digit of each class (top) above its reconstruction
              images/prior_samples     decodes of 32 fixed draws z ~ N(0, I) (``live_stream(seed, "tensorboard")``)

The files are written by the tensorboard package's own ``EventFileWriter`` (the
writer torch.utils.tensorboard's SummaryWriter wraps; same file format), so
numpy_vae does not import torch here (tests/test_layout.py).  tensorboard is an
optional extra, imported only when a log is made: without it a one-line error
names ``pip install 'vae-from-scratch[tensorboard]'``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..streams import draw_eps, live_stream

TENSORBOARD_DIR = "tensorboard"
INSTALL = "pip install 'vae-from-scratch[tensorboard]'"
PRIOR_SAMPLES = 32


class TensorBoardUnavailable(ImportError):
    """The tensorboard package cannot be imported; the message names the pip extra."""


def tensorboard_api():
    """(EventFileWriter, Event, Summary) of the tensorboard package, or TensorBoardUnavailable naming the extra."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as e:
        raise TensorBoardUnavailable(f"--tensorboard needs the tensorboard package ({' '.join(str(e).split())}); "
                                     f"install it with {INSTALL}") from None
    return EventFileWriter, Event, Summary


def scalar_tag(column: str) -> str:
    """A metrics column's TensorBoard tag: "train_loss" -> "loss/train", "test_kl" -> "kl/test", "lr" -> "lr"."""
    for part in ("train", "test"):
        if column.startswith(part + "_"):
            return f"{column[len(part) + 1:]}/{part}"
    return column


def scalars(row: dict) -> dict[str, float]:
    """{tag: value} of one metrics row: every finite number but the epoch (the step)."""
    out = {}
    for column, value in row.items():
        if column == "epoch" or isinstance(value, bool):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[scalar_tag(column)] = number
    return out


def first_of_each_class(labels: np.ndarray) -> np.ndarray:
    """Indices (10,) of the first test digit of each class 0..9 (fewer where a class is absent)."""
    labels = np.asarray(labels)
    return np.array([np.flatnonzero(labels == c)[0] for c in range(10) if (labels == c).any()], dtype=np.int64)


class TensorBoardLog:
    """An ``on_epoch(run_dir, row, backend, config)`` hook of ``train()``: one event per epoch in RUN_DIR/tensorboard/.

    The tensorboard package is imported here, at construction, so a missing one stops
    ``vae train`` before it trains.  The pictures use the training backend's ``encode``
    and ``decode`` only (inference: it changes nothing the run depends on).
    """

    def __init__(self, data_dir=None, images: bool = True):
        self._api = tensorboard_api()
        self.data_dir = data_dir
        self.images = images
        self._writer = None
        self._logdir: Path | None = None
        self._test: tuple[np.ndarray, np.ndarray] | None = None

    def writer(self, run_dir: Path):
        """The event writer of RUN_DIR/tensorboard (created at the first epoch; one run per log)."""
        logdir = Path(run_dir) / TENSORBOARD_DIR
        if self._writer is None:
            EventFileWriter = self._api[0]
            self._writer = EventFileWriter(str(logdir), max_queue_size=100, flush_secs=30)
            self._logdir = logdir
        elif logdir != self._logdir:
            raise ValueError(f"this TensorBoard log writes {self._logdir}, not {logdir}")
        return self._writer

    def __call__(self, run_dir, row: dict, backend, config) -> None:
        """Write epoch ``row["epoch"]``'s scalars (and images) and flush them to disk."""
        _, Event, Summary = self._api
        writer = self.writer(run_dir)
        values = [Summary.Value(tag=tag, simple_value=v) for tag, v in scalars(row).items()]
        if self.images:
            values += [Summary.Value(tag=tag, image=self._image(Summary, png)) for tag, png in
                       self.pictures(backend, config).items()]
        writer.add_event(Event(wall_time=time.time(), step=int(row["epoch"]), summary=Summary(value=values)))
        writer.flush()

    @staticmethod
    def _image(Summary, png: bytes):
        from ..serve.images import png_size
        width, height = png_size(png)
        return Summary.Image(height=height, width=width, colorspace=1, encoded_image_string=png)

    def test_set(self, config) -> tuple[np.ndarray, np.ndarray]:
        """MNIST's test images and labels, loaded once (from --data-dir, else the run's data_dir)."""
        if self._test is None:
            from ..data import load_mnist
            self._test = load_mnist(self.data_dir or config.data_dir, "test")
        return self._test

    def pictures(self, backend, config) -> dict[str, bytes]:
        """{"images/reconstructions": PNG, "images/prior_samples": PNG} drawn by ``backend`` now."""
        from ..serve.images import grid_png
        dtype = np.dtype(config.dtype)
        test_x, test_y = self.test_set(config)
        x = np.ascontiguousarray(test_x[first_of_each_class(test_y)], dtype)
        with np.errstate(all="ignore"):
            mu, _ = backend.encode(x)
            recon = np.asarray(backend.decode(np.ascontiguousarray(mu, dtype)))
            z = draw_eps(live_stream(config.seed, "tensorboard"), PRIOR_SAMPLES, config.latent, dtype)
            samples = np.asarray(backend.decode(z))
        return {"images/reconstructions": grid_png(np.concatenate([x, recon]), len(x)),
                "images/prior_samples": grid_png(samples, 8)}

    def close(self) -> None:
        """Flush and close the event file (nothing to do if no epoch was logged)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

"""The training loop, shared by both backends.

Everything random is drawn here, in NumPy, from explicit Generators seeded by
the run's seed (``numpy_vae.streams``): the shuffle of each epoch, the noise
``eps`` of each step, the Dropout keep-masks and the dynamic binarization.
So the NumPy and the torch backend see the same batches and the same noise,
and a resumed run sees exactly what the uninterrupted run would have seen.

A run folder ``runs/NAME/`` receives::

    config.json     the full configuration
    metrics.csv     one row per epoch: train loss (the objective, beta-weighted), test loss (the negative
                    ELBO, beta 1), recon, kl, lr, beta, seconds
    last.npz        checkpoint after the latest epoch (the final one once the run ends)
    best.npz        checkpoint of the epoch with the lowest test loss

(``vae train`` then writes the report and its figures there: ``numpy_vae.report``.)

Crash safety.  Every file is written atomically (``checkpoint.atomic_write``).
After each epoch metrics.csv and best.npz are written first and last.npz last:
last.npz is the commit point.  It holds parameters, optimizer state, epoch,
step, both Generators' states, the config and the metrics rows, so
``train(None, resume=RUN_DIR)`` continues exactly where it was written and
ends with the same parameters, bit for bit, as a run never interrupted.  A
kill after metrics.csv or best.npz but before last.npz only means the resumed
run redoes that epoch, and rewrites those files with identical contents.
A NaN or infinite loss, gradient or parameter stops the run before anything
non-finite is saved (:class:`TrainingError` names the epoch and step).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from ..backends import make_backend
from ..config import ConfigError, TrainConfig, refuse_ignored, validate_config
from ..data import MnistDataError, fetch_mnist, load_mnist
from ..streams import (binarize, binarize_stream, draw_eps, dropout_stream, eval_noise_stream, noise_stream,
                       shuffle_stream, static_binarize_stream, heldout_binarize_stream)
from .checkpoint import CheckpointError, check_optimizer_state, check_params, remove_stale_temporaries, \
    save_checkpoint
from .run_folder import (RunLock, discard_unstarted, new_run_dir, point_latest_at, read_resume_state,
                         read_unstarted_config, write_config, write_metrics)

EVAL_BATCH = 1000


class TrainingError(RuntimeError):
    """Training stopped; the message says at which step and what was kept."""


def burda_stage(epoch_index: int) -> int:
    """i of Burda et al.'s schedule for the 0-based ``epoch_index``: stage i lasts 3^i epochs (1, 3, 9, ...)."""
    i, end = 0, 1
    while epoch_index >= end:
        i += 1
        end += 3 ** i
    return i


def learning_rate(config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int = 1) -> float:
    """The learning rate of 0-based ``step``.  burda: lr * 10^(-i/7) in stage i, which lasts 3^i epochs
    (i = 0 ... 7 fill Burda et al. 2015's 3,280 epochs; a longer run goes on to stage 8 and beyond)."""
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
    if config.lr_schedule == "burda":
        return config.lr * 10.0 ** (-burda_stage(step // steps_per_epoch) / 7)
    raise ConfigError(f"unknown lr_schedule {config.lr_schedule!r}; use 'constant', 'cosine' or 'burda'")


def kl_weight(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """beta at 0-based ``step``: rising linearly from 0 over ``kl_warmup_epochs`` epochs, then ``config.beta``."""
    if not config.kl_warmup_epochs:
        return config.beta
    return config.beta * min(1.0, step / (config.kl_warmup_epochs * steps_per_epoch))


def draw_noise(rng: np.random.Generator, batch: int, config: TrainConfig, dtype, width: int | None = None) -> np.ndarray:
    """eps of one training step: (B, L) for the ELBO, (B, K, L) for the importance-weighted bound
    (image b's K draws are rows b K ... b K + K - 1 of one (B K, L) draw).  L is ``width`` if given
    (``config.noise_dim()``: d_1 + ... + d_L for several stochastic layers), else ``config.latent``."""
    width = config.latent if width is None else width
    if config.objective == "iwae":
        return draw_eps(rng, batch * config.samples, width, dtype).reshape(batch, config.samples, -1)
    return draw_eps(rng, batch, width, dtype)


def scored_test_set(config: TrainConfig, test_x: np.ndarray) -> np.ndarray:
    """The test set a run is scored on: grey levels, or (binarized runs) the one fixed binarization of it."""
    return test_x if config.binarize == "none" else binarize(test_x, heldout_binarize_stream())


def evaluate(backend, images: np.ndarray, seed: int, dtype, batch_size: int = EVAL_BATCH) -> dict[str, float]:
    """Mean (loss, recon, kl) per sample over ``images`` in evaluation mode, with noise drawn afresh from ``seed``;
    loss is the negative ELBO (beta 1) whatever beta training uses.

    The same seed gives the same noise every call, so epochs, backends and a
    reloaded checkpoint are compared on equal terms.
    """
    backend.set_beta(1.0)
    rng = eval_noise_stream(seed)
    totals = np.zeros(3)
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        width = getattr(backend, "noise_dim", None) or backend.param_shapes["fc_mu.bias"][0]
        eps = draw_eps(rng, len(x), width, dtype)
        totals += np.array(backend.evaluate(x, eps)) * len(x)
    loss, recon, kl = totals / len(images)
    return {"loss": loss, "recon": recon, "kl": kl}


def _kept(run_dir: Path, epoch: int) -> str:
    """What survives a stop in ``epoch``, for TrainingError's message."""
    if epoch > 1 and (run_dir / "last.npz").exists():
        return (f"The last good checkpoint, {run_dir / 'last.npz'} (after epoch {epoch - 1}), is kept; "
                f"try a lower --lr or --clip-grad-norm")
    return "No checkpoint was written (the first epoch did not complete); try a lower --lr or --clip-grad-norm"


@dataclass
class TrainingData:
    """The images a run trains and is scored on, and the steps they make."""
    train_x: np.ndarray
    test_x: np.ndarray            # the scored test set (scored_test_set)
    steps_per_epoch: int
    total_steps: int


@dataclass
class RunState:
    """What a run carries from one epoch to the next; last.npz saves all of it."""
    rngs: dict                    # the Generators: shuffle, noise, dropout, binarize (numpy_vae.streams)
    rows: list = field(default_factory=list)   # metrics, one row per finished epoch
    epoch: int = 0                # epochs finished
    step: int = 0                 # optimizer steps taken
    best: float = math.inf        # the test loss best.npz holds (inf: none written yet)

    def meta(self, config: TrainConfig, backend) -> dict:
        return {"config": config.to_json(), "spec": backend.spec.to_json(), "epoch": self.epoch, "step": self.step,
                "metrics": self.rows, "rng": {name: rng.bit_generator.state for name, rng in self.rngs.items()},
                "backend": config.backend}


def fresh_state(config: TrainConfig) -> RunState:
    return RunState({"shuffle": shuffle_stream(config.seed), "noise": noise_stream(config.seed),
                     "dropout": dropout_stream(config.seed), "binarize": binarize_stream(config.seed)})


def load_data(config: TrainConfig, progress: bool) -> TrainingData:
    """MNIST as ``config`` trains on it (fetched where absent): limited, binarized, and the scored test set."""
    try:
        train_x, _ = load_mnist(config.data_dir, "train")
    except MnistDataError:
        fetch_mnist(config.data_dir, progress=progress)
        train_x, _ = load_mnist(config.data_dir, "train")
    test_x, _ = load_mnist(config.data_dir, "test")
    if config.train_limit:
        train_x = train_x[:config.train_limit]
    if len(train_x) % config.batch_size == 1 and config.spec().has_batchnorm():
        raise ConfigError(f"batch_size={config.batch_size}: {len(train_x)} images leave a last batch of 1, which "
                          f"BatchNorm1d cannot normalize in training; pick another --batch-size")
    if config.binarize == "static":
        train_x = binarize(train_x, static_binarize_stream(config.seed))
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    return TrainingData(train_x, scored_test_set(config, test_x), steps_per_epoch, steps_per_epoch * config.epochs)


def restore(run_dir: Path, backend, config: TrainConfig, data: TrainingData, params, optim, meta,
            log=print) -> RunState:
    """The state last.npz saved, put back into ``backend`` and a RunState; CheckpointError naming the field
    where it cannot be continued exactly."""
    ckpt = run_dir / "last.npz"
    if meta["step"] != meta["epoch"] * data.steps_per_epoch:
        raise CheckpointError(f"{ckpt}: step {meta['step']} after epoch {meta['epoch']} does not fit "
                              f"{data.steps_per_epoch} steps per epoch ({len(data.train_x)} images, batch "
                              f"{config.batch_size}): the data or the checkpoint changed")
    for i, row in enumerate(meta["metrics"]):
        if not math.isfinite(row["test_loss"]):
            raise CheckpointError(f"{ckpt}: its meta field 'metrics[{i}].test_loss' is {row['test_loss']} (a "
                                  f"finished epoch's test loss is finite): corrupt or edited checkpoint")
    check_params(params, backend.state_shapes, ckpt, dtype=np.dtype(config.dtype))
    check_optimizer_state(optim, backend.optimizer_state(), ckpt, step=meta["step"])
    backend.set_params(params)
    try:
        backend.load_optimizer_state(optim)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt}: the optimizer state does not fit ({e})") from None
    state = fresh_state(config)
    needed = {"shuffle", "noise", *(["dropout"] if config.dropout else []),
              *(["binarize"] if config.binarize == "dynamic" else [])}
    for name, rng in state.rngs.items():
        if name not in needed and name not in meta["rng"]:
            continue                             # a stream this run never draws from (older checkpoints lack it)
        try:
            rng.bit_generator.state = meta["rng"][name]
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise CheckpointError(f"{ckpt}: its meta field 'rng.{name}' is not a {type(rng.bit_generator).__name__} "
                                  f"state ({type(e).__name__}: {e})") from None
    state.rows, state.epoch, state.step = meta["metrics"], meta["epoch"], meta["step"]
    if (run_dir / "best.npz").is_file():
        state.best = min((r["test_loss"] for r in state.rows), default=math.inf)
    else:
        log(f"{run_dir / 'best.npz'} is missing: the next epoch writes it, and each better one after")
    return state


def run_epoch(backend, config: TrainConfig, data: TrainingData, state: RunState, run_dir: Path,
              progress: bool) -> tuple[dict, dict]:
    """Train epoch ``state.epoch + 1`` and score it: (its metrics row, the parameters after it).
    Advances ``state.step`` and the Generators; TrainingError where a loss, gradient or parameter is not finite."""
    epoch, dtype = state.epoch + 1, np.dtype(config.dtype)
    shuffle_rng, noise_rng, dropout_rng, binarize_rng = state.rngs.values()
    dynamic, n, noise_width = config.binarize == "dynamic", len(data.train_x), config.noise_dim()
    t0 = time.perf_counter()
    order = shuffle_rng.permutation(n)
    sums = np.zeros(3)
    bar = tqdm(range(data.steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}", disable=not progress,
               unit="batch", leave=True, dynamic_ncols=True)
    for i in bar:
        idx = order[i * config.batch_size:(i + 1) * config.batch_size]
        x = binarize(data.train_x[idx], binarize_rng) if dynamic else data.train_x[idx]
        eps = draw_noise(noise_rng, len(idx), config, dtype, noise_width)
        masks = backend.draw_masks(dropout_rng, len(idx))
        backend.set_lr(learning_rate(config, state.step, data.total_steps, data.steps_per_epoch))
        backend.set_beta(kl_weight(config, state.step, data.steps_per_epoch))
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # checked below, by value
                metrics = backend.train_step(x, eps, masks)
        except FloatingPointError as e:              # NonFiniteError, from either backend
            bar.close()
            raise TrainingError(f"training stopped at epoch {epoch}, step {state.step + 1} (batch {i + 1} of "
                                f"{data.steps_per_epoch}): {e}. {_kept(run_dir, epoch)}") from None
        state.step += 1
        sums += np.array(metrics) * len(idx)
        if i % 20 == 0 or i == data.steps_per_epoch - 1:
            bar.set_postfix(loss=f"{metrics[0]:.2f}", recon=f"{metrics[1]:.2f}", kl=f"{metrics[2]:.2f}")
    bar.close()
    train_m = sums / n
    params = backend.get_params()
    bad = next((k for k, v in params.items() if not np.isfinite(v).all()), None)
    if bad is not None:
        raise TrainingError(f"training stopped after epoch {epoch}, step {state.step}: parameter {bad} became NaN or "
                            f"infinite. {_kept(run_dir, epoch)}")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        test_m = evaluate(backend, data.test_x, config.seed, dtype)
    if not all(math.isfinite(v) for v in test_m.values()):
        raise TrainingError(f"training stopped after epoch {epoch}, step {state.step}: the test loss is "
                            f"{test_m['loss']} (recon {test_m['recon']}, kl {test_m['kl']}). {_kept(run_dir, epoch)}")
    last = state.step - 1
    row = {"epoch": epoch, "train_loss": train_m[0], "train_recon": train_m[1], "train_kl": train_m[2],
           "test_loss": test_m["loss"], "test_recon": test_m["recon"], "test_kl": test_m["kl"],
           "lr": learning_rate(config, last, data.total_steps, data.steps_per_epoch),
           "beta": kl_weight(config, last, data.steps_per_epoch), "seconds": time.perf_counter() - t0}
    row = {k: (v if k == "epoch" else float(v)) for k, v in row.items()}
    row["backend"] = config.backend                # which backend ran this epoch (a resume may switch)
    return row, params


def end_epoch(run_dir: Path, backend, config: TrainConfig, state: RunState, row: dict, params: dict,
              log=print) -> None:
    """Record the epoch: metrics.csv, best.npz if it is the best so far, then last.npz, the commit point
    (see the module docstring)."""
    state.rows.append(row)
    state.epoch = row["epoch"]
    meta = state.meta(config, backend)
    write_metrics(run_dir / "metrics.csv", state.rows)
    if row["test_loss"] < state.best:
        state.best = row["test_loss"]
        save_checkpoint(run_dir / "best.npz", params, None, meta)
    save_checkpoint(run_dir / "last.npz", params, backend.optimizer_state(), meta)
    log(f"epoch {row['epoch']:3d}  train loss {row['train_loss']:8.3f}  test loss {row['test_loss']:8.3f} "
        f"(recon {row['test_recon']:.3f}, kl {row['test_kl']:.3f})  {row['seconds']:.1f} s")


class Saved(NamedTuple):
    """What a run folder's last.npz holds (``checkpoint.load_checkpoint``)."""
    params: dict
    optim: dict
    meta: dict


def read_run(resume, data_dir, backend: str | None = None,
             device: str | None = None) -> tuple[Path, TrainConfig, Saved | None]:
    """(run folder, config, its last.npz) of the folder ``resume`` names; a folder stopped before its first
    checkpoint has only its config.json (then None: it starts over).  ``backend``/``device``: continue on
    another backend (``run_folder.read_resume_state``)."""
    run_dir = Path(resume)
    if run_dir.is_symlink():                      # runs/latest: the real folder, so latest is not pointed at itself
        run_dir = run_dir.resolve()
    if not (run_dir / "last.npz").exists() and (run_dir / "config.json").exists():
        config = read_unstarted_config(run_dir, data_dir)
        if backend is not None or device is not None:        # it starts over: on the backend asked for
            backend = backend or config.backend
            config = dataclasses.replace(config, backend=backend,
                                         device=device or ("cpu" if backend == "numpy" else config.device))
            validate_config(config)
        return run_dir, config, None
    config, *saved = read_resume_state(run_dir, data_dir, backend, device)
    return run_dir, config, Saved(*saved)


def train(config: TrainConfig | None, resume: str | Path | None = None, progress: bool = True,
          log=print, data_dir: str | Path | None = None, on_epoch=None, resume_backend: str | None = None,
          resume_device: str | None = None) -> Path:
    """Train, writing the run folder; returns its path.

    ``resume`` continues a run folder from its last.npz, with the checkpoint's
    config (``config`` is ignored then; ``data_dir`` may point at another copy of
    MNIST); a folder a run was stopped in before its first checkpoint starts over
    from its config.json; a finished run is left as it is; ``resume_backend``/``resume_device`` continue it on
    another backend, Adam state included.  Raises ConfigError (bad
    config), CheckpointError (a checkpoint that cannot be continued exactly),
    MnistDataError, or TrainingError (NaN/inf).  A new run that stops before its
    first checkpoint removes what it wrote; runs/latest moves to a run once it has one.

    ``on_epoch(run_dir, row, backend, config)``, if given, is called after each epoch's
    last.npz is written (row: that epoch's metrics): the TensorBoard writer and the
    live page hang there.  It must not change the backend.
    """
    saved = None
    if resume is not None:
        run_dir, config, saved = read_run(resume, data_dir, resume_backend, resume_device)
        if saved and saved.meta["epoch"] == config.epochs:
            log(f"{run_dir} is finished ({config.epochs} of {config.epochs} epochs); nothing to do "
                f"(`vae report {run_dir}` writes its report; to train longer, start a new run with "
                f"--config {run_dir / 'config.json'} --epochs N)")
            return run_dir
    else:
        validate_config(config)
        refuse_ignored(config)
    learning_rate(config, 0, 1)                       # refuse a bad schedule before anything is written
    backend = make_backend(config)                    # likewise an unknown backend or a missing device
    data = load_data(config, progress)
    state = restore(run_dir, backend, config, data, *saved, log=log) if saved else fresh_state(config)
    created = resume is None and not (config.name and (Path(config.runs_dir) / config.name).is_dir())
    if resume is None:
        run_dir = new_run_dir(config)
    lock = RunLock(run_dir)                          # one process at a time writes a run folder
    try:
        for tmp in remove_stale_temporaries(run_dir):
            log(f"removed {tmp}, left by an interrupted write")
        if saved:
            write_metrics(run_dir / "metrics.csv", state.rows)   # drops a row of an epoch that never reached last.npz
            # config.json names the backend that goes on (a resume may switch it; the rest is the checkpoint's)
            ran = saved.meta["config"]
            write_config(run_dir, dataclasses.replace(config, data_dir=ran.get("data_dir", config.data_dir)))
            point_latest_at(run_dir)
            switched = (config.backend, config.device) != (ran.get("backend"), ran.get("device"))
            log(f"resuming {run_dir} after epoch {state.epoch} (step {state.step})"
                + (f" on {config.backend} ({config.device}); it ran on {ran.get('backend')} ({ran.get('device')}) "
                   f"so far" if switched else ""))
        else:
            write_config(run_dir, config)
        n_params = sum(math.prod(shape) for shape in backend.param_shapes.values())
        log(f"training {config.backend} VAE ({n_params:,} parameters) on {len(data.train_x):,} images for "
            f"{config.epochs} epochs -> {run_dir}")
        while state.epoch < config.epochs:
            row, params = run_epoch(backend, config, data, state, run_dir, progress)
            end_epoch(run_dir, backend, config, state, row, params, log)
            if not saved and state.epoch == 1:
                point_latest_at(run_dir)             # only now does the run have a checkpoint to show
            if on_epoch is not None:
                on_epoch(run_dir, row, backend, config)
    except BaseException:
        if resume is None and not (run_dir / "last.npz").exists():
            discard_unstarted(run_dir, remove_folder=created)    # errors leave nothing half-written
        raise
    finally:
        lock.release()

    final = state.rows[-1]["test_loss"] if state.rows else float("nan")
    log(f"test negative ELBO: {final:.2f} nats per sample (best {state.best:.2f}); run folder {run_dir}")
    return run_dir

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
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..backends import make_backend
from ..config import ConfigError, TrainConfig, validate_config
from ..data import MnistDataError, fetch_mnist, load_mnist
from ..streams import (binarize, binarize_stream, draw_eps, dropout_stream, eval_noise_stream, noise_stream,
                       shuffle_stream, static_binarize_stream, heldout_binarize_stream)
from .checkpoint import CheckpointError, check_optimizer_state, check_params, remove_stale_temporaries, \
    save_checkpoint
from .run_folder import RunLock, new_run_dir, point_latest_at, read_resume_state, write_config, write_metrics

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


def train(config: TrainConfig | None, resume: str | Path | None = None, progress: bool = True,
          log=print, data_dir: str | Path | None = None, on_epoch=None, resume_backend: str | None = None,
          resume_device: str | None = None) -> Path:
    """Train, writing the run folder; returns its path.

    ``resume`` continues a run folder from its last.npz, with the checkpoint's
    config (``config`` is ignored then; ``data_dir`` may point at another copy of
    MNIST).  Raises ConfigError (bad config), CheckpointError (a checkpoint that
    cannot be continued exactly), MnistDataError, or TrainingError (NaN/inf).

    ``on_epoch(run_dir, row, backend, config)``, if given, is called after each epoch's
    last.npz is written (row: that epoch's metrics): the TensorBoard writer and the
    live page hang there.  It must not change the backend.
    """
    if resume is not None:
        run_dir = Path(resume)
        if run_dir.is_symlink():                      # runs/latest: the real folder, so latest is not pointed at itself
            run_dir = run_dir.resolve()
        saved_backend = None
        config, params, optim, meta = read_resume_state(run_dir, data_dir, resume_backend, resume_device)
        if (config.backend, config.device) != (meta["config"].get("backend"), meta["config"].get("device")):
            saved_backend = f"{meta['config'].get('backend')} ({meta['config'].get('device')})"
    else:
        validate_config(config)
    learning_rate(config, 0, 1)                       # refuse a bad schedule before anything is written
    backend = make_backend(config)                    # likewise an unknown backend or a missing device
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
    test_x = scored_test_set(config, test_x)
    dtype = np.dtype(config.dtype)
    rngs = {"shuffle": shuffle_stream(config.seed), "noise": noise_stream(config.seed),
            "dropout": dropout_stream(config.seed), "binarize": binarize_stream(config.seed)}
    shuffle_rng, noise_rng, dropout_rng, binarize_rng = rngs.values()
    dynamic = config.binarize == "dynamic"
    noise_width = config.noise_dim()
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    rows: list[dict] = []
    start_epoch, step, best = 0, 0, math.inf

    if resume is not None:
        ckpt = run_dir / "last.npz"
        if meta["step"] != meta["epoch"] * steps_per_epoch:
            raise CheckpointError(f"{ckpt}: step {meta['step']} after epoch {meta['epoch']} does not fit "
                                  f"{steps_per_epoch} steps per epoch ({len(train_x)} images, batch "
                                  f"{config.batch_size}): the data or the checkpoint changed")
        check_params(params, backend.state_shapes, ckpt, dtype=dtype)
        check_optimizer_state(optim, backend.optimizer_state(), ckpt, step=meta["step"])
        backend.set_params(params)
        try:
            backend.load_optimizer_state(optim)
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{ckpt}: the optimizer state does not fit ({e})") from None
        needed = {"shuffle", "noise", *(["dropout"] if config.dropout else []), *(["binarize"] if dynamic else [])}
        for name, rng in rngs.items():
            if name not in needed and name not in meta["rng"]:
                continue                             # a stream this run never draws from (older checkpoints lack it)
            try:
                rng.bit_generator.state = meta["rng"][name]
            except (KeyError, TypeError, ValueError, OverflowError) as e:
                raise CheckpointError(f"{ckpt}: its meta field 'rng.{name}' is not a {type(rng.bit_generator).__name__} "
                                      f"state ({type(e).__name__}: {e})") from None
        rows, start_epoch, step = meta["metrics"], meta["epoch"], meta["step"]
        best = min((r["test_loss"] for r in rows), default=math.inf)
    else:
        run_dir = new_run_dir(config)
    lock = RunLock(run_dir)                          # one process at a time writes a run folder
    try:
        if resume is not None:
            for tmp in remove_stale_temporaries(run_dir):
                log(f"removed {tmp}, left by an interrupted write")
            write_metrics(run_dir / "metrics.csv", rows)   # drops a row of an epoch that never reached last.npz
            # config.json names the backend that goes on (a resume may switch it; the rest is the checkpoint's)
            write_config(run_dir, dataclasses.replace(config, data_dir=meta["config"].get("data_dir", config.data_dir)))
            if saved_backend is not None:
                log(f"resuming {run_dir} after epoch {start_epoch} (step {step}) on {config.backend} "
                    f"({config.device}); it ran on {saved_backend} so far")
            else:
                log(f"resuming {run_dir} after epoch {start_epoch} (step {step})")
        else:
            write_config(run_dir, config)
        point_latest_at(run_dir)

        n_params = sum(math.prod(shape) for shape in backend.param_shapes.values())
        log(f"training {config.backend} VAE ({n_params:,} parameters) on {len(train_x):,} images for "
            f"{config.epochs} epochs -> {run_dir}")
        for epoch in range(start_epoch + 1, config.epochs + 1):
            t0 = time.perf_counter()
            order = shuffle_rng.permutation(len(train_x))
            sums = np.zeros(3)
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}", disable=not progress,
                       unit="batch", leave=True, dynamic_ncols=True)
            for i in bar:
                idx = order[i * config.batch_size:(i + 1) * config.batch_size]
                x = binarize(train_x[idx], binarize_rng) if dynamic else train_x[idx]
                eps = draw_noise(noise_rng, len(idx), config, dtype, noise_width)
                masks = backend.draw_masks(dropout_rng, len(idx))
                backend.set_lr(learning_rate(config, step, total_steps, steps_per_epoch))
                backend.set_beta(kl_weight(config, step, steps_per_epoch))
                try:
                    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # checked below, by value
                        metrics = backend.train_step(x, eps, masks)
                except FloatingPointError as e:              # NonFiniteError, from either backend
                    bar.close()
                    raise TrainingError(f"training stopped at epoch {epoch}, step {step + 1} (batch {i + 1} of "
                                        f"{steps_per_epoch}): {e}. {_kept(run_dir, epoch)}") from None
                step += 1
                sums += np.array(metrics) * len(idx)
                if i % 20 == 0 or i == steps_per_epoch - 1:
                    bar.set_postfix(loss=f"{metrics[0]:.2f}", recon=f"{metrics[1]:.2f}", kl=f"{metrics[2]:.2f}")
            bar.close()
            train_m = sums / len(train_x)
            params = backend.get_params()
            bad = next((k for k, v in params.items() if not np.isfinite(v).all()), None)
            if bad is not None:
                raise TrainingError(f"training stopped after epoch {epoch}, step {step}: parameter {bad} became NaN or "
                                    f"infinite. {_kept(run_dir, epoch)}")
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                test_m = evaluate(backend, test_x, config.seed, dtype)
            if not all(math.isfinite(v) for v in test_m.values()):
                raise TrainingError(f"training stopped after epoch {epoch}, step {step}: the test loss is "
                                    f"{test_m['loss']} (recon {test_m['recon']}, kl {test_m['kl']}). {_kept(run_dir, epoch)}")
            row = {"epoch": epoch, "train_loss": train_m[0], "train_recon": train_m[1], "train_kl": train_m[2],
                   "test_loss": test_m["loss"], "test_recon": test_m["recon"], "test_kl": test_m["kl"],
                   "lr": learning_rate(config, step - 1, total_steps, steps_per_epoch),
                   "beta": kl_weight(config, step - 1, steps_per_epoch), "seconds": time.perf_counter() - t0}
            row = {k: (v if k == "epoch" else float(v)) for k, v in row.items()}
            row["backend"] = config.backend                # which backend ran this epoch (a resume may switch)
            rows.append(row)
            meta = {"config": config.to_json(), "spec": backend.spec.to_json(), "epoch": epoch, "step": step,
                    "metrics": rows,
                    "rng": {name: rng.bit_generator.state for name, rng in rngs.items()},
                    "backend": config.backend}
            # last.npz is the commit point: written after metrics.csv and best.npz (see the module docstring)
            write_metrics(run_dir / "metrics.csv", rows)
            if row["test_loss"] < best:
                best = row["test_loss"]
                save_checkpoint(run_dir / "best.npz", params, None, meta)
            save_checkpoint(run_dir / "last.npz", params, backend.optimizer_state(), meta)
            log(f"epoch {epoch:3d}  train loss {train_m[0]:8.3f}  test loss {test_m['loss']:8.3f} "
                f"(recon {test_m['recon']:.3f}, kl {test_m['kl']:.3f})  {row['seconds']:.1f} s")
            if on_epoch is not None:
                on_epoch(run_dir, row, backend, config)
    finally:
        lock.release()

    final = rows[-1]["test_loss"] if rows else float("nan")
    log(f"test negative ELBO: {final:.2f} nats per sample (best {best:.2f}); run folder {run_dir}")
    return run_dir

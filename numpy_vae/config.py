"""The training configuration: the vocabulary the loop, the backends, the CLI and torch_vae share.

A run's choices fall into five parts, each a dataclass declaring its fields once,
with the field's kind (``numpy_vae.values``: how it is parsed from the command line
and checked from anywhere else), its help text, and, for a field that only means
something with some other choice, the choice it needs (``applies``):

    ModelConfig      the architecture (numpy_vae.specs): arch, latent, hidden, activation, ...
    ObjectiveConfig  what is minimized: elbo or iwae, samples, beta and its warm-up
    OptimizerConfig  Adam and its schedule: lr, lr_schedule, adam_eps, weight_decay, clip_grad_norm
    DataConfig       which images, in what form, in what batches: data_dir, train_limit, binarize, batch_size
    RunConfig        how and where it runs: backend, device, dtype, epochs, seed, runs_dir, name, threads, kernels

:class:`TrainConfig` is all five (one flat record: config.json and every checkpoint's
meta hold it as one JSON object, as they always have); ``config.part(ModelConfig)`` is
one part alone.  ``vae train``'s flags are generated from these declarations
(``numpy_vae.cli.args.add_config_flags``); :func:`validate_config` refuses a
configuration that cannot run, naming the field, before anything is allocated or written.
"""
from __future__ import annotations

import argparse
import dataclasses
import reprlib
from dataclasses import dataclass, field

import numpy as np

from .specs import ACTIVATIONS, ARCHITECTURES, LIKELIHOODS, SpecError, make_spec
from .values import (BOOL, FOLDER, NON_NEGATIVE_FLOAT, NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, PROBABILITY,
                     RUN_NAME, SIZES, THREADS, Kind, one_of, optional, positive_float, real, text, valid_run_name)

__all__ = ["TrainConfig", "ModelConfig", "ObjectiveConfig", "OptimizerConfig", "DataConfig", "RunConfig", "PARTS",
           "ConfigError", "validate_config", "refuse_ignored", "without_ignored", "valid_run_name", "LR_SCHEDULES",
           "BINARIZATIONS", "OBJECTIVES", "KERNELS", "LR_MAX", "ADAM_EPS_RANGE", "MAX_PARAMETERS"]

MAX_PARAMETERS = 200_000_000      # a model larger than this is refused before anything is allocated
#: constant; cosine (decays to 0 over the run); burda: lr * 10^(-i/7) for 3^i epochs, i = 0, 1, ... (Burda et al. 2015)
LR_SCHEDULES = ("constant", "cosine", "burda")
#: none: grey levels as Bernoulli targets; static: one fixed Bernoulli draw of the training set (seeded);
#: dynamic: a fresh draw of every image each time it is used (the ``binarize`` stream).
BINARIZATIONS = ("none", "static", "dynamic")
OBJECTIVES = ("elbo", "iwae")
#: fast: numpy_vae.kernels (the tuned Adam and convolutions); reference: numpy_vae.nn's plain ones (numpy backend)
KERNELS = ("fast", "reference")
#: Adam's learning rate: each step moves a parameter by about lr; above this, only overflow (inf, then NaN) follows.
LR_MAX = 1e6
#: Adam's eps: its whole range the kernels compute without underflow (float32's eps * sqrt(1 - b2^t) stays normal)
#: or overflow (the tuned Adam squares eps / 2^20 in its scalars); above 1, eps only divides the step down.
ADAM_EPS_RANGE = (1e-30, 1e6)


class ConfigError(ValueError):
    """A training configuration that cannot run (unknown backend, no CUDA, ...); says what to change."""


def learning_rate(text: str) -> float:
    """Adam's learning rate, in (0, LR_MAX]."""
    value = positive_float(text)
    if value > LR_MAX:
        raise argparse.ArgumentTypeError(f"expected a learning rate in (0, {LR_MAX:g}], got {text} (Adam moves each "
                                         f"parameter by about lr a step; larger values only overflow)")
    return value


def adam_epsilon(text: str) -> float:
    """Adam's eps, in ADAM_EPS_RANGE."""
    lo, hi = ADAM_EPS_RANGE
    value = positive_float(text)
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"expected a number in [{lo:g}, {hi:g}], got {text} (smaller values "
                                         f"underflow in Adam's float32 arithmetic)")
    return value


LEARNING_RATE = Kind(lambda v: real(v) and 0 < v <= LR_MAX, f"a number in (0, {LR_MAX:g}]", learning_rate)
ADAM_EPS = Kind(lambda v: real(v) and ADAM_EPS_RANGE[0] <= v <= ADAM_EPS_RANGE[1],
                "a number in [{:g}, {:g}] (with 0, a zero second moment divides 0 by 0)".format(*ADAM_EPS_RANGE),
                adam_epsilon)


def option(default, kind: Kind, help: str, *, shown: str | None = None, applies: tuple[str, tuple] | None = None,
           metavar: str | None = None):
    """A configuration field: its default, kind, help text; ``shown`` is the default as the help states it
    (else the default itself); ``applies=(field, values)``: the field means something only while ``field``
    is one of ``values`` (else it must keep its default, and its flag is refused)."""
    return field(default=default, metadata={"kind": kind, "help": help, "shown": shown, "applies": applies,
                                            "metavar": metavar})


#: The MLP options: every architecture but conv, whose layers are fixed (numpy_vae.specs.conv_spec).
MLP_ONLY = ("arch", tuple(sorted(a for a in ARCHITECTURES if a != "conv")))


@dataclass
class ModelConfig:
    arch: str = option("mlp", one_of(sorted(ARCHITECTURES)), "architecture, a spec in numpy_vae.specs")
    latent: int = option(20, POSITIVE_INT, "latent dimensions")
    hidden: tuple[int, ...] = option((512, 256), SIZES, "encoder hidden sizes, mirrored by the decoder",
                                     applies=MLP_ONLY)
    activation: str = option("relu", one_of(ACTIVATIONS), "the MLP's hidden activation", applies=MLP_ONLY)
    batchnorm: bool = option(False, BOOL, "BatchNorm1d after each hidden Linear of the MLP", shown="off",
                             applies=MLP_ONLY)
    dropout: float = option(0.0, PROBABILITY, "Dropout(p) after each hidden activation of the MLP", applies=MLP_ONLY)
    likelihood: str = option("bernoulli", one_of(LIKELIHOODS), "bernoulli (decoder logits) or gaussian (decoder + "
                             "sigmoid is the mean, fixed variance)")
    likelihood_variance: float = option(1.0, POSITIVE_FLOAT, "the gaussian likelihood's fixed variance (0.5 makes "
                                        "its data term the summed squared error)",
                                        applies=("likelihood", ("gaussian",)))

    def spec_options(self) -> dict:
        """The MLP options of ``numpy_vae.specs.mlp_spec`` this config sets."""
        return {"activation": self.activation, "batchnorm": self.batchnorm, "dropout": self.dropout,
                "likelihood": self.likelihood, "likelihood_variance": self.likelihood_variance}

    def spec(self):
        """The architecture (``numpy_vae.specs.VAESpec``) this config trains."""
        return make_spec(self.arch, hidden=tuple(self.hidden), latent=self.latent, **self.spec_options())

    def noise_dim(self) -> int:
        """The width of one draw of eps: the latent size, or d_1 + ... + d_L for several stochastic layers."""
        return getattr(self.spec(), "noise_dim", self.latent)


@dataclass
class ObjectiveConfig:
    objective: str = option("elbo", one_of(OBJECTIVES), "elbo, or iwae: the importance-weighted bound with "
                            "--samples K")
    samples: int = option(1, POSITIVE_INT, "importance samples K per image for --objective iwae",
                          applies=("objective", ("iwae",)))
    beta: float = option(1.0, NON_NEGATIVE_FLOAT, "weight of the KL term")
    kl_warmup_epochs: int = option(0, NON_NEGATIVE_INT, "raise beta linearly from 0 over this many epochs",
                                   shown="0, no warm-up")


@dataclass
class OptimizerConfig:
    lr: float = option(1e-3, LEARNING_RATE, "Adam learning rate")
    lr_schedule: str = option("constant", one_of(LR_SCHEDULES), "constant, cosine (to 0 over the run) or burda "
                              "(lr 10^(-i/7) for 3^i epochs)")
    adam_eps: float = option(1e-8, ADAM_EPS, "Adam's eps (0 would divide a zero second moment by 0)")
    weight_decay: float = option(0.0, NON_NEGATIVE_FLOAT, "L2 penalty added to the gradient (as torch.optim.Adam)")
    clip_grad_norm: float | None = option(None, optional(POSITIVE_FLOAT), "clip the global gradient norm to this "
                                          "value (as torch.nn.utils.clip_grad_norm_)", shown="no clipping")


@dataclass
class DataConfig:
    data_dir: str = option("data", FOLDER, "folder holding MNIST/raw/ as torchvision lays it out",
                           shown="data, or $VAE_DATA_DIR")
    train_limit: int | None = option(None, optional(POSITIVE_INT), "train on the first N images only",
                                     shown="all 60,000")
    binarize: str = option("none", one_of(BINARIZATIONS), "none (grey levels as Bernoulli targets), static (one "
                           "seeded draw) or dynamic (a fresh draw each epoch); the test set is then one fixed "
                           "binarization")
    batch_size: int = option(128, POSITIVE_INT, "images per training step")


@dataclass
class RunConfig:
    backend: str = option("numpy", text("a backend name"), "numpy (hand-written gradients) or torch")
    device: str = option("cpu", text("a device name"), "cpu or cuda (torch backend only)")
    dtype: str = option("float32", one_of(("float32", "float64")), "the parameters' and arithmetic's float type")
    epochs: int = option(10, POSITIVE_INT, "epochs to train")
    seed: int = option(0, NON_NEGATIVE_INT, "seed of every random stream (numpy_vae.streams)")
    runs_dir: str = option("runs", FOLDER, "parent of run folders")
    name: str | None = option(None, optional(RUN_NAME), "run folder name", shown="BACKEND-DATE-TIME")
    threads: int | None = option(None, THREADS, "BLAS/OpenMP and Adam threads; auto: 1 if other processes keep "
                                 "half a core busy at the start (two threads then spin against them), else the "
                                 "libraries' default; at most the cores this process may use; recorded in "
                                 "config.json, so a resumed run keeps it", shown="the libraries' own",
                                 metavar="auto|N")
    kernels: str = option("fast", one_of(KERNELS), "fast (numpy_vae.kernels: the tuned Adam and convolutions) or "
                          "reference (numpy_vae.nn's plain ones, the form docs/gradients.md derives; slower); "
                          "recorded in config.json, so a resumed run keeps it", applies=("backend", ("numpy",)))


PARTS = {"model": ModelConfig, "objective": ObjectiveConfig, "optimizer": OptimizerConfig, "data": DataConfig,
         "run": RunConfig}


@dataclass
class TrainConfig(RunConfig, DataConfig, OptimizerConfig, ObjectiveConfig, ModelConfig):
    """Every choice of a run: the five parts' fields in one flat record (saved as config.json)."""

    def part(self, cls):
        """The part ``cls`` (ModelConfig, ...) of this configuration, alone."""
        return cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(cls)})

    def model_config(self) -> dict:
        """``build_model``'s keyword arguments."""
        return {"arch": self.arch, "latent": self.latent, "hidden": tuple(self.hidden), "beta": self.beta,
                "dtype": np.dtype(self.dtype), **self.spec_options()}

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        """The configuration a config.json (or a checkpoint's meta) holds; a field the file predates takes
        its default, a key this version does not know is ignored.  TypeError where ``d`` is not a dict."""
        if not isinstance(d, dict):
            raise TypeError(f"expected a JSON object of fields, got a {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if isinstance(d.get("hidden"), list):
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def not_applying(config: TrainConfig, names) -> list[tuple[str, str, tuple]]:
    """(name, field it needs, values it needs) for each of ``names`` that means nothing with ``config``."""
    out = []
    for name in names:
        applies = FIELDS[name].metadata.get("applies")
        if applies and getattr(config, applies[0]) not in applies[1]:
            out.append((name, *applies))
    return out


def refuse_ignored(config: TrainConfig) -> None:
    """ConfigError naming a field set where it does not apply (``hidden`` with arch conv, ...): a new run
    would ignore it and yet record it.  (Runs written before this check may hold such values; they load.)"""
    for name, needs, values in not_applying(config, FIELDS):
        if getattr(config, name) != FIELDS[name].default:
            raise ConfigError(f"{name}={getattr(config, name)!r} does not apply with {needs}="
                              f"{getattr(config, needs)!r} (only with {needs} {' or '.join(map(repr, values))}); "
                              f"leave it at its default, {FIELDS[name].default!r}")


def without_ignored(config: TrainConfig) -> TrainConfig:
    """``config`` with every field that does not apply at its default (the same run: they had no effect)."""
    return dataclasses.replace(config, **{name: FIELDS[name].default for name, *_ in not_applying(config, FIELDS)})


def validate_config(config: TrainConfig) -> None:
    """Refuse a configuration that cannot run, naming the field (ConfigError); allocates nothing."""
    for name, f in FIELDS.items():
        kind = f.metadata["kind"]
        if not kind.check(getattr(config, name)):      # reprlib: an edited file's value may be huge or deep
            raise ConfigError(f"{name}={reprlib.repr(getattr(config, name))}: expected {kind.what}")
    try:
        n = config.spec().num_params
    except SpecError as e:
        raise ConfigError(str(e)) from None
    if config.kernels != "fast" and config.backend != "numpy":
        raise ConfigError(f"kernels={config.kernels!r} with backend={config.backend!r}: the kernels are the numpy "
                          f"backend's; {config.backend} runs its own (leave --kernels out)")
    if config.likelihood == "gaussian" and config.binarize != "none":
        raise ConfigError(f"binarize={config.binarize!r} with likelihood='gaussian': binarized pixels are "
                          f"Bernoulli data; use --likelihood bernoulli, or --binarize none")
    if config.objective == "iwae" and (config.beta != 1 or config.kl_warmup_epochs):
        raise ConfigError(f"objective='iwae' with beta={config.beta}, kl_warmup_epochs={config.kl_warmup_epochs}: "
                          f"the importance-weighted bound has no KL term to weight; use beta 1 without warm-up")
    if config.objective == "iwae" and (config.batchnorm or config.dropout):
        raise ConfigError("objective='iwae' with batchnorm or dropout: the K samples of an image would see "
                          "different batch statistics and masks; use --objective elbo for that model")
    if config.arch == "burda2" and (config.beta != 1 or config.kl_warmup_epochs):
        raise ConfigError(f"arch='burda2' with beta={config.beta}, kl_warmup_epochs={config.kl_warmup_epochs}: the "
                          f"model trains log w (no closed-form KL term to weight); use beta 1 without warm-up")
    if n > MAX_PARAMETERS:
        raise ConfigError(f"hidden={','.join(map(str, config.hidden))}, latent={config.latent} makes {n:,} parameters, "
                          f"more than the {MAX_PARAMETERS:,} supported")

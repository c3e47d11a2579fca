"""The training configuration: the vocabulary the loop, the backends, the CLI and torch_vae share.

:class:`TrainConfig` is every choice of a run, saved as ``config.json`` and in
every checkpoint's meta; :func:`validate_config` refuses one that cannot run,
naming the field, before anything is allocated or written.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .specs import ACTIVATIONS, ARCHITECTURES, LIKELIHOODS, SpecError, make_spec

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


@dataclass
class TrainConfig:
    backend: str = "numpy"
    device: str = "cpu"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"    # "constant" or "cosine" (decays to 0 over the run)
    weight_decay: float = 0.0
    clip_grad_norm: float | None = None
    adam_eps: float = 1e-8
    arch: str = "mlp"
    latent: int = 20
    hidden: tuple[int, ...] = (512, 256)
    activation: str = "relu"         # the MLP's hidden activation: relu or tanh
    batchnorm: bool = False          # BatchNorm1d after each hidden Linear of the MLP
    dropout: float = 0.0             # Dropout(p) after each hidden activation of the MLP
    likelihood: str = "bernoulli"    # or "gaussian" (fixed variance; the decoder ends in a sigmoid)
    likelihood_variance: float = 1.0
    beta: float = 1.0
    kl_warmup_epochs: int = 0        # beta rises linearly from 0 to beta over this many epochs
    binarize: str = "none"           # none, static or dynamic (see BINARIZATIONS)
    objective: str = "elbo"          # elbo, or iwae: the importance-weighted bound with `samples` draws
    samples: int = 1
    dtype: str = "float32"
    seed: int = 0
    data_dir: str = "data"
    runs_dir: str = "runs"
    name: str | None = None
    train_limit: int | None = None   # use only the first N training images (quick runs, tests)
    threads: int | None = None       # BLAS/OpenMP and Adam threads; None: the libraries' default
    kernels: str = "fast"            # numpy backend: fast (numpy_vae.kernels) or reference (numpy_vae.nn); see KERNELS

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
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)


def valid_run_name(name: str) -> bool:
    """A plain folder name: no path separators, not '.', '..' or 'latest'."""
    return bool(name) and name not in (".", "..", "latest") and "/" not in name and "\\" not in name \
        and "\0" not in name


def validate_config(config: TrainConfig) -> None:
    """Refuse a configuration that cannot run, naming the field (ConfigError); allocates nothing."""
    def real(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def integer(v):
        return isinstance(v, int) and not isinstance(v, bool)

    checks = [
        ("epochs", integer(config.epochs) and config.epochs >= 1, "an integer >= 1"),
        ("batch_size", integer(config.batch_size) and config.batch_size >= 1, "an integer >= 1"),
        ("arch", config.arch in ARCHITECTURES, f"one of {sorted(ARCHITECTURES)}"),
        ("latent", integer(config.latent) and config.latent >= 1, "an integer >= 1"),
        ("hidden", isinstance(config.hidden, tuple) and len(config.hidden) >= 1
         and all(integer(h) and h >= 1 for h in config.hidden), "one or more integers >= 1"),
        ("lr", real(config.lr) and 0 < config.lr <= LR_MAX, f"a number in (0, {LR_MAX:g}]"),
        ("lr_schedule", config.lr_schedule in LR_SCHEDULES, f"one of {LR_SCHEDULES}"),
        ("adam_eps", real(config.adam_eps) and ADAM_EPS_RANGE[0] <= config.adam_eps <= ADAM_EPS_RANGE[1],
         "a number in [{:g}, {:g}] (with 0, a zero second moment divides 0 by 0)".format(*ADAM_EPS_RANGE)),
        ("weight_decay", real(config.weight_decay) and config.weight_decay >= 0, "a finite number >= 0"),
        ("clip_grad_norm", config.clip_grad_norm is None or (real(config.clip_grad_norm) and config.clip_grad_norm > 0),
         "None or a finite number > 0"),
        ("activation", config.activation in ACTIVATIONS, f"one of {ACTIVATIONS}"),
        ("batchnorm", isinstance(config.batchnorm, bool), "True or False"),
        ("dropout", real(config.dropout) and 0 <= config.dropout < 1, "a probability in [0, 1)"),
        ("likelihood", config.likelihood in LIKELIHOODS, f"one of {LIKELIHOODS}"),
        ("likelihood_variance", real(config.likelihood_variance) and config.likelihood_variance > 0,
         "a finite number > 0"),
        ("beta", real(config.beta) and config.beta >= 0, "a finite number >= 0"),
        ("kl_warmup_epochs", integer(config.kl_warmup_epochs) and config.kl_warmup_epochs >= 0, "an integer >= 0"),
        ("binarize", config.binarize in BINARIZATIONS, f"one of {BINARIZATIONS}"),
        ("objective", config.objective in OBJECTIVES, f"one of {OBJECTIVES}"),
        ("samples", integer(config.samples) and config.samples >= 1, "an integer >= 1"),
        ("dtype", config.dtype in ("float32", "float64"), "'float32' or 'float64'"),
        ("seed", integer(config.seed) and config.seed >= 0, "an integer >= 0"),
        ("train_limit", config.train_limit is None or (integer(config.train_limit) and config.train_limit >= 1),
         "None or an integer >= 1"),
        ("threads", config.threads is None or (integer(config.threads) and config.threads >= 1),
         "None or an integer >= 1"),
        ("kernels", config.kernels in KERNELS, f"one of {KERNELS}"),
        ("backend", isinstance(config.backend, str), "a backend name"),
        ("device", isinstance(config.device, str), "a device name"),
        ("data_dir", isinstance(config.data_dir, str), "a path"),
        ("runs_dir", isinstance(config.runs_dir, str), "a path"),
        ("name", config.name is None or (isinstance(config.name, str) and valid_run_name(config.name)),
         "None or a plain folder name (no '/', not '.', '..' or 'latest')"),
    ]
    for field, ok, what in checks:
        if not ok:
            raise ConfigError(f"{field}={getattr(config, field)!r}: expected {what}")
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

"""The NumPy training backend: the hand-written model and Adam behind the backend interface.

``kernels="fast"`` (the default) trains with numpy_vae.kernels (FastAdam, the im2col convolutions),
``kernels="reference"`` with numpy_vae.nn's plain Adam and convolutions.
"""
from __future__ import annotations

import math

import numpy as np

from ..model import build_model
from ..objectives import iwae_loss
from ..kernels.adam import FastAdam
from ..nn.optimizers import Adam
from .interface import NonFiniteError, clip_coefficient, limit_threads


class NumpyBackend:
    name = "numpy"

    def __init__(self, model_config: dict, lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0,
                 clip_grad_norm: float | None = None, device: str = "cpu", adam_eps: float = 1e-8,
                 objective: str = "elbo", threads: int | None = None, kernels: str = "fast"):
        if device != "cpu":
            raise ValueError(f"the numpy backend runs on the CPU only; got --device {device} (use --backend torch)")
        self.model = build_model(**model_config, seed=seed, kernels=kernels)
        if kernels == "fast":
            self.optimizer = FastAdam(self.model.flat, lr=lr, eps=adam_eps, weight_decay=weight_decay, threads=threads)
        else:
            self.optimizer = Adam(self.model.flat, lr=lr, eps=adam_eps, weight_decay=weight_decay)
        self._limits = limit_threads(threads)
        self.clip_grad_norm = clip_grad_norm
        self.objective = objective            # "elbo", or "iwae": then eps is (B, K, L), K draws per image
        self.dtype = self.model.dtype
        self.noise_dim = getattr(self.model, "noise_dim", self.model.latent)   # the width of one draw of eps
        self.spec = self.model.spec
        self.param_shapes = self.model.spec.parameter_shapes()
        self.state_shapes = self.model.spec.state_shapes()

    # ------------------------------------------------------------- training
    def draw_masks(self, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray] | None:
        """Dropout keep-masks for one step from ``rng`` (None for a model without Dropout)."""
        return self.model.draw_masks(rng, batch) if self.model.dropout_p else None

    def train_step(self, x: np.ndarray, eps: np.ndarray, masks=None) -> tuple[float, float, float]:
        """One Adam step on the batch (training mode); returns (loss, recon, kl) of the batch before the step."""
        self.model.train()
        if self.objective == "iwae":
            loss, recon, kl, backward = iwae_loss(self.model, x, eps)
        else:
            loss, recon, kl = self.model.loss(x, eps, masks)
            backward = self.model.backward
        loss = float(loss)
        if not math.isfinite(loss):
            raise NonFiniteError(f"loss is {loss}")
        backward(need_input_grad=False)
        grad = self.model.grad_flat
        with np.errstate(over="ignore", invalid="ignore"):     # an overflow is handled just below
            norm = float(np.sqrt(np.dot(grad, grad)))
        if not math.isfinite(norm):
            if not np.isfinite(grad).all():
                raise NonFiniteError(f"gradient norm is {norm}")
            norm = float(np.linalg.norm(grad.astype(np.float64)))   # finite, but its square overflowed float32
        if self.clip_grad_norm is not None:
            grad *= self.dtype.type(clip_coefficient(norm, self.clip_grad_norm))
        self.optimizer.step(grad)
        return loss, float(recon), float(kl)

    def set_lr(self, lr: float) -> None:
        self.optimizer.lr = lr

    def set_beta(self, beta: float) -> None:
        """The KL weight of the following steps (the warm-up moves it)."""
        self.model.beta = float(beta)

    # ------------------------------------------------------------ inference
    def evaluate(self, x: np.ndarray, eps: np.ndarray) -> tuple[float, float, float]:
        """(loss, recon, kl) batch means in evaluation mode, no update."""
        self.model.eval()
        loss, recon, kl = self.model.loss(x, eps)
        return float(loss), float(recon), float(kl)

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu, logvar = self.model.encode(x)
        return mu.copy(), logvar.copy()

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Pixel probabilities (B, 784)."""
        return self.model.decode(z, probs=True)

    def decode_logits(self, z: np.ndarray) -> np.ndarray:
        """Bernoulli logits (B, 784), for log-likelihoods without the round trip through sigmoid."""
        return self.model.decode(z)

    # ---------------------------------------------------------------- state
    def get_params(self) -> dict[str, np.ndarray]:
        """Copies of the parameters and buffers, named and ordered as torch's ``state_dict()``."""
        return self.model.state_dict()

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        self.model.load_params(params)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's state as flat arrays laid out like ``get_params`` concatenated in key order.

        This is a save point: FastAdam first stores its moments at torch's scale
        (``rescale_to_torch``, one rounding), so that this run and one resumed from what is
        returned continue bit for bit."""
        if isinstance(self.optimizer, FastAdam):
            self.optimizer.rescale_to_torch()
        state = self.optimizer.state_dict()
        return {"step": state["step"],
                **{key: np.concatenate([state[key][self._slice(n)] for n in self.model.params])
                   for key in ("exp_avg", "exp_avg_sq")}}

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        flat = {}
        for key in ("exp_avg", "exp_avg_sq"):
            arr = np.asarray(state[key])
            if arr.shape != (self.model.num_params,):
                raise ValueError(f"optimizer state {key}: expected shape ({self.model.num_params},), got {arr.shape}")
            buf, offset = np.empty_like(self.model.flat), 0
            for name in self.model.params:
                sl = self._slice(name)
                size = sl.stop - sl.start
                buf[sl] = arr[offset:offset + size]
                offset += size
            flat[key] = buf
        self.optimizer.load_state_dict({"step": state["step"], **flat})

    def _slice(self, name: str) -> slice:
        """Where parameter ``name`` sits in the model's flat buffer."""
        return slice(*self.model.layout[name])

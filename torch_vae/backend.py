"""The PyTorch training backend: ``numpy_vae.backends.Backend``'s interface, NumPy arrays in and out.

``numpy_vae.backends.make_backend`` finds this class through the entry point
``vae_from_scratch.backends: torch`` and drives it exactly as it drives the NumPy
backend, with the same batches and the same noise ``eps``.  Updates are
``torch.optim.Adam(fused=True)`` (the fused kernel, torch's fastest) after
``torch.nn.utils.clip_grad_norm_`` when clipping is asked for.

``optimizer_state`` uses NumPy's flat layout (each moment flattened per parameter
and concatenated in ``state_dict()`` order, plus ``step``), so a ``last.npz``
written by either backend resumes in either.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from numpy_vae.backends.interface import NonFiniteError, limit_threads
from numpy_vae.config import ConfigError
from numpy_vae.inputs import check_batchnorm_batch, check_images, check_latent, check_masks, check_noise
from numpy_vae.objectives import check_iwae_noise
from numpy_vae.streams import draw_masks

from .convert import to_numpy, to_torch
from .build import build_model
from .model import torch_dtype
from .objectives import iwae_loss


def resolve_device(device) -> torch.device:
    """'cpu', 'cuda', 'cuda:1', ... -> torch.device; ConfigError (one line for the CLI) if unusable here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {device}: not a device torch knows; use --device cpu or --device cuda") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("CUDA is not available on this machine (torch.cuda.is_available() is False); "
                              "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ConfigError(f"--device {device}: the torch backend runs on cpu or cuda")
    return dev


class TorchBackend:
    name = "torch"

    def __init__(self, model_config: dict, lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0,
                 clip_grad_norm: float | None = None, device: str = "cpu", adam_eps: float = 1e-8,
                 objective: str = "elbo", threads: int | None = None, kernels: str = "fast"):
        if kernels != "fast":          # NumpyBackend's choice of kernels; torch runs its own
            raise ValueError(f"kernels={kernels!r}: the torch backend runs torch's own kernels; leave --kernels out")
        self.device = resolve_device(device)
        self._limits = limit_threads(threads)
        if threads is not None:
            torch.set_num_threads(int(threads))
        config = dict(model_config)
        self.dtype = np.dtype(config.pop("dtype", np.float32))
        self.model = build_model(**config, dtype=torch_dtype(self.dtype), seed=seed, device=self.device)
        self.params = list(self.model.parameters())
        # fused=True: torch's fastest Adam, one kernel over all parameters, on the CPU (torch >= 2.4) and
        # CUDA alike; it keeps the parity suite's trajectory tolerances (parity_tests/test_trajectory_parity.py).
        self.optimizer = torch.optim.Adam(self.params, lr=lr, eps=adam_eps, weight_decay=weight_decay, fused=True)
        self.clip_grad_norm = clip_grad_norm
        self.objective = objective            # "elbo", or "iwae": then eps is (B, K, L), K draws per image
        self.spec = self.model.spec
        self.param_shapes = self.spec.parameter_shapes()
        self.state_shapes = {n: tuple(t.shape) for n, t in self.model.state_dict().items()}
        self._dropout = self.model.spec.dropout_layers()
        self.noise_dim = getattr(self.model, "noise_dim", self.model.latent)   # the width of one draw of eps

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=self.dtype)).to(self.device)

    def _images(self, x) -> torch.Tensor:
        return self._tensor(check_images(x, self.model.input_dim, self.dtype))

    def _batch(self, x, eps) -> tuple[torch.Tensor, torch.Tensor]:
        """x and eps as tensors, checked by numpy_vae's own input checks (in the backend's dtype)."""
        x = check_images(x, self.model.input_dim, self.dtype)
        return self._tensor(x), self._tensor(check_noise(eps, x.shape[0], self.noise_dim, self.dtype))

    def _masks(self, masks, batch: int) -> dict[str, torch.Tensor] | None:
        """The Dropout keep-masks as tensors, checked by numpy_vae's own check."""
        checked = check_masks(masks, self.model.spec, batch, self.dtype)
        return {name: self._tensor(m) for name, m in checked.items()} or None

    # ------------------------------------------------------------- training
    def draw_masks(self, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray] | None:
        """Dropout keep-masks for one step from ``rng``, the same draw NumpyBackend makes (None without Dropout)."""
        return draw_masks(self.model.spec, rng, batch, self.dtype) if self._dropout else None

    def train_step(self, x: np.ndarray, eps: np.ndarray, masks=None) -> tuple[float, float, float]:
        """One Adam step on the batch (training mode); returns (loss, recon, kl) of the batch before the step."""
        if self.objective == "iwae":
            return self._iwae_step(x, eps)
        x, eps = self._batch(x, eps)
        masks = self._masks(masks, x.shape[0])
        check_batchnorm_batch(self.model.spec, x.shape[0])
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(x, eps, masks, check_inputs=False)          # checked by _batch, in NumPy
        loss = float(out["loss"].detach())
        if not math.isfinite(loss):
            raise NonFiniteError(f"loss is {loss}")
        out["loss"].backward()
        return self._update(loss, float(out["recon"].detach()), float(out["kl"].detach()))

    def _iwae_step(self, x: np.ndarray, eps: np.ndarray) -> tuple[float, float, float]:
        """The importance-weighted bound's step: eps (B, K, L), autograd through torch.logsumexp."""
        x = check_images(x, self.model.input_dim, self.dtype)
        xt = self._tensor(x)
        et = self._tensor(check_iwae_noise(eps, x.shape[0], self.noise_dim, self.dtype))
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_t, recon, kl = iwae_loss(self.model, xt, et, check_inputs=False)
        loss = float(loss_t.detach())
        if not math.isfinite(loss):
            raise NonFiniteError(f"loss is {loss}")
        loss_t.backward()
        return self._update(loss, float(recon), float(kl))

    def _update(self, loss: float, recon: float, kl: float) -> tuple[float, float, float]:
        """Clip (if asked) and take the Adam step on the gradients backward left; returns its arguments."""
        # clip_grad_norm_ is exactly these two halves; split so that a finite float32 gradient whose
        # norm overflows float32 is measured in float64 and kept, as NumpyBackend keeps it.
        grads = [p.grad for p in self.params]
        norm = torch.nn.utils.get_total_norm(grads)
        if not torch.isfinite(norm):
            if not all(bool(torch.isfinite(g).all()) for g in grads):
                raise NonFiniteError(f"gradient norm is {float(norm)}")
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double()) for g in grads]))
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.clip_grad_norm, norm)
        self.optimizer.step()
        return loss, recon, kl

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def set_beta(self, beta: float) -> None:
        """The KL weight of the following steps (the warm-up moves it)."""
        self.model.beta = float(beta)

    # ------------------------------------------------------------ inference
    @torch.no_grad()
    def evaluate(self, x: np.ndarray, eps: np.ndarray) -> tuple[float, float, float]:
        """(loss, recon, kl) batch means in evaluation mode, no update."""
        self.model.eval()
        out = self.model(*self._batch(x, eps), check_inputs=False)
        return float(out["loss"]), float(out["recon"]), float(out["kl"])

    @torch.no_grad()
    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (B, 784) -> mu (B, L), logvar (B, L)."""
        self.model.eval()
        mu, logvar = self.model.encode(self._images(x), check_inputs=False)
        return mu.cpu().numpy(), logvar.cpu().numpy()

    @torch.no_grad()
    def log_weights(self, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """log w (B, K) of x (B, D) at eps (B, K, N), float64, for a model of several stochastic layers
        (``HVAE.log_weights``' contract: the estimator of `vae evaluate` reads it)."""
        self.model.eval()
        x = check_images(x, self.model.input_dim, self.dtype)
        eps = check_iwae_noise(eps, x.shape[0], self.noise_dim, self.dtype)
        log_w = self.model.log_weights(self._tensor(x), self._tensor(eps), check_inputs=False)["log_w"]
        return log_w.cpu().numpy().astype(np.float64)

    def _latent(self, z) -> torch.Tensor:
        """z as a tensor, or InputError with numpy_vae's message."""
        return self._tensor(check_latent(z, self.model.latent, self.dtype))

    @torch.no_grad()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """z (B, L) -> pixel probabilities (B, 784)."""
        self.model.eval()
        return self.model.decode(self._latent(z), probs=True, check_inputs=False).cpu().numpy()

    @torch.no_grad()
    def decode_logits(self, z: np.ndarray) -> np.ndarray:
        """z (B, L) -> the decoder's output (B, 784): Bernoulli logits, or the gaussian's mean."""
        self.model.eval()
        return self.model.decode(self._latent(z), check_inputs=False).cpu().numpy()

    # ---------------------------------------------------------------- state
    def get_params(self) -> dict[str, np.ndarray]:
        return to_numpy(self.model)

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        to_torch(params, self.model)

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Adam's state in NumPy's layout: step, and exp_avg / exp_avg_sq flattened in params order."""
        state = self.optimizer.state
        step = int(state[self.params[0]]["step"]) if self.params[0] in state else 0
        flat = {}
        for key in ("exp_avg", "exp_avg_sq"):
            parts = [state[p][key].detach().reshape(-1).cpu().numpy() if p in state
                     else np.zeros(p.numel(), self.dtype) for p in self.params]
            flat[key] = np.concatenate(parts)
        return {"step": np.array(step, np.int64), **flat}

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        total = sum(p.numel() for p in self.params)
        arrays = {}
        for key in ("exp_avg", "exp_avg_sq"):
            arr = np.asarray(state[key])
            if arr.shape != (total,):
                raise ValueError(f"optimizer state {key}: expected shape ({total},), got {arr.shape}")
            arrays[key] = arr
        step = int(state["step"])
        per_param, offset = {}, 0
        for i, p in enumerate(self.params):
            size = p.numel()
            per_param[i] = {"step": torch.tensor(float(step), dtype=torch.float32),
                            **{key: torch.from_numpy(np.array(arr[offset:offset + size]).reshape(p.shape))
                               for key, arr in arrays.items()}}
            offset += size
        sd = self.optimizer.state_dict()
        sd["state"] = per_param if step > 0 else {}
        self.optimizer.load_state_dict(sd)   # casts the moments to each parameter's dtype and device

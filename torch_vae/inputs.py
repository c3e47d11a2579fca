"""numpy_vae's input checks (``numpy_vae.inputs``) for tensors: TorchVAE's public entry points call them.

Each takes a tensor, returns it as a tensor of the model's dtype (real inputs of another
dtype are cast, as numpy_vae casts arrays: bool, integers, float16, float64), or raises
``numpy_vae.inputs.InputError`` with numpy_vae's own one-line message.  The values are
checked on the tensor's device; the result comes back in one host transfer (on CUDA, one
synchronization a check): a training loop that has checked its batch already passes
``check_inputs=False`` to the model and pays nothing.
"""
from __future__ import annotations

import torch

from numpy_vae.inputs import (InputError, images_shape_message, latent_shape_message, noise_shape_message,
                              nonfinite_message, pixel_range_message)


def _real_tensor(value, name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``value`` as a tensor of ``dtype``: a real tensor on ``device``, else InputError naming the fix."""
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(value).__name__}; convert it with "
                         f"torch.as_tensor({name})")
    if not (value.dtype.is_floating_point or value.dtype in _INTEGERS):
        raise InputError(f"{name} must hold real numbers, got dtype {value.dtype}; pass a real tensor")
    if value.device != device:
        raise InputError(f"{name} is on {value.device}, the model on {device}; move it with {name}.to({str(device)!r})")
    return value.to(dtype)


#: bool and the integer dtypes: cast to the model's dtype, as numpy_vae casts them
_INTEGERS = {torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
             *(getattr(torch, f"uint{bits}") for bits in (16, 32, 64) if hasattr(torch, f"uint{bits}"))}


def _finite(value: torch.Tensor, cast: torch.Tensor, name: str) -> None:
    """InputError if ``cast`` (``value`` in the model's dtype) holds NaN or an infinity (one host transfer)."""
    with torch.no_grad():
        if not bool(torch.isfinite(cast).all()):
            raise InputError(nonfinite_message(name, bool(torch.isfinite(value).all())))


def check_images(x, input_dim: int, dtype: torch.dtype, device, name: str = "x") -> torch.Tensor:
    """x (B, input_dim) with B >= 1, finite, pixel values in [0, 1]: ``numpy_vae.inputs.check_images`` for tensors."""
    cast = _real_tensor(x, name, dtype, device)
    if cast.ndim != 2 or cast.shape[1] != input_dim or cast.shape[0] == 0:
        raise InputError(images_shape_message(name, input_dim, cast.shape))
    with torch.no_grad():
        finite, lo, hi = torch.stack([torch.isfinite(cast).all().to(dtype), cast.min(), cast.max()]).cpu().numpy()
    if not finite:
        _finite(x, cast, name)
    if lo < 0 or hi > 1:
        raise InputError(pixel_range_message(name, lo, hi, clip=f"{name}.clamp(0, 1)"))
    return cast


def check_noise(eps, batch: int, latent: int, dtype: torch.dtype, device, name: str = "eps") -> torch.Tensor:
    """eps (batch, latent), finite: ``numpy_vae.inputs.check_noise`` for tensors."""
    cast = _real_tensor(eps, name, dtype, device)
    if tuple(cast.shape) != (batch, latent):
        raise InputError(noise_shape_message(name, batch, latent, cast.shape))
    _finite(eps, cast, name)
    return cast


def check_latent(z, latent: int, dtype: torch.dtype, device, name: str = "z") -> torch.Tensor:
    """z (batch, latent) with batch >= 1, finite: ``numpy_vae.inputs.check_latent`` for tensors."""
    cast = _real_tensor(z, name, dtype, device)
    if cast.ndim != 2 or cast.shape[1] != latent or cast.shape[0] == 0:
        raise InputError(latent_shape_message(name, latent, z.dtype, cast.shape))
    _finite(z, cast, name)
    return cast

"""The checks at every model entry point, as plain functions both backends call.

Each returns the array as a C-contiguous array of the model's dtype, or raises
:class:`InputError` with one line naming the input, what is wrong and the fix.
The messages are built by the ``*_message`` functions, which torch_vae's tensor
checks (``torch_vae.inputs``) use too: one wording for both backends.
"""
from __future__ import annotations

import numpy as np


class InputError(ValueError):
    """Raised at the model's public entry points for inputs it cannot use."""


#: how far outside [0, 1] pixel values may lie and still be called rounding (the message then says to clip)
ROUNDING = 1e-6


def show(value) -> str:
    """A number as its shortest round-trip decimal: 1, 0.5, 255, 1.0000000000000002 (never "1" for it)."""
    return np.format_float_positional(value, trim="-") if np.isfinite(value) else str(value)


def images_shape_message(name: str, input_dim: int, shape) -> str:
    return (f"{name} must have shape (batch, {input_dim}) with batch >= 1, got {tuple(shape)}; "
            f"flatten 28x28 images with x.reshape(len(x), -1)")


def latent_shape_message(name: str, latent: int, kind, shape) -> str:
    return f"{name} must be a numeric array of shape (batch, {latent}) with batch >= 1, got {kind} {tuple(shape)}"


def noise_shape_message(name: str, batch: int, latent: int, shape) -> str:
    return f"{name} must have shape ({batch}, {latent}), got {tuple(shape)}; draw it with numpy_vae.draw_eps"


def nonfinite_message(name: str, lost_in_cast: bool) -> str:
    where = " (in range for float64, not for float32)" if lost_in_cast else ""
    return f"{name} contains NaN or infinite values{where}; pass finite numbers"


def pixel_range_message(name: str, lo, hi, clip: str = "np.clip(x, 0, 1)") -> str:
    """x outside [0, 1]: the values found (all their digits) and the likely fix: clip values off by rounding,
    divide 8-bit values by 255, else rescale."""
    if lo >= -ROUNDING and hi <= 1 + ROUNDING:
        hint = f"they leave [0, 1] by rounding only: clip them, {clip}"
    elif lo >= 0 and hi <= 255:
        hint = "divide 8-bit pixel values by 255"
    else:
        hint = "rescale the pixels to [0, 1]"
    return (f"{name} must lie in [0, 1] for the Bernoulli likelihood, got values in [{show(lo)}, {show(hi)}]; "
            f"{hint}")


def _real_array(value, name: str) -> np.ndarray:
    """``value`` as an array of real numbers (bool and integers allowed), else InputError."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:                 # ragged lists and the like
        raise InputError(f"{name} cannot be read as an array ({e}); pass a NumPy array of real numbers") from None
    if np.iscomplexobj(arr):
        raise InputError(f"{name} is complex (dtype {arr.dtype}); pass real numbers (its imaginary part would be lost)")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InputError(f"{name} must be numeric, got dtype {arr.dtype}; pass a NumPy array of real numbers")
    return arr


def _finite_as(arr: np.ndarray, dtype, name: str) -> np.ndarray:
    """Cast first, then check: 1e300 is finite in float64 but infinite once cast to float32."""
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        raise InputError(nonfinite_message(name, bool(np.isfinite(arr).all())))
    return out


def check_images(x, input_dim: int, dtype, name: str = "x") -> np.ndarray:
    """x (B, input_dim) with B >= 1, pixel values in [0, 1]."""
    x = _real_array(x, name)
    if x.ndim != 2 or x.shape[1] != input_dim or x.shape[0] == 0:
        raise InputError(images_shape_message(name, input_dim, x.shape))
    x = _finite_as(x, dtype, name)
    lo, hi = x.min(), x.max()
    if lo < 0 or hi > 1:
        raise InputError(pixel_range_message(name, lo, hi))
    return x


def check_noise(eps, batch: int, latent: int, dtype, name: str = "eps") -> np.ndarray:
    """eps (batch, latent) of finite numbers, drawn by the caller (``numpy_vae.streams.draw_eps``)."""
    eps = _real_array(eps, name)
    if eps.shape != (batch, latent):
        raise InputError(noise_shape_message(name, batch, latent, eps.shape))
    return _finite_as(eps, dtype, name)


def check_latent(z, latent: int, dtype, name: str = "z") -> np.ndarray:
    """z (batch, latent) of finite numbers, batch >= 1."""
    z = _real_array(z, name)
    if z.ndim != 2 or z.shape[1] != latent or z.shape[0] == 0:
        raise InputError(latent_shape_message(name, latent, z.dtype, z.shape))
    return _finite_as(z, dtype, name)


def check_count(n, name: str = "n") -> int:
    """A positive integer count (NumPy integers and integral floats such as 8.0 allowed)."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, float, np.integer, np.floating)) \
            or not np.isfinite(n) or int(n) != n or n < 1:
        raise InputError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def check_masks(masks, spec, batch: int, dtype) -> dict[str, np.ndarray]:
    """The Dropout keep-masks a training step of ``spec`` (a VAESpec) needs, as arrays of ``dtype`` by layer
    name (``{}`` for a model without Dropout); InputError naming the problem and the fix otherwise."""
    shapes = spec.mask_shapes(batch)
    if not shapes:
        return {}
    if masks is None:
        raise InputError(f"masks: this model has Dropout layers {sorted(shapes)}; training needs their keep-masks "
                         f"(draw_masks(rng, batch)), or evaluation mode")
    if not isinstance(masks, dict) or set(masks) != set(shapes):
        got = sorted(masks) if isinstance(masks, dict) else type(masks).__name__
        raise InputError(f"masks: expected a dict with keys {sorted(shapes)}, got {got}")
    out = {}
    for name, shape in shapes.items():
        m = np.asarray(masks[name])
        if m.shape != shape or not ((m == 0) | (m == 1)).all():
            raise InputError(f"masks[{name!r}]: expected a {shape} array of 0s and 1s, got shape {m.shape}")
        out[name] = m.astype(dtype, copy=False)
    return out


def check_batchnorm_batch(spec, batch: int) -> None:
    """BatchNorm1d in training needs at least 2 samples (as torch): InputError otherwise."""
    if batch < 2 and spec.has_batchnorm():
        raise InputError(f"x: a batch of {batch}; BatchNorm1d in training needs at least 2 samples "
                         f"(as torch), or evaluation mode")

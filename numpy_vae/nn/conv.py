"""Convolutions over NCHW images, with PyTorch's semantics: Conv2d and ConvTranspose2d, the reference.

    Conv2d           y[n,o,h,w] = b[o] + Σ_c Σ_ij W[o,c,i,j] x[n,c, s h + i - p, s w + j - p]    W (out, in, kH, kW)
    ConvTranspose2d  the input-gradient of that convolution, applied to x                       W (in, out, kH, kW)

Written as the explicit sum over the kernel's taps: the input padded with zeros, then one
loop over the kH kW taps (i, j), each an ``einsum`` over the channels with the strided slice
of the image that tap sees.  This is the form docs/gradients.md derives.  Training runs the
tuned form by default (``numpy_vae.kernels.conv``: im2col and one matmul, channels-last
memory, reused work arrays), which tests/test_kernels.py proves equal to this one.

Derivations: docs/gradients.md#conv2d, #convtranspose2d
"""
from __future__ import annotations

import numpy as np

def as_pair(name: str, value, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints >= minimum, as torch's conv layers take them."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum for v in pair):
        raise ValueError(f"{name}={value!r}: expected an integer >= {minimum} or a pair of them")
    return int(pair[0]), int(pair[1])


def _check_image(x: np.ndarray, channels: int, layer: str) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{layer}: expected x of shape (B, {channels}, H, W), got {x.shape}")


def conv2d_size(size, kernel, stride, padding) -> tuple[int, ...]:
    """(H_out, W_out) = (H + 2p - k) // s + 1 per axis, as computed (< 1 where the output is empty)."""
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding))


def conv_transpose2d_size(size, kernel, stride, padding, output_padding) -> tuple[int, ...]:
    """(H_out, W_out) = (H - 1) s - 2p + k + output_padding per axis, as computed (< 1 where empty)."""
    return tuple((n - 1) * s - 2 * p + k + op for n, k, s, p, op in zip(size, kernel, stride, padding, output_padding))


def conv2d_output_size(size, kernel, stride, padding) -> tuple[int, int]:
    """:func:`conv2d_size`; ValueError when empty."""
    out = conv2d_size(size, kernel, stride, padding)
    if min(out) < 1:
        raise ValueError(f"Conv2d: kernel {kernel} is larger than the input {size} padded by {padding}")
    return out


def conv_transpose2d_output_size(size, kernel, stride, padding, output_padding) -> tuple[int, int]:
    """:func:`conv_transpose2d_size`; ValueError when empty."""
    out = conv_transpose2d_size(size, kernel, stride, padding, output_padding)
    if min(out) < 1:
        raise ValueError(f"ConvTranspose2d: padding {padding} leaves an empty output for input size {size}, "
                         f"kernel {kernel}, stride {stride}")
    return out


# ======================================================================= the taps
# NCHW throughout, the input padded with zeros; tap (i, j) of the kernel sees the strided
# slice xp[:, :, i :: s, j :: s] (Ho x Wo of it) of the padded image.

def _tap(i: int, j: int, n_h: int, n_w: int, stride) -> tuple:
    """The slice of a padded image that kernel tap (i, j) meets at n_h x n_w output positions."""
    return (Ellipsis, slice(i, i + stride[0] * (n_h - 1) + 1, stride[0]),
            slice(j, j + stride[1] * (n_w - 1) + 1, stride[1]))


def conv2d_reference(x, weight, bias, stride=1, padding=0) -> np.ndarray:
    """y (B, O, Ho, Wo) = b + Σ_ij einsum(x_pad[tap ij], W[:, :, i, j]): x (B, C, H, W), W (O, C, kH, kW), b (O,)."""
    (sh, sw), (ph, pw) = as_pair("stride", stride, 1), as_pair("padding", padding, 0)
    _, _, kh, kw = weight.shape
    ho, wo = conv2d_output_size(x.shape[2:], (kh, kw), (sh, sw), (ph, pw))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((len(x), weight.shape[0], ho, wo), x.dtype) + bias[:, None, None]
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("bchw,oc->bohw", xp[_tap(i, j, ho, wo, (sh, sw))], weight[:, :, i, j], optimize=True)
    return y


def conv2d_reference_backward(x, weight, dy, stride=1, padding=0):
    """(dx (B, C, H, W), dW (O, C, kH, kW), db (O,)) for upstream dy (B, O, Ho, Wo).

    Per tap:  dx_pad[tap ij] += einsum(dy, W[:, :, i, j]),  dW[:, :, i, j] = einsum(dy, x_pad[tap ij]).
    """
    (sh, sw), (ph, pw) = as_pair("stride", stride, 1), as_pair("padding", padding, 0)
    _, _, kh, kw = weight.shape
    _, _, ho, wo = dy.shape
    h, w = x.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(weight)
    for i in range(kh):
        for j in range(kw):
            tap = _tap(i, j, ho, wo, (sh, sw))
            dxp[tap] += np.einsum("bohw,oc->bchw", dy, weight[:, :, i, j], optimize=True)
            dw[:, :, i, j] = np.einsum("bohw,bchw->oc", dy, xp[tap], optimize=True)
    return dxp[:, :, ph:ph + h, pw:pw + w], dw, dy.sum(axis=(0, 2, 3))


def conv_transpose2d_reference(x, weight, bias, stride=1, padding=0, output_padding=0) -> np.ndarray:
    """y (B, O, Ho, Wo): x (B, C, H, W) scattered, y_pad[tap ij] += einsum(x, W[:, :, i, j]), cropped, plus b.

    W (C, O, kH, kW), b (O,); y_pad is (H - 1) s + kH + output_padding high, y = y_pad[p : p + Ho] + b.
    """
    (sh, sw), (ph, pw) = as_pair("stride", stride, 1), as_pair("padding", padding, 0)
    oph, opw = as_pair("output_padding", output_padding, 0)
    _, o, kh, kw = weight.shape
    h, w = x.shape[2:]
    ho, wo = conv_transpose2d_output_size((h, w), (kh, kw), (sh, sw), (ph, pw), (oph, opw))
    yp = np.zeros((len(x), o, ho + 2 * ph, wo + 2 * pw), x.dtype)
    for i in range(kh):
        for j in range(kw):
            yp[_tap(i, j, h, w, (sh, sw))] += np.einsum("bchw,co->bohw", x, weight[:, :, i, j], optimize=True)
    return yp[:, :, ph:ph + ho, pw:pw + wo] + bias[:, None, None]


def conv_transpose2d_reference_backward(x, weight, dy, stride=1, padding=0, output_padding=0):
    """(dx (B, C, H, W), dW (C, O, kH, kW), db (O,)) for upstream dy (B, O, Ho, Wo).

    dy_pad is dy placed at offset p in zeros of y_pad's size; per tap:
    dx += einsum(dy_pad[tap ij], W[:, :, i, j])  (a convolution of dy),  dW[:, :, i, j] = einsum(x, dy_pad[tap ij]).
    """
    (sh, sw), (ph, pw) = as_pair("stride", stride, 1), as_pair("padding", padding, 0)
    oph, opw = as_pair("output_padding", output_padding, 0)
    _, _, kh, kw = weight.shape
    h, w = x.shape[2:]
    b, o, ho, wo = dy.shape
    dyp = np.zeros((b, o, (h - 1) * sh + kh + oph, (w - 1) * sw + kw + opw), dy.dtype)
    dyp[:, :, ph:ph + ho, pw:pw + wo] = dy
    dx, dw = np.zeros_like(x), np.zeros_like(weight)
    for i in range(kh):
        for j in range(kw):
            tap = _tap(i, j, h, w, (sh, sw))
            dx += np.einsum("bohw,co->bchw", dyp[tap], weight[:, :, i, j], optimize=True)
            dw[:, :, i, j] = np.einsum("bchw,bohw->co", x, dyp[tap], optimize=True)
    return dx, dw, dy.sum(axis=(0, 2, 3))


# ===================================================================== the layers
class Conv2d:
    """Cross-correlation over NCHW images, as ``torch.nn.Conv2d`` (no dilation, no groups).

    ``params`` and ``grads`` hold ``weight`` (out, in, kH, kW) and ``bias`` (out,), as torch
    stores them; they may be views into the model's flat buffer: the layer reads its
    parameters and writes its gradients in place.  ``stride`` and ``padding`` are ints or
    (h, w) pairs; the padding is zeros.

    forward:  x (B, in, H, W) -> y (B, out, Ho, Wo), Ho = (H + 2 p - kH) // s + 1 (Wo alike),
              and its backward closure
    backward: dy (B, out, Ho, Wo) -> dx (B, in, H, W) (None with ``need_dx=False``);
              fills grads["weight"] (out, in, kH, kW) and grads["bias"] (out,)
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray,
                 grad_weight: np.ndarray | None = None, grad_bias: np.ndarray | None = None,
                 stride=1, padding=0):
        if weight.ndim != 4 or bias.shape != (weight.shape[0],):
            raise ValueError(f"Conv2d: weight must be (out, in, kH, kW) and bias (out,), "
                             f"got {weight.shape} and {bias.shape}")
        self.params = {"weight": weight, "bias": bias}
        self.grads = {
            "weight": np.zeros_like(weight) if grad_weight is None else grad_weight,
            "bias": np.zeros_like(bias) if grad_bias is None else grad_bias,
        }
        self.stride = as_pair("stride", stride, 1)
        self.padding = as_pair("padding", padding, 0)
        self.kernel_size = weight.shape[2:]

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return conv2d_output_size((h, w), self.kernel_size, self.stride, self.padding)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Inference: y (B, out, Ho, Wo), nothing kept for a backward."""
        _check_image(x, self.params["weight"].shape[1], "Conv2d")
        return conv2d_reference(x, self.params["weight"], self.params["bias"], self.stride, self.padding)

    # y = b + Σ_ij einsum(x_pad[tap ij], W[:, :, i, j])
    def forward(self, x: np.ndarray):
        y = self(x)

        # per tap: dx_pad[tap ij] += einsum(dy, W[:, :, i, j]),  dW[:, :, i, j] = einsum(dy, x_pad[tap ij]);  db = Σ dy
        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
            dx, self.grads["weight"][...], self.grads["bias"][...] = conv2d_reference_backward(
                x, self.params["weight"], dy, self.stride, self.padding)
            return dx if need_dx else None

        return y, backward


class ConvTranspose2d:
    """The transposed convolution over NCHW images, as ``torch.nn.ConvTranspose2d`` (no dilation, no groups).

    It is the input-gradient of the Conv2d with the same weight, stride and padding,
    applied to x.  ``params`` and ``grads`` hold ``weight`` (in, out, kH, kW) and ``bias``
    (out,), as torch stores them (possibly views into the model's flat buffer, written in
    place).  ``stride``, ``padding`` and ``output_padding`` are ints or (h, w) pairs, with
    output_padding < stride per axis (as torch requires): it picks which of the s input sizes
    that the Conv2d maps to H this layer's output has (the Conv2d's output size rounds down).

    forward:  x (B, in, H, W) -> y (B, out, Ho, Wo), Ho = (H - 1) s - 2 p + kH + output_padding
              (Wo alike), and its backward closure
    backward: dy (B, out, Ho, Wo) -> dx (B, in, H, W) (None with ``need_dx=False``);
              fills grads["weight"] (in, out, kH, kW) and grads["bias"] (out,)
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray,
                 grad_weight: np.ndarray | None = None, grad_bias: np.ndarray | None = None,
                 stride=1, padding=0, output_padding=0):
        if weight.ndim != 4 or bias.shape != (weight.shape[1],):
            raise ValueError(f"ConvTranspose2d: weight must be (in, out, kH, kW) and bias (out,), "
                             f"got {weight.shape} and {bias.shape}")
        self.params = {"weight": weight, "bias": bias}
        self.grads = {
            "weight": np.zeros_like(weight) if grad_weight is None else grad_weight,
            "bias": np.zeros_like(bias) if grad_bias is None else grad_bias,
        }
        self.stride = as_pair("stride", stride, 1)
        self.padding = as_pair("padding", padding, 0)
        self.output_padding = as_pair("output_padding", output_padding, 0)
        if any(op >= s for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"ConvTranspose2d: output_padding={self.output_padding} must be smaller than "
                             f"stride={self.stride} in each axis")
        self.kernel_size = weight.shape[2:]

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return conv_transpose2d_output_size((h, w), self.kernel_size, self.stride, self.padding, self.output_padding)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Inference: y (B, out, Ho, Wo), nothing kept for a backward."""
        _check_image(x, self.params["weight"].shape[0], "ConvTranspose2d")
        return conv_transpose2d_reference(x, self.params["weight"], self.params["bias"], self.stride, self.padding,
                                          self.output_padding)

    # y = y_pad[p : p + Ho] + b,  y_pad[tap ij] += einsum(x, W[:, :, i, j]): each input pixel scatters a kH x kW patch
    def forward(self, x: np.ndarray):
        y = self(x)

        # per tap: dx += einsum(dy_pad[tap ij], W[:, :, i, j]) (a Conv2d of dy),  dW[:, :, i, j] = einsum(x, dy_pad[tap ij])
        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
            dx, self.grads["weight"][...], self.grads["bias"][...] = conv_transpose2d_reference_backward(
                x, self.params["weight"], dy, self.stride, self.padding, self.output_padding)
            return dx if need_dx else None

        return y, backward

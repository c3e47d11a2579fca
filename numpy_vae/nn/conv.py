"""Convolutions over NCHW images, with PyTorch's semantics: Conv2d and ConvTranspose2d.

    Conv2d           y[n,o,h,w] = b[o] + Σ_c Σ_ij W[o,c,i,j] x[n,c, s h + i - p, s w + j - p]    W (out, in, kH, kW)
    ConvTranspose2d  the input-gradient of that convolution, applied to x                       W (in, out, kH, kW)

Both are written twice.  The ``*_reference`` functions are the clear version: the
input padded with zeros, then one loop over the kH kW kernel taps (i, j), each an
``einsum`` with the strided slice of the image that tap sees.  The layers use the
fast version, on contiguous channels-last (NHWC) arrays, whose two halves are adjoint:

    gather   (Conv2d forward, ConvTranspose2d backward) im2col: the strided windows of
             ``sliding_window_view`` copied out by one reshape into columns
             (B Ho Wo, kH kW C), one row per output pixel, then one matmul with the weights;
             the same columns give dW with a second matmul
    scatter  (Conv2d dx, ConvTranspose2d forward) one matmul of one row per input pixel with
             the weights, giving each of the kH kW taps' (B, H, W, C) images, then col2im: the
             taps' strided adds, into the output phase by phase (see ``_scatter``)

The channels-last layout also decides the layers' outputs: ``y`` has shape
(B, C, H, W) as torch's, but its memory is channels-last (``y.transpose(0, 2, 3, 1)``
is C-contiguous, as torch's ``channels_last`` memory format), so the next convolution
reads it without a copy.  ``np.ascontiguousarray(y)`` gives the NCHW layout.  Inputs
may have any strides.  float32 stays float32: no step of the fast path upcasts.  Work
arrays that live within one call are kept by the layer for the next (``_Scratch``), so a
layer serves one call at a time; what a call returns or a closure holds is always fresh.

Derivations: docs/gradients.md#conv2d, #convtranspose2d
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pair(name: str, value, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints >= minimum, as torch's conv layers take them."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum for v in pair):
        raise ValueError(f"{name}={value!r}: expected an integer >= {minimum} or a pair of them")
    return int(pair[0]), int(pair[1])


def _check_image(x: np.ndarray, channels: int, layer: str) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{layer}: expected x of shape (B, {channels}, H, W), got {x.shape}")


def conv2d_output_size(size, kernel, stride, padding) -> tuple[int, int]:
    """(H_out, W_out) = (H + 2p - k) // s + 1 per axis; ValueError when empty."""
    out = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding))
    if min(out) < 1:
        raise ValueError(f"Conv2d: kernel {kernel} is larger than the input {size} padded by {padding}")
    return out


def conv_transpose2d_output_size(size, kernel, stride, padding, output_padding) -> tuple[int, int]:
    """(H_out, W_out) = (H - 1) s - 2p + k + output_padding per axis; ValueError when empty."""
    out = tuple((n - 1) * s - 2 * p + k + op for n, k, s, p, op in zip(size, kernel, stride, padding, output_padding))
    if min(out) < 1:
        raise ValueError(f"ConvTranspose2d: padding {padding} leaves an empty output for input size {size}, "
                         f"kernel {kernel}, stride {stride}")
    return out


# ===================================================================== the clear version
# NCHW throughout, the input padded with zeros; tap (i, j) of the kernel sees the strided
# slice xp[:, :, i :: s, j :: s] (Ho x Wo of it) of the padded image.

def _tap(i: int, j: int, n_h: int, n_w: int, stride) -> tuple:
    """The slice of a padded image that kernel tap (i, j) meets at n_h x n_w output positions."""
    return (Ellipsis, slice(i, i + stride[0] * (n_h - 1) + 1, stride[0]),
            slice(j, j + stride[1] * (n_w - 1) + 1, stride[1]))


def conv2d_reference(x, weight, bias, stride=1, padding=0) -> np.ndarray:
    """y (B, O, Ho, Wo) = b + Σ_ij einsum(x_pad[tap ij], W[:, :, i, j]): x (B, C, H, W), W (O, C, kH, kW), b (O,)."""
    (sh, sw), (ph, pw) = _pair("stride", stride, 1), _pair("padding", padding, 0)
    _, _, kh, kw = weight.shape
    ho, wo = conv2d_output_size(x.shape[2:], (kh, kw), (sh, sw), (ph, pw))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((len(x), weight.shape[0], ho, wo), x.dtype) + bias[:, None, None]
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("bchw,oc->bohw", xp[_tap(i, j, ho, wo, (sh, sw))], weight[:, :, i, j])
    return y


def conv2d_reference_backward(x, weight, dy, stride=1, padding=0):
    """(dx (B, C, H, W), dW (O, C, kH, kW), db (O,)) for upstream dy (B, O, Ho, Wo).

    Per tap:  dx_pad[tap ij] += einsum(dy, W[:, :, i, j]),  dW[:, :, i, j] = einsum(dy, x_pad[tap ij]).
    """
    (sh, sw), (ph, pw) = _pair("stride", stride, 1), _pair("padding", padding, 0)
    _, _, kh, kw = weight.shape
    _, _, ho, wo = dy.shape
    h, w = x.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(weight)
    for i in range(kh):
        for j in range(kw):
            tap = _tap(i, j, ho, wo, (sh, sw))
            dxp[tap] += np.einsum("bohw,oc->bchw", dy, weight[:, :, i, j])
            dw[:, :, i, j] = np.einsum("bohw,bchw->oc", dy, xp[tap])
    return dxp[:, :, ph:ph + h, pw:pw + w], dw, dy.sum(axis=(0, 2, 3))


def conv_transpose2d_reference(x, weight, bias, stride=1, padding=0, output_padding=0) -> np.ndarray:
    """y (B, O, Ho, Wo): x (B, C, H, W) scattered, y_pad[tap ij] += einsum(x, W[:, :, i, j]), cropped, plus b.

    W (C, O, kH, kW), b (O,); y_pad is (H - 1) s + kH + output_padding high, y = y_pad[p : p + Ho] + b.
    """
    (sh, sw), (ph, pw) = _pair("stride", stride, 1), _pair("padding", padding, 0)
    oph, opw = _pair("output_padding", output_padding, 0)
    _, o, kh, kw = weight.shape
    h, w = x.shape[2:]
    ho, wo = conv_transpose2d_output_size((h, w), (kh, kw), (sh, sw), (ph, pw), (oph, opw))
    yp = np.zeros((len(x), o, ho + 2 * ph, wo + 2 * pw), x.dtype)
    for i in range(kh):
        for j in range(kw):
            yp[_tap(i, j, h, w, (sh, sw))] += np.einsum("bchw,co->bohw", x, weight[:, :, i, j])
    return yp[:, :, ph:ph + ho, pw:pw + wo] + bias[:, None, None]


def conv_transpose2d_reference_backward(x, weight, dy, stride=1, padding=0, output_padding=0):
    """(dx (B, C, H, W), dW (C, O, kH, kW), db (O,)) for upstream dy (B, O, Ho, Wo).

    dy_pad is dy placed at offset p in zeros of y_pad's size; per tap:
    dx += einsum(dy_pad[tap ij], W[:, :, i, j])  (a convolution of dy),  dW[:, :, i, j] = einsum(x, dy_pad[tap ij]).
    """
    (sh, sw), (ph, pw) = _pair("stride", stride, 1), _pair("padding", padding, 0)
    oph, opw = _pair("output_padding", output_padding, 0)
    _, _, kh, kw = weight.shape
    h, w = x.shape[2:]
    b, o, ho, wo = dy.shape
    dyp = np.zeros((b, o, (h - 1) * sh + kh + oph, (w - 1) * sw + kw + opw), dy.dtype)
    dyp[:, :, ph:ph + ho, pw:pw + wo] = dy
    dx, dw = np.zeros_like(x), np.zeros_like(weight)
    for i in range(kh):
        for j in range(kw):
            tap = _tap(i, j, h, w, (sh, sw))
            dx += np.einsum("bohw,co->bchw", dyp[tap], weight[:, :, i, j])
            dw[:, :, i, j] = np.einsum("bchw,bohw->co", x, dyp[tap])
    return dx, dw, dy.sum(axis=(0, 2, 3))


# ====================================================================== the fast version
class _Scratch:
    """A layer's work arrays that live only within one call (never returned, never held by a closure),
    kept from call to call while shape and dtype stay the same.

    Fresh memory costs a page fault per 4 KiB on first touch, and the allocator returns big blocks
    to the system when they are freed (measured here: 3.6 us per fault; Conv2d(32, 64, 4, 2, 1)'s
    forward and backward at batch 128, which go through 18 MB of work arrays, took 39 ms with
    fresh ones, 23 ms with these).  So a layer is not re-entrant: one call at a time.  Every
    array a call returns or a closure holds is fresh, so closures stay independent.
    """

    def __init__(self):
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape, dtype, zeros: bool = False) -> np.ndarray:
        """An array of shape and dtype, its contents left from the last call (zeros when first made
        with ``zeros=True``: for a padded image whose border nobody writes)."""
        a = self._arrays.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype != dtype:
            a = self._arrays[name] = (np.zeros if zeros else np.empty)(shape, dtype)
        return a


def _im2col(x_cl: np.ndarray, kernel, stride, padding, out_size, scratch: _Scratch,
            out: np.ndarray | None = None) -> np.ndarray:
    """Columns (B Ho Wo, kH kW C) of a channels-last image x_cl (B, H, W, C), C-contiguous (into ``out``
    when given).

    Row (n, ho, wo) holds the window x_pad[n, s ho : s ho + kH, s wo : s wo + kW, :], flattened
    (i, j, c) with c fastest, so each copied run is a pixel's C contiguous channels.
    """
    b, h, w, c = x_cl.shape
    (ph, pw), (ho, wo) = padding, out_size
    if ph or pw:
        xp = scratch.get("padded", (b, h + 2 * ph, w + 2 * pw, c), x_cl.dtype, zeros=True)
        xp[:, ph:ph + h, pw:pw + w] = x_cl                                    # the border stays 0
    else:
        xp = x_cl
    windows = sliding_window_view(xp, kernel, axis=(1, 2))                  # (B, Hp-kH+1, Wp-kW+1, C, kH, kW), a view
    windows = windows[:, :stride[0] * (ho - 1) + 1:stride[0], :stride[1] * (wo - 1) + 1:stride[1]]
    windows = windows.transpose(0, 1, 2, 4, 5, 3)                           # (B, Ho, Wo, kH, kW, C)
    if out is None:
        return windows.reshape(b * ho * wo, -1)                             # the one copy
    np.copyto(out.reshape(windows.shape), windows)
    return out


def _phases(n_in: int, n_out: int, kernel: int, stride: int, padding: int):
    """Along one axis, how the taps of a scatter (col2im) land: input position a, tap i -> output s a + i - p.

    The outputs split by residue r = (s a + i - p) mod s into s phases; phase r holds the n_r
    outputs r, r + s, ..., which only the taps i = r + p (mod s) reach, output r + s m from input
    a = m - (i - p - r) / s.  Returns [(r, n_r, [(i, slice of a, slice of m), ...]), ...].
    """
    phases = []
    for r in range(stride):
        n_r = len(range(r, n_out, stride))
        taps = []
        for i in range(kernel):
            if (i - padding - r) % stride == 0:
                shift = (i - padding - r) // stride                       # m = a + shift
                lo, hi = max(0, -shift), min(n_in, n_r - shift)
                if lo < hi:
                    taps.append((i, slice(lo, hi), slice(lo + shift, hi + shift)))
        phases.append((r, n_r, taps))
    return phases


def _scatter(m: np.ndarray, w_mat: np.ndarray, kernel, in_size, out_size, stride, padding, init,
             scratch: _Scratch) -> np.ndarray:
    """col2im(m W_mat) + init: every input pixel scatters its kH x kW patch, summed into a channels-last
    image (B, Ho, Wo, C).  m (B H W, C_in) one row per input pixel, w_mat (C_in, kH kW C) flattened
    (i, j, c), init (C,) or 0.

    One matmul gives every tap's term, terms[..., i, j, :] = m W_ij, a (B, H, W, C) image per tap.
    They are summed over the output's phases (its pixels of one residue mod s, which only some taps
    reach: a quarter of them for kernel 4, stride 2): each phase in a contiguous buffer, written out
    with one strided copy.  That is 10-20% faster than adding every tap straight into the strided
    output.  (One matmul per tap, each consumed while in cache, is 15% faster on an idle machine
    but 25% slower as soon as another process holds one of two cores: each BLAS call then waits
    on a scheduler tick or more.)
    """
    b = len(m) // (in_size[0] * in_size[1])
    kh, kw = kernel
    dtype = np.result_type(m, w_mat)
    terms = np.matmul(m, w_mat, out=scratch.get("terms", (len(m), w_mat.shape[1]), dtype))
    terms = terms.reshape(b, *in_size, kh, kw, -1)
    c = terms.shape[-1]
    out = np.empty((b, *out_size, c), dtype)
    buf = scratch.get("phase", (b, -(-out_size[0] // stride[0]), -(-out_size[1] // stride[1]), c), dtype)
    for rh, n_rh, taps_h in _phases(in_size[0], out_size[0], kh, stride[0], padding[0]):
        for rw, n_rw, taps_w in _phases(in_size[1], out_size[1], kw, stride[1], padding[1]):
            if n_rh == 0 or n_rw == 0:
                continue
            phase = buf[:, :n_rh, :n_rw]
            phase[...] = init
            for i, a, mh in taps_h:
                for j, a_w, mw in taps_w:
                    phase[:, mh, mw] += terms[:, a, a_w, i, j]
            out[:, rh::stride[0], rw::stride[1]] = phase
    return out


def _channels_last_2d(x: np.ndarray) -> np.ndarray:
    """x (B, C, H, W) as a (B H W, C) matrix: a view when x's memory is channels-last, else one copy."""
    b, c, h, w = x.shape
    return x.transpose(0, 2, 3, 1).reshape(b * h * w, c)


def _sum_rows(m: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out (C,) = Σ_n m[n] for m (N, C): the bias gradient, summed over every pixel of the batch.

    NumPy adds the rows of a C-contiguous (N, C) matrix in one chain of N additions
    (rounding error growing like N u; torch's sum is pairwise).  Here k ~ sqrt(N) blocks of
    N / k rows are summed first and then their k partial sums, two chains of ~sqrt(N):
    as fast, and within a factor 2 of torch's error on these sizes (measured, float32).
    """
    n = len(m)
    k = max(1, int(np.sqrt(n)))
    full = n - n % k
    np.sum(m[:full].reshape(k, full // k, -1).sum(axis=1), axis=0, out=out)
    if full < n:
        out += m[full:].sum(axis=0)
    return out


def _at_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a^T b (p, q) for tall a (N, p) and b (N, q), N the batch's pixels: a weight gradient.

    OpenBLAS on two threads runs this long-inner-dimension product as (p, q) with p >= q in a
    few synchronisations; with p < q it takes many, and each costs a scheduler tick (4 ms) as
    soon as another process holds the second core (measured: 16 x 25088 times 25088 x 32 took
    640 ms that way, 8 ms the other).  So the product is formed as (b^T a)^T when p < q.
    """
    return a.T @ b if a.shape[1] >= b.shape[1] else (b.T @ a).T


def _as_nchw(m: np.ndarray, b: int, h: int, w: int) -> np.ndarray:
    """A (B H W, C) matrix as the (B, C, H, W) array it holds, channels-last in memory (a view)."""
    return m.reshape(b, h, w, -1).transpose(0, 3, 1, 2)


class Conv2d:
    """Cross-correlation over NCHW images, as ``torch.nn.Conv2d`` (no dilation, no groups).

    ``params`` and ``grads`` hold ``weight`` (out, in, kH, kW) and ``bias`` (out,), as torch
    stores them; they may be views into the model's flat buffer: the layer reads its
    parameters and writes its gradients in place.  ``stride`` and ``padding`` are ints or
    (h, w) pairs; the padding is zeros.

    forward:  x (B, in, H, W) -> y (B, out, Ho, Wo), Ho = (H + 2 p - kH) // s + 1 (Wo alike),
              and its backward closure; y is channels-last in memory (see the module docstring)
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
        self.stride = _pair("stride", stride, 1)
        self.padding = _pair("padding", padding, 0)
        self.kernel_size = weight.shape[2:]
        self._scratch = _Scratch()

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return conv2d_output_size((h, w), self.kernel_size, self.stride, self.padding)

    def _weight_matrix(self) -> np.ndarray:
        """W (out, in, kH, kW) as (out, kH kW in), the column order of _im2col and _scatter."""
        w = self.params["weight"]
        return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)

    def _forward(self, x: np.ndarray):
        _check_image(x, self.params["weight"].shape[1], "Conv2d")
        b, _, h, w = x.shape
        ho, wo = self.output_size(h, w)
        cols = _im2col(x.transpose(0, 2, 3, 1), self.kernel_size, self.stride, self.padding, (ho, wo), self._scratch)
        y = cols @ self._weight_matrix().T                                      # (B Ho Wo, out)
        y += self.params["bias"]
        return _as_nchw(y, b, ho, wo), cols

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Inference: y (B, out, Ho, Wo), nothing kept for a backward."""
        return self._forward(x)[0]

    # y = cols(x) W^T + b      cols (B Ho Wo, kH kW in): one row per output pixel, its input window
    def forward(self, x: np.ndarray):
        y, cols = self._forward(x)
        b, _, h, w = x.shape

        # dW = dy^T cols(x),  db = sum over (B, Ho, Wo) of dy,  dx = col2im(dy W): dy's pixels scatter through W
        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
            dy2 = _channels_last_2d(dy)                                         # (B Ho Wo, out)
            weight = self.params["weight"]
            o, c, kh, kw = weight.shape
            self.grads["weight"][...] = _at_b(cols, dy2).reshape(kh, kw, c, o).transpose(3, 2, 0, 1)   # dW^T
            _sum_rows(dy2, self.grads["bias"])
            if not need_dx:
                return None
            dx = _scatter(dy2, self._weight_matrix(), self.kernel_size, dy.shape[2:], (h, w), self.stride,
                          self.padding, 0, self._scratch)
            return dx.transpose(0, 3, 1, 2)

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
              (Wo alike), and its backward closure; y is channels-last in memory
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
        self.stride = _pair("stride", stride, 1)
        self.padding = _pair("padding", padding, 0)
        self.output_padding = _pair("output_padding", output_padding, 0)
        if any(op >= s for op, s in zip(self.output_padding, self.stride)):
            raise ValueError(f"ConvTranspose2d: output_padding={self.output_padding} must be smaller than "
                             f"stride={self.stride} in each axis")
        self.kernel_size = weight.shape[2:]
        self._scratch = _Scratch()

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return conv_transpose2d_output_size((h, w), self.kernel_size, self.stride, self.padding, self.output_padding)

    def _weight_matrix(self) -> np.ndarray:
        """W (in, out, kH, kW) as (in, kH kW out), the column order of _im2col and _scatter."""
        w = self.params["weight"]
        return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)

    def _forward(self, x: np.ndarray):
        _check_image(x, self.params["weight"].shape[0], "ConvTranspose2d")
        b, _, h, w = x.shape
        ho, wo = self.output_size(h, w)
        x2 = _channels_last_2d(x)                                                # (B H W, in)
        y = _scatter(x2, self._weight_matrix(), self.kernel_size, (h, w), (ho, wo), self.stride, self.padding,
                     self.params["bias"], self._scratch)
        return y.transpose(0, 3, 1, 2), x2

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Inference: y (B, out, Ho, Wo), nothing kept for a backward."""
        return self._forward(x)[0]

    # y = col2im(x W) + b      x (B H W, in), W (in, kH kW out): each input pixel scatters a kH x kW patch
    def forward(self, x: np.ndarray):
        y, x2 = self._forward(x)
        b, _, h, w = x.shape

        # dx = cols(dy) W^T  (the Conv2d forward of dy),  dW = x^T cols(dy),  db = sum over (B, Ho, Wo) of dy
        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
            weight = self.params["weight"]
            c, o, kh, kw = weight.shape
            dy_cl = dy.transpose(0, 2, 3, 1)
            k = self.kernel_size[0] * self.kernel_size[1] * o
            cols = _im2col(dy_cl, self.kernel_size, self.stride, self.padding, (h, w), self._scratch,
                           self._scratch.get("cols", (b * h * w, k), dy.dtype))           # (B H W, kH kW out)
            self.grads["weight"][...] = _at_b(cols, x2).reshape(kh, kw, o, c).transpose(3, 2, 0, 1)    # dW^T
            _sum_rows(_channels_last_2d(dy), self.grads["bias"])
            if not need_dx:
                return None
            return _as_nchw(cols @ self._weight_matrix().T, b, h, w)

        return y, backward

"""The tuned convolutions that training runs by default: im2col and one matmul, channels-last memory.

``FastConv2d`` and ``FastConvTranspose2d`` are ``numpy_vae.nn``'s Conv2d and ConvTranspose2d
(the same parameters, checks and output sizes) with a faster body.  The reference body, the
explicit sum over the kernel's taps, is in numpy_vae/nn/conv.py; tests/test_kernels.py proves the
two equal, forward and backward, within the rounding of a sum of that many products.  The fast
body works on contiguous channels-last (NHWC) arrays, whose two halves are adjoint:

    gather   (Conv2d forward, ConvTranspose2d backward) im2col: the strided windows of
             ``sliding_window_view`` copied out by one reshape into columns
             (B Ho Wo, kH kW C), one row per output pixel, then one matmul with the weights;
             the same columns give dW with a second matmul
    scatter  (Conv2d dx, ConvTranspose2d forward) col2im(x W) computed as a gather: each output
             phase (pixels of one residue mod the stride) is a stride-1 convolution of the input
             with ceil(k / s)^2 of the taps, so one im2col of the input with that window and one
             matmul with the taps sorted by phase give every output pixel, BLAS doing the sum
             over taps; then s^2 strided copies (see ``_scatter``; ``_scatter_taps``, one matmul
             per input pixel and the taps' strided adds, where few output channels make the
             windows the bigger array)

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

from ..nn.conv import Conv2d, ConvTranspose2d, _check_image


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


def _scatter_taps(m: np.ndarray, w_mat: np.ndarray, kernel, in_size, out_size, stride, padding, init,
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


def _taps_by_phase(n_in: int, n_out: int, kernel: int, stride: int, padding: int):
    """Along one axis, how a scatter (col2im) lands, as windows of the input: input a, tap i -> output s a + i - p.

    Write o + p = s t + r (0 <= r < s) and i = s q + r: output o sums input a = t - q through tap
    s q + r, q = 0 .. Q - 1, Q = ceil(k / s) (a tap >= k is a zero weight).  So every output of
    one t reads the same Q inputs t - Q + 1 .. t: a Q-wide window of the input padded by Q - 1
    zeros in front, starting at t.  The outputs need t = t_lo .. t_hi.  Returns (Q, t_lo, T, pad
    before, pad after) with T = t_hi - t_lo + 1 windows; the padded input is long enough for them.
    """
    q = -(-kernel // stride)
    t_lo, t_hi = padding // stride, (padding + n_out - 1) // stride
    return q, t_lo, t_hi - t_lo + 1, q - 1, max(0, t_hi + 1 - n_in)


def _scatter(x_cl: np.ndarray, weight: np.ndarray, out_size, stride, padding, bias,
             scratch: _Scratch) -> np.ndarray:
    """col2im(x W) + bias: every input pixel scatters its kH x kW patch, summed into a channels-last
    image (B, Ho, Wo, C).  x_cl (B, H, W, C_in) channels-last, weight (C_in, C, kH, kW) (ConvTranspose2d's
    layout; Conv2d's (out, in, ...) scatters dy the same way), bias (C,) or None.

    Gathered, not scattered: output o = s t + r - p sums the window of Q inputs that ends at
    input t, through the taps s q + r (``_taps_by_phase``).  So one im2col of x with a
    Q x Q window, stride 1 (B T_h T_w, Q Q C_in), times one matrix (Q Q C_in, s s C) that
    holds the taps by phase, gives every output pixel in one matmul, the sum over taps done by
    BLAS; the s x s phases (r_h, r_w) are then copied out strided.  For kernel 4, stride 2 that
    replaces the 16 strided adds of each tap's image (a C_in-long matmul each, the
    previous body) by a 4 C_in-long one, at (T_h T_w) / (H W) the FLOPs (1.31 at 7 x 7, 1.15 at
    14 x 14: the windows at the border that the padding crops).  Where those windows would hold
    more numbers than the taps' images (few output channels: ConvTranspose2d(32, 1) has 128 per
    window against 16 per input pixel), the taps' body ``_scatter_taps`` runs instead.
    """
    b, h, w, c_in = x_cl.shape
    _, c, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    qh, th0, nth, bh, ah = _taps_by_phase(h, out_size[0], kh, sh, ph)
    qw, tw0, ntw, bw, aw = _taps_by_phase(w, out_size[1], kw, sw, pw)
    if qh * qw * c_in * nth * ntw > kh * kw * c * h * w:         # the windows would outweigh the taps' images
        return _scatter_taps(x_cl.reshape(b * h * w, c_in), _weight_matrix(weight), (kh, kw), (h, w), out_size,
                             stride, padding, 0 if bias is None else bias, scratch)
    dtype = np.result_type(x_cl, weight)
    # the taps by phase: wt[q'h, q'w, c_in, r_h, r_w, c] = W[c_in, c, s (Q - 1 - q'h) + r_h, s (Q - 1 - q'w) + r_w]
    wt = np.zeros((c_in, c, qh * sh, qw * sw), dtype)
    wt[:, :, :kh, :kw] = weight
    wt = wt.reshape(c_in, c, qh, sh, qw, sw)[:, :, ::-1, :, ::-1].transpose(2, 4, 0, 3, 5, 1)
    wt = wt.reshape(qh * qw * c_in, sh * sw * c)
    xp = scratch.get("scatter_padded", (b, bh + h + ah, bw + w + aw, c_in), x_cl.dtype, zeros=True)
    xp[:, bh:bh + h, bw:bw + w] = x_cl                                   # the border stays 0
    windows = sliding_window_view(xp, (qh, qw), axis=(1, 2))[:, th0:th0 + nth, tw0:tw0 + ntw]
    cols = scratch.get("scatter_cols", (b * nth * ntw, qh * qw * c_in), x_cl.dtype)
    np.copyto(cols.reshape(b, nth, ntw, qh, qw, c_in), windows.transpose(0, 1, 2, 4, 5, 3))
    res = np.matmul(cols, wt, out=scratch.get("scatter_res", (len(cols), wt.shape[1]), dtype))
    res = res.reshape(b, nth, ntw, sh, sw, c)
    out = np.empty((b, *out_size, c), dtype)
    for oh in range(min(sh, out_size[0])):                                # output phase o = oh, oh + s, ...
        rh, t_h = (oh + ph) % sh, (oh + ph) // sh - th0
        n_h = len(range(oh, out_size[0], sh))
        for ow in range(min(sw, out_size[1])):
            rw, t_w = (ow + pw) % sw, (ow + pw) // sw - tw0
            n_w = len(range(ow, out_size[1], sw))
            src, dst = res[:, t_h:t_h + n_h, t_w:t_w + n_w, rh, rw], out[:, oh::sh, ow::sw]
            np.copyto(dst, src) if bias is None else np.add(src, bias, out=dst)
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


def _weight_matrix(w: np.ndarray) -> np.ndarray:
    """W (A, B, kH, kW) as (A, kH kW B), the column order of _im2col and _scatter: Conv2d's (out, in, ...)
    gives (out, kH kW in), ConvTranspose2d's (in, out, ...) gives (in, kH kW out)."""
    return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


def _as_nchw(m: np.ndarray, b: int, h: int, w: int) -> np.ndarray:
    """A (B H W, C) matrix as the (B, C, H, W) array it holds, channels-last in memory (a view)."""
    return m.reshape(b, h, w, -1).transpose(0, 3, 1, 2)


class _FastBody:
    """What both fast layers add to their reference: work arrays kept between calls (one call at a time), and
    inference through the same ``_forward`` as training, keeping nothing for a backward."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._scratch = _Scratch()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Inference: y (B, out, Ho, Wo), nothing kept for a backward."""
        return self._forward(x)[0]


class FastConv2d(_FastBody, Conv2d):
    """``numpy_vae.nn.Conv2d`` with the fast body: the same parameters, checks and results (within rounding);
    y is channels-last in memory, and the layer keeps work arrays between calls (one call at a time)."""

    def _forward(self, x: np.ndarray):
        _check_image(x, self.params["weight"].shape[1], "Conv2d")
        b, _, h, w = x.shape
        ho, wo = self.output_size(h, w)
        cols = _im2col(x.transpose(0, 2, 3, 1), self.kernel_size, self.stride, self.padding, (ho, wo), self._scratch)
        y = cols @ _weight_matrix(self.params["weight"]).T                      # (B Ho Wo, out)
        y += self.params["bias"]
        return _as_nchw(y, b, ho, wo), cols

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
            dx = _scatter(dy.transpose(0, 2, 3, 1), weight, (h, w), self.stride, self.padding, None,
                          self._scratch)
            return dx.transpose(0, 3, 1, 2)

        return y, backward


class FastConvTranspose2d(_FastBody, ConvTranspose2d):
    """``numpy_vae.nn.ConvTranspose2d`` with the fast body: the same parameters, checks and results (within rounding);
    y is channels-last in memory, and the layer keeps work arrays between calls (one call at a time)."""

    def _forward(self, x: np.ndarray):
        _check_image(x, self.params["weight"].shape[0], "ConvTranspose2d")
        b, _, h, w = x.shape
        ho, wo = self.output_size(h, w)
        x2 = _channels_last_2d(x)                                                # (B H W, in)
        y = _scatter(x.transpose(0, 2, 3, 1), self.params["weight"], (ho, wo), self.stride, self.padding,
                     self.params["bias"], self._scratch)
        return y.transpose(0, 3, 1, 2), x2

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
            return _as_nchw(cols @ _weight_matrix(weight).T, b, h, w)

        return y, backward

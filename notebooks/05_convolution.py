# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. Convolution and transposed convolution
#
# A convolution is a Linear layer applied to every window of the image with the same weights. Here it is
# written three ways: as the explicit sum over the kernel's taps (the definition), its backward by hand,
# and then im2col, which lays the windows out as the rows of a matrix so that the whole layer is one
# matmul, the same computation in another order. Then the transposed convolution, the convolution's
# input gradient used as a layer. Derivations: [Conv2d](../docs/gradients.md#conv2d) and
# [ConvTranspose2d](../docs/gradients.md#convtranspose2d).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view

from numpy_vae.nn import Conv2d, ConvTranspose2d
from numpy_vae.nn.compare import cmp

rng = np.random.default_rng(0)
B, C, O, H, W_, k, s, p = 2, 2, 3, 7, 6, 3, 2, 1     # batch, in and out channels, image, kernel, stride, padding
x = rng.standard_normal((B, C, H, W_))
W = rng.standard_normal((O, C, k, k)) * 0.3         # (out, in, kH, kW), as torch.nn.Conv2d stores it
b = rng.standard_normal(O) * 0.1
Ho, Wo = (H + 2 * p - k) // s + 1, (W_ + 2 * p - k) // s + 1
dy = rng.standard_normal((B, O, Ho, Wo))           # the gradient arriving from above

# %% [markdown]
# ## The explicit sum over taps
#
# `y[n,o,h,w] = b[o] + sum_c sum_i sum_j W[o,c,i,j] xp[n,c, s h + i, s w + j]`, with `xp` the input
# padded by `p` zeros. For a fixed tap `(i, j)` the pixels `xp[:, :, s h + i, s w + j]` over all
# `(h, w)` form a strided slice, so one loop over the `k x k` taps does the whole layer.

# %%
def tap(i, j, n_h, n_w, s):
    """The strided slice of a padded image that kernel tap (i, j) meets at n_h x n_w output pixels."""
    return (Ellipsis, slice(i, i + s * (n_h - 1) + 1, s), slice(j, j + s * (n_w - 1) + 1, s))


def conv2d_explicit(x, W, b, s, p):
    n_h, n_w = (x.shape[2] + 2 * p - W.shape[2]) // s + 1, (x.shape[3] + 2 * p - W.shape[3]) // s + 1
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    y = np.zeros((len(x), W.shape[0], n_h, n_w)) + b[:, None, None]
    for i in range(W.shape[2]):
        for j in range(W.shape[3]):
            y += np.einsum("bchw,oc->bohw", xp[tap(i, j, n_h, n_w, s)], W[:, :, i, j])
    return y


y = conv2d_explicit(x, W, b, s, p)
xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
yt = F.conv2d(xt, Wt, bt, stride=s, padding=p)
yt.backward(torch.tensor(dy))
cmp("y", y, yt, against="torch", header=True)

# %% [markdown]
# ## Its backward, tap by tap
#
# Each tap's term is an einsum of a slice of `xp` with `W[:, :, i, j]`, a small Linear layer; so its
# backward is a Linear's backward: `W[:, :, i, j]` gets `sum dy * slice`, and the slice of `dxp` gets
# `dy` through `W[:, :, i, j]`, *added*, since windows overlap. Crop the padding off at the end.

# %%
xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))     # the padded input, (B, C, H + 2p, W + 2p)

# %% tags=["solution"] hint="for each tap (i, j): dW[:, :, i, j] = einsum('bohw,bchw->oc', dy, xp[tap]); dxp[tap] += einsum('bohw,oc->bchw', dy, W[:, :, i, j]); db sums dy over (batch, h, w); dx = dxp cropped by p"
# dx (B, C, H, W), dW (O, C, k, k), db (O,); dxp, the gradient of the padded input, on the way
dxp, dW = np.zeros_like(xp), np.zeros_like(W)
for i in range(k):
    for j in range(k):
        t = tap(i, j, Ho, Wo, s)
        dW[:, :, i, j] = np.einsum("bohw,bchw->oc", dy, xp[t])
        dxp[t] += np.einsum("bohw,oc->bchw", dy, W[:, :, i, j])
db = dy.sum(axis=(0, 2, 3))
dx = dxp[:, :, p:p + H, p:p + W_]

# %%
cmp("dx", dx, xt.grad, header=True)
cmp("dW", dW, Wt.grad)
cmp("db", db, bt.grad)
conv = Conv2d(W.copy(), b.copy(), stride=s, padding=p)
y_layer, conv_backward = conv.forward(x)
cmp("y", y_layer, y, against="explicit sum")
cmp("dx", conv_backward(dy), dx, against="by hand")
cmp("dW", conv.grads["weight"], dW, against="by hand")
cmp("db", conv.grads["bias"], db, against="by hand")

# %% [markdown]
# ## im2col: the same computation as one matmul
#
# Copy each output pixel's window `xp[n, :, s h : s h + k, s w : s w + k]` into one row of `cols`
# (`B Ho Wo` rows of `C k k` numbers) and flatten `W` to `(O, C k k)` in the same order. The layer is
# then a Linear on the rows: `y = cols W_mat^T + b`, and its backward is the Linear's: `dW_mat = dy^T cols`,
# `dcols = dy W_mat`, and `col2im` adds each row of `dcols` back onto the window it came from.

# %%
windows = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]      # (B, C, Ho, Wo, k, k), a view
cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(B * Ho * Wo, C * k * k)  # one row per output pixel
W_mat = W.reshape(O, C * k * k)
y_cols = cols @ W_mat.T + b                                                 # (B Ho Wo, O)
cmp("y", y_cols.reshape(B, Ho, Wo, O).transpose(0, 3, 1, 2), y, against="explicit sum", header=True)

# %% tags=["solution"] hint="dW_mat = dy_rows^T cols, reshaped to W's shape; dcols = dy_rows W_mat; col2im: for each tap add dcols' column block for (c, i, j) back onto dxp's strided slice"
# dW_im2col (O, C, k, k) and dx_im2col (B, C, H, W), from the matrices
dy_rows = dy.transpose(0, 2, 3, 1).reshape(B * Ho * Wo, O)
dW_im2col = (dy_rows.T @ cols).reshape(O, C, k, k)
dcols = (dy_rows @ W_mat).reshape(B, Ho, Wo, C, k, k)
dxp_cols = np.zeros_like(xp)
for i in range(k):
    for j in range(k):
        dxp_cols[tap(i, j, Ho, Wo, s)] += dcols[..., i, j].transpose(0, 3, 1, 2)
dx_im2col = dxp_cols[:, :, p:p + H, p:p + W_]

# %%
cmp("dW", dW_im2col, dW, against="explicit sum", header=True)
cmp("dx", dx_im2col, dx, against="explicit sum")

# %% [markdown]
# ## The transposed convolution
#
# `conv_transpose(x) = K^T x`, where `K` is the convolution with the same weight: the forward of a
# transposed convolution *is* the convolution's `dx` computation, applied to `x`. Each input pixel
# scatters a `k x k` patch of its channels through `W`. Its backward then is the convolution's forward:
# `dx = conv2d(dy, W)` with no bias. torch stores its weight `(in, out, kH, kW)`.

# %%
Wt_w = rng.standard_normal((O, C, k, k)) * 0.3      # ConvTranspose2d(O -> C): weight (in=O, out=C, k, k)
bt_w = rng.standard_normal(C) * 0.1
u = rng.standard_normal((B, O, Ho, Wo))             # its input, the size of the convolution's output
out_pad = (H - ((Ho - 1) * s - 2 * p + k), W_ - ((Wo - 1) * s - 2 * p + k))   # which sizes map to Ho x Wo: H x W_
ut, Wtt, btt = (torch.tensor(a, requires_grad=True) for a in (u, Wt_w, bt_w))
vt = F.conv_transpose2d(ut, Wtt, btt, stride=s, padding=p, output_padding=out_pad)
dv = rng.standard_normal(vt.shape)
vt.backward(torch.tensor(dv))

# %% tags=["solution"] hint="du = conv2d_explicit(dv, Wt_w, zero bias, s, p): the transposed convolution's input gradient is the convolution's forward with the same weight"
# du (B, O, Ho, Wo): the transposed convolution's input gradient
du = conv2d_explicit(dv, Wt_w, np.zeros(O), s, p)

# %%
tconv = ConvTranspose2d(Wt_w.copy(), bt_w.copy(), stride=s, padding=p, output_padding=out_pad)
v_layer, tconv_backward = tconv.forward(u)
cmp("v", v_layer, vt, against="torch", header=True)
cmp("du", du, ut.grad)
cmp("du", tconv_backward(dv), du, against="by hand")
cmp("dW", tconv.grads["weight"], Wtt.grad, against="autograd")

# %% [markdown]
# ## The picture: how many taps reach each output pixel
#
# With stride 2 and kernel 3, a transposed convolution's patches overlap on some rows and columns and not
# on others, so a constant input gives a checkerboard (left; kernel 4 overlaps evenly, as the conv VAE's
# layers do). Right: the im2col matrix of the first image, one row per output pixel; the zero columns
# are the padding.

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
for ax, kernel in zip(axes[:2], (3, 4)):
    counts = F.conv_transpose2d(torch.ones(1, 1, 6, 6), torch.ones(1, 1, kernel, kernel), stride=2, padding=1)
    im = ax.imshow(counts[0, 0], cmap="viridis")
    ax.set_title(f"taps per pixel, kernel {kernel}, stride 2")
    fig.colorbar(im, ax=ax, fraction=0.046)
axes[2].imshow(cols[: Ho * Wo], aspect="auto", cmap="coolwarm")
axes[2].set(title="im2col rows (image 1)", xlabel="C k k window entries", ylabel="output pixel")
plt.tight_layout()
plt.show()

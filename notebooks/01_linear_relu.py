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
# # 1. Linear and ReLU: a backward by hand
#
# The smallest network there is, `loss = sum(c * relu(x W^T + b))`, broken into one-line steps. You write
# the backward of each step, and `cmp` holds it against PyTorch's autograd (float64, relative error below
# 1e-10), then against central finite differences, then against `numpy_vae`'s own `Linear` and `ReLU`.
#
# The derivations: [Linear](../docs/gradients.md#linear) and [ReLU](../docs/gradients.md#relu) in
# docs/gradients.md.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from numpy_vae.nn import Linear, ReLU
from numpy_vae.nn.compare import cmp
from numpy_vae.nn.gradcheck import numerical_gradient

rng = np.random.default_rng(0)
B, n_in, n_out = 4, 5, 3                       # batch, input features, output features
x = rng.standard_normal((B, n_in))
W = rng.standard_normal((n_out, n_in)) * 0.5   # stored (out, in), as torch.nn.Linear stores it
b = rng.standard_normal(n_out) * 0.1
c = rng.standard_normal((B, n_out))            # fixed weights: the loss is a weighted sum of the outputs

# %% [markdown]
# ## The forward, one line per step

# %%
h = x @ W.T + b          # (B, out)   the Linear layer
y = np.maximum(h, 0)     # (B, out)   ReLU
loss = (c * y).sum()     # ()         a scalar to differentiate
loss

# %% [markdown]
# The same steps in PyTorch, keeping every intermediate's gradient so that each of yours can be compared.

# %%
xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
ht = xt @ Wt.T + bt
yt = torch.relu(ht)
for t in (ht, yt):
    t.retain_grad()
(torch.tensor(c) * yt).sum().backward()

# %% [markdown]
# ## The backward, one line per step, from the loss down
#
# `loss = sum_bj c_bj y_bj`, so each output's gradient is its weight.

# %% tags=["solution"] hint="loss = sum(c * y) is linear in y: its derivative with respect to y_bj is c_bj"
# dloss/dy, shape (B, out)
dy = c

# %%
cmp("dy", dy, yt.grad, header=True)

# %% [markdown]
# ReLU passes the gradient through where its input was positive and stops it elsewhere.

# %% tags=["solution"] hint="y = max(h, 0): dy/dh is 1 where h > 0 and 0 elsewhere"
# dloss/dh, shape (B, out)
dh = dy * (h > 0)

# %%
cmp("dh", dh, ht.grad)

# %% [markdown]
# The Linear layer: `h_bj = sum_i x_bi W_ji + b_j`. Each weight touches every sample of the batch, so its
# gradient sums over the batch; each input touches every output.

# %% tags=["solution"] hint="dW_ji = sum_b dh_bj x_bi (shape (out, in)); db_j = sum_b dh_bj; dx_bi = sum_j dh_bj W_ji"
# dloss/dW (out, in), dloss/db (out,), dloss/dx (B, in)
dW = dh.T @ x
db = dh.sum(axis=0)
dx = dh @ W

# %%
cmp("dW", dW, Wt.grad, header=True)
cmp("db", db, bt.grad)
cmp("dx", dx, xt.grad)

# %% [markdown]
# ## Against central differences
#
# Autograd could share a mistake with us (a wrong model of the loss); finite differences cannot. Nudge each
# entry by `+-h` and take `(f(+h) - f(-h)) / 2h`: its error is O(h^2) from the Taylor series plus about
# `eps |f| / h` from rounding, so the relative error is near 1e-9, not 1e-16.

# %%
def f():
    return float((c * np.maximum(x @ W.T + b, 0)).sum())


cmp("dW", dW, numerical_gradient(f, W), tol=1e-7, against="central diff", header=True)
cmp("db", db, numerical_gradient(f, b), tol=1e-7, against="central diff")
cmp("dx", dx, numerical_gradient(f, x), tol=1e-7, against="central diff")

# %% [markdown]
# How small should `h` be? Too small and `f(+h) - f(-h)` is mostly rounding, an error growing as 1/h.
# Too large and the Taylor error grows as h^2 for a curved loss (here the same layer with tanh in place of
# ReLU, whose dW is `((c (1 - tanh(h)^2))^T x`); our ReLU loss is piecewise linear, so it has no Taylor
# error at all until a step crosses a kink of the ReLU, where the error jumps.

# %%
def f_tanh():
    return float((c * np.tanh(x @ W.T + b)).sum())


dW_tanh = (c * (1 - np.tanh(h) ** 2)).T @ x
steps = np.logspace(-13, 0, 27)
fig, ax = plt.subplots(figsize=(6, 3.6))
for label, fn, exact in (("ReLU (piecewise linear)", f, dW), ("tanh (curved)", f_tanh, dW_tanh)):
    errors = [np.linalg.norm(numerical_gradient(fn, W, h=s) - exact) / np.linalg.norm(exact) for s in steps]
    ax.loglog(steps, np.maximum(errors, 1e-17), "o-", ms=3, label=label)
ax.set(xlabel="finite-difference step h", ylabel="relative error of dW",
       title="Central differences: rounding (left) against Taylor error (right)")
ax.legend()
plt.show()

# %% [markdown]
# ## The same through `numpy_vae`'s layers
#
# Every layer's `forward` returns its output and a `backward` closure holding exactly what the backward
# needs (here `x` for Linear, the output for ReLU). Chaining the closures in reverse is backpropagation.

# %%
linear, relu = Linear(W.copy(), b.copy()), ReLU()
h_layer, linear_backward = linear.forward(x)
y_layer, relu_backward = relu.forward(h_layer)
dx_layer = linear_backward(relu_backward(c.copy()))

cmp("dW", linear.grads["weight"], dW, against="by hand", header=True)
cmp("db", linear.grads["bias"], db, against="by hand")
cmp("dx", dx_layer, dx, against="by hand")

# %% [markdown]
# In float32 (what training uses) the same backward agrees with the float64 one to about float32's
# precision, 1e-7 relative per operation.

# %%
linear32 = Linear(W.astype(np.float32), b.astype(np.float32))
h32, back32 = linear32.forward(x.astype(np.float32))
y32, relu_back32 = ReLU().forward(h32)
dx32 = back32(relu_back32(c.astype(np.float32)))
cmp("dW float32", linear32.grads["weight"], dW, against="float64", header=True)
cmp("dx float32", dx32, dx, against="float64")

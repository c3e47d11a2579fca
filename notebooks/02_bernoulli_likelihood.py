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
# # 2. The Bernoulli likelihood from logits
#
# The decoder outputs one logit `a` per pixel; the pixel's probability is `sigmoid(a)`, and the
# reconstruction term of the loss is the Bernoulli negative log-likelihood of the image `x`:
#
#     nll = -sum_d [ x_d log sigmoid(a_d) + (1 - x_d) log(1 - sigmoid(a_d)) ]
#
# Written like that it breaks for confident logits. Here you see where, rewrite it in the stable form the
# model uses, and derive its gradient, `sigmoid(a) - x`. Derivation:
# [docs/gradients.md, Bernoulli negative log-likelihood from logits](../docs/gradients.md#bernoulli-negative-log-likelihood-from-logits).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from numpy_vae.nn import BernoulliNLL, sigmoid
from numpy_vae.nn.compare import cmp
from numpy_vae.nn.gradcheck import numerical_gradient

rng = np.random.default_rng(0)
a = rng.standard_normal((3, 6)) * 3          # logits (B, D)
x = rng.random((3, 6))                       # grey levels in [0, 1] (B, D)


def naive_nll(a, x):
    p = 1 / (1 + np.exp(-a))
    return -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=-1)


# %% [markdown]
# ## Where the naive form fails
#
# In float64, `exp(-a)` overflows for `a < -709`, and `1 - sigmoid(a)` rounds to 0 once `a > 37`; then
# `log(0) = -inf`, and `0 * -inf` is NaN. A decoder that is sure of a pixel (a logit of 1e4) turns the
# loss into NaN or infinity, and training stops.

# %%
logits = np.array([-1e4, -40.0, -1.0, 0.0, 1.0, 40.0, 1e4])
with np.errstate(all="ignore"):
    for target in (0.0, 1.0):
        print(f"x = {target:.0f}  naive: ", np.array2string(naive_nll(logits[:, None], np.full((7, 1), target)),
                                                           precision=4))

# %% [markdown]
# ## The stable form
#
# With `log sigmoid(a) = -log(1 + e^-a)` and `log(1 - sigmoid(a)) = -a - log(1 + e^-a)`, the per-pixel
# loss is `a - a x + log(1 + e^-a)`. For `a < 0` that exponent is positive and can overflow, so factor
# out the larger term: `log(1 + e^-a) = max(-a, 0) + log(1 + e^-|a|)`, which gives
#
#     nll_d = max(a, 0) - a x + log1p(exp(-|a|))
#
# Now `exp` only ever sees a number <= 0, and `log1p` keeps its accuracy when `exp(-|a|)` is tiny.

# %% tags=["solution"] hint="max(a, 0) - a x + log1p(exp(-|a|)), summed over the last axis (pixels)"
# the stable negative log-likelihood, per sample: shape (B,)
nll = (np.maximum(a, 0) - a * x + np.log1p(np.exp(-np.abs(a)))).sum(axis=-1)

# %%
at, xt = torch.tensor(a, requires_grad=True), torch.tensor(x)
nll_t = F.binary_cross_entropy_with_logits(at, xt, reduction="none").sum(dim=-1)
cmp("nll", nll, nll_t, against="torch", header=True)
with np.errstate(all="ignore"):
    cmp("nll naive", naive_nll(a, x), nll_t, tol=1e-13, against="torch")    # fine for moderate logits

# %% [markdown]
# ## Its gradient
#
# Per pixel, `d/da [max(a,0) + log(1 + e^-|a|)] = sigmoid(a)` on both sides of 0 (check it), and
# `d/da [-a x] = -x`. So `dnll/da = sigmoid(a) - x`: the prediction minus the target.

# %% tags=["solution"] hint="dnll/da = sigmoid(a) - x (use numpy_vae.nn.sigmoid, which is exact on both tails)"
# dsum(nll)/da, shape (B, D)
da = sigmoid(a) - x

# %%
nll_t.sum().backward()
cmp("da", da, at.grad, header=True)
cmp("da", da, numerical_gradient(lambda: naive_nll(a, x).sum(), a), tol=1e-7, against="central diff")
layer_nll, layer_backward = BernoulliNLL().forward(a, x)
layer_da, _ = layer_backward(np.ones(len(a)))
cmp("nll", layer_nll, nll, against="by hand")
cmp("da", layer_da, da, against="by hand")

# %% [markdown]
# At the extreme logits the stable form and its gradient are finite and exact (for `x` of 0 or 1 the loss
# is exactly `max(a, 0) - a x` once `exp(-|a|)` underflows):

# %%
extreme = np.array([[-1e4, -40.0, 40.0, 1e4]])
for target in (0.0, 1.0):
    tx = np.full_like(extreme, target)
    ours, back = BernoulliNLL().forward(extreme, tx)
    da_extreme, _ = back(np.ones(1))
    ta = torch.tensor(extreme, requires_grad=True)
    F.binary_cross_entropy_with_logits(ta, torch.tensor(tx), reduction="sum").backward()
    cmp(f"da, x={target:.0f}", da_extreme, ta.grad, header=target == 0)

# %% [markdown]
# ## The picture: naive against stable, in float32
#
# Training runs in float32, where the naive form breaks much sooner: `1 - sigmoid(a)` is 0 from `a = 17`.
# Left, the loss of a pixel whose target is 0; right, its gradient through autograd. The naive curve
# stops where it becomes infinite, and so does its gradient (NaN), where the stable ones go on along `a` and 1.

# %%
grid = torch.linspace(-30, 30, 601, dtype=torch.float32)
curves = {}
for name in ("naive", "stable"):
    g = grid.clone().requires_grad_(True)
    if name == "naive":
        loss = -torch.log(1 - torch.sigmoid(g))          # x = 0
    else:
        loss = torch.clamp(g, min=0) + torch.log1p(torch.exp(-g.abs()))
    loss.sum().backward()
    curves[name] = (loss.detach().numpy(), g.grad.numpy())
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
for name, (loss, grad) in curves.items():
    left.plot(grid, loss, label=name, lw=3 if name == "naive" else 1.5)
    right.plot(grid, grad, label=name, lw=3 if name == "naive" else 1.5)
left.set(xlabel="logit a", ylabel="nll (x = 0)", title="loss, float32")
right.set(xlabel="logit a", ylabel="dnll/da", title="gradient, float32: sigmoid(a) - 0")
left.legend()
right.legend()
plt.show()
print("naive loss infinite from a =", float(grid[np.isinf(curves["naive"][0])][0]),
      "; naive gradient NaN or infinite at", int((~np.isfinite(curves["naive"][1])).sum()), "of", len(grid), "points")

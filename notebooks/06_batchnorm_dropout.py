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
# # 6. BatchNorm1d and Dropout: layers that behave differently in training
#
# In training, BatchNorm normalizes each feature by the *batch's* mean and variance, so every sample's
# output depends on every other sample in the batch, and the backward has to carry the gradient through
# the statistics too: the classic hard one. In evaluation it uses running averages, and the backward is
# a plain scale. Dropout zeroes features with a random mask in training and is the identity in
# evaluation. Derivations: [BatchNorm1d](../docs/gradients.md#batchnorm1d) and
# [Dropout](../docs/gradients.md#dropout).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from numpy_vae.nn import BatchNorm1d, Dropout
from numpy_vae.nn.compare import cmp
from numpy_vae.nn.gradcheck import numerical_gradient

rng = np.random.default_rng(0)
B, Fe, bn_eps = 6, 4, 1e-5                     # batch, features, BatchNorm's epsilon
x = rng.standard_normal((B, Fe)) * 2 + 1
gamma, beta = 1 + 0.3 * rng.standard_normal(Fe), 0.1 * rng.standard_normal(Fe)
c = rng.standard_normal((B, Fe))              # loss = sum(c * y): dy = c

# %% [markdown]
# ## The forward, one line per step (training)

# %%
mean = x.mean(axis=0)                          # (F,)
xc = x - mean                                  # (B, F)
var = (xc**2).mean(axis=0)                     # (F,)   biased: the batch's own variance
inv_std = 1 / np.sqrt(var + bn_eps)            # (F,)
xhat = xc * inv_std                            # (B, F)
y = gamma * xhat + beta                        # (B, F)
dy = c

xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
yt = F.batch_norm(xt, None, None, gt, bt, training=True, eps=bn_eps)
yt.backward(torch.tensor(c))
cmp("y", y, yt, against="torch", header=True)

# %% [markdown]
# ## The backward, step by step
#
# Walk back through the six lines. `x` reaches the loss three ways: directly through `xc`, through
# `mean`, and through `var` (which depends on `xc`, which depends on `mean`): the gradients of those
# paths add.

# %% tags=["solution"] hint="dgamma = sum_B dy xhat; dbeta = sum_B dy; dxhat = dy gamma; dinv_std = sum_B dxhat xc; dvar = dinv_std * (-1/2)(var + eps)^(-3/2); dxc = dxhat inv_std + dvar 2 xc / B; dmean = -sum_B dxc; dx = dxc + dmean / B"
# dgamma, dbeta (F,) and dx (B, F), one line per step of the forward
dgamma = (dy * xhat).sum(axis=0)
dbeta = dy.sum(axis=0)
dxhat = dy * gamma
dinv_std = (dxhat * xc).sum(axis=0)
dvar = dinv_std * -0.5 * (var + bn_eps) ** -1.5
dxc = dxhat * inv_std + dvar * 2 * xc / B
dmean = -dxc.sum(axis=0)
dx = dxc + dmean / B

# %%
cmp("dgamma", dgamma, gt.grad, header=True)
cmp("dbeta", dbeta, bt.grad)
cmp("dx", dx, xt.grad)


def f():
    xc_ = x - x.mean(axis=0)
    return float((c * (gamma * xc_ / np.sqrt((xc_**2).mean(axis=0) + bn_eps) + beta)).sum())


cmp("dx", dx, numerical_gradient(f, x), tol=1e-7, against="central diff")

# %% [markdown]
# ## The same in one line
#
# Collecting the terms (see the derivation) gives, with `g = dy gamma`,
#
#     dx = inv_std (g - mean_B(g) - xhat mean_B(g xhat))
#
# the gradient with its batch mean removed and its component along `xhat` removed: moving every sample
# alike, or stretching the batch along `xhat`, cannot change a normalized output.

# %% tags=["solution"] hint="g = dy * gamma; dx = inv_std * (g - g.mean(axis=0) - xhat * (g * xhat).mean(axis=0))"
# dx_compact (B, F), the one-line form
g = dy * gamma
dx_compact = inv_std * (g - g.mean(axis=0) - xhat * (g * xhat).mean(axis=0))

# %%
bn = BatchNorm1d(gamma.copy(), beta.copy(), np.zeros(Fe), np.zeros(Fe), np.zeros(Fe), np.ones(Fe),
                 np.zeros((), np.int64), eps=bn_eps)
y_layer, bn_backward = bn.forward(x)
cmp("dx", dx_compact, dx, against="step by step", header=True)
cmp("y", y_layer, y, against="by hand")
cmp("dx", bn_backward(c), dx, against="by hand")
cmp("dgamma", bn.grads["weight"], dgamma, against="by hand")

# %% [markdown]
# ## Evaluation mode
#
# The training forward above also moved the running statistics 10% of the way towards the batch's (the
# variance towards the *unbiased* one, as torch does). In evaluation they normalize, and they are
# constants: the backward is only `dy gamma / sqrt(running_var + eps)`.

# %%
running_mean, running_var = torch.zeros(Fe, dtype=torch.float64), torch.ones(Fe, dtype=torch.float64)
F.batch_norm(torch.tensor(x), running_mean, running_var, training=True, momentum=0.1, eps=bn_eps)
cmp("running_mean", bn.buffers["running_mean"], running_mean, against="torch", header=True)
cmp("running_var", bn.buffers["running_var"], running_var, against="torch")

bn.training = False
x_new = rng.standard_normal((B, Fe))
y_eval, eval_backward = bn.forward(x_new)
xe = torch.tensor(x_new, requires_grad=True)
ye = F.batch_norm(xe, running_mean, running_var, torch.tensor(gamma), torch.tensor(beta), training=False, eps=bn_eps)
ye.backward(torch.tensor(c))
dx_eval = c * gamma / np.sqrt(bn.buffers["running_var"] + bn_eps)
cmp("y (eval)", y_eval, ye, against="torch")
cmp("dx (eval)", dx_eval, xe.grad)
cmp("dx (eval)", eval_backward(c), dx_eval, against="by hand")

# %% [markdown]
# ## Dropout
#
# In training, each feature is kept with probability `1 - p` and scaled by `1 / (1 - p)`, so its expected
# value is unchanged: `y = x m / (1 - p)`. The mask `m` is an input (as `eps` is), so NumPy and torch
# can be given the same draw. The backward passes the gradient through the same kept features.

# %%
p = 0.3                                                # the drop probability
m = (rng.random((B, Fe)) >= p).astype(np.float64)      # the keep-mask: 1 with probability 1 - p

# %% tags=["solution"] hint="y = x m / (1 - p) is linear in x: dx = dy m / (1 - p)"
# dx_drop (B, F): Dropout's input gradient for the keep-mask m
dx_drop = dy * m / (1 - p)

# %%
xd = torch.tensor(x, requires_grad=True)
(xd * torch.tensor(m) / (1 - p)).backward(torch.tensor(c))
drop = Dropout(p)
y_drop, drop_backward = drop.forward(x, m)
cmp("dx (dropout)", dx_drop, xd.grad, header=True)
cmp("dx (dropout)", drop_backward(c), dx_drop, against="by hand")
drop.training = False
y_drop_eval, drop_eval_backward = drop.forward(x)
cmp("y (eval)", y_drop_eval, x, against="identity")
cmp("dx (eval)", drop_eval_backward(c), c, against="identity")

# %% [markdown]
# ## The picture
#
# Left and middle: BatchNorm's training gradient against the one you get by (wrongly) holding the batch
# statistics constant. The true one sums to 0 over the batch in every feature (and is orthogonal to
# `xhat`); the constant-statistics one does not. Right: Dropout's training output averaged over more and
# more masks approaches the evaluation output, `x` itself, which is why evaluation needs no mask.

# %%
naive = dy * gamma * inv_std
draws = [1, 3, 10, 30, 100, 300, 1000]
masks = rng.random((draws[-1], B, Fe)) >= p
averages = np.cumsum(x * masks / (1 - p), axis=0)
gaps = [np.abs(averages[n - 1] / n - x).max() for n in draws]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
for ax, (title, grad) in zip(axes[:2], (("dx, batch statistics", dx), ("dx, statistics held constant", naive))):
    im = ax.imshow(grad, cmap="coolwarm", vmin=-np.abs(naive).max(), vmax=np.abs(naive).max())
    ax.set(title=title, ylabel="sample")
    ax.set_xticks(range(Fe), [f"{v:+.1e}" for v in grad.sum(axis=0)], rotation=45, fontsize=7)
axes[0].set_xlabel("feature (tick: its sum over the batch)")
axes[1].set_xlabel("feature (tick: its sum over the batch)")
axes[2].loglog(draws, gaps, "o-")
axes[2].set(title="Dropout: mean over masks -> x", xlabel="masks averaged", ylabel="max |mean - x|")
plt.show()

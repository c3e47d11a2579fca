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
# # 3. The reparameterization trick and the Gaussian KL
#
# The encoder gives, for each image, a mean `mu` and a log-variance `logvar` per latent dimension. To pass a
# gradient through the *sample* `z ~ N(mu, exp(logvar))`, draw the noise outside the network and write
#
#     z = mu + eps * exp(logvar / 2),      eps ~ N(0, I)  (an input, like the data)
#
# Then the KL term to the prior N(0, I) in closed form, its gradient, and why the model writes it with
# `expm1`. Derivations: [reparameterization](../docs/gradients.md#reparameterization) and
# [the Gaussian KL](../docs/gradients.md#gaussian-kl-to-the-standard-normal).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from numpy_vae.nn import GaussianKL, Reparameterize
from numpy_vae.nn.compare import cmp
from numpy_vae.nn.gradcheck import exact_gaussian_kl, numerical_gradient

rng = np.random.default_rng(0)
B, L = 4, 3
mu = rng.standard_normal((B, L))
logvar = rng.standard_normal((B, L)) * 0.5
eps = rng.standard_normal((B, L))
c = rng.standard_normal((B, L))      # stands in for the decoder: its loss is sum(c * z), so dz = c

# %% [markdown]
# ## The forward, one line per step

# %%
sigma = np.exp(0.5 * logvar)                                          # (B, L)
z = mu + eps * sigma                                                  # (B, L)  the sample
kl = 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar).sum(axis=1)          # (B,)    KL(q(z|x) || N(0, I))
loss = (c * z).sum() + kl.sum()

mut, lvt = torch.tensor(mu, requires_grad=True), torch.tensor(logvar, requires_grad=True)
zt = mut + torch.tensor(eps) * torch.exp(0.5 * lvt)
zt.retain_grad()
klt = 0.5 * (mut**2 + torch.exp(lvt) - 1 - lvt).sum(dim=1)
((torch.tensor(c) * zt).sum() + klt.sum()).backward()

# %% [markdown]
# ## Through the sample
#
# `dz = c`. `mu` enters `z` with slope 1; `logvar` through `exp(logvar / 2)`, whose derivative is half
# of itself.

# %% tags=["solution"] hint="dz/dmu = 1; dz/dlogvar = eps * exp(logvar/2) / 2 (the chain rule through sigma)"
# the sample's share of the gradients, each (B, L)
dz = c
dmu_z = dz
dlogvar_z = dz * eps * 0.5 * sigma

# %% [markdown]
# ## Through the KL
#
# `kl = 1/2 sum_l (mu^2 + e^logvar - 1 - logvar)`: differentiate term by term.

# %% tags=["solution"] hint="dkl/dmu = mu; dkl/dlogvar = (e^logvar - 1) / 2 (do not forget the 1/2)"
# the KL's share of the gradients, each (B, L)
dmu_kl = mu
dlogvar_kl = 0.5 * np.expm1(logvar)

# %% [markdown]
# `mu` and `logvar` reach the loss by both paths, so their gradients are the sums.

# %%
cmp("dz", dz, zt.grad, header=True)
cmp("dmu", dmu_z + dmu_kl, mut.grad)
cmp("dlogvar", dlogvar_z + dlogvar_kl, lvt.grad)


def f():
    return float((c * (mu + eps * np.exp(0.5 * logvar))).sum() + 0.5 * (mu**2 + np.expm1(logvar) - logvar).sum())


cmp("dmu", dmu_z + dmu_kl, numerical_gradient(f, mu), tol=1e-7, against="central diff")
cmp("dlogvar", dlogvar_z + dlogvar_kl, numerical_gradient(f, logvar), tol=1e-7, against="central diff")

# %% [markdown]
# The same through the model's layers, `Reparameterize` and `GaussianKL`:

# %%
z_layer, reparameterize_backward = Reparameterize().forward(mu, logvar, eps)
kl_layer, kl_backward = GaussianKL().forward(mu, logvar)
dmu_layer, dlogvar_layer = reparameterize_backward(c)
dmu_kl_layer, dlogvar_kl_layer = kl_backward(np.ones(B))
cmp("kl", kl_layer, kl, against="by hand", header=True)
cmp("dmu", dmu_layer + dmu_kl_layer, dmu_z + dmu_kl, against="by hand")
cmp("dlogvar", dlogvar_layer + dlogvar_kl_layer, dlogvar_z + dlogvar_kl, against="by hand")

# %% [markdown]
# ## Near the prior: `expm1`
#
# A latent dimension the model does not use sits at the prior, `logvar` near 0. There `e^logvar - 1`
# subtracts two numbers that agree in almost every digit: in float32 at `logvar = 1e-4` only about three
# digits survive. `expm1(logvar)` computes the same quantity without the subtraction. The figure holds both
# forms of `dlogvar = (e^logvar - 1) / 2` against a reference computed in 50-digit decimal arithmetic.

# %%
lv = np.logspace(-12, 0, 49)
_, _, exact = exact_gaussian_kl(np.zeros((1, lv.size)), lv[None, :], np.ones(1))
fig, ax = plt.subplots(figsize=(6, 3.8))
for dtype in (np.float32, np.float64):
    v = lv.astype(dtype)
    for form, value in (("exp(lv) - 1", 0.5 * (np.exp(v) - 1)), ("expm1(lv)", 0.5 * np.expm1(v))):
        rel = np.abs(value.astype(np.float64) - exact[0]) / np.abs(exact[0])
        ax.loglog(lv, np.maximum(rel, 1e-18), "o-" if form == "expm1(lv)" else "s--", ms=3,
                  label=f"{form}, {np.dtype(dtype).name}")
ax.set(xlabel="logvar", ylabel="relative error of dlogvar", title="dlogvar near the prior")
ax.legend(fontsize=8)
plt.show()

# %%
near = np.array([[1e-9, -1e-8, 1e-12]])
_, _, exact_near = exact_gaussian_kl(np.zeros_like(near), near, np.ones(1))
_, near_backward = GaussianKL().forward(np.zeros_like(near), near)
cmp("dlogvar expm1", near_backward(np.ones(1))[1], exact_near, against="decimal", header=True)
cmp("dlogvar exp-1", 0.5 * (np.exp(near) - 1), exact_near, against="decimal", check=False)   # red: a wrong digit

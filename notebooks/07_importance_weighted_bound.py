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
# # 7. The importance-weighted bound
#
# The ELBO scores one draw `z ~ q(z|x)` per image. Burda et al. (2015) draw K and average the importance
# weights `w_k = p(x, z_k) / q(z_k|x)` *inside* the log:
#
#     bound_K(x) = log (1/K) sum_k w_k   <=   log p(x)
#
# In log space that is a log-mean-exp of the log-weights `a_k = log w_k`, whose gradient is the softmax
# of the `a_k`: each draw's gradient is weighted by how well it explains the image. Then, on the
# project's trained model, why more samples tighten the bound. Derivations:
# [the importance-weighted bound](../docs/gradients.md#the-importance-weighted-bound) and
# [the log-mean-exp and its softmax](../docs/gradients.md#the-log-mean-exp-and-its-softmax).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import numpy_vae
import torch_vae
from torch_vae.convert import to_torch
from torch_vae.objectives import iwae_loss as torch_iwae_loss
from numpy_vae.data import fetch_mnist, load_mnist
from numpy_vae.nn.compare import cmp
from numpy_vae.nn.gradcheck import numerical_gradient
from numpy_vae.nn.iwae_bound import LogMeanExp
from numpy_vae.objectives import iwae_loss
from numpy_vae.training.checkpoint import load_checkpoint

ROOT = next(d for d in (Path.cwd(), *Path.cwd().parents) if (d / "pyproject.toml").is_file())
rng = np.random.default_rng(0)
a = rng.standard_normal((3, 5)) * 4 - 100        # log-weights (B, K): real ones are about -100 nats

# %% [markdown]
# ## log-mean-exp, stable
#
# `exp(-100)` is fine in float64 but 0 in float32 (below its smallest subnormal, about `exp(-103)`), and
# `exp(+1000)` is infinite in both. Shift by the largest log-weight `m`: every `exp(a_k - m)` is then in
# `(0, 1]`, the largest exactly 1, so the sum lies in `[1, K]`. (Below, in float32, the naive form first
# loses digits to subnormal numbers, then returns -inf.)

# %% tags=["solution"] hint="m = a.max(axis=1); lme = m + log(mean_k exp(a - m[:, None]))"
# lme (B,): log (1/K) sum_k exp(a_k), computed without overflow or underflow
m = a.max(axis=1)
lme = m + np.log(np.exp(a - m[:, None]).mean(axis=1))

# %%
at = torch.tensor(a, requires_grad=True)
lme_t = torch.logsumexp(at, dim=1) - np.log(a.shape[1])
lme_t.sum().backward()
cmp("lme", lme, lme_t, against="torch", header=True)
for shift in (0, -20):                            # log-weights near -100, then near -120
    a32 = (a + shift).astype(np.float32)
    m32 = a32.max(axis=1)
    with np.errstate(divide="ignore"):
        naive = np.log(np.exp(a32).mean(axis=1))
    print(f"float32, log-weights near {-100 + shift}: naive {naive}, shifted {m32 + np.log(np.exp(a32 - m32[:, None]).mean(axis=1))}")

# %% [markdown]
# ## Its gradient: the softmax
#
# `d/da_k log sum_j exp(a_j) = exp(a_k) / sum_j exp(a_j)`: the normalized importance weights.

# %% tags=["solution"] hint="dlme/da_k = exp(a_k - m) / sum_j exp(a_j - m), the softmax over the K draws of each row"
# da (B, K): the gradient of sum_b lme_b
e = np.exp(a - m[:, None])
da = e / e.sum(axis=1, keepdims=True)

# %%
cmp("da", da, at.grad, header=True)
cmp("da", da, numerical_gradient(lambda: (m + np.log(np.exp(a - m[:, None]).mean(axis=1))).sum(), a),
    tol=1e-6, against="central diff")
lme_layer, lme_backward = LogMeanExp().forward(a)
cmp("lme", lme_layer, lme, against="by hand")
cmp("da", lme_backward(np.ones(3)), da, against="by hand")

# %% [markdown]
# ## The trained model
#
# `docs/results/burda-vae/last.npz` is the project's VAE trained for Burda et al.'s 3,280 epochs (784-200-200
# tanh encoder, latent 50; its test negative log-likelihood, K = 5000 on all 10,000 binarized test
# images, is 87.23 nats: docs/results/README.md). Load it in float64, and a few binarized test images.

# %%
params, _, meta = load_checkpoint(ROOT / "docs" / "results" / "burda-vae" / "last.npz")
cfg = meta["config"]
options = dict(latent=cfg["latent"], hidden=tuple(cfg["hidden"]), activation=cfg["activation"])
model = numpy_vae.build_model("mlp", dtype=np.float64, **options)
model.load_params(params)
model.eval()

data_dir = Path(os.environ.get("VAE_DATA_DIR") or ROOT / "data")
fetch_mnist(data_dir, progress=False)               # a no-op once the verified files are there
grey, labels = load_mnist(data_dir, "test")
images = (np.random.default_rng(1).random(grey[:4].shape) < grey[:4]).astype(np.float64)   # binarized
images.shape

# %% [markdown]
# ## The bound's gradient through the whole model
#
# `numpy_vae.objectives.iwae_loss` chains the model's layers with `LogMeanExp` and the log prior ratio:
# `dloss/da_bk = -softmax_k(a_b)_k / B`, then every draw's gradient flows back through the decoder and
# the reparameterization, weighted by its softmax weight. Against `torch_vae`'s autograd, K = 8:

# %%
eps = rng.standard_normal((len(images), 8, model.latent))
loss, _, _, backward = iwae_loss(model, images, eps)
backward()
torch_model = torch_vae.build_model("mlp", dtype=torch.float64, **options)
to_torch(params, torch_model)
torch_loss, _, _ = torch_iwae_loss(torch_model, torch.tensor(images), torch.tensor(eps))
torch_loss.backward()
cmp("loss", loss, torch_loss, against="torch", header=True)
for name, p in torch_model.named_parameters():
    cmp(name, model.grads[name], p.grad)

# %% [markdown]
# ## Why more samples tighten the bound
#
# Draw 2,000 `z` per image and compute every log-weight once. For each K, split the draws into groups of
# K and average the group's bound: an estimate of `E[bound_K]`. K = 1 is the ELBO. By Jensen's
# inequality the mean of the weights has a larger log than the mean of their logs, and averaging more
# weights brings the estimate of `p(x)` closer to it: `E[bound_K]` rises with K towards `log p(x)`.

# %%
K = 2000
mu, logvar = model.encode(images)
draws = rng.standard_normal((len(images), K, model.latent))
z = mu[:, None, :] + np.exp(0.5 * logvar)[:, None, :] * draws
logits = model.decode(z.reshape(-1, model.latent)).reshape(len(images), K, -1)
log_px_z = -(np.maximum(logits, 0) - logits * images[:, None, :] + np.log1p(np.exp(-np.abs(logits)))).sum(axis=2)
log_w = log_px_z + 0.5 * (draws**2 - z**2 + logvar[:, None, :]).sum(axis=2)     # log p(x|z) + log p(z) - log q(z|x)

ks = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
bounds = np.array([[LogMeanExp().forward(row.reshape(K // k, k))[0].mean() for row in log_w] for k in ks])
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for i in range(len(images)):
    ax.semilogx(ks, bounds[:, i] - bounds[0, i], "o-", ms=3,
                label=f"test image {i} (a {labels[i]}): ELBO {bounds[0, i]:.1f}")
ax.set(xlabel="K, importance samples", ylabel="E[bound_K] - ELBO (nats)",
       title="the bound tightens as K grows, then levels off near log p(x)")
ax.legend(fontsize=8)
plt.show()
print("mean over these images:", "  ".join(f"K={k}: {-b:.2f}" for k, b in zip(ks, bounds.mean(axis=1))))
print(f"ELBO gap closed by K = {K}: {bounds[-1].mean() - bounds[0].mean():.2f} nats "
      f"(all 10,000 test images: 4.06 nats with K = 5000, docs/results/burda-vae/evaluation.json)")
assert np.all(np.diff(bounds.mean(axis=1)) > 0), "the bound, averaged over images, should rise with K"

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
# # 4. The whole VAE backward, in one go
#
# Notebooks 1-3 derived each piece. Here they meet: a small VAE (784-16 encoder, latent 3, 3-16-784
# decoder, ReLU) whose loss, the batch mean of the negative ELBO, you differentiate from the loss down to
# the first layer's weights in one cell. Then the same gradients from `numpy_vae`'s model, whose layers
# chain exactly these steps, and one Adam step, matched against `torch_vae` and `torch.optim.Adam` step
# for step. Derivations: [the batch mean](../docs/gradients.md#the-batch-mean),
# [the Gaussian head](../docs/gradients.md#the-gaussian-head), [Adam](../docs/gradients.md#adam).

# %%
import io

import matplotlib.pyplot as plt
import numpy as np
import torch

import numpy_vae
import torch_vae
from numpy_vae.nn import sigmoid
from numpy_vae.nn.compare import cmp
from numpy_vae.nn.optimizers import Adam

B, L, H = 5, 3, 16
model = numpy_vae.build_model(hidden=(H,), latent=L, dtype=np.float64, seed=0)
P = {name: value.copy() for name, value in model.params.items()}   # the weights, by torch's names
rng = np.random.default_rng(0)
x = rng.random((B, 784))                 # grey levels in [0, 1]
eps = rng.standard_normal((B, L))        # the noise is an input: the same draw goes to torch

W1, b1 = P["encoder.0.weight"], P["encoder.0.bias"]
Wmu, bmu, Wlv, blv = P["fc_mu.weight"], P["fc_mu.bias"], P["fc_logvar.weight"], P["fc_logvar.bias"]
W2, b2, W3, b3 = P["decoder.0.weight"], P["decoder.0.bias"], P["decoder.2.weight"], P["decoder.2.bias"]
sorted(P)

# %% [markdown]
# ## The forward, one line per step

# %%
h1 = x @ W1.T + b1;  a1 = np.maximum(h1, 0)                        # encoder (B, H)
mu = a1 @ Wmu.T + bmu;  logvar = a1 @ Wlv.T + blv                  # the Gaussian head (B, L) each
sigma = np.exp(0.5 * logvar);  z = mu + eps * sigma                 # reparameterize (B, L)
h2 = z @ W2.T + b2;  a2 = np.maximum(h2, 0)                         # decoder (B, H)
logits = a2 @ W3.T + b3                                             # (B, 784)
nll = (np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits)))).sum(axis=1)   # (B,)
kl = 0.5 * (mu**2 + np.expm1(logvar) - logvar).sum(axis=1)                                  # (B,)
loss = (nll + kl).mean()

torch_model = torch_vae.build_model(hidden=(H,), latent=L, dtype=torch.float64, seed=0)
out = torch_model(torch.tensor(x), torch.tensor(eps))
out["loss"].backward()
autograd = {name: p.grad for name, p in torch_model.named_parameters()}
cmp("loss", loss, out["loss"], against="torch", header=True)

# %% [markdown]
# ## The backward, in one go
#
# Start from `dloss/dnll_b = dloss/dkl_b = 1/B` (the batch mean) and walk the forward backwards. Where a
# value fed two places (`mu` and `logvar` feed both `z` and the KL; `a1` feeds both heads) add the two
# gradients.

# %% tags=["solution"] hint="walk back: dlogits = (sigmoid(logits) - x)/B; each Linear gives dW = dy^T in, db = sum dy, din = dy W; ReLU masks with h > 0; dmu = dz + mu/B; dlogvar = dz eps sigma/2 + expm1(logvar)/(2B); da1 = dmu Wmu + dlogvar Wlv"
# every parameter's gradient, named as P's keys: dW1, db1, dWmu, dbmu, dWlv, dblv, dW2, db2, dW3, db3
dlogits = (sigmoid(logits) - x) / B
dW3 = dlogits.T @ a2;  db3 = dlogits.sum(axis=0)
dh2 = (dlogits @ W3) * (h2 > 0)
dW2 = dh2.T @ z;  db2 = dh2.sum(axis=0)
dz = dh2 @ W2
dmu = dz + mu / B
dlogvar = dz * eps * 0.5 * sigma + 0.5 * np.expm1(logvar) / B
dWmu = dmu.T @ a1;  dbmu = dmu.sum(axis=0)
dWlv = dlogvar.T @ a1;  dblv = dlogvar.sum(axis=0)
dh1 = (dmu @ Wmu + dlogvar @ Wlv) * (h1 > 0)
dW1 = dh1.T @ x;  db1 = dh1.sum(axis=0)

# %%
by_hand = {"encoder.0.weight": dW1, "encoder.0.bias": db1, "fc_mu.weight": dWmu, "fc_mu.bias": dbmu,
           "fc_logvar.weight": dWlv, "fc_logvar.bias": dblv, "decoder.0.weight": dW2, "decoder.0.bias": db2,
           "decoder.2.weight": dW3, "decoder.2.bias": db3}
for i, (name, grad) in enumerate(by_hand.items()):
    cmp(name, grad, autograd[name], header=i == 0)

# %% [markdown]
# ## The same through `numpy_vae`'s layers
#
# `model.forward` runs the layers, each returning its output and a backward closure; `model.backward`
# calls the closures in reverse order. Its gradients are the ones you just wrote, by name.

# %%
model.forward(x, eps)
grads, _ = model.backward()
for i, name in enumerate(by_hand):
    cmp(name, grads[name], by_hand[name], against="by hand", header=i == 0)

# %% [markdown]
# ## One Adam step
#
# Adam keeps two moving averages per parameter, of the gradient `m` and of its square `v`, corrects their
# start-up bias, and moves each parameter by `lr * mhat / (sqrt(vhat) + eps)`: about `lr` per step
# whatever the gradient's scale. Write the first step (t = 1, `m` and `v` start at 0) for `W3`.

# %%
lr, (beta1, beta2), adam_eps, t = 1e-3, (0.9, 0.999), 1e-8, 1      # torch.optim.Adam's defaults, step 1

# %% tags=["solution"] hint="m = (1-b1) g; v = (1-b2) g^2; mhat = m/(1-b1^t); vhat = v/(1-b2^t); W3_new = W3 - lr mhat/(sqrt(vhat) + eps)"
# W3 after the first Adam step, from its gradient dW3
m = (1 - beta1) * dW3
v = (1 - beta2) * dW3**2
mhat, vhat = m / (1 - beta1**t), v / (1 - beta2**t)
W3_new = W3 - lr * mhat / (np.sqrt(vhat) + adam_eps)

# %%
adam = Adam(model.flat, lr=lr)
adam.step(model.grad_flat)
torch_adam = torch.optim.Adam(torch_model.parameters(), lr=lr)
torch_adam.step()
cmp("W3 after 1", W3_new, dict(torch_model.named_parameters())["decoder.2.weight"], against="torch.optim", header=True)
cmp("W3 after 1", model.params["decoder.2.weight"], W3_new, against="by hand")

# %% [markdown]
# ## Step for step
#
# Twenty more steps, each on a new batch and a new noise draw given to both: after each, every parameter
# of the NumPy model against torch's. Float64 rounding differs in the last bit (the two Adams order their
# operations differently), and Adam's normalization keeps those differences from growing.

# %%
differences, losses = [], []
for step in range(20):
    xs, es = rng.random((B, 784)), rng.standard_normal((B, L))
    losses.append(model.forward(xs, es)["loss"])
    model.backward()
    adam.step(model.grad_flat)
    torch_adam.zero_grad()
    torch_model(torch.tensor(xs), torch.tensor(es))["loss"].backward()
    torch_adam.step()
    theirs = dict(torch_model.named_parameters())
    rows = [cmp(name, model.params[name], theirs[name], against=f"torch step {step + 2}", header=i == 0)
            for i, name in enumerate(model.params)] if step == 19 else \
        [cmp(name, model.params[name], theirs[name], file=io.StringIO()) for name in model.params]   # quiet
    differences.append(max(r.rel_error for r in rows))

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.3))
left.plot(range(2, 22), losses, "o-")
left.set(xlabel="Adam step", ylabel="loss (nats)", title="the negative ELBO, NumPy model")
right.semilogy(range(2, 22), np.maximum(differences, 1e-18), "o-")
right.axhline(1e-10, color="r", ls="--", label="the bar: 1e-10")
right.set(xlabel="Adam step", ylabel="worst relative difference", title="NumPy against torch, every parameter")
right.legend()
plt.show()

"""Two (and more) stochastic layers: numpy_vae.hvae.HVAE's hand-written backward against torch autograd.

The reference, written here in torch with autograd, evaluates the estimator the plain way: every
log density at its sample with the full quadratic form, log q(h_l|.) = log N(h_l; mu_l, e^logvar_l)
with h_l = mu_l + e^(logvar_l/2) eps_l, so autograd sums the path and score terms that the NumPy
model folds into -1/2 (logvar_l + eps_l^2) (docs/gradients.md#two-stochastic-layers).

- Hypothesis draws stacks of 1 to 3 stochastic layers with small widths, batch, K in {1, 5} (and any
  K up to 6), weights scaled away from torch's init, and binary or grey targets: the loss, recon, kl,
  every parameter's gradient and dx agree with autograd to relative error < 1e-10 in float64;
- float32 NumPy against the float64 reference on the same weights, within float32's bound;
- central finite differences of the NumPy loss, on every parameter of a small model;
- the burda2 spec (the paper's sizes, parameter count), its JSON round trip and the layout;
- a tiny `burda2` training run (ELBO and IWAE k=5) killed after epoch 1 and resumed equals the
  uninterrupted run bit for bit; `vae evaluate` on its checkpoint gives the importance-weighted estimate.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, strategies as st

from numpy_vae import specs
from numpy_vae.hvae import HVAE, hvae_flat_layout
from numpy_vae.inputs import InputError
from numpy_vae.nn.gaussian_density import DiagGaussianLogDensity, SampleLogDensity, StandardNormalLogDensity
from numpy_vae.nn.gradcheck import numerical_gradient, relative_error
from numpy_vae.specs import HVAESpec, Linear, ReLU, Sigmoid, SpecError, StochasticLayer, Tanh

LOG_2PI = math.log(2 * math.pi)
ACTS = {"tanh": Tanh, "relu": ReLU, "sigmoid": Sigmoid}


def small_spec(data, n_layers: int, activation: str = "tanh") -> HVAESpec:
    """A stack of ``n_layers`` stochastic layers of widths 1-4, nets of 0-2 hidden Linear+activation, input 2-7."""
    act = ACTS[activation]
    d_in = data.draw(st.integers(2, 7), "input")
    latents = [data.draw(st.integers(1, 4), f"d{l + 1}") for l in range(n_layers)]

    def net(n_in):
        sizes = [n_in] + [data.draw(st.integers(1, 5), "width") for _ in range(data.draw(st.integers(0, 2), "depth"))]
        return tuple(layer for a, b in zip(sizes[:-1], sizes[1:]) for layer in (Linear(a, b), act())), sizes[-1]

    ins = [d_in, *latents[:-1]]
    encoder = tuple(StochasticLayer(net(n)[0], d) for n, d in zip(ins, latents))
    decoder = tuple(StochasticLayer(net(latents[l + 1])[0], latents[l]) for l in range(n_layers - 1))
    px, width = net(latents[0])
    return HVAESpec("small", encoder, decoder, (*px, Linear(width, d_in)), input_shape=(d_in,))


def torch_reference(spec: HVAESpec, params: dict, x: np.ndarray, eps: np.ndarray):
    """(loss, recon, kl, grads by name, dx) of the negative importance-weighted bound by torch autograd, float64."""
    p = {n: torch.tensor(np.asarray(v, np.float64), requires_grad=True) for n, v in params.items()}
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    e = torch.tensor(np.asarray(eps, np.float64))
    batch, k, _ = e.shape

    def run(prefix, layers, h):
        for i, s in enumerate(layers):
            if isinstance(s, Linear):
                h = h @ p[f"{prefix}.{i}.weight"].T + p[f"{prefix}.{i}.bias"]
            else:
                h = {Tanh: torch.tanh, ReLU: torch.relu, Sigmoid: torch.sigmoid}[type(s)](h)
        return h

    def gaussian(prefix, layer, h):
        a = run(f"{prefix}.net", layer.net, h)
        return (a @ p[f"{prefix}.mu.weight"].T + p[f"{prefix}.mu.bias"],
                a @ p[f"{prefix}.logvar.weight"].T + p[f"{prefix}.logvar.bias"])

    def log_normal(z, mu, logvar):
        return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)

    cuts = np.cumsum((0, *spec.latents))
    h, log_q, below = [], 0, xt
    for l, q in enumerate(spec.encoder):
        mu, logvar = gaussian(f"q{l + 1}", q, below)
        if l == 0:
            mu, logvar = mu[:, None, :], logvar[:, None, :]
        h_l = mu + torch.exp(logvar / 2) * e[:, :, cuts[l]:cuts[l + 1]]
        log_q = log_q + log_normal(h_l, mu, logvar)
        h.append(h_l)
        below = h_l
    log_p = -0.5 * (LOG_2PI + h[-1] ** 2).sum(-1)
    for l, prior in enumerate(spec.decoder):
        log_p = log_p + log_normal(h[l], *gaussian(f"p{l + 1}", prior, h[l + 1]))
    logits = run("px.net", spec.likelihood_net, h[0])
    nll = (torch.nn.functional.softplus(logits) - xt[:, None, :] * logits).sum(-1)
    log_w = log_p - log_q - nll
    loss = -(torch.logsumexp(log_w, 1) - math.log(k)).mean()
    weights = torch.softmax(log_w, 1)
    recon = (weights * nll).sum(1).mean()
    kl = (weights * (log_q - log_p)).sum(1).mean()
    loss.backward()
    return (loss.item(), recon.item(), kl.item(), {n: t.grad.numpy() for n, t in p.items()}, xt.grad.numpy())


def draw_case(data, dtype=np.float64, n_layers=None, k=None):
    n_layers = n_layers or data.draw(st.integers(1, 3), "layers")
    spec = small_spec(data, n_layers, data.draw(st.sampled_from(sorted(ACTS)), "activation"))
    seed = data.draw(st.integers(0, 2**32 - 1), "seed")
    rng = np.random.default_rng(seed)
    model = HVAE(spec, dtype=dtype, seed=rng)
    model.flat *= dtype(data.draw(st.sampled_from([0.5, 1.0, 2.0]), "scale"))
    batch = data.draw(st.integers(1, 3), "batch")
    k = k or data.draw(st.sampled_from([1, 5, data.draw(st.integers(1, 6), "any k")]), "k")
    x = rng.random((batch, spec.input_dim))
    if data.draw(st.booleans(), "binary"):
        x = (x < 0.5).astype(np.float64)
    eps = rng.standard_normal((batch, k, spec.noise_dim))
    return model, x.astype(dtype), eps.astype(dtype)


def numpy_result(model, x, eps):
    loss, recon, kl = model.loss(x, eps)
    grads, dx = model.backward(need_input_grad=True)
    return float(loss), float(recon), float(kl), {n: g.copy() for n, g in grads.items()}, dx


@given(st.data())
def test_float64_matches_torch_autograd(data):
    model, x, eps = draw_case(data)
    ours = numpy_result(model, x, eps)
    ref = torch_reference(model.spec, model.params, x, eps)
    for name, a, b in zip(("loss", "recon", "kl"), ours[:3], ref[:3]):
        assert relative_error(a, b) < 1e-10, name
    for name in model.params:
        assert relative_error(ours[3][name], ref[3][name], floor=1e-300) < 1e-10, name
    assert relative_error(ours[4], ref[4]) < 1e-10, "dx"


@pytest.mark.parametrize("k", [1, 5])
@given(data=st.data())
def test_two_layers_k1_and_k5_match_torch(k, data):
    """The two-layer model of the runs (ELBO: k = 1; IWAE: k = 5), one whole flat gradient at a time."""
    model, x, eps = draw_case(data, n_layers=2, k=k)
    ours = numpy_result(model, x, eps)
    ref = torch_reference(model.spec, model.params, x, eps)
    assert relative_error(ours[0], ref[0]) < 1e-10
    flat_ref = np.concatenate([ref[3][n].ravel() for n in model.params])
    flat_ours = np.concatenate([ours[3][n].ravel() for n in model.params])
    assert relative_error(flat_ours, flat_ref) < 1e-10


# float32: each of the ~R rows' terms carries a relative rounding error of a few u (u = 6e-8), and
# the loss is a sum of terms of either sign (log p - log q - nll), so the bound is taken relative to
# the sum of the terms' magnitudes; the gradient norm-wise, relative to its own norm (as test_model's).
@given(st.data())
def test_float32_within_float32_bound(data):
    model32, x, eps = draw_case(data, dtype=np.float32)
    # A draw whose values leave float32's range is beyond what float32 can carry, and is drawn away: an
    # intermediate that overflows float32 (e^-logvar at logvar < -88: 3 layers of ReLU at twice the init's
    # scale reached it), or exact gradients near float32's largest number (1e38).
    try:
        with np.errstate(over="raise"):
            ours = numpy_result(model32, x, eps)
    except FloatingPointError:
        assume(False)
    params64 = {n: v.astype(np.float64) for n, v in model32.params.items()}
    ref = torch_reference(model32.spec, params64, x.astype(np.float64), eps.astype(np.float64))
    flat_ref = np.concatenate([ref[3][n].ravel() for n in model32.params])
    assume(np.abs(flat_ref).max() < 1e30)
    scale = abs(ref[1]) + abs(ref[2]) + 1.0
    assert abs(ours[0] - ref[0]) < 1e-5 * scale
    flat_ours = np.concatenate([ours[3][n].ravel() for n in model32.params])
    assert relative_error(flat_ours, flat_ref) < 1e-4


def test_central_differences_every_parameter():
    rng = np.random.default_rng(5)
    spec = HVAESpec("tiny", (StochasticLayer((Linear(4, 3), Tanh()), 2), StochasticLayer((Linear(2, 3), Tanh()), 2)),
                    (StochasticLayer((Linear(2, 3), Tanh()), 2),), (Linear(2, 3), Tanh(), Linear(3, 4)), input_shape=(4,))
    model = HVAE(spec, dtype=np.float64, seed=rng)
    x = rng.random((3, 4))
    for k in (1, 5):
        eps = rng.standard_normal((3, k, 4))
        _, _, _, grads, dx = numpy_result(model, x, eps)
        loss = lambda: model.loss(x, eps)[0]  # noqa: E731
        for name, value in model.params.items():
            assert relative_error(grads[name], numerical_gradient(loss, value, 1e-6)) < 1e-7, (k, name)
        assert relative_error(dx, numerical_gradient(loss, x, 1e-6)) < 1e-7, (k, "x")


@given(st.integers(1, 3), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_density_layers_match_torch(batch, latent, seed):
    rng = np.random.default_rng(seed)
    z, mu, logvar, eps = (rng.standard_normal((batch, latent)) for _ in range(4))
    d = rng.standard_normal(batch)
    zt, mut, lvt = (torch.tensor(a, requires_grad=True) for a in (z, mu, logvar))
    lp = -0.5 * (LOG_2PI + lvt + (zt - mut) ** 2 * torch.exp(-lvt)).sum(-1)
    (lp * torch.tensor(d)).sum().backward()
    ours, backward = DiagGaussianLogDensity().forward(z, mu, logvar)
    assert relative_error(ours, lp.detach().numpy()) < 1e-12
    for a, t in zip(backward(d), (zt, mut, lvt)):
        assert relative_error(a, t.grad.numpy()) < 1e-12
    top, top_backward = StandardNormalLogDensity().forward(z)
    assert relative_error(top, -0.5 * (LOG_2PI + z * z).sum(-1)) < 1e-12
    assert relative_error(top_backward(d), -z * d[:, None]) < 1e-12
    # at its own sample, as a function of (mu, logvar): autograd through z = mu + e^(logvar/2) eps
    mut, lvt = (torch.tensor(a, requires_grad=True) for a in (mu, logvar))
    zs = mut + torch.exp(lvt / 2) * torch.tensor(eps)
    lq = -0.5 * (LOG_2PI + lvt + (zs - mut) ** 2 * torch.exp(-lvt)).sum(-1)
    (lq * torch.tensor(d)).sum().backward()
    ours, backward = SampleLogDensity().forward(eps, logvar)
    assert relative_error(ours, lq.detach().numpy()) < 1e-10
    assert relative_error(backward(d), lvt.grad.numpy()) < 1e-10
    assert np.abs(mut.grad.numpy()).max() < 1e-12 * (1 + np.abs(eps / np.exp(logvar / 2)).max())


# ---------------------------------------------------------------- the spec
def test_burda2_spec_is_the_papers_model():
    spec = specs.burda2_spec()
    assert spec.latents == (100, 50) and spec.noise_dim == 150 and spec.num_params == 521_084
    shapes = spec.parameter_shapes()
    assert shapes["q1.net.0.weight"] == (200, 784) and shapes["q1.mu.weight"] == (100, 200)
    assert shapes["q2.net.0.weight"] == (100, 100) and shapes["q2.logvar.weight"] == (50, 100)
    assert shapes["p1.net.0.weight"] == (100, 50) and shapes["p1.mu.weight"] == (100, 100)
    assert shapes["px.net.0.weight"] == (200, 100) and shapes["px.net.4.weight"] == (784, 200)
    assert HVAESpec.from_json(spec.to_json()) == spec and spec.to_json()["kind"] == "hvae"
    layout = hvae_flat_layout(spec)
    assert sorted(layout.values()) == sorted(set(layout.values()))
    assert sum(b - a for a, b in layout.values()) == spec.num_params
    assert layout["q1.logvar.weight"][0] == layout["q1.mu.weight"][1]        # the head is one matmul


def test_refusals():
    with pytest.raises(SpecError, match="activation"):
        specs.burda2_spec(activation="relu")
    with pytest.raises(SpecError, match="conditional priors"):
        HVAESpec("x", (StochasticLayer((), 2), StochasticLayer((), 2)), (), (Linear(2, 4),), input_shape=(4,))
    with pytest.raises(SpecError, match="Dropout"):
        HVAESpec("x", (StochasticLayer((specs.Dropout(0.5),), 2),), (), (Linear(2, 4),), input_shape=(4,))
    with pytest.raises(SpecError, match="beta"):
        HVAE(specs.burda2_spec(), beta=0.5)
    from numpy_vae.config import ConfigError, TrainConfig, validate_config
    from numpy_vae.presets import preset_values
    validate_config(TrainConfig(**{**preset_values("burda2"), "backend": "torch"}))    # torch_vae.hvae: the port
    with pytest.raises(ConfigError, match="use beta 1"):
        validate_config(TrainConfig(**{**preset_values("burda2"), "kl_warmup_epochs": 5}))
    validate_config(TrainConfig(**{**preset_values("burda2"), "objective": "iwae", "samples": 5}))
    model = HVAE(specs.burda2_spec(latent=3), dtype=np.float64)
    with pytest.raises(InputError, match=r"\(2, 103\) or \(2, K, 103\)"):
        model.loss(np.zeros((2, 784)), np.zeros((2, 50)))


# ------------------------------------------------------- training and resuming
BURDA2_TINY = ["--preset", "burda2", "--epochs", "2", "--train-limit", "200", "--seed", "4"]   # 10 steps per epoch


def test_burda2_sigkill_then_resume_equals_uninterrupted_run(real_mnist_dir, tmp_path):
    """`vae train --preset burda2 --objective iwae --samples 5` (the ELBO run differs only in K = 1) killed in epoch 2 and resumed ends bit for bit where the uninterrupted run
    does (parameters, Adam state, generator states, metrics), as tests/test_resume.py checks the one-layer VAE."""
    import subprocess
    from test_resume import child_env, cli, kill_at_step, strip_seconds

    from numpy_vae.training.checkpoint import load_checkpoint
    common = [*BURDA2_TINY, "--objective", "iwae", "--samples", "5", "--data-dir", str(real_mnist_dir), "--runs-dir", str(tmp_path),
              "--no-figures", "--no-progress"]
    reference = subprocess.Popen(cli(*common, "--name", "reference"), env=child_env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    kill_at_step("numpy", 15, [*common, "--name", "killed"])
    killed = tmp_path / "killed"
    assert load_checkpoint(killed / "last.npz")[2]["epoch"] == 1
    resumed = subprocess.run(cli("--resume", str(killed), "--no-progress", "--no-figures"), env=child_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    assert "521,084 parameters" in out
    p_ref, o_ref, m_ref = load_checkpoint(tmp_path / "reference" / "last.npz")
    p_res, o_res, m_res = load_checkpoint(killed / "last.npz")
    assert list(p_ref) == list(specs.burda2_spec().parameter_shapes()) == list(p_res)
    for name in p_ref:
        assert p_res[name].dtype == p_ref[name].dtype and np.array_equal(p_res[name], p_ref[name]), name
    for key in o_ref:
        assert np.array_equal(o_res[key], o_ref[key]), key
    assert m_res["rng"] == m_ref["rng"] and m_res["step"] == 20
    assert strip_seconds(m_res["metrics"]) == strip_seconds(m_ref["metrics"])
    assert m_ref["metrics"][1]["test_loss"] < m_ref["metrics"][0]["test_loss"] < 550     # it learns

    # `vae evaluate`: the importance-weighted estimate through the whole chain, K = 1 equal to -log w
    from numpy_vae.cli import main
    assert main(["evaluate", str(killed / "last.npz"), "-k", "8", "--limit", "3", "--no-progress",
                 "--data-dir", str(real_mnist_dir)]) == 0
    import json
    record = json.loads((killed / "evaluation.json").read_text())
    assert record["k"] == 8 and record["images"] == 3 and 0 < record["iwae_nll"] <= record["neg_elbo"] < 550


def test_chain_estimate_is_the_log_mean_exp_of_the_models_log_weights():
    """importance_weighted_nll_chain: K draws per image from the image's own stream, folded in chunks exactly
    as one log-mean-exp; K = 1 gives -log w, the per-image training loss of the same draw."""
    from numpy_vae.evaluation.iwae import image_rng, importance_weighted_nll_chain
    from numpy_vae.streams import draw_eps
    spec = HVAESpec("tiny", (StochasticLayer((Linear(4, 3), Tanh()), 2), StochasticLayer((), 2)),
                    (StochasticLayer((Linear(2, 3), Tanh()), 2),), (Linear(2, 4),), input_shape=(4,))
    model = HVAE(spec, dtype=np.float64, seed=1)
    x = np.random.default_rng(2).random((3, 4))
    est = importance_weighted_nll_chain(model.log_weights, 4, np.float64, x, k=7, seed=3, max_rows=3)
    for i in range(3):
        eps = draw_eps(image_rng(3, i), 7, 4, np.float64)[None]
        log_w = model.log_weights(x[i:i + 1], eps)[0]
        assert est.nll[i] == pytest.approx(-(np.logaddexp.reduce(log_w) - math.log(7)), rel=1e-12)
        assert est.neg_elbo_mc[i] == pytest.approx(-log_w.mean(), rel=1e-12)
        loss, _, _ = model.loss(x[i:i + 1], eps[:, :1])
        assert loss == pytest.approx(-log_w[0], rel=1e-12)


def test_encode_and_decode_read_the_model_along_its_means():
    """encode: q's means up the chain to the top layer's (mu, logvar); decode: p's means down to the logits."""
    model = HVAE(specs.burda2_spec(latent=3), dtype=np.float64, seed=0)
    x = np.random.default_rng(0).random((2, 784))
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, 3)
    (net1, head1), (net2, head2) = model.q
    assert np.array_equal(mu, head2(net2(head1(net1(x))[0]))[0])
    logits = model.decode(mu)
    (pnet, phead), = model.p
    assert np.array_equal(logits, model.px(phead(pnet(mu))[0]))
    assert np.allclose(model.decode(mu, probs=True), 1 / (1 + np.exp(-logits)))

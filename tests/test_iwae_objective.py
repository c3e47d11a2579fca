"""The importance-weighted bound as a training objective: numpy_vae.objectives.iwae_loss and its two pieces.

Checked here without torch (the autograd comparison is parity_tests/test_iwae_objective_parity.py):
- every hand-written backward against central finite differences in float64: LogMeanExp and
  LogPriorRatio alone, and the whole loss over every entry of every parameter and of x on small
  models (tiny input sizes, so that no entry has to be skipped), relu and tanh, and spot checks on
  784-pixel models with the importance weights far from uniform;
- the gradient is the softmax-weighted sum of the draws' single-sample gradients (the derivation);
- K = 1: the loss is nll + (log q - log p) of the draw, recon is VAE.loss's bit for bit, and in
  expectation over eps the loss and its gradient are the closed-form-KL ELBO's;
- float32 against float64 on the same weights;
- extremes: log-weights of +-1e4 and -1e30, one dominating draw, saturated logits of +-1e4;
- the inputs it refuses, and that nothing is kept on the model between calls.
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import numpy_vae
from numpy_vae.nn.functional import diag_gaussian_log_density, standard_normal_log_density
from numpy_vae.inputs import InputError
from numpy_vae.model import VAE
from numpy_vae.nn.gradcheck import assert_gradient, numerical_gradient, relative_error
from numpy_vae.nn.iwae_bound import LogMeanExp, LogPriorRatio
from numpy_vae.objectives import iwae_loss
from numpy_vae.specs import SpecError, mlp_spec

seeds = st.integers(0, 2**32 - 1)
U64 = np.finfo(np.float64).eps


def small_model(input_dim, hidden, latent, seed, activation="relu", dtype=np.float64):
    return VAE(mlp_spec(hidden=hidden, latent=latent, input_dim=input_dim, activation=activation), dtype=dtype,
               seed=seed)


def spread(model, logvar_shift=0.0, decoder_scale=1.0):
    """Move the importance weights away from uniform: wider/narrower posteriors, log-weights further apart."""
    model.params["fc_logvar.bias"][...] += logvar_shift
    last = [n for n in model.params if n.startswith("decoder.") and n.endswith(".weight")][-1]
    model.params[last][...] *= decoder_scale
    return model


def loss_of(model, x, eps):
    return lambda: float(iwae_loss(model, x, eps)[0])


# ------------------------------------------------------------------ LogMeanExp
@given(seeds, st.integers(1, 6), st.integers(1, 8), st.floats(0.1, 50))
def test_log_mean_exp_backward_matches_finite_differences(seed, batch, k, scale):
    rng = np.random.default_rng(seed)
    a, w = rng.normal(scale=scale, size=(batch, k)), rng.normal(size=batch)
    lme = LogMeanExp()
    out, backward = lme.forward(a)
    np.testing.assert_allclose(out, np.logaddexp.reduce(a, axis=1) - math.log(k), rtol=1e-13, atol=1e-13)
    da = backward(w)
    assert_gradient(da, lambda: float((lme.forward(a)[0] * w).sum()), a)
    np.testing.assert_allclose(da.sum(1), w, rtol=1e-12)            # the softmax sums to 1 per row


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(values=st.lists(st.floats(-1e30, 1e4) | st.sampled_from([1e4, -1e4, -1e30, 0.0]), min_size=1, max_size=6),
       dlme=st.floats(-10, 10))
def test_log_mean_exp_is_exact_for_k1(dtype, values, dlme):
    """K = 1: lme = a and da = dlme bit for bit (a - m = 0, the sum is 1, log 1 - log 1 = 0)."""
    a = np.array(values, dtype)[:, None]
    d = np.full(len(values), dlme, dtype)
    out, backward = LogMeanExp().forward(a)
    np.testing.assert_array_equal(out, a[:, 0])
    np.testing.assert_array_equal(backward(d), d[:, None])
    assert out.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_mean_exp_extremes_are_finite_and_right(dtype):
    a = np.array([[1e4, -1e4],                 # one dominating by 2e4 nats: its weight 1, the other's exactly 0
                  [-1e4, -1e4],                # equal: the mean of two equal weights is that weight
                  [-1e30, -1e30],              # far below any exp's range
                  [-1e30, 0.0],                # one at 0, the other e^-1e30
                  [1e4, 1e4 - 1.0]], dtype)    # two near 1e4, one nat apart: exp(1e4) would overflow
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out, backward = LogMeanExp().forward(a)
        da = backward(np.ones(5, dtype))
    log2 = math.log(2)
    expected = [1e4 - log2, -1e4, -1e30, -log2, 1e4 + math.log1p(math.exp(-1.0)) - log2]
    np.testing.assert_allclose(out, expected, rtol=4 * np.finfo(dtype).eps)
    s = 1 / (1 + math.exp(-1.0))
    np.testing.assert_allclose(da, [[1, 0], [0.5, 0.5], [0.5, 0.5], [0, 1], [s, 1 - s]],
                               rtol=4 * np.finfo(dtype).eps, atol=0)
    assert da[0, 1] == 0 and da[3, 0] == 0 and da.dtype == dtype


def test_log_mean_exp_refuses_an_empty_k():
    with pytest.raises(ValueError, match=r"\(B, K\) with K >= 1"):
        LogMeanExp().forward(np.zeros((2, 0)))


# --------------------------------------------------------------- LogPriorRatio
@given(seeds, st.integers(1, 5), st.integers(1, 6), st.integers(1, 5))
def test_log_prior_ratio_backward_matches_finite_differences(seed, batch, k, latent):
    rng = np.random.default_rng(seed)
    z, eps = rng.normal(scale=2, size=(batch, k, latent)), rng.normal(size=(batch, k, latent))
    logvar, w = rng.normal(scale=2, size=(batch, latent)), rng.normal(size=(batch, k))
    ratio = LogPriorRatio()
    r, backward = ratio.forward(z, eps, logvar)
    # = log N(z | 0, I) - log N(z | mu, e^logvar) for the mu that makes z = mu + e^(logvar/2) eps
    mu = z - np.exp(0.5 * logvar)[:, None, :] * eps
    direct = standard_normal_log_density(z) - diag_gaussian_log_density(z, mu, logvar[:, None, :])
    np.testing.assert_allclose(r, direct, rtol=1e-11, atol=1e-11)
    dz, dlogvar = backward(w)
    f = lambda: float((ratio.forward(z, eps, logvar)[0] * w).sum())  # noqa: E731
    assert_gradient(dz, f, z)
    assert_gradient(dlogvar, f, logvar)


def test_log_prior_ratio_is_the_log_density_ratio_in_full():
    """r = log N(z; 0, I) - log N(z; mu, e^logvar) for z = mu + e^(logvar/2) eps, 2 pi terms written out."""
    rng = np.random.default_rng(0)
    mu, logvar, eps = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 2, 4))
    z = mu[:, None] + np.exp(logvar / 2)[:, None] * eps
    log_p = (-0.5 * (np.log(2 * np.pi) + z ** 2)).sum(-1)
    log_q = (-0.5 * (np.log(2 * np.pi) + logvar[:, None] + (z - mu[:, None]) ** 2 / np.exp(logvar)[:, None])).sum(-1)
    r, _ = LogPriorRatio().forward(z, eps, logvar)
    np.testing.assert_allclose(r, log_p - log_q, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------- the whole objective
@given(seed=seeds, k=st.integers(1, 6), batch=st.integers(1, 4), input_dim=st.integers(1, 10),
       hidden=st.lists(st.integers(1, 6), min_size=1, max_size=2).map(tuple), latent=st.integers(1, 4),
       activation=st.sampled_from(["relu", "tanh"]), logvar_shift=st.floats(-1.5, 1.5),
       decoder_scale=st.floats(0.5, 5))
def test_iwae_loss_matches_finite_differences_in_every_entry(seed, k, batch, input_dim, hidden, latent, activation,
                                                              logvar_shift, decoder_scale):
    """Small models (input sizes of 1 to 10): every entry of every parameter, and of x, against finite differences."""
    model = spread(small_model(input_dim, hidden, latent, seed, activation), logvar_shift, 2 * decoder_scale)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 0.95, (batch, input_dim))        # x +- h stays in [0, 1]
    eps = rng.standard_normal((batch, k, latent))
    _, _, _, backward = iwae_loss(model, x, eps)
    dx = backward(need_input_grad=True)
    grads = {n: g.copy() for n, g in model.grads.items()}
    # The loss sums input_dim + latent terms per draw, so its rounding noise (u |f| / h per entry) is larger than
    # a single layer's: h = 1e-5 (truncation h^2 f'(3) / 6 ~ 1e-11) and 1e-5 relative.  Measured over 150 draws:
    # median 1e-10, worst 1.6e-8; a dropped term is O(1) (test_the_finite_differences_catch_a_dropped_term).
    f = loss_of(model, x, eps)
    for name, p in model.params.items():
        assert_gradient(grads[name], f, p, tol=1e-5, h=1e-5)
    assert_gradient(dx, f, x, tol=1e-5, h=1e-5)


class _WithoutLogvarTerm(LogPriorRatio):
    """A backward that forgets r's 1/2 sum logvar (its dlogvar): the slip the checks must catch."""

    def forward(self, z, eps, logvar):
        r, backward = super().forward(z, eps, logvar)
        return r, lambda dr: (backward(dr)[0], np.zeros_like(logvar))


class _WithoutPriorPath(LogPriorRatio):
    """A backward that forgets the prior's -|z|^2/2 path to z."""

    def forward(self, z, eps, logvar):
        r, backward = super().forward(z, eps, logvar)
        return r, lambda dr: (np.zeros_like(z), backward(dr)[1])


@pytest.mark.parametrize("wrong", [_WithoutLogvarTerm, _WithoutPriorPath])
def test_the_finite_differences_catch_a_dropped_term(monkeypatch, wrong):
    """The every-entry check can fail: dropping either term of the prior ratio's backward is far outside 1e-5."""
    import numpy_vae.objectives as objectives
    model = small_model(8, (5,), 2, 0, "tanh")
    rng = np.random.default_rng(0)
    x, eps = rng.uniform(0.05, 0.95, (3, 8)), rng.standard_normal((3, 4, 2))
    monkeypatch.setattr(objectives, "LogPriorRatio", wrong)
    _, _, _, backward = iwae_loss(model, x, eps)
    backward()
    grad = model.grads["fc_logvar.bias"].copy()
    monkeypatch.undo()
    numeric = numerical_gradient(loss_of(model, x, eps), model.params["fc_logvar.bias"], 1e-5)
    assert relative_error(grad, numeric) > 1e-2


@pytest.mark.parametrize("activation, k, logvar_shift, decoder_scale", [
    ("relu", 5, 0.0, 1.0),          # at initialization: the weights nearly uniform
    ("tanh", 5, 1.0, 6.0),          # wide posteriors, log-weights tens of nats apart
    ("relu", 8, -1.0, 20.0),        # one draw carrying almost all of each image's weight
])
def test_iwae_loss_matches_finite_differences_on_a_784_pixel_model(activation, k, logvar_shift, decoder_scale):
    model = spread(numpy_vae.build_model("mlp", latent=3, hidden=(16, 8), dtype=np.float64, seed=11,
                                         activation=activation), logvar_shift, decoder_scale)
    rng = np.random.default_rng(3)
    x = rng.uniform(0.02, 0.98, (4, 784))
    eps = rng.standard_normal((4, k, 3))
    _, _, _, backward = iwae_loss(model, x, eps)
    dx = backward(need_input_grad=True)
    grads = {n: g.copy() for n, g in model.grads.items()}
    f, h = loss_of(model, x, eps), 1e-4
    noise = U64 * abs(f()) / h
    for name, value in [*model.params.items(), ("x", x)]:
        analytic = dx if name == "x" else grads[name]
        idx = rng.choice(value.size, min(value.size, 12), replace=False)
        numeric = numerical_gradient(f, value, h, idx)
        err = relative_error(analytic.reshape(-1)[idx], numeric.reshape(-1)[idx], floor=1e4 * noise * np.sqrt(len(idx)))
        # a wrong backward shows as an O(1) error; a loss of ~550 nats carries ~1e-9 of noise per entry
        assert err < 1e-4, (name, err)


@given(seed=seeds, k=st.integers(1, 6), batch=st.integers(1, 4), logvar_shift=st.floats(-1.5, 1.5),
       decoder_scale=st.floats(0.5, 20))
def test_the_gradient_is_the_softmax_weighted_sum_of_the_draws_gradients(seed, k, batch, logvar_shift, decoder_scale):
    """grad loss = -(1/B) sum_bk w~_bk grad log w_bk, each grad log w_bk that of iwae_loss on one image and one draw."""
    model = spread(numpy_vae.build_model("mlp", latent=3, hidden=(10,), dtype=np.float64, seed=seed),
                   logvar_shift, decoder_scale)
    rng = np.random.default_rng(seed)
    x, eps = rng.random((batch, 784)), rng.standard_normal((batch, k, 3))
    _, _, _, backward = iwae_loss(model, x, eps)
    backward()
    total = model.grad_flat.copy()
    log_w = np.empty((batch, k))
    expected = np.zeros_like(total)
    singles = {}
    for b in range(batch):
        for j in range(k):
            loss1, _, _, backward1 = iwae_loss(model, x[b:b + 1], eps[b:b + 1, j:j + 1])
            backward1()
            log_w[b, j] = -loss1                              # K = 1, B = 1: loss = -log w
            singles[b, j] = model.grad_flat.copy()            # = grad (-log w_bj)
    weights = LogMeanExp.softmax(log_w)
    for (b, j), g in singles.items():
        expected += weights[b, j] / batch * g
    assert relative_error(total, expected) < 1e-12


# ------------------------------------------------------------------- K = 1
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_k1_is_nll_plus_the_single_draw_kl_and_recon_is_the_elbos(dtype):
    model = spread(numpy_vae.build_model("mlp", latent=4, hidden=(24, 12), dtype=dtype, seed=2), 0.7, 2.0)
    rng = np.random.default_rng(0)
    x = rng.random((6, 784)).astype(dtype)
    eps = rng.standard_normal((6, 1, 4)).astype(dtype)
    loss, recon, kl, _ = iwae_loss(model, x, eps)
    out = model.forward(x, eps[:, 0])
    assert recon == out["recon"]                                   # the same z, the same logits: bit for bit
    nll = model.likelihood.forward(out["logits"], x)[0]
    r, _ = LogPriorRatio().forward(out["z"][:, None], eps, out["logvar"])
    assert relative_error(loss, (nll - r[:, 0]).mean()) < 8 * np.finfo(dtype).eps
    assert relative_error(kl, -r.mean()) < 8 * np.finfo(dtype).eps
    assert relative_error(loss, recon + kl) < 8 * np.finfo(dtype).eps
    assert kl != out["kl"]                                         # a one-draw estimate, not the closed form


def test_k1_equals_the_closed_form_elbo_in_expectation_loss_and_gradient():
    """One image repeated N = 20,000 times with its own draw each: the K = 1 loss and gradient are the average over
    N draws of the single-sample KL ELBO's; the closed-form ELBO's, averaged over the same draws, differ from them
    only by the KL's Monte Carlo noise, mean 0 and ~1/sqrt(N).  (A 20-pixel model: only the latent side matters.)"""
    n, latent = 20_000, 3
    spec = mlp_spec(hidden=(8,), latent=latent, input_dim=20)
    model = spread(VAE(spec, dtype=np.float64, seed=4), -0.8)
    model.params["fc_mu.bias"][...] += 0.6                         # a posterior away from the prior: KL gradient ~1
    rng = np.random.default_rng(1)
    x = np.repeat(rng.random((1, 20)), n, axis=0)
    eps = rng.standard_normal((n, 1, latent))
    loss1, recon1, kl1, backward = iwae_loss(model, x, eps)
    backward()
    iwae_grad = model.grad_flat.copy()
    out = model.forward(x, eps[:, 0])
    model.backward(need_input_grad=False)
    elbo_grad = model.grad_flat.copy()
    assert recon1 == out["recon"]
    single_kl = -LogPriorRatio().forward(out["z"][:, None], eps, out["logvar"])[0][:, 0]
    se = single_kl.std() / math.sqrt(n)
    assert abs(kl1 - out["kl"]) < 4 * se and abs(loss1 - out["loss"]) < 4 * se, (kl1, out["kl"], se)
    # The gradients differ by mean(grad of the one-draw KL) - grad KL: noise of relative size ~1/sqrt(N) of the KL's
    # own gradient, which a beta = 0 model (the same weights) separates from the reconstruction's.
    recon_only = VAE(spec, beta=0.0, dtype=np.float64)
    recon_only.load_params(model.state_dict())
    recon_only.forward(x, eps[:, 0])
    recon_only.backward(need_input_grad=False)
    kl_grad_closed = elbo_grad - recon_only.grad_flat
    kl_grad_mc = iwae_grad - recon_only.grad_flat
    err = relative_error(kl_grad_mc, kl_grad_closed)
    assert np.linalg.norm(kl_grad_closed) > 0.1 and err < 0.05, err


# -------------------------------------------------------- properties of K > 1
@given(seed=seeds, k=st.integers(2, 8), batch=st.integers(1, 5), decoder_scale=st.floats(0.5, 20))
def test_diagnostics_and_the_bound_for_k_above_1(seed, k, batch, decoder_scale):
    """loss = recon + kl + mean_b KL(w~_b || uniform); loss <= the draws' average -log w (Jensen); K copies of one
    draw give the K = 1 loss."""
    model = spread(numpy_vae.build_model("mlp", latent=2, hidden=(12,), dtype=np.float64, seed=seed), 0.5,
                   decoder_scale)
    rng = np.random.default_rng(seed)
    x, eps = rng.random((batch, 784)), rng.standard_normal((batch, k, 2))
    loss, recon, kl, _ = iwae_loss(model, x, eps)
    log_w = np.array([[-iwae_loss(model, x[b:b + 1], eps[b:b + 1, j:j + 1])[0] for j in range(k)]
                      for b in range(batch)])
    w = LogMeanExp.softmax(log_w)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_to_uniform = np.where(w > 0, w * np.log(k * w), 0.0).sum(1).mean()
    assert abs(loss - (recon + kl + kl_to_uniform)) < 1e-10 * abs(loss)
    assert loss <= -log_w.mean() + 1e-10 * abs(loss)
    same = np.repeat(eps[:, :1], k, axis=1)
    assert abs(iwae_loss(model, x, same)[0] - iwae_loss(model, x, eps[:, :1])[0]) < 1e-12 * abs(loss)


# ------------------------------------------------------------ float32 vs float64
def float32_tolerances(m64, x, eps) -> dict[str, float]:
    """1e-4, widened where the softmax weights amplify the rounding of float32 log-weights: max(1e-4, 4 u S A).

    log w_bk sums terms of total magnitude S_bk (the pixels' |a| (1 + x) + softplus(-|a|), the latent terms
    (eps^2 + z^2 + |logvar|) / 2), so float32 has it to a few u S; the weights softmax(log w) inherit that as a
    relative error, and a gradient sum_bk w~_bk g_bk as that times A = sum w~ |g_bk| / |sum w~ g_bk| (1 when the
    draws' gradients agree).  parity_tests/test_iwae_objective_parity.py derives the same bound in full.
    """
    batch, k, latent = eps.shape
    mu, logvar = m64.encode(x)
    z = mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps
    a = m64.decode(z.reshape(-1, latent)).reshape(batch, k, -1)
    s_nll = (np.abs(a) * (1 + x[:, None]) + np.log1p(np.exp(-np.abs(a)))).sum(-1)
    s_r = 0.5 * (eps * eps + z * z + np.abs(logvar)[:, None]).sum(-1)
    scale = float((s_nll + s_r).max())
    log_w, singles = np.empty((batch, k)), {}
    for b in range(batch):
        for j in range(k):
            loss1, _, _, backward1 = iwae_loss(m64, x[b:b + 1], eps[b:b + 1, j:j + 1])
            dx = np.zeros_like(x)
            dx[b] = backward1(need_input_grad=True)[0]
            log_w[b, j] = -loss1
            singles[b, j] = {**{n: g.copy() for n, g in m64.grads.items()}, "x": dx}
    weights = LogMeanExp.softmax(log_w)
    tols = {}
    for name in singles[0, 0]:
        total = sum(weights[b, j] / batch * g[name] for (b, j), g in singles.items())
        spread_ = sum(weights[b, j] / batch * np.linalg.norm(g[name]) for (b, j), g in singles.items())
        norm = np.linalg.norm(total)
        tols[name] = max(1e-4, 4 * np.finfo(np.float32).eps * scale * (spread_ / norm if norm > 0 else 0.0))
    return tols


# Sizes where no single draw's gradient is a near-cancelled sum of its own terms (batch 8, latent 4, widths >= 16);
# cancellation between draws, which the weights' rounding exposes, widens the tolerance (float32_tolerances).
# The parity tests hold float32 NumPy to float32 torch over all sizes.
@given(seed=seeds, k=st.integers(1, 8), activation=st.sampled_from(["relu", "tanh"]), decoder_scale=st.floats(0.5, 4))
def test_float32_agrees_with_float64(seed, k, activation, decoder_scale):
    m64 = spread(numpy_vae.build_model("mlp", latent=4, hidden=(32, 16), dtype=np.float64, seed=seed,
                                       activation=activation), 0.0, decoder_scale)
    m32 = numpy_vae.build_model("mlp", latent=4, hidden=(32, 16), dtype=np.float32, activation=activation)
    m32.load_params({n: v.astype(np.float32) for n, v in m64.state_dict().items()})
    m64.load_params({n: v.astype(np.float32).astype(np.float64) for n, v in m64.state_dict().items()})
    rng = np.random.default_rng(seed)
    x = (rng.random((8, 784)) < 0.3).astype(np.float32)
    eps = rng.standard_normal((8, k, 4)).astype(np.float32)
    results = []
    for model in (m32, m64):
        loss, recon, kl, backward = iwae_loss(model, x, eps)
        dx = backward(need_input_grad=True)
        results.append((loss, recon, {"x": dx, **{n: g.copy() for n, g in model.grads.items()}}))
    (l32, r32, g32), (l64, r64, g64) = results
    assert l32.dtype == np.float32 and g32["x"].dtype == np.float32
    assert relative_error(l32, l64) < 1e-5 and relative_error(r32, r64) < 1e-5
    tols = float32_tolerances(m64, x.astype(np.float64), eps.astype(np.float64))
    for name in g64:
        err = relative_error(g32[name], g64[name])
        assert err < tols[name], (name, err, tols[name])


# ----------------------------------------------------------------- extremes
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_dominating_draw_gives_its_own_gradient(dtype):
    """Logits scaled by 200: each image's log-weights hundreds of nats apart, so one draw takes all the weight.
    The loss is that draw's -log w + log K and the gradient that draw's single-sample gradient."""
    model = spread(numpy_vae.build_model("mlp", latent=3, hidden=(16,), dtype=dtype, seed=5), 1.0, 200.0)
    rng = np.random.default_rng(2)
    x = (rng.random((3, 784)) < 0.3).astype(dtype)
    eps = rng.standard_normal((3, 6, 3)).astype(dtype)
    with np.errstate(over="raise", invalid="raise"):
        loss, _, _, backward = iwae_loss(model, x, eps)
        backward()
    grad = model.grad_flat.copy()
    log_w = np.array([[-iwae_loss(model, x[b:b + 1], eps[b:b + 1, j:j + 1])[0] for j in range(6)] for b in range(3)])
    gaps = np.sort(log_w, axis=1)
    assert (gaps[:, -1] - gaps[:, -2] > 120).all(), gaps                 # e^-120: below float32's and float64's u
    best = log_w.argmax(axis=1)
    eps_best = eps[np.arange(3), best][:, None]
    loss1, _, _, backward1 = iwae_loss(model, x, eps_best)
    backward1()
    tol = 8 * np.finfo(dtype).eps
    assert relative_error(loss, loss1 + math.log(6)) < tol
    assert np.isfinite(grad).all() and relative_error(grad, model.grad_flat) < 100 * tol


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_saturated_logits_of_1e4(dtype):
    """The decoder's last layer outputs +-1e4 (its weight scaled by 1e4 / |logit|): log-weights ~1e6 nats,
    thousands apart between draws.  Everything finite, no overflow, and float32 near float64."""
    results = []
    for dt in (np.float64, dtype):
        model = numpy_vae.build_model("mlp", latent=2, hidden=(8,), dtype=dt, seed=1)
        last = "decoder.2"
        model.params[f"{last}.weight"][...] *= 2e4
        model.params[f"{last}.bias"][...] = np.sign(model.params[f"{last}.bias"]) * 1e4
        rng = np.random.default_rng(0)
        x = (rng.random((4, 784)) < 0.5).astype(dt)
        eps = rng.standard_normal((4, 5, 2)).astype(dt)
        with np.errstate(over="raise", invalid="raise"):
            loss, recon, kl, backward = iwae_loss(model, x, eps)
            dx = backward(need_input_grad=True)
        logits = model.decode(eps.reshape(-1, 2))
        assert np.abs(logits).max() > 1e4
        assert np.isfinite([loss, recon, kl]).all() and np.isfinite(model.grad_flat).all() and np.isfinite(dx).all()
        assert loss > 1e5
        results.append((loss, model.grad_flat.copy()))
    if dtype == np.float32:
        (l64, g64), (l32, g32) = results
        assert relative_error(l32, l64) < 1e-5
        assert relative_error(g32, g64) < 1e-3                 # logits of 1e4 carry u * 1e4 = 1e-3 of rounding


# --------------------------------------------------------------- the inputs
def test_iwae_loss_refuses_what_it_cannot_use():
    model = numpy_vae.build_model("mlp", latent=3, hidden=(5,), dtype=np.float64)
    x = np.random.default_rng(0).random((2, 784))
    with pytest.raises(InputError, match=r"eps must have shape \(2, K, 3\) with K >= 1"):
        iwae_loss(model, x, np.zeros((2, 3)))                   # the ELBO's (B, L)
    with pytest.raises(InputError, match=r"\(2, K, 3\)"):
        iwae_loss(model, x, np.zeros((2, 0, 3)))                # K = 0
    with pytest.raises(InputError, match=r"\(2, K, 3\)"):
        iwae_loss(model, x, np.zeros((3, 2, 3)))                # another batch
    with pytest.raises(InputError, match=r"\(2, K, 3\)"):
        iwae_loss(model, x, np.zeros((2, 2, 4)))                # another latent size
    with pytest.raises(InputError, match="eps contains NaN"):
        iwae_loss(model, x, np.full((2, 2, 3), np.nan))
    with pytest.raises(InputError, match="float32"):
        iwae_loss(numpy_vae.build_model("mlp", latent=3, hidden=(5,)), x, np.full((2, 2, 3), 1e300))
    with pytest.raises(InputError, match=r"x must lie in \[0, 1\]"):
        iwae_loss(model, 255 * x, np.zeros((2, 2, 3)))
    with pytest.raises(SpecError, match="beta = 1"):
        iwae_loss(numpy_vae.build_model("mlp", latent=3, hidden=(5,), beta=0.5, dtype=np.float64), x,
                  np.zeros((2, 2, 3)))
    with pytest.raises(SpecError, match="numpy_vae.VAE"):
        iwae_loss(object(), x, np.zeros((2, 2, 3)))


@pytest.mark.parametrize("options", [{"dropout": 0.3}, {"batchnorm": True}])
def test_iwae_loss_refuses_training_mode_layers_and_runs_them_in_evaluation_mode(options):
    model = numpy_vae.build_model("mlp", latent=3, hidden=(6,), dtype=np.float64, seed=0, **options)
    rng = np.random.default_rng(0)
    x, eps = rng.random((3, 784)), rng.standard_normal((3, 4, 3))
    with pytest.raises(SpecError, match=r"training mode .*model.eval\(\)"):
        iwae_loss(model, x, eps)
    model.eval()
    loss, _, _, backward = iwae_loss(model, x, eps)
    backward()
    assert np.isfinite(loss) and np.isfinite(model.grad_flat).all()
    f = loss_of(model, x, eps)
    name = "fc_mu.weight"
    idx = rng.choice(model.params[name].size, 8, replace=False)
    numeric = numerical_gradient(f, model.params[name], 1e-5, idx)
    assert relative_error(model.grads[name].reshape(-1)[idx], numeric.reshape(-1)[idx]) < 1e-5


def test_nothing_is_kept_on_the_model_between_calls():
    """A backward closure belongs to its call: another iwae_loss, or the model's own forward, in between changes
    nothing it computes."""
    model = numpy_vae.build_model("mlp", latent=2, hidden=(8,), dtype=np.float64, seed=3)
    rng = np.random.default_rng(0)
    x, eps = rng.random((3, 784)), rng.standard_normal((3, 4, 2))
    _, _, _, backward = iwae_loss(model, x, eps)
    dx = backward(need_input_grad=True)
    expected = model.grad_flat.copy()
    _, _, _, backward = iwae_loss(model, x, eps)
    iwae_loss(model, rng.random((5, 784)), rng.standard_normal((5, 2, 2)))
    model.forward(rng.random((2, 784)), rng.standard_normal((2, 2)))
    assert backward(need_input_grad=False) is None
    np.testing.assert_array_equal(model.grad_flat, expected)
    np.testing.assert_array_equal(backward(need_input_grad=True), dx)

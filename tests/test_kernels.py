"""The tuned kernels (numpy_vae.kernels) equal their references (numpy_vae.nn), within stated bounds.

Convolutions.  Every entry of y, dx, dW and db is a sum of at most n products (y: C kH kW
of them plus the bias; dx: O kH kW; dW and db: one per pixel of the batch), which the fast
path (im2col, one matmul, col2im) and the reference (a loop over the kernel's taps) add in
different orders.  Any order of summation is within gamma_n * S of the exact sum, gamma_n =
n u / (1 - n u), u the unit roundoff and S the sum of the terms' magnitudes (Higham, Accuracy
and Stability of Numerical Algorithms, 2nd ed., eq. 3.5; fused multiply-adds only round
less).  So the two differ by at most 2 gamma_n S per entry.  S is computed by the reference
on |x|, |W|, |b|, |dy| in float64 (its own rounding, gamma_n in float64, is covered by a
factor 1.01).

Adam.  FastAdam stores the moments at a scale of its own (docs/gradients.md#adam), so its
arithmetic differs from the reference's; the bound is derived step by step in
``adam_bound`` below.  Its threads and blocks change nothing: bitwise.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from conv_helpers import conv_geometry
from numpy_vae.kernels.adam import FastAdam
from numpy_vae.kernels.conv import FastConv2d, FastConvTranspose2d
from numpy_vae.kernels.linear import FastLinear
from numpy_vae.nn.conv import (Conv2d, ConvTranspose2d, conv2d_reference, conv2d_reference_backward,
                               conv_transpose2d_reference, conv_transpose2d_reference_backward)
from numpy_vae.nn.linear import Linear
from numpy_vae.nn.optimizers import Adam

DTYPES = [np.float32, np.float64]
seeds = st.integers(0, 2**32 - 1)


# ===================================================================== convolutions
def gamma(n: int, dtype) -> float:
    u = np.finfo(dtype).eps / 2
    return n * u / (1 - n * u)


def run_layer(layer, x, dy):
    """(y, dx, dW, db) of one forward and backward of ``layer``."""
    y, backward = layer.forward(x)
    dx = backward(dy)
    return y, dx, layer.grads["weight"].copy(), layer.grads["bias"].copy()


@pytest.mark.parametrize("transpose", [False, True], ids=["Conv2d", "ConvTranspose2d"])
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data(), seed=seeds)
def test_fast_convolution_equals_the_reference(transpose, dtype, data, seed):
    g = data.draw(conv_geometry(transpose, batch=4, channels=6, size=10, kernel=5))
    g["geometry"] = (g["stride"], g["padding"], *([g["output_padding"]] if transpose else []))
    rng = np.random.default_rng(seed)
    c_in, c_out, (kh, kw) = g["c_in"], g["c_out"], g["kernel"]
    x = rng.normal(size=(g["batch"], c_in, *g["size"])).astype(dtype)
    w = rng.normal(size=(c_in, c_out, kh, kw) if transpose else (c_out, c_in, kh, kw)).astype(dtype)
    b = rng.normal(size=c_out).astype(dtype)
    ref_cls, fast_cls = (ConvTranspose2d, FastConvTranspose2d) if transpose else (Conv2d, FastConv2d)
    ref, fast = ref_cls(w, b, None, None, *g["geometry"]), fast_cls(w, b, None, None, *g["geometry"])
    ho, wo = ref.output_size(*g["size"])
    dy = rng.normal(size=(g["batch"], c_out, ho, wo)).astype(dtype)
    expected, got = run_layer(ref, x, dy), run_layer(fast, x, dy)

    forward, backward = ((conv_transpose2d_reference, conv_transpose2d_reference_backward) if transpose
                         else (conv2d_reference, conv2d_reference_backward))
    a64 = [np.abs(a).astype(np.float64) for a in (x, w, b, dy)]
    magnitudes = [forward(*a64[:3], *g["geometry"]), *backward(a64[0], a64[1], a64[3], *g["geometry"])]
    n = max(c_in * kh * kw + 1, c_out * kh * kw, g["batch"] * max(ho * wo, g["size"][0] * g["size"][1]))
    for what, e, a, s in zip(["y", "dx", "dW", "db"], expected, got, magnitudes):
        assert a.shape == e.shape and a.dtype == e.dtype == np.dtype(dtype), what
        excess = np.abs(a.astype(np.float64) - e) - 1.01 * 2 * gamma(n, dtype) * s
        assert excess.max() <= 0, f"{what}: beyond 2 gamma_{n} S by {excess.max():.3g}"
    np.testing.assert_array_equal(fast(x), got[0])               # inference: the same numbers as forward
    np.testing.assert_array_equal(ref(x), expected[0])


@pytest.mark.parametrize("c_in, c_out, taps", [(8, 4, False), (8, 1, True)], ids=["gather", "taps"])
def test_both_scatter_bodies_equal_the_reference(monkeypatch, c_in, c_out, taps):
    """ConvTranspose2d(k 4, s 2, p 1, output_padding 1) forward and backward in float64 through each of
    _scatter's two bodies (the gather, and the taps' adds where few output channels make the windows the
    bigger array): the same numbers as the reference, and the body named is the one that ran."""
    import numpy_vae.kernels.conv as kconv
    ran = []
    taps_body = kconv._scatter_taps
    monkeypatch.setattr(kconv, "_scatter_taps", lambda *a: ran.append(1) or taps_body(*a))
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(c_in, c_out, 4, 4)), rng.normal(size=c_out)
    x = rng.normal(size=(3, c_in, 5, 6))
    ref, fast = ConvTranspose2d(w, b, None, None, 2, 1, 1), FastConvTranspose2d(w, b, None, None, 2, 1, 1)
    dy = rng.normal(size=(3, c_out, *ref.output_size(5, 6)))
    for e, a in zip(run_layer(ref, x, dy), run_layer(fast, x, dy)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)
    assert bool(ran) == taps

def test_the_reference_convolutions_keep_no_work_arrays():
    """Re-entrant: a reference layer holds its parameters only; two forwards in flight stay independent."""
    rng = np.random.default_rng(0)
    layer = Conv2d(rng.normal(size=(3, 2, 3, 3)), np.zeros(3), stride=2, padding=1)
    assert set(vars(layer)) == {"params", "grads", "stride", "padding", "kernel_size"}
    x1, x2 = rng.normal(size=(2, 2, 6, 6)), rng.normal(size=(2, 2, 6, 6))
    (y1, back1), (y2, back2) = layer.forward(x1), layer.forward(x2)
    dy = rng.normal(size=y1.shape)
    back2(dy)
    dw2 = layer.grads["weight"].copy()
    back1(dy)
    np.testing.assert_array_equal(layer.grads["weight"], conv2d_reference_backward(x1, layer.params["weight"], dy,
                                                                                    2, 1)[1])
    assert not np.array_equal(dw2, layer.grads["weight"])


# ===================================================================== Linear
@pytest.mark.parametrize("dtype", DTYPES)
@given(batch=st.integers(1, 3), n_in=st.integers(1, 40), n_out=st.integers(1, 40), seed=seeds)
def test_fast_linear_is_bitwise_the_reference(dtype, batch, n_in, n_out, seed):
    """At batch 1 each entry of dW is one product dy_i x_j, in the outer product as in the matmul: bitwise."""
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(n_out, n_in)).astype(dtype), rng.normal(size=n_out).astype(dtype)
    x, dy = rng.normal(size=(batch, n_in)).astype(dtype), rng.normal(size=(batch, n_out)).astype(dtype)
    for expected, got in zip(run_layer(Linear(w, b), x, dy), run_layer(FastLinear(w, b), x, dy)):
        np.testing.assert_array_equal(got, expected)


# ===================================================================== Adam
def adam_bound(bound, p, m, v, g, lr, betas, eps, wd, t, u, tiny, c):
    """Advance ``bound`` (float64 arrays, the bounds after step t - 1) over step t of the reference
    (float64: p its parameters before the step, m and v its moments after it; g the gradient; c
    FastAdam's scale after the step, which stores m as M = m c / (1 - b1) and v as V = v c / (1 - b2)).

    Each implementation rounds each moment at most 5 times a step (the reference: b1 m, (1 - b1)
    rounded to the dtype, its product with g, the sum; FastAdam: its two scalars, two products, the
    sum), each rounding within u of that step's magnitudes mbar = b1 mbar + (1 - b1) |g'|, g' = g + wd p,
    or within tiny u absolutely where it underflows (tiny = the smallest normal number).  FastAdam
    also sets stored moments below tiny to 0 (its flush): at most tiny (1 - b1) / c in m, tiny
    (1 - b2) / c in v.  Hence
        |m_fast - m_ref| <= em_t = b1 em_{t-1} + 10 u mbar_t + (1 - b1) wd ep_{t-1} + 2 tiny (1 + (1 - b1) / c),
    and, v having no cancellation, |v_fast - v_ref| <= 10 t u v + ev_t, ev_t = b2 ev_{t-1} + 2 tiny (1 + (1 - b2) / c).
    The update S m / d, d = sqrt(v) / C + eps, is then within
        S (em + mbar (5 t u + 6 u)) / d + S mbar sqrt(ev) / (C d^2)
    of the reference's (6 roundings of the quotient in either; |sqrt(v + e) - sqrt(v)| <= sqrt|e|), and
    p - update is rounded once in each: ep_t = ep_{t-1} + that + 2 u (|p| + |update|).
    """
    b1, b2 = betas
    bound["mbar"] = b1 * bound["mbar"] + (1 - b1) * (np.abs(g) + wd * np.abs(p))
    bound["m"] = b1 * bound["m"] + 10 * u * bound["mbar"] + (1 - b1) * wd * bound["p"] + 2 * tiny * (1 + (1 - b1) / c)
    bound["v_rel"] = 10 * t * u
    bound["v_abs"] = b2 * bound["v_abs"] + 2 * tiny * (1 + (1 - b2) / c)
    C = math.sqrt(1 - b2 ** t)
    d = np.sqrt(v) / C + eps
    step = lr / (1 - b1 ** t)
    bound["p"] = bound["p"] + step * (bound["m"] + bound["mbar"] * (bound["v_rel"] / 2 + 6 * u)) / d \
        + step * bound["mbar"] * np.sqrt(bound["v_abs"]) / (C * d * d) + 2 * u * (np.abs(p) + step * np.abs(m) / d)


def reference_step(p, m, v, g, lr, betas, eps, wd, t):
    """One step of numpy_vae.nn's Adam in float64 on copies (the bound's running reference state)."""
    opt = Adam(p.copy(), lr=lr, betas=betas, eps=eps, weight_decay=wd)
    opt.load_state_dict({"step": t - 1, "exp_avg": m, "exp_avg_sq": v})
    opt.step(g)
    return opt.params, opt.exp_avg, opt.exp_avg_sq


@pytest.mark.parametrize("dtype", DTYPES)
@given(seed=seeds, n=st.integers(1, 200), steps=st.integers(1, 2 * FastAdam.FLUSH_EVERY + 2),
       lr=st.floats(1e-5, 1e-1), wd=st.sampled_from([0.0, 1e-2]), eps=st.sampled_from([1e-8, 1e-4]),
       b1=st.floats(0.0, 0.99), b2=st.floats(0.5, 0.9999), block=st.integers(1, 64), threads=st.integers(1, 3),
       lr_changes=st.lists(st.sampled_from([1.0, 1.0, 1.0, 0.3, 0.0]), min_size=34, max_size=34))
def test_fast_adam_equals_the_reference(dtype, seed, n, steps, lr, wd, eps, b1, b2, block, threads, lr_changes):
    """N steps on random parameters and gradients (|g| log-uniform in [1e-6, 1e2], a fifth exactly 0, whose
    moments decay towards the subnormals and, with small betas, reach them and the flush), the learning rate changing between steps (0
    included): p, m and v within the bound of ``adam_bound``."""
    rng = np.random.default_rng(seed)
    u, tiny = np.finfo(dtype).eps / 2, float(np.finfo(dtype).tiny)
    p0 = rng.normal(size=n).astype(dtype)
    ref, fast = Adam(p0.copy(), lr, (b1, b2), eps, wd), FastAdam(p0.copy(), lr, (b1, b2), eps, wd, block, threads)
    p64, m64, v64 = p0.astype(np.float64), np.zeros(n), np.zeros(n)
    bound = {"mbar": np.zeros(n), "m": np.zeros(n), "p": np.zeros(n), "v_rel": 0.0, "v_abs": 0.0}
    for t in range(1, steps + 1):
        g = (rng.choice([-1, 1], n) * 10.0 ** rng.uniform(-6, 2, n) * (rng.random(n) > 0.2)).astype(dtype)
        ref.lr = fast.lr = lr_t = lr * lr_changes[t - 1]
        ref.step(g)
        fast.step(g)
        p_next, m64, v64 = reference_step(p64, m64, v64, g.astype(np.float64), lr_t, (b1, b2), eps, wd, t)
        adam_bound(bound, p64, m64, v64, g.astype(np.float64), lr_t, (b1, b2), eps, wd, t, u, tiny, fast._cm)
        p64 = p_next
    # reading FastAdam's moments rescales them once more: 2 roundings (its scalar and the product)
    assert (np.abs(fast.params.astype(np.float64) - ref.params) <= bound["p"]).all()
    assert (np.abs(fast.exp_avg.astype(np.float64) - ref.exp_avg) <= bound["m"] + 2 * u * np.abs(ref.exp_avg)
            + 2 * tiny).all()
    assert (np.abs(fast.exp_avg_sq.astype(np.float64) - ref.exp_avg_sq)
            <= (bound["v_rel"] + 2 * u) * ref.exp_avg_sq + bound["v_abs"] + 2 * tiny).all()


@given(seed=seeds, n=st.integers(1, 3000), block=st.integers(1, 700), threads=st.integers(2, 5),
       wd=st.sampled_from([0.0, 1e-2]), dtype=st.sampled_from(DTYPES))
def test_threaded_adam_is_bitwise_the_single_threaded_one(seed, n, block, threads, wd, dtype):
    """Split over threads (more threads than blocks included), every bit of p, m and v is the same,
    across a subnormal flush (step 16) too: each element's update depends on that element alone."""
    rng = np.random.default_rng(seed)
    p1 = rng.normal(size=n).astype(dtype)
    p2 = p1.copy()
    one = FastAdam(p1, lr=1e-2, weight_decay=wd, block=block, threads=1)
    many = FastAdam(p2, lr=1e-2, weight_decay=wd, block=block, threads=threads)
    assert many.threads == min(threads, -(-n // block))
    for _ in range(2 * FastAdam.FLUSH_EVERY + 1):
        g = (rng.normal(size=n) * 10.0 ** rng.integers(-40, 3, size=n)).astype(dtype)
        g[rng.random(n) < 0.3] = 0
        one.step(g)
        many.step(g)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(one.exp_avg, many.exp_avg)
    np.testing.assert_array_equal(one.exp_avg_sq, many.exp_avg_sq)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reading_fast_adams_state_changes_nothing(dtype):
    """Two FastAdams on the same gradients, one read (exp_avg, exp_avg_sq, state_dict) after every step:
    bitwise the same parameters and moments, and what was read is not live."""
    rng = np.random.default_rng(2)
    p1 = rng.normal(size=300).astype(dtype)
    p2 = p1.copy()
    quiet, read = FastAdam(p1, lr=1e-3, block=64), FastAdam(p2, lr=1e-3, block=64)
    for _ in range(20):
        g = rng.normal(size=300).astype(dtype)
        quiet.step(g)
        read.step(g)
        state, m, v = read.state_dict(), read.exp_avg, read.exp_avg_sq
        assert read._cm != 1 - read.betas[0]                  # stored at another scale, and left there
        np.testing.assert_array_equal(m, state["exp_avg"])
        m[:] = 7
        v[:] = 7
        state["exp_avg"][:] = 7
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(quiet._m, read._m)
    np.testing.assert_array_equal(quiet._v, read._v)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["reference", "fast"])
def test_adam_state_round_trip_is_exact_and_continues_identically(dtype, kind):
    """state_dict -> load_state_dict gives the same state bitwise; a run that saves after step 3 and goes
    on and one resumed from that save stay bitwise equal (FastAdam: after the save point,
    ``rescale_to_torch``, as NumpyBackend.optimizer_state makes it)."""
    make = (lambda p: Adam(p, lr=0.05)) if kind == "reference" else (lambda p: FastAdam(p, lr=0.05))
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(6, 10)).astype(dtype)
    p1 = rng.normal(size=10).astype(dtype)
    a = make(p1)
    for g in grads[:3]:
        a.step(g)
    if kind == "fast":
        a.rescale_to_torch()
    saved_params, state = p1.copy(), a.state_dict()
    p2 = saved_params.copy()
    c = make(p2)
    c.load_state_dict(state)
    for key, value in c.state_dict().items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)
    for g in grads[3:]:
        a.step(g)
        c.step(g)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(a.exp_avg, c.exp_avg)
    np.testing.assert_array_equal(a.exp_avg_sq, c.exp_avg_sq)


def test_rescale_to_torch_stores_exactly_what_reading_gave():
    rng = np.random.default_rng(3)
    opt = FastAdam(rng.normal(size=50).astype(np.float32), lr=1e-3)
    for _ in range(4):
        opt.step(rng.normal(size=50).astype(np.float32))
    m, v = opt.exp_avg, opt.exp_avg_sq
    opt.rescale_to_torch()
    np.testing.assert_array_equal(opt._m, m)
    np.testing.assert_array_equal(opt._v, v)
    assert (opt._cm, opt._cv) == (pytest.approx(0.1), pytest.approx(0.001))


# ===================================================================== training with either
# What the two give after a few steps.  Each step, the kernels' gradients differ from the reference's by
# the rounding of sums of at most ~1,000 products (above: 2 gamma_n S, about 2e-13 of the magnitudes in
# float64, 1.2e-4 in float32, less the cancellation in them), and Adam's moments by ~10 t u (above).
# Adam's step, lr (1 - b1) / sqrt(1 - b2) = 3.16 lr at most per coordinate, follows the gradient's sign
# and its ratio to its root mean square, so a relative difference eps in the gradients moves a
# parameter by at most about 3.16 lr eps per step: the bound below is steps * 3.16 lr * EPS, with
# EPS = 1e-9 (float64) and 1e-3 (float32), room for a condition of 1e4 (float64) and 10 (float32) in
# the sums.  Losses are sums over the 784 pixels and the batch of terms of one sign, their relative
# difference held to the same EPS.  Measured here (the test below): parameters 9.6e-15 / 1.4e-6 apart,
# losses 5.8e-16 / 9.8e-8 relative after 4 steps of the conv model (float64 / float32), against bounds of
# 1.3e-11 / 1.3e-5 and 1e-9 / 1e-3.
EPS = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-3}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_both_kernels_take_the_same_first_steps_of_the_conv_model(dtype):
    from numpy_vae.backends import NumpyBackend
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 784)).astype(dtype)
    eps = rng.normal(size=(4, 16, 6)).astype(dtype)
    config = dict(arch="conv", latent=6, hidden=(512, 256), beta=1.0, dtype=np.dtype(dtype))
    fast, ref = (NumpyBackend(config, lr=1e-3, seed=1, kernels=k) for k in ("fast", "reference"))
    assert type(fast.optimizer).__name__ == "FastAdam" and type(ref.optimizer).__name__ == "Adam"
    tol = EPS[np.dtype(dtype)]
    for step, (xb, eb) in enumerate(zip(x, eps), start=1):
        a, b = fast.train_step(xb, eb), ref.train_step(xb, eb)
        np.testing.assert_allclose(a, b, rtol=tol, err_msg=f"loss, recon, kl at step {step}")
        pa, pb = fast.get_params(), ref.get_params()
        worst = max(float(np.abs(pa[n].astype(np.float64) - pb[n]).max()) for n in pa)
        assert worst <= step * 3.16 * 1e-3 * tol, (step, worst)


def test_vae_train_kernels_reference_gives_the_same_first_epoch(real_mnist_dir, tmp_path):
    """`--kernels reference` end to end (float64, the MLP: only Adam differs): the metrics of the first epoch
    within EPS of `--kernels fast`, and each run's config.json records its kernels."""
    import csv
    import json
    from numpy_vae.cli import main
    runs = {}
    for kernels in ("fast", "reference"):
        args = ["train", "--epochs", "1", "--train-limit", "256", "--batch-size", "64", "--hidden", "32",
                "--latent", "4", "--dtype", "float64", "--data-dir", str(real_mnist_dir), "--runs-dir", str(tmp_path),
                "--name", kernels, "--no-progress", "--no-figures"] + (["--kernels", kernels] if kernels != "fast" else [])
        assert main(args) == 0
        runs[kernels] = next(csv.DictReader((tmp_path / kernels / "metrics.csv").open()))
        assert json.loads((tmp_path / kernels / "config.json").read_text())["kernels"] == kernels
    for field in ("train_loss", "train_recon", "train_kl", "test_loss", "test_recon", "test_kl"):
        a, b = float(runs["fast"][field]), float(runs["reference"][field])
        assert abs(a - b) <= EPS[np.dtype(np.float64)] * abs(b), (field, a, b)

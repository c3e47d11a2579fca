"""The NumPy VAE: its public contract, its parameter count, and its full-ELBO gradient."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import numpy_vae
from numpy_vae import InputError, build_model, draw_eps
from numpy_vae.nn.activations import ReLU
from numpy_vae.nn.gradcheck import check_model_gradients


@pytest.mark.parametrize("latent, expected", [(2, 1_068_820), (20, 1_082_680)])
def test_default_architecture_parameter_count(latent, expected):
    model = build_model(latent=latent)
    assert model.num_params == expected
    assert sum(p.size for p in model.params.values()) == expected


def test_parameter_names_and_shapes_follow_torch_state_dict():
    model = build_model(latent=20)
    assert list(model.params) == [
        "encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
        "fc_mu.weight", "fc_mu.bias", "fc_logvar.weight", "fc_logvar.bias",
        "decoder.0.weight", "decoder.0.bias", "decoder.2.weight", "decoder.2.bias",
        "decoder.4.weight", "decoder.4.bias"]
    assert model.params["encoder.0.weight"].shape == (512, 784)      # (out, in), as torch stores it
    assert model.params["fc_logvar.weight"].shape == (20, 256)
    assert model.params["decoder.4.weight"].shape == (784, 512)


def test_params_are_views_into_one_flat_buffer():
    model = build_model(latent=4, hidden=(8,))
    for name, p in model.params.items():
        assert np.shares_memory(p, model.flat), name
        assert np.shares_memory(model.grads[name], model.grad_flat), name
    model.flat[:] = 0
    assert all((p == 0).all() for p in model.params.values())


def test_same_seed_same_weights_and_other_seed_other_weights():
    a, b, c = build_model(seed=3), build_model(seed=3), build_model(seed=4)
    np.testing.assert_array_equal(a.flat, b.flat)
    assert not np.array_equal(a.flat, c.flat)


def test_forward_returns_the_documented_dict():
    rng = np.random.default_rng(0)
    model = build_model(latent=5, hidden=(16, 8), beta=0.5)
    x = rng.random((7, 784), dtype=np.float32)
    eps = draw_eps(rng, 7, 5)
    out = model.forward(x, eps)
    assert set(out) == {"loss", "recon", "kl", "logits", "mu", "logvar", "z"}
    assert out["logits"].shape == (7, 784) and out["z"].shape == (7, 5)
    assert out["mu"].shape == out["logvar"].shape == (7, 5)
    np.testing.assert_allclose(out["loss"], out["recon"] + 0.5 * out["kl"], rtol=1e-6)
    np.testing.assert_allclose(out["z"], out["mu"] + eps * np.exp(0.5 * out["logvar"]), rtol=1e-6)
    assert out["kl"] > 0 and out["recon"] > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_dtypes_work_end_to_end(dtype):
    rng = np.random.default_rng(1)
    model = build_model(latent=3, hidden=(10,), dtype=dtype)
    x = rng.random((4, 784))
    out = model.forward(x, draw_eps(rng, 4, 3, dtype))
    grads, dx = model.backward()
    assert out["loss"].dtype == dtype and out["logits"].dtype == dtype
    assert all(g.dtype == dtype for g in grads.values()) and dx.dtype == dtype
    assert model.decode(np.zeros((2, 3)), probs=True).dtype == dtype


def test_float32_gradients_agree_with_float64_within_float32_precision():
    rng = np.random.default_rng(2)
    m64 = build_model(latent=6, hidden=(32, 16), dtype=np.float64)
    m32 = build_model(latent=6, hidden=(32, 16), dtype=np.float32)
    m32.flat[:] = m64.flat
    x, eps = rng.random((16, 784)), rng.standard_normal((16, 6))
    m64.forward(x, eps)
    m32.forward(x, eps)
    g64, dx64 = m64.backward()
    g32, dx32 = m32.backward()
    for name in g64:
        err = np.linalg.norm(g32[name] - g64[name]) / np.linalg.norm(g64[name])
        assert err < 1e-4, (name, err)
    assert np.linalg.norm(dx32 - dx64) / np.linalg.norm(dx64) < 1e-4


def relu_margin(model, x, eps) -> float:
    """Smallest |pre-activation| entering any ReLU on this batch, by inference calls (nothing cached)."""
    margins = []

    def run(stack, h):
        for layer in stack:
            if isinstance(layer, ReLU):
                margins.append(float(np.abs(h).min()))
            h = layer(h)
        return h

    mu, logvar = model.head(run(model.encoder, model.check_input(x)))
    run(model.decoder, mu + eps * np.exp(0.5 * logvar))
    return min(margins)


@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 8), h1=st.integers(2, 24), h2=st.integers(2, 12),
       latent=st.integers(1, 6), beta=st.floats(0, 4), extremes=st.booleans())
def test_full_elbo_gradient_matches_finite_differences(seed, batch, h1, h2, latent, beta, extremes):
    rng = np.random.default_rng(seed)
    model = build_model(latent=latent, hidden=(h1, h2), beta=beta, dtype=np.float64, seed=rng)
    x = rng.uniform(0.02, 0.98, (batch, 784))
    if extremes:                                 # exact 0s and 1s: the loss is still smooth in the weights
        x[:, ::3] = rng.integers(0, 2, x[:, ::3].shape)
    eps = draw_eps(rng, batch, latent, np.float64)
    # Finite differences are meaningless across a ReLU kink.  A step of h = 1e-4 in one weight or pixel
    # moves a pre-activation by about 1e-4 at most, so a margin of 1e-3 keeps every ReLU on one side
    # (and rejects few draws: Hypothesis fails the test on its own if too many are filtered).
    assume(relu_margin(model, x, eps) > 1e-3)
    errors = check_model_gradients(model, x, eps, per_param=12, rng=rng, check_x=not extremes)
    worst = max(errors, key=errors.get)
    # A wrong backward shows as an O(1) error; finite differences of a loss of ~550 nats carry
    # rounding noise of ~1e-9 per entry, hence 1e-4 (see check_model_gradients' floor).
    assert errors[worst] < 1e-4, (worst, errors[worst])


def test_backward_without_input_gradient_gives_the_same_parameter_gradients():
    rng = np.random.default_rng(5)
    model = build_model(latent=4, hidden=(12, 6), dtype=np.float64)
    x, eps = rng.random((3, 784)), rng.standard_normal((3, 4))
    model.forward(x, eps)
    full = {k: v.copy() for k, v in model.backward()[0].items()}
    model.forward(x, eps)
    grads, dx = model.backward(need_input_grad=False)
    assert dx is None
    for k in full:
        np.testing.assert_array_equal(grads[k], full[k])


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 785)), "shape"),
    (np.zeros(784), "shape"),
    (np.full((2, 784), np.nan), "NaN"),
    (np.full((2, 784), 2.0), "[0, 1]"),
    (np.full((2, 784), -0.5), "[0, 1]"),
])
def test_forward_refuses_bad_input_with_a_clear_message(bad, message):
    model = build_model(latent=2, hidden=(4,))
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        model.forward(bad, np.zeros((len(bad) if bad.ndim == 2 else 1, 2)))


def test_forward_refuses_eps_of_the_wrong_shape():
    model = build_model(latent=2, hidden=(4,))
    with pytest.raises(InputError, match="eps"):
        model.forward(np.zeros((3, 784)), np.zeros((3, 5)))


def test_build_model_refuses_unknown_architecture_and_bad_sizes():
    with pytest.raises(ValueError, match="arch"):
        build_model(arch="resnet")
    with pytest.raises(ValueError, match="latent"):
        build_model(latent=0)
    with pytest.raises(ValueError, match="dtype"):
        build_model(dtype=np.int32)


def test_load_params_moves_weights_between_models_and_refuses_misfits():
    a, b = build_model(seed=1, latent=3, hidden=(9,)), build_model(seed=2, latent=3, hidden=(9,))
    b.load_params(a.params)
    np.testing.assert_array_equal(a.flat, b.flat)
    with pytest.raises(KeyError, match="missing"):
        b.load_params({k: v for k, v in a.params.items() if k != "fc_mu.bias"})
    with pytest.raises(ValueError, match="encoder.0.weight"):
        b.load_params({**a.params, "encoder.0.weight": np.zeros((2, 2))})


def test_public_names_are_exported():
    assert callable(numpy_vae.build_model) and callable(numpy_vae.draw_eps)


def test_decode_and_sample_refuse_bad_input_at_the_entry_point():
    model = build_model(latent=3, hidden=(4,))
    with pytest.raises(InputError, match=r"z must .*\(batch, 3\)"):
        model.decode(np.zeros((2, 5)))
    with pytest.raises(InputError, match="NaN"):
        model.decode(np.full((2, 3), np.nan))
    with pytest.raises(InputError, match="positive integer"):
        model.sample(0, np.random.default_rng(0))
    assert model.sample(2, np.random.default_rng(0)).shape == (2, 784)


def test_out_of_range_hint_fits_the_input():
    model = build_model(latent=2, hidden=(4,))
    with pytest.raises(InputError, match="255"):
        model.forward(np.full((1, 784), 200.0), np.zeros((1, 2)))
    with pytest.raises(InputError, match="rescale"):
        model.forward(np.full((1, 784), -3.0), np.zeros((1, 2)))


def test_gradient_norm_beyond_float32_squares_is_not_mistaken_for_a_non_finite_gradient():
    from numpy_vae.backends import NumpyBackend
    backend = NumpyBackend({"latent": 2, "hidden": (4,)}, clip_grad_norm=1.0)
    rng = np.random.default_rng(0)
    backend.model.params["decoder.2.bias"][:] = 0
    x, eps = rng.random((2, 784), dtype=np.float32), np.zeros((2, 2), np.float32)
    real_backward = backend.model.backward

    def huge_backward(need_input_grad=True):      # finite gradients whose squared norm overflows float32
        out = real_backward(need_input_grad)
        backend.model.grad_flat[:] = 1e20
        return out
    backend.model.backward = huge_backward
    before = backend.model.flat.copy()
    backend.train_step(x, eps)                        # clipped to norm 1, then one Adam step: no error
    assert np.isfinite(backend.model.flat).all() and not np.array_equal(before, backend.model.flat)

"""Bad inputs at the model's entry points and at build_model: one clear error, never a silent change.

Each case was found by a review of the previous design, where it was accepted or failed deep
inside NumPy: complex x or eps (imaginary part dropped), string eps (a bare ValueError),
latent=2.7 (silently 2), beta=-1 or NaN (accepted), latent="3" (a raw TypeError), and in the
torch backend eps = 1e300 (checked finite before the cast to float32, then a NaN loss).
"""
import numpy as np
import pytest

from numpy_vae import InputError, build_model, draw_eps
from numpy_vae.backends import NumpyBackend
from numpy_vae.specs import SpecError


@pytest.fixture(scope="module")
def model():
    return build_model(latent=3, hidden=(8,))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.random((4, 784)), draw_eps(rng, 4, 3)


@pytest.mark.parametrize("which, bad, message", [
    ("x", lambda x, e: x + 0.1j, "x is complex"),
    ("eps", lambda x, e: e.astype(complex), "eps is complex"),
    ("eps", lambda x, e: e.astype(str), "eps must be numeric"),
    ("x", lambda x, e: x.astype(str), "x must be numeric"),
    ("eps", lambda x, e: [[1.0, 2.0], [3.0]], "eps cannot be read as an array"),
    ("eps", lambda x, e: e[:, :2], r"eps must have shape \(4, 3\)"),
    ("eps", lambda x, e: np.full_like(e, np.nan), "eps contains NaN"),
    ("x", lambda x, e: x * 255, "divide 8-bit pixel values by 255"),
])
def test_forward_refuses_with_one_line(model, batch, which, bad, message):
    x, eps = batch
    args = {"x": x, "eps": eps}
    args[which] = bad(x, eps)
    with pytest.raises(InputError, match=message) as info:
        model.forward(args["x"], args["eps"])
    assert "\n" not in str(info.value)


def test_eps_finite_in_float64_but_not_in_float32_is_refused_by_both_backends(batch):
    """1e300 is a float64 number but inf in float32: refused after the cast, with the reason."""
    from torch_vae.backend import TorchBackend
    x, eps = batch
    eps = eps.astype(np.float64)
    eps[0, 0] = 1e300
    config = {"arch": "mlp", "latent": 3, "hidden": (8,), "beta": 1.0, "dtype": np.dtype(np.float32)}
    for backend in (NumpyBackend(config), TorchBackend(config)):
        with pytest.raises(InputError, match="not for float32"):
            backend.train_step(x, eps)
        with pytest.raises(InputError, match="not for float32"):
            backend.evaluate(x, eps)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_decode_and_sample_refuse_bad_z_and_n(backend):
    config = {"arch": "mlp", "latent": 3, "hidden": (8,), "beta": 1.0, "dtype": np.dtype(np.float32)}
    if backend == "numpy":
        b = NumpyBackend(config)
    else:
        from torch_vae.backend import TorchBackend
        b = TorchBackend(config)
    for z, message in [(np.zeros((2, 4)), r"shape \(batch, 3\)"), (np.zeros((0, 3)), "batch >= 1"),
                       (np.zeros((2, 3)) + 1j, "z is complex"), (np.array([["a", "b", "c"]]), "z must be numeric"),
                       (np.full((1, 3), np.inf), "z contains NaN or infinite")]:
        with pytest.raises(InputError, match=message):
            b.decode(z)
    model = build_model(latent=3, hidden=(8,))
    for n in (0, -1, 2.5, "3", True, float("nan")):
        with pytest.raises(InputError, match="n must be a positive integer"):
            model.sample(n, np.random.default_rng(0))
    assert model.sample(np.int64(2), np.random.default_rng(0)).shape == (2, 784)


@pytest.mark.parametrize("kwargs, message", [
    ({"latent": 2.7}, r"latent=2.7: expected an integer >= 1"),
    ({"latent": "3"}, r"latent='3': expected an integer >= 1"),
    ({"latent": True}, r"latent=True: expected an integer >= 1"),
    ({"latent": 0}, r"latent=0: expected an integer >= 1"),
    ({"hidden": (64, 0)}, r"hidden size=0"),
    ({"hidden": (64, 3.5)}, r"hidden size=3.5"),
    ({"hidden": ()}, r"at least one hidden size"),
    ({"hidden": "512,256"}, r"expected a sequence of integers"),
    ({"beta": -1.0}, r"beta=-1.0: expected a finite number >= 0"),
    ({"beta": float("nan")}, r"beta=nan: expected a finite number >= 0"),
    ({"beta": float("inf")}, r"beta=inf"),
    ({"beta": "1"}, r"beta='1'"),
    ({"dtype": np.float16}, r"expected float32 or float64"),
    ({"dtype": "complex128"}, r"expected float32 or float64"),
    ({"arch": "resnet"}, r"arch='resnet': unknown architecture; available: \['burda2', 'conv', 'mlp'\]"),
])
def test_build_model_refuses_what_it_cannot_build(kwargs, message):
    with pytest.raises(SpecError, match=message) as info:
        build_model(**kwargs)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_build_model_takes_numpy_integers_and_float_betas():
    model = build_model(latent=np.int64(3), hidden=(np.int32(8),), beta=np.float32(0.5))
    assert model.latent == 3 and model.beta == 0.5 and isinstance(model.latent, int)

"""torch_vae's model checks what numpy_vae checks, with numpy_vae's messages (torch_vae/inputs.py).

Before, TorchVAE.forward took x * 2 (a finite, meaningless loss), NaN x, an infinite eps
and a 0-row batch (loss nan), and float16 / int / float64 input or a 3-D tensor failed
deep inside torch.  Now each is refused, or (other real dtypes) cast as numpy_vae casts.
"""
import numpy as np
import pytest
import torch

import numpy_vae
from numpy_vae import InputError, draw_eps
from torch_vae import build_model
from torch_vae.objectives import iwae_loss

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.fixture(scope="module", params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(scope="module")
def models(device):
    """The torch model and its NumPy twin (same weights), both float32, latent 3."""
    return build_model(latent=3, hidden=(8,), device=device), numpy_vae.build_model(latent=3, hidden=(8,))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.random((4, 784)).astype(np.float32), draw_eps(rng, 4, 3)


def numpy_message(ref, x, eps) -> str:
    with pytest.raises(InputError) as caught:
        ref.forward(x, eps)
    return str(caught.value)


@pytest.mark.parametrize("bad_x, words", [
    (lambda x: x * 2, "got values in [0.0"),
    (lambda x: x * 255, "divide 8-bit pixel values by 255"),
    (lambda x: x - 1, "rescale the pixels to [0, 1]"),
    (lambda x: np.where(np.arange(784) == 5, np.nan, x).astype(np.float32), "x contains NaN"),
    (lambda x: np.full_like(x, np.inf), "x contains NaN or infinite values"),
    (lambda x: x.astype(np.float64) * 1e300, "in range for float64, not for float32"),
    (lambda x: x[:0], "batch >= 1, got (0, 784)"),
    (lambda x: x.reshape(4, 28, 28), "got (4, 28, 28); flatten 28x28 images"),
])
def test_bad_images_are_refused_with_numpy_vaes_message(models, batch, device, bad_x, words):
    port, ref = models
    x, eps = batch
    bad = bad_x(x)
    with pytest.raises(InputError) as caught:
        port(torch.from_numpy(bad).to(device), torch.from_numpy(eps[:len(bad)]).to(device))
    assert words in str(caught.value)
    if bad.ndim == 2 and len(bad):
        assert str(caught.value) == numpy_message(ref, bad, eps).replace("np.clip(x, 0, 1)", "x.clamp(0, 1)")


@pytest.mark.parametrize("bad_eps, words", [
    (lambda e: np.full_like(e, np.inf), "eps contains NaN or infinite values"),
    (lambda e: e[:, :2], "eps must have shape (4, 3), got (4, 2)"),
    (lambda e: e[None], "eps must have shape (4, 3), got (1, 4, 3)"),
])
def test_bad_noise_is_refused_with_numpy_vaes_message(models, batch, device, bad_eps, words):
    port, ref = models
    x, eps = batch
    with pytest.raises(InputError) as caught:
        port(torch.from_numpy(x).to(device), torch.from_numpy(bad_eps(eps)).to(device))
    assert str(caught.value) == numpy_message(ref, x, bad_eps(eps)) and words in str(caught.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.uint8, torch.int64, torch.bool])
def test_other_real_dtypes_are_cast_as_numpy_vae_casts_them(models, batch, device, dtype):
    port, ref = models
    x, eps = batch
    x = (x > 0.5) if dtype in (torch.uint8, torch.int64, torch.bool) else x
    xt = torch.from_numpy(np.asarray(x)).to(dtype).to(device)
    got = port(xt, torch.from_numpy(eps).to(device))["loss"].item()
    want = ref.forward(xt.cpu().numpy(), eps)["loss"]
    assert got == pytest.approx(float(want), rel=1e-5)


def test_what_cannot_be_cast_or_is_elsewhere_is_refused(models, batch, device):
    port, _ = models
    x, eps = batch
    e = torch.from_numpy(eps).to(device)
    with pytest.raises(InputError, match="x must hold real numbers, got dtype torch.complex64"):
        port(torch.from_numpy(x).to(device).to(torch.complex64), e)
    with pytest.raises(InputError, match=r"x must be a torch.Tensor, got ndarray; convert it with torch.as_tensor"):
        port(x, e)
    other = torch.device("meta")
    with pytest.raises(InputError, match=r"x is on meta, the model on .*; move it with x.to\("):
        port(torch.from_numpy(x).to(other), e)


def test_encode_decode_and_iwae_check_too(models, batch, device):
    port, _ = models
    x, eps = batch
    with pytest.raises(InputError, match="x must lie in"):
        port.encode(torch.from_numpy(x * 2).to(device))
    with pytest.raises(InputError, match=r"z must be a numeric array of shape \(batch, 3\)"):
        port.decode(torch.zeros(0, 3, device=device))
    with pytest.raises(InputError, match="z contains NaN"):
        port.decode(torch.full((2, 3), float("nan"), device=device))
    with pytest.raises(InputError, match="x must lie in"):
        iwae_loss(port.eval(), torch.from_numpy(x * 2).to(device), torch.zeros(4, 2, 3, device=device))
    port.train()


def test_values_rounded_just_past_one_show_their_digits_and_say_to_clip(models, device):
    port, ref = models
    ref64 = numpy_vae.build_model(latent=3, hidden=(8,), dtype=np.float64)
    x = np.full((2, 784), 0.5)
    x[0, 0] = 1.0000000000000002
    with pytest.raises(InputError) as caught:
        ref64.forward(x, np.zeros((2, 3)))
    assert "got values in [0.5, 1.0000000000000002]; they leave [0, 1] by rounding only: clip them, " \
           "np.clip(x, 0, 1)" in str(caught.value)
    port64 = build_model(latent=3, hidden=(8,), dtype=torch.float64, device=device)
    with pytest.raises(InputError, match=r"1\.0000000000000002\]; they leave \[0, 1\] by rounding only: clip them, "
                                         r"x\.clamp\(0, 1\)"):
        port64(torch.from_numpy(x).to(device), torch.zeros(2, 3, dtype=torch.float64, device=device))


def test_the_unchecked_path_is_the_same_computation(models, batch, device):
    port, _ = models
    x, eps = (torch.from_numpy(a).to(device) for a in batch)
    torch.testing.assert_close(port(x, eps)["loss"], port(x, eps, check_inputs=False)["loss"], rtol=0, atol=0)


def test_gradients_still_reach_the_input(models, batch, device):
    port, _ = models
    x = torch.from_numpy(batch[0]).to(device).requires_grad_(True)
    port(x, torch.from_numpy(batch[1]).to(device))["loss"].backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())

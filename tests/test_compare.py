"""numpy_vae.nn.compare.cmp, the notebooks' checker: its row, its colours, and the error naming the gradient."""
import io

import numpy as np
import pytest
import torch

from numpy_vae.nn.compare import GREEN, HEADER, RED, GradientMismatch, cmp


def _run(*args, **kw):
    out = io.StringIO()
    return cmp(*args, file=out, **kw), out.getvalue()


def test_a_right_gradient_is_a_green_row():
    ref = np.random.default_rng(0).standard_normal((3, 4))
    row, text = _run("dW", ref * (1 + 1e-13), torch.tensor(ref), header=True)
    assert row.ok and row.allclose and not row.exact and row.shape == (3, 4)
    assert 0 < row.rel_error < 1e-12 and row.max_abs_diff > 0
    assert text.startswith(HEADER + "\n" + GREEN + "dW ") and text.rstrip().endswith("ok\x1b[0m")


def test_an_identical_gradient_is_exact():
    row, _ = _run("db", np.arange(3.0), np.arange(3.0))
    assert row.exact and row.rel_error == 0 and row.max_abs_diff == 0


def test_a_wrong_gradient_is_a_red_row_and_an_error_naming_it():
    ref = np.linspace(-1, 1, 10)
    out = io.StringIO()
    with pytest.raises(GradientMismatch, match=r"^dlogvar does not match autograd: relative error 1 > 1e-10"):
        cmp("dlogvar", 2 * ref, ref, file=out)
    assert out.getvalue().startswith(RED + "dlogvar ") and "WRONG" in out.getvalue()
    assert issubclass(GradientMismatch, AssertionError)


def test_check_false_prints_the_red_row_and_returns_it():
    row, text = _run("dx", np.ones(3), np.zeros(3) + 2, check=False, color=False)
    assert not row.ok and "WRONG" in text and "\x1b" not in text


def test_a_wrong_shape_fails_even_when_it_broadcasts():
    with pytest.raises(GradientMismatch, match=r"dW does not match autograd: its shape \(3, 1\) is not the reference's \(3,\)"):
        _run("dW", np.ones((3, 1)), np.ones(3))


def test_the_default_tolerance_follows_the_dtype():
    ref = np.random.default_rng(1).standard_normal(50)
    assert _run("f32", ref.astype(np.float32), ref)[0].ok                    # float32 rounding: ~1e-8 relative
    with pytest.raises(GradientMismatch):
        _run("f64", ref * (1 + 1e-8), ref)                                   # float64 must reach 1e-10
    assert _run("fd", ref * (1 + 1e-8), ref, tol=1e-6, against="central diff")[0].ok

"""Central finite differences, to check any hand-written backward (use float64).

    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2 h)        error O(h^2)
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-6,
                       indices: np.ndarray | None = None) -> np.ndarray:
    """Gradient of the scalar ``f()`` with respect to the array ``x``, perturbed in place.

    ``f`` takes no arguments: it reads ``x`` (or a view of it) each call.  With
    ``indices`` (flat positions) only those entries are computed, the rest stay 0,
    so large parameter matrices can be spot-checked.  ``x`` is restored exactly.
    """
    if x.dtype != np.float64:
        raise TypeError(f"finite differences need float64 to be meaningful, got {x.dtype}")
    grad = np.zeros_like(x)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)   # views: x must be contiguous
    if not np.shares_memory(flat_x, x):
        raise ValueError("x must be contiguous so it can be perturbed in place")
    for i in range(flat_x.size) if indices is None else indices:
        old = flat_x[i]
        flat_x[i] = old + h
        f_plus = float(f())
        flat_x[i] = old - h
        f_minus = float(f())
        flat_x[i] = old
        flat_g[i] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> float:
    """||a - b|| / max(||b||, floor, tiny): the figure every gradient check reports.

    ``floor`` keeps a gradient that is nearly zero from turning rounding noise
    into a large relative error (finite differences have a noise floor of about
    eps * |f| / h per entry).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), floor, np.finfo(np.float64).tiny))


def assert_gradient(analytic: np.ndarray, f: Callable[[], float], x: np.ndarray, tol: float = 1e-6,
                    h: float = 1e-6, f_scale: float | None = None) -> float:
    """Assert that ``analytic`` equals the central finite differences of ``f()`` with respect to ``x``
    (perturbed in place, float64) to ``tol`` relative; returns the relative error.  The tests' one helper.

    Entries far below the finite differences' rounding noise, eps |f| / h per entry, cannot be checked
    relatively: the error's denominator never drops below 1e4 times that noise (an absolute check there).
    ``f_scale`` is the size f is rounded at where it is a sum whose terms cancel (sum |terms|; default |f()|):
    a weighted sum of +-1's can be near 0 while each evaluation still carries eps times its terms' size.
    """
    numeric = numerical_gradient(f, x, h)
    scale = abs(float(f())) if f_scale is None else float(f_scale)
    floor = 1e4 * np.finfo(np.float64).eps * scale / h * np.sqrt(x.size)
    err = relative_error(analytic, numeric, floor)
    assert err < tol, (err, analytic, numeric)
    return err


def check_model_gradients(model, x: np.ndarray, eps: np.ndarray, h: float = 1e-4, per_param: int = 20,
                          rng: np.random.Generator | None = None, check_x: bool = True) -> dict[str, float]:
    """Relative error of ``model.backward()`` against finite differences, per parameter and for x.

    Checks ``per_param`` randomly chosen entries of each parameter (all of them
    when fewer) and of x.  Returns name -> relative error over those entries.
    Pass ``check_x=False`` when x holds exact 0s or 1s: a step of h would leave
    [0, 1], which the model refuses.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    model.forward(x, eps)
    grads, dx = model.backward()
    grads = {k: v.copy() for k, v in grads.items()}
    loss = lambda: model.forward(x, eps)["loss"]  # noqa: E731
    # Rounding noise of one finite difference is about eps |f| / h (~1e-9 for a loss of ~500 nats
    # and h = 1e-4): a gradient under 1e4 times that cannot be checked to 1e-4 relative, so
    # the relative error's denominator never drops below that level (an absolute check there).
    noise = np.finfo(np.float64).eps * abs(float(loss())) / h
    errors = {}
    for name, value in [*model.params.items(), *([("x", x)] if check_x else [])]:
        analytic = dx if name == "x" else grads[name]
        n = value.size
        idx = np.arange(n) if n <= per_param else rng.choice(n, per_param, replace=False)
        numeric = numerical_gradient(loss, value, h, idx)
        errors[name] = relative_error(analytic.reshape(-1)[idx], numeric.reshape(-1)[idx],
                                      floor=1e4 * noise * np.sqrt(len(idx)))
    return errors


# ----------------------------------------------------- exact references, in decimal
def _dec(v):
    from decimal import Decimal
    return Decimal(float(v))                        # exact: every float32 and float64 is a float


def exact_gaussian_kl(mu: np.ndarray, logvar: np.ndarray, dkl: np.ndarray):
    """KL(N(mu, e^logvar) || N(0, 1)) per row (B,), dmu (B, L) and dlogvar (B, L) for the upstream dkl (B,),
    from the float values given, computed in decimal and rounded once to float64.

    The reference where no float formula is: e^logvar - 1 - logvar ~ logvar^2 / 2 cancels
    2 |log10 |logvar|| digits, so the working precision is raised by that much and 50 significant
    digits are left after the cancellation.
    """
    from decimal import localcontext
    tiniest = min((_dec(v).adjusted() for v in np.ravel(logvar) if v != 0), default=0)
    with localcontext() as ctx:
        ctx.prec = 50 + 2 * max(0, -tiniest)
        kl = [float(sum(_dec(m) ** 2 + _dec(lv).exp() - 1 - _dec(lv) for m, lv in zip(mr, lr)) / 2)
              for mr, lr in zip(mu, logvar)]
        dmu = [[float(_dec(m) * _dec(d)) for m in mr] for mr, d in zip(mu, dkl)]
        dlv = [[float((_dec(lv).exp() - 1) / 2 * _dec(d)) for lv in lr] for lr, d in zip(logvar, dkl)]
    return np.array(kl), np.array(dmu).reshape(np.shape(mu)), np.array(dlv).reshape(np.shape(logvar))


def exact_sigmoid_derivative(x: np.ndarray) -> np.ndarray:
    """sigma(x) sigma(-x) = e^x / (1 + e^x)^2 to 50 digits, rounded once to float64."""
    from decimal import localcontext
    with localcontext() as ctx:
        ctx.prec = 50
        return np.array([float(_dec(v).exp() / (1 + _dec(v).exp()) ** 2) for v in np.ravel(x)]).reshape(np.shape(x))

"""``cmp``: one gradient you derived against a reference, as one row of a table (the notebooks' checker).

    cmp("dW", dW, W_torch.grad)        # prints a row; raises GradientMismatch naming dW when it is wrong

    name              exact  allclose  max abs diff  rel. error  shape         against        result
    dW                no     yes       2.22e-16      3.87e-17    (3, 5)        autograd       ok

Each row says whether the two arrays are bitwise equal, whether they agree to the tolerance,
their largest absolute difference, the relative error of ``gradcheck.relative_error``
(||ours - ref|| / ||ref||, the figure every gradient check of this project reports) and the
shape.  A row that fails is printed red and raises :class:`GradientMismatch`, an
``AssertionError`` whose message names the gradient, so a notebook (or a test) stops at
the first wrong backward instead of printing it and carrying on.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from .gradcheck import relative_error

RED, GREEN, RESET = "\x1b[31m", "\x1b[32m", "\x1b[0m"
HEADER = (f"{'name':<18}{'exact':<7}{'allclose':<10}{'max abs diff':<14}{'rel. error':<12}{'shape':<14}"
          f"{'against':<15}result")


class GradientMismatch(AssertionError):
    """A derived gradient that does not match its reference; the message names it."""


@dataclass(frozen=True)
class Row:
    """One comparison: what ``cmp`` printed, as data."""
    name: str
    exact: bool
    allclose: bool
    max_abs_diff: float
    rel_error: float
    shape: tuple
    against: str
    tol: float

    @property
    def ok(self) -> bool:
        return self.allclose

    def line(self) -> str:
        yes = lambda b: "yes" if b else "no"  # noqa: E731
        return (f"{self.name:<18}{yes(self.exact):<7}{yes(self.allclose):<10}{self.max_abs_diff:<14.2e}"
                f"{self.rel_error:<12.2e}{str(self.shape):<14}{self.against:<15}{'ok' if self.ok else 'WRONG'}")


def default_tol(*arrays) -> float:
    """The relative error a correct backward reaches: 1e-10 in float64 (the project's bar), 1e-5 in float32."""
    return 1e-10 if all(np.asarray(a).dtype == np.float64 for a in arrays) else 1e-5


def cmp(name: str, ours, reference, tol: float | None = None, *, against: str = "autograd",
        header: bool = False, file=None, color: bool = True, check: bool = True) -> Row:
    """Compare ``ours`` with ``reference`` (NumPy arrays or torch tensors), print one row, and return it.

    ``tol`` bounds the relative error (default: :func:`default_tol`); "allclose" means a relative
    error within ``tol`` and equal shapes.  ``against`` names the reference in the row (autograd,
    central differences, the layer, torch, ...).  With ``check`` (the default) a failing row raises
    :class:`GradientMismatch` naming ``name``; ``header`` prints the column names first.
    """
    ours, reference = _numpy(ours), _numpy(reference)
    tol = default_tol(ours, reference) if tol is None else float(tol)
    same_shape = ours.shape == reference.shape
    if same_shape:
        diff = np.abs(ours.astype(np.float64) - reference.astype(np.float64))
        max_abs = float(diff.max()) if diff.size else 0.0
        rel = relative_error(ours, reference)
        exact = bool(np.array_equal(ours, reference))
    else:
        max_abs, rel, exact = float("nan"), float("nan"), False
    close = bool(same_shape and (exact or rel <= tol))
    shape = ours.shape if same_shape else (ours.shape, reference.shape)
    row = Row(name, exact, close, max_abs, rel, shape, against, tol)
    out = sys.stdout if file is None else file
    if header:
        print(HEADER, file=out)
    text = row.line()
    if color:
        text = f"{GREEN if row.ok else RED}{text}{RESET}"
    print(text, file=out)
    if check and not row.ok:
        what = (f"its shape {ours.shape} is not the reference's {reference.shape}" if not same_shape else
                f"relative error {rel:.3g} > {tol:.0e} (max abs diff {max_abs:.3g})")
        raise GradientMismatch(f"{name} does not match {against}: {what}; re-derive the backward of {name}")
    return row


def _numpy(a) -> np.ndarray:
    """A NumPy array of ``a``; a torch tensor is detached and moved to the CPU first (no torch import here)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)

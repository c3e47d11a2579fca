"""``vae parity``: a cmp-style report of the NumPy reference against the PyTorch port.

For one model configuration, same weights, same batch, same noise ``eps``, it
prints, on the CPU and (where present) on CUDA, for every quantity:

    exact      the two arrays are bit-for-bit equal
    allclose   np.allclose(numpy, torch, rtol=TOL, atol=TOL * max|torch|)
    max|diff|  the largest absolute difference
    rel.err    ||numpy - torch|| / ||torch||     (Frobenius norms, computed in float64)

Section 1 compares the forward outputs, d loss / d x and d loss / d every
parameter (NumPy's hand-written backward against ``torch.autograd``).
Section 2 compares the per-step losses, every parameter and Adam's moments after
``--steps`` Adam steps of each backend (NumPy's Adam against ``torch.optim.Adam``)
on the same batches and noise.

This module is the one parity engine: ``parity_tests/`` assert on the rows these
functions return, so the table users read is the thing under test.
The exit status is 1 if any relative error exceeds its tolerance, as ``cmp``
exits 1 when files differ.

With BatchNorm in training, a bias that shifts every sample of a batch alike right before it (see
:func:`biases_before_batchnorm`) has a gradient of 0 in exact arithmetic, so both backends compute
rounding noise for it and Adam turns that noise into steps (each at most lr (1 - b1) / sqrt(1 - b2),
3.16 lr): those parameters, and the running means they feed, are held to |diff| <= 2 * 3.16 * steps * lr
instead of a relative tolerance (measured: well under steps * lr).

Reading the float32 trajectory: Adam divides by sqrt(v) + 1e-8, so a gradient
entry that is itself rounding noise (a sum over the batch that cancels to
|g| ~ 1e-9) still moves its parameter by a good fraction of lr, and the two
implementations' different noise becomes a visible difference there (a few
entries out of 400,000 of encoder.0.weight after 10 steps of the default
model).  That is Adam amplifying float32 rounding, not a difference between
the optimizers: in float64 the same steps agree to ~1e-15.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import numpy_vae
from numpy_vae.backends import NumpyBackend
from numpy_vae.streams import draw_eps, dropout_stream, noise_stream, synthetic_stream

from .backend import TorchBackend
from .convert import to_torch
from .build import build_model
from .model import torch_dtype

# Relative-error tolerances: gradients (section 1) and parameters after Adam steps (section 2).
GRAD_TOL = {"float64": 1e-10, "float32": 1e-4}
TRAJECTORY_TOL = {"float64": 1e-9, "float32": 1e-3}


def _norm(v: np.ndarray) -> float:
    """Frobenius norm, scaled so the squares neither underflow nor overflow (||[1e-300]|| = 1e-300)."""
    m = float(np.abs(v).max()) if v.size else 0.0
    if m == 0.0 or not math.isfinite(m):
        return m                                    # 0, inf or nan
    return m * float(np.sqrt(np.sum(np.square(v / m))))


def relative_error(a, b) -> float:
    """||a - b|| / ||b|| in float64 (a, b any shape, same shape); 0 when a equals b, inf when only b is 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    if np.array_equal(a, b):
        return 0.0
    diff, ref = _norm(a - b), _norm(b)
    if ref == 0.0:
        return math.inf
    return diff / ref


@dataclass
class Row:
    """One line of the report: ``numpy`` against ``torch`` for the quantity ``name``."""
    name: str
    shape: tuple[int, ...]
    exact: bool
    allclose: bool
    max_abs_diff: float
    rel_err: float
    tol: float

    @property
    def ok(self) -> bool:
        return self.rel_err <= self.tol


def compare(name: str, numpy_value, torch_value, tol: float) -> Row:
    """A Row comparing two arrays (torch tensors are moved to the CPU)."""
    if isinstance(torch_value, torch.Tensor):
        torch_value = torch_value.detach().cpu().numpy()
    a, b = np.asarray(numpy_value), np.asarray(torch_value)
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    scale = float(np.abs(b).max()) if b.size else 0.0
    return Row(name, tuple(b.shape), bool(np.array_equal(a, b)),
               bool(np.allclose(a, b, rtol=tol, atol=tol * scale)),
               float(diff.max()) if diff.size else 0.0, relative_error(a, b), tol)


# --------------------------------------------------------- rounding-level KL
def kl_rounding(mu, logvar, dtype) -> float:
    """8 ulps of the terms of the batch-mean KL: the absolute accuracy any evaluation of it can have.

    kl = mean_B 1/2 sum_L (e^logvar - 1 - logvar + mu^2) is a small difference of O(1) terms
    when the posterior is the prior (mu, logvar -> 0, as at initialization).  Any evaluation,
    NumPy's or torch's, is then only good to a few ulps of s = mean_B 1/2 sum_L (e^logvar + 1 +
    |logvar| + mu^2), and the two libraries' float32 exps differ in the last bit.  Example:
    Hypothesis's float32 draw batch=1, latent=1, hidden=(19,), seed=2275 had kl = 1.06e-4 and the
    two differed by 3.0e-8 = ulp(1) / 4, i.e. 2.8e-4 relative.
    """
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    s = 0.5 * (np.exp(logvar) + 1 + np.abs(logvar) + mu * mu).sum(1).mean()
    return 8 * float(np.finfo(dtype).eps) * float(s)


def _with_kl_rounding(row: Row, kl_abs: float, value: float) -> Row:
    """A scalar holding a KL term: its tolerance widened to that term's rounding (kl_abs, absolute)."""
    tol = kl_abs / max(abs(value), np.finfo(np.float64).tiny)
    if tol > row.tol:
        row.tol, row.name = tol, f"{row.name} (rounding-level)"
    return row


# ----------------------------------------------------------------- section 1
def biases_before_batchnorm(spec, beta: float | None = None) -> list[str]:
    """The biases that shift every sample of a batch alike right before a BatchNorm1d: those of Linear
    layers a BatchNorm1d follows and, without a KL term (``beta`` 0), fc_mu's when the decoder starts with
    Linear, BatchNorm1d (fc_mu.bias shifts every z alike).  In training the batch mean removes such a
    shift, so their gradient is 0 in exact arithmetic and what either backend computes is rounding noise."""
    names = []
    for prefix, part in (("encoder", spec.encoder), ("decoder", spec.decoder)):
        for i, (layer, after) in enumerate(zip(part[:-1], part[1:])):
            if type(layer).__name__ == "Linear" and type(after).__name__ == "BatchNorm1d":
                names.append(f"{prefix}.{i}.bias")
    if beta == 0 and "decoder.0.bias" in names:
        names.append("fc_mu.bias")
    return names


def _noise_row(row: Row, numpy_value, torch_value, scale: float) -> Row:
    """A gradient that is 0 in exact arithmetic: both must be rounding-small against ``scale``
    (the norm of its layer's weight gradient); rel.err is then max(||numpy||, ||torch||) / scale."""
    if isinstance(torch_value, torch.Tensor):
        torch_value = torch_value.detach().cpu().numpy()
    row.rel_err = max(_norm(np.asarray(numpy_value, np.float64)), _norm(np.asarray(torch_value, np.float64))) / scale
    row.name += " (0 in exact arithmetic: BatchNorm follows)"
    return row


def compare_models(ref, port, x: np.ndarray, eps: np.ndarray, device="cpu", masks=None) -> tuple[list[Row], dict]:
    """Forward and backward of the NumPy model ``ref`` and its torch twin ``port`` on x (B, 784), eps (B, L).

    Both in the same mode (``ref.training`` is copied to ``port``); ``masks`` are the Dropout
    keep-masks both are fed in training.  Rows: loss, recon, kl, mu, logvar, z, logits, grad x,
    then grad of every parameter in state_dict order (NumPy's hand-written backward against
    ``torch.autograd.grad``), then every buffer after the forward (BatchNorm's running statistics).
    kl and loss are held to the KL's rounding level where that is coarser (:func:`kl_rounding`).
    Returns (rows, NumPy's forward outputs).
    """
    if isinstance(ref, numpy_vae.HVAE):
        return compare_hvae_models(ref, port, x, eps, device)
    dtype = ref.dtype
    tol = GRAD_TOL[dtype.name]
    port.train(ref.training)
    out_np = ref.forward(x, eps, masks)
    grads_np, dx_np = ref.backward()
    xt = torch.tensor(np.asarray(x, dtype), device=device, requires_grad=True)
    masks_t = None if masks is None else {k: torch.tensor(np.asarray(v, dtype), device=device) for k, v in masks.items()}
    noise = biases_before_batchnorm(ref.spec, ref.beta) if ref.training else []
    outputs = {}                     # bias name -> its layer's output y: the bias gradient is sum_b dloss/dy_b
    hooks = [port.get_submodule(n[:-len(".bias")]).register_forward_hook(
        lambda module, args, out, n=n: outputs.__setitem__(n, out)) for n in noise]
    try:
        out_t = port(xt, torch.tensor(np.asarray(eps, dtype), device=device), masks_t)
    finally:
        for hook in hooks:
            hook.remove()
    names = [n for n, _ in port.named_parameters()]
    if names != list(grads_np):
        raise ValueError(f"the two models' parameters differ: {names} and {list(grads_np)}")
    grads_t = torch.autograd.grad(out_t["loss"], [xt, *port.parameters(), *outputs.values()])
    dys = dict(zip(outputs, grads_t[1 + len(names):]))
    rows = [compare(k, out_np[k], out_t[k], tol) for k in ("loss", "recon", "kl", "mu", "logvar", "z", "logits")]
    kl_abs = kl_rounding(out_np["mu"], out_np["logvar"], dtype)
    _with_kl_rounding(rows[2], kl_abs, float(out_t["kl"].detach()))
    _with_kl_rounding(rows[0], ref.beta * kl_abs, float(out_t["loss"].detach()))
    rows.append(compare("grad x", dx_np, grads_t[0], tol))
    by_name = dict(zip(names, grads_t[1:1 + len(names)]))
    for n, g in by_name.items():
        row = compare(f"grad {n}", grads_np[n], g, tol)
        if n in dys:
            # Rounding-small against the weight's gradient, or against the sum of |terms| the bias gradient
            # adds up (sum_b |dy_b|), whichever is larger: where the layer's input is 0 for every sample
            # (ReLU and Dropout can zero it) the weight's gradient is exactly 0 and says nothing.
            terms = dys[n].detach().abs().sum(0).cpu().numpy()
            scale = max(_norm(by_name[n[:-len("bias")] + "weight"].detach().cpu().numpy()), _norm(terms),
                        np.finfo(np.float64).tiny)
            row = _noise_row(row, grads_np[n], g, scale)
        rows.append(row)
    state_t = port.state_dict()
    rows += [compare(f"buffer {n}", b, state_t[n], tol) for n, b in ref.buffers.items()]
    return rows, out_np


def bound_rounding(terms: dict, dtype, names=("nll", "log_p", "log_q")) -> float:
    """8 ulps of the terms of a batch-mean bound (or of its kl): the absolute accuracy any evaluation has.

    loss = mean_b [-logmeanexp_k (log p - log q - nll)] and kl = mean_b sum_k w~ (log q - log p) are sums of
    terms of either sign; where they nearly cancel, the result is good only to a few ulps of
    s = mean_(b,k) of the terms' magnitudes (``names``: |nll| + |log q| + |log p| for the loss, |log q| +
    |log p| for kl).  ``terms``: nll, log_p, log_q (B, K) tensors or arrays.
    """
    parts = [np.abs(np.asarray(_array(terms[k]), np.float64)) for k in names]
    return 8 * float(np.finfo(dtype).eps) * float(sum(parts).mean())


def _array(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def compare_hvae_models(ref, port, x: np.ndarray, eps: np.ndarray, device="cpu") -> tuple[list[Row], dict]:
    """:func:`compare_models` for several stochastic layers: ``numpy_vae.HVAE`` (hand-written backward)
    against ``torch_vae.TorchHVAE`` (autograd), x (B, D), eps (B, N) or (B, K, N).

    Rows: loss, recon, kl (each held to the rounding level of its terms where that is coarser,
    :func:`bound_rounding`), log w (B, K), grad x, then grad of every parameter in state_dict order.
    Returns (rows, NumPy's outputs: loss, recon, kl, log_w).
    """
    dtype = ref.dtype
    tol = GRAD_TOL[dtype.name]
    loss, recon, kl = ref.loss(x, eps)
    grads_np, dx_np = ref.backward()
    out_np = {"loss": loss, "recon": recon, "kl": kl, "log_w": ref.log_weights(x, eps)}
    xt = torch.tensor(np.asarray(x, dtype), device=device, requires_grad=True)
    et = torch.tensor(np.asarray(eps, dtype), device=device)
    out_t = port(xt, et)
    names = [n for n, _ in port.named_parameters()]
    if names != list(grads_np):
        raise ValueError(f"the two models' parameters differ: {names} and {list(grads_np)}")
    grads_t = torch.autograd.grad(out_t["loss"], [xt, *port.parameters()])
    rows = [compare(k, out_np[k], out_t[k], tol) for k in ("loss", "recon", "kl", "log_w")]
    with torch.no_grad():
        terms = port.log_weights(xt, et)
    for row, parts in zip(rows, (("nll", "log_p", "log_q"), ("nll",), ("log_p", "log_q"))):
        _with_kl_rounding(row, bound_rounding(terms, dtype, parts), float(out_t[row.name].detach()))
    rows.append(compare("grad x", dx_np, grads_t[0], tol))
    rows += [compare(f"grad {n}", grads_np[n], g, tol) for n, g in zip(names, grads_t[1:])]
    return rows, out_np


def noise_width(model_config: dict) -> int:
    """The width of one draw of eps for ``model_config`` (build_model's arguments): the latent size, or
    d_1 + ... + d_L for several stochastic layers."""
    c = {k: v for k, v in model_config.items() if k not in ("dtype", "beta")}
    spec = c["spec"] if "spec" in c else numpy_vae.make_spec(c.pop("arch", "mlp"), **c)
    return getattr(spec, "noise_dim", spec.latent)


def gradient_rows(model_config: dict, x: np.ndarray, eps: np.ndarray, seed: int = 0,
                  device="cpu", params: dict | None = None, training: bool = True) -> list[Row]:
    """:func:`compare_models` on two fresh models of ``model_config``, in training (or evaluation) mode.

    model_config: build_model's arch/latent/hidden/beta/dtype and MLP options (dtype a NumPy dtype);
    x (B, 784) in [0, 1]; eps (B, L).  Weights: ``params`` if given, else the seed's initialization
    (the same in both, bit for bit).  Dropout masks are drawn from ``dropout_stream(seed)``.
    """
    config = dict(model_config)
    dtype = np.dtype(config.pop("dtype"))
    ref = numpy_vae.build_model(**config, dtype=dtype, seed=seed).train(training)
    mod = build_model(**config, dtype=torch_dtype(dtype), seed=seed, device=device)
    if params is not None:
        ref.load_params(params)
        to_torch(params, mod)
    masks = ref.draw_masks(dropout_stream(seed), len(x)) if training and ref.dropout_p else None
    return compare_models(ref, mod, x, eps, device, masks)[0]


# ----------------------------------------------------------------- section 2
def train_both(model_config: dict, batches: list[np.ndarray], seed: int = 0, device="cpu", lr: float = 1e-3,
               weight_decay: float = 0.0, clip_grad_norm: float | None = None, params: dict | None = None,
               samples: int | None = None, adam_eps: float = 1e-8):
    """One step per batch with NumpyBackend and TorchBackend from the same start and the same noise.

    batches: list of (B, 784) arrays; the noise of step k is drawn from
    ``numpy_vae.streams.noise_stream(seed)`` as the training loop draws it, of :func:`noise_width`;
    ``samples`` K: the importance-weighted bound's objective, eps (B, K, N).
    Returns (numpy backend, torch backend, [per-step losses of each]).
    """
    dtype = np.dtype(model_config["dtype"])
    kwargs = dict(lr=lr, weight_decay=weight_decay, seed=seed, clip_grad_norm=clip_grad_norm, adam_eps=adam_eps,
                  objective="elbo" if samples is None else "iwae")
    backends = [NumpyBackend(model_config, **kwargs), TorchBackend(model_config, **kwargs, device=str(device))]
    width, k = noise_width(model_config), samples or 1
    losses = []
    for b in backends:
        if params is not None:
            b.set_params(params)
        rng, masks = noise_stream(seed), dropout_stream(seed)
        draw = (lambda n: draw_eps(rng, n, width, dtype)) if samples is None else \
            (lambda n: draw_eps(rng, n * k, width, dtype).reshape(n, k, width))
        losses.append([b.train_step(x, draw(len(x)), b.draw_masks(masks, len(x)))[0] for x in batches])
    return backends[0], backends[1], losses


def trajectory_rows(model_config: dict, batches: list[np.ndarray], seed: int = 0, device="cpu",
                    lr: float = 1e-3, params: dict | None = None, weight_decay: float = 0.0,
                    clip_grad_norm: float | None = None, tol: float | None = None, samples: int | None = None,
                    adam_eps: float = 1e-8) -> list[Row]:
    """After one Adam step per batch with each backend (:func:`train_both`): rows for the per-step
    losses, every parameter, and Adam's two moments (flattened in state_dict order).

    ``tol`` defaults to TRAJECTORY_TOL of the dtype; ``samples`` and ``adam_eps``: :func:`train_both`'s.
    """
    dtype = np.dtype(model_config["dtype"])
    tol = TRAJECTORY_TOL[dtype.name] if tol is None else tol
    b_np, b_t, (loss_np, loss_t) = train_both(model_config, batches, seed, device, lr, weight_decay,
                                              clip_grad_norm, params, samples, adam_eps)
    p_np, p_t = b_np.get_params(), b_t.get_params()
    s_np, s_t = b_np.optimizer_state(), b_t.optimizer_state()
    if list(p_np) != list(p_t) or int(s_np["step"]) != int(s_t["step"]) != len(batches):
        raise ValueError("the two backends' parameters or step counts differ")
    noisy = set(biases_before_batchnorm(b_np.model.spec, b_np.model.beta))
    fed = {_running_mean_fed_by(n) for n in noisy}
    rows = [compare(n, p_np[n], p_t[n], tol) for n in p_t]
    for row in rows:
        if row.name in noisy | fed:          # Adam steps of rounding noise: at most lr each (see the module docstring)
            # each backend's Adam step is at most lr (1 - b1) / sqrt(1 - b2) = 3.16 lr, in either direction
            row.rel_err, row.tol = row.max_abs_diff / (len(batches) * lr), 2 * 0.1 / math.sqrt(1 - 0.999)
            row.name += " (|diff| / (steps lr): Adam on a 0 gradient's rounding noise)"
    return ([compare("loss per step", np.array(loss_np), np.array(loss_t), tol)] + rows
            + [compare(f"adam {k}", s_np[k], s_t[k], tol) for k in ("exp_avg", "exp_avg_sq")])


def _running_mean_fed_by(bias: str) -> str:
    """encoder.0.bias -> encoder.1.running_mean (the BatchNorm right after it); fc_mu.bias -> decoder.1's."""
    if bias == "fc_mu.bias":
        return "decoder.1.running_mean"
    prefix, index, _ = bias.split(".")
    return f"{prefix}.{int(index) + 1}.running_mean"


# ------------------------------------------------------------------ printing
def format_table(title: str, rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [title,
             f"  {'quantity':<{width}}  {'shape':<11} {'exact':>5}  {'allclose':>8}  {'max|diff|':>9}  {'rel.err':>8}  tol",
             ]
    for r in rows:
        shape = "x".join(map(str, r.shape)) or "scalar"
        lines.append(f"  {r.name:<{width}}  {shape:<11} {'yes' if r.exact else 'no':>5}  "
                     f"{'yes' if r.allclose else 'no':>8}  {r.max_abs_diff:9.2e}  {r.rel_err:8.2e}  "
                     f"{'ok' if r.ok else 'FAIL > %.0e' % r.tol}")
    worst = max(rows, key=lambda r: r.rel_err)
    lines.append(f"  worst relative error {worst.rel_err:.2e} ({worst.name}); tolerance {worst.tol:.0e}")
    return "\n".join(lines)


def _input_batches(data_dir: str, batch: int, count: int, seed: int) -> tuple[list[np.ndarray], str]:
    """``count`` batches of (batch, 784) images: the MNIST test set if present, else synthetic."""
    from numpy_vae.data import MnistDataError, load_mnist
    try:
        images, _ = load_mnist(data_dir, "test")
        source = f"MNIST test images from {data_dir}"
    except MnistDataError:
        rng = synthetic_stream(seed)
        images = rng.random((batch * count, 784)).astype(np.float32)
        images[images < 0.5] = 0.0          # mostly exact 0s and 1s, as MNIST is
        images[images > 0.9] = 1.0
        source = f"synthetic images (no MNIST in {data_dir}; `vae data fetch` gets it)"
    n = batch * count
    if len(images) < n:
        from numpy_vae.cli.args import UsageError
        have = len(images)
        if count == 1:
            raise UsageError(f"--batch-size {batch} needs {n:,} images, and there are {have:,} {source}: "
                             f"pass --batch-size {have} or less")
        raise UsageError(f"--batch-size {batch} x --steps {count} needs {n:,} images, and there are {have:,} {source}: "
                         f"lower --batch-size or --steps so that batch-size x steps <= {have:,}")
    return [images[i * batch:(i + 1) * batch] for i in range(count)], source


def run_report(model_config: dict, dtypes: list[str], devices: list[str], batch: int, steps: int, seed: int,
               lr: float, data_dir: str, params: dict | None = None, out=print) -> bool:
    """Print the report for each device and dtype; True if every relative error is within tolerance.

    model_config: {"spec": the numpy_vae.specs spec, "beta": the KL weight}."""
    batches, source = _input_batches(data_dir, batch, max(steps, 1), seed)
    cfg = {k: v for k, v in model_config.items() if k != "dtype"}
    spec = cfg["spec"]
    out(f"vae parity: numpy_vae (hand-written backward, NumPy Adam) vs torch_vae (autograd, torch.optim.Adam)")
    out(f"model: {spec.summary()}")
    out(f"config: beta={cfg['beta']:g} batch={batch} seed={seed}"
        + (" weights=checkpoint" if params is not None else " weights=init(seed)"))
    out(f"input: {source}; eps from numpy_vae.streams.noise_stream(seed)")
    out("rel.err = ||numpy - torch|| / ||torch||;  allclose: rtol = tol, atol = tol * max|torch|")
    ok = True
    for device in devices:
        for name in dtypes:
            dtype = np.dtype(name)
            mc = {**cfg, "dtype": dtype}
            eps = draw_eps(noise_stream(seed), batch, noise_width(mc), dtype)
            rows = gradient_rows(mc, batches[0], eps, seed=seed, device=device, params=params)
            out("")
            out(format_table(f"[{device}, {name}] forward outputs and gradients of the loss", rows))
            ok &= all(r.ok for r in rows)
            if steps:
                rows = trajectory_rows(mc, batches[:steps], seed=seed, device=device, lr=lr, params=params)
                out("")
                out(format_table(f"[{device}, {name}] losses, parameters and Adam moments after {steps} step{'s' if steps != 1 else ''} "
                                 f"(lr={lr:g})", rows))
                if name == "float32" and not all(r.allclose for r in rows):
                    out("  (allclose 'no' in float32: Adam's 1 / (sqrt(v) + 1e-8) turns rounding-noise gradients, "
                        "|g| ~ 1e-9, into steps of a fraction of lr; see `pydoc torch_vae.parity`)")
                ok &= all(r.ok for r in rows)
    out("")
    out("parity: all relative errors within tolerance" if ok else "parity: SOME RELATIVE ERRORS EXCEED TOLERANCE")
    return ok


# ---------------------------------------------------------------------- CLI
class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help ends with its default, unless the help already says it or there is none (None)."""

    def _get_help_string(self, action) -> str:
        if action.default is None or "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def register(sub) -> None:
    """Add ``vae parity`` to the ``vae`` command's subparsers."""
    from numpy_vae.cli.args import add_config_flags, add_data_dir, non_negative_int, preset
    p = sub.add_parser("parity", help="compare the NumPy and PyTorch VAEs quantity by quantity (cmp-style)",
                       description="Same weights, batch and noise through numpy_vae and torch_vae: for every "
                                   "parameter, exact match, allclose, max abs diff and relative error of the "
                                   "gradients, then of the parameters after a few Adam steps; on the CPU and, "
                                   "where present, CUDA.  Exit status 1 if a relative error exceeds tolerance.",
                       formatter_class=DefaultsFormatter)
    p.add_argument("--preset", type=preset, default=None, metavar="PRESET",
                   help="the model of a `vae train` preset (mlp-bn, mse, burda, linear-W-L, ...): its architecture "
                        "and options; --arch, --latent, --hidden and --beta given explicitly win")
    # the model's fields as `vae train` declares them (None: the preset's, else TrainConfig's default)
    add_config_flags(p, ["arch", "latent", "hidden", "beta"])
    p.add_argument("--dtype", choices=["float64", "float32", "both"], default="both", help="precision compared")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="all: the CPU, and CUDA where torch.cuda.is_available()")
    add_config_flags(p, ["batch_size", "lr", "seed"], defaults={"batch_size": 64, "lr": 1e-3, "seed": 0},
                     helps={"batch_size": "images a batch (default: %(default)s)",
                            "seed": "seed of the weights, batches and noise (default: %(default)s)"})
    p.add_argument("--steps", type=non_negative_int, default=10,
                   help="Adam steps for the trajectory section (0: skip it)")
    p.add_argument("--checkpoint", default=None, metavar="NPZ",
                   help="use the weights and the model (its stored spec) of a checkpoint (runs/NAME/last.npz) "
                        "instead of the init; --beta given explicitly wins over its beta")
    add_data_dir(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from numpy_vae.cli.args import refuse_file_as_data_dir
    from numpy_vae.config import ConfigError
    refuse_file_as_data_dir(args.data_dir, " (or leave it out: without MNIST the comparison uses synthetic images)")
    from numpy_vae.presets import preset_values
    from numpy_vae.config import TrainConfig
    from numpy_vae.specs import SpecError
    params = None
    if args.checkpoint is not None:              # the model as the checkpoint stores it: numpy_vae's one loader
        from numpy_vae.training.restore import read_saved
        saved = read_saved(args.checkpoint)
        spec, beta, params = saved.spec, saved.config.beta, saved.params
        if any(getattr(args, k) is not None for k in ("preset", "arch", "latent", "hidden")):
            print("(--checkpoint: the model is the checkpoint's; --preset, --arch, --latent and --hidden are not used)")
        if args.beta is not None:
            beta = args.beta
    else:
        base = TrainConfig(**{**vars(TrainConfig()), **(preset_values(args.preset) if args.preset else {})})
        changes = {k: (tuple(v) if k == "hidden" else v) for k in ("arch", "latent", "hidden", "beta")
                   if (v := getattr(args, k)) is not None}
        config = dataclasses.replace(base, **changes)
        try:
            spec = config.spec()
        except SpecError as e:
            raise ConfigError(str(e)) from None
        beta = config.beta
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA is not available on this machine (torch.cuda.is_available() is False); "
                          "use --device cpu")
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])}
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    ok = run_report({"spec": spec, "beta": beta}, dtypes, devices[args.device], args.batch_size, args.steps,
                    args.seed, args.lr, args.data_dir, params=params)
    if args.device == "all" and not torch.cuda.is_available():
        print("(no CUDA on this machine: torch.cuda.is_available() is False; CPU only)")
    return 0 if ok else 1

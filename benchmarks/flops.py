"""Floating-point operations of one training step and one inference pass, counted from the layer shapes.

The formula (B = batch size; every Linear maps ``n_in -> n_out``; P = number of parameters)::

    forward   F = sum over Linears of 2 * B * n_in * n_out          (one multiply + one add per weight per sample)
    backward  for every Linear  dW = dY^T X  ->  2 * B * n_in * n_out
                                dX = dY W    ->  2 * B * n_in * n_out
              except the first encoder Linear, whose input is the data x: training
              never needs dloss/dx, so its dX is skipped:
              Bwd = 2 F - 2 * B * 784 * hidden[0]
    Adam      K_ADAM = 13 FLOPs per parameter: the 13 elementwise operations of
              the textbook update of numpy_vae.nn.optimizers.Adam (m: sub, mul, add; v: mul, square, mul, add;
              p: sqrt, div, add eps, div, mul, sub), sqrt and division counted as one FLOP each.
              torch.optim.Adam's single-tensor update does the same arithmetic.
    train step     = F + Bwd + 13 P
    inference pass = F   (encode: encoder + both heads; decode: the decoder from mu)

The two heads (fc_mu and fc_logvar, 256 -> L each) count as one 256 -> 2L Linear;
the FLOPs are the same either way.

NOT counted: bias, ReLU, the reparameterization, the likelihood, the KL and everything else elementwise:
O(B * sum of widths), some 2,600 activations per sample against 1.07 million multiply-adds, under 3% of the
count.  The count is the matmul work (plus Adam): what a BLAS does at the machine's matmul rate.
"""
from __future__ import annotations

import math

from numpy_vae import specs
from numpy_vae.specs import INPUT_DIM, parameter_shapes

K_ADAM = 13


def linear_shapes(hidden=(512, 256), latent=20, input_dim=INPUT_DIM) -> list[tuple[str, int, int]]:
    """(name, n_in, n_out) of every Linear the model runs, the two heads merged into one."""
    shapes = parameter_shapes(tuple(hidden), latent, input_dim)
    layers = []
    for name, shape in shapes.items():
        if not name.endswith(".weight") or name == "fc_logvar.weight":
            continue
        n_out, n_in = shape
        if name == "fc_mu.weight":
            name, n_out = "heads (fc_mu + fc_logvar)", 2 * n_out
        layers.append((name.removesuffix(".weight"), n_in, n_out))
    return layers


def num_params(hidden=(512, 256), latent=20, input_dim=INPUT_DIM) -> int:
    return specs.mlp_spec(tuple(hidden), latent, input_dim).num_params


def forward_flops(batch: int, hidden=(512, 256), latent=20, input_dim=INPUT_DIM) -> int:
    """F: the matmul FLOPs of one forward pass (= of one encode + decode)."""
    return sum(2 * batch * n_in * n_out for _, n_in, n_out in linear_shapes(hidden, latent, input_dim))


def backward_flops(batch: int, hidden=(512, 256), latent=20, input_dim=INPUT_DIM) -> int:
    """Bwd = 2 F minus the first layer's input gradient, which training skips."""
    return 2 * forward_flops(batch, hidden, latent, input_dim) - 2 * batch * input_dim * int(hidden[0])


def step_flops(mode: str, batch: int, hidden=(512, 256), latent=20, input_dim=INPUT_DIM) -> int:
    """FLOPs of one ``mode`` ('train' or 'infer') call at this batch size."""
    if mode == "infer":
        return forward_flops(batch, hidden, latent, input_dim)
    if mode == "train":
        return (forward_flops(batch, hidden, latent, input_dim) + backward_flops(batch, hidden, latent, input_dim)
                + K_ADAM * num_params(hidden, latent, input_dim))
    raise ValueError(f"mode must be 'train' or 'infer', got {mode!r}")


def layer_flops(spec: specs.VAESpec, batch: int) -> list[tuple[str, str, int]]:
    """(name, description, forward FLOPs) of every layer with parameters of any spec (the conv VAE's too):
    Linear 2 B n_in n_out; Conv2d 2 B C_out H_out W_out C_in kH kW; ConvTranspose2d 2 B C_in H_in W_in C_out kH kW
    (every input pixel meets every kernel tap); the heads as one Linear."""
    out, shape = [], spec.input_shape
    for prefix, layers in (("encoder", spec.encoder), ("decoder", spec.decoder)):
        if prefix == "decoder":
            head = spec.head[0]
            out.append(("heads", f"Linear({head.in_features}, 2x{head.out_features})",
                        2 * batch * head.in_features * 2 * head.out_features))
            shape = (spec.latent,)
        for i, layer in enumerate(layers):
            new = layer.output_shape(shape)
            if isinstance(layer, specs.Linear):
                out.append((f"{prefix}.{i}", repr(layer), 2 * batch * layer.in_features * layer.out_features))
            elif isinstance(layer, specs.Conv2d):
                out.append((f"{prefix}.{i}", f"Conv2d {shape} -> {new}",
                            2 * batch * math.prod(new) * layer.in_channels * math.prod(layer.kernel_size)))
            elif isinstance(layer, specs.ConvTranspose2d):
                out.append((f"{prefix}.{i}", f"ConvTranspose2d {shape} -> {new}",
                            2 * batch * math.prod(shape) * layer.out_channels * math.prod(layer.kernel_size)))
            shape = new
    return out


def spec_step_flops(spec: specs.VAESpec, mode: str, batch: int) -> int:
    """``step_flops`` for any spec: forward, backward (2 F less the first layer's input gradient), Adam."""
    layers = layer_flops(spec, batch)
    forward = sum(f for _, _, f in layers)
    return forward if mode == "infer" else forward + (2 * forward - layers[0][2]) + K_ADAM * spec.num_params


def floor_seconds(flops: int, params: int, itemsize: int, matmul_gflops: float | None,
                  pass_gbytes: float | None, mode: str = "train") -> float | None:
    """The step's floor: its FLOPs at the machine's matmul rate, plus (training) one memory pass over
    parameters, gradients and both moments (4 P elements read and written) at the measured pass rate."""
    if not matmul_gflops:
        return None
    seconds = flops / (matmul_gflops * 1e9)
    if mode == "train" and pass_gbytes:
        seconds += 2 * 4 * params * itemsize / (pass_gbytes * 1e9)
    return seconds


FORMULA = ("train = F + (2F - 2*B*784*h1) + 13*P;  infer = F;  F = sum_Linear 2*B*n_in*n_out "
           "(heads as one Linear h_last->2L); elementwise ops (bias, ReLU, reparameterization, loss, KL) not counted")

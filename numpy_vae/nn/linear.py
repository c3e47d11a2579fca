"""The affine layer: y = x W^T + b, weights stored (out, in) as ``torch.nn.Linear`` stores them.

Derivation: docs/gradients.md#linear
"""
from __future__ import annotations

import numpy as np


class Linear:
    """Affine map.  ``params`` and ``grads`` hold ``weight`` (out, in) and ``bias`` (out,).

    The arrays may be views into larger buffers (the model keeps every parameter in
    one flat array): the layer reads its parameters and writes its gradients in place.

    forward:  x (B, in) -> y (B, out), and its backward closure
    backward: dy (B, out) -> dx (B, in) (None with ``need_dx=False``);
              fills grads["weight"] (out, in) and grads["bias"] (out,)
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray,
                 grad_weight: np.ndarray | None = None, grad_bias: np.ndarray | None = None):
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise ValueError(f"Linear: weight must be (out, in) and bias (out,), got {weight.shape} and {bias.shape}")
        self.params = {"weight": weight, "bias": bias}
        self.grads = {
            "weight": np.zeros_like(weight) if grad_weight is None else grad_weight,
            "bias": np.zeros_like(bias) if grad_bias is None else grad_bias,
        }

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Inference: y (B, out), nothing kept for a backward."""
        y = x @ self.params["weight"].T
        y += self.params["bias"]
        return y

    # y = x W^T + b
    def forward(self, x: np.ndarray):
        y = self(x)

        # dW = dy^T x,  db = sum_B dy,  dx = dy W
        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
            self._weight_gradient(dy, x)
            np.sum(dy, axis=0, out=self.grads["bias"])
            return dy @ self.params["weight"] if need_dx else None

        return y, backward

    def _weight_gradient(self, dy: np.ndarray, x: np.ndarray) -> None:
        """grads["weight"] = dy^T x  (numpy_vae.kernels.linear.FastLinear computes it faster at batch 1)."""
        np.matmul(dy.T, x, out=self.grads["weight"])

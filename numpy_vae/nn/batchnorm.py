"""BatchNorm1d with ``torch.nn.BatchNorm1d``'s exact semantics, forward and backward by hand.

Training: each feature is normalized by the batch's mean and biased variance, and the
running statistics move towards the batch's (the running variance towards the *unbiased*
variance) with momentum 0.1; ``num_batches_tracked`` counts the batches.  Evaluation: the
running statistics normalize, and nothing changes.

Derivation: docs/gradients.md#batchnorm1d
"""
from __future__ import annotations

import numpy as np


class BatchNorm1d:
    """forward:  x (B, F) -> y (B, F), and its backward closure;
    backward: dy (B, F) -> dx (B, F); fills grads["weight"] (F,) and grads["bias"] (F,).

    ``params``: weight (gamma) and bias (beta), (F,).  ``buffers``: running_mean (F,),
    running_var (F,), num_batches_tracked () int64, updated in place by a training forward.
    ``training`` selects batch statistics (True) or the running ones (False).
    """

    def __init__(self, weight, bias, grad_weight, grad_bias, running_mean, running_var, num_batches_tracked,
                 eps: float = 1e-5, momentum: float = 0.1):
        self.params = {"weight": weight, "bias": bias}
        self.grads = {"weight": grad_weight, "bias": grad_bias}
        self.buffers = {"running_mean": running_mean, "running_var": running_var,
                        "num_batches_tracked": num_batches_tracked}
        self.eps, self.momentum, self.training = eps, momentum, True

    def _statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, 1/sqrt(var + eps)) to normalize with; a training call updates the running buffers."""
        if not self.training:
            return self.buffers["running_mean"], 1.0 / np.sqrt(self.buffers["running_var"] + self.eps)
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"BatchNorm1d in training needs more than 1 sample per feature, got a batch of {n} "
                             f"(as torch: use a larger batch, or evaluation mode)")
        mean = x.mean(axis=0)
        var = x.var(axis=0)                                   # biased: the batch's own variance
        m = self.momentum
        self.buffers["running_mean"][...] = (1 - m) * self.buffers["running_mean"] + m * mean
        self.buffers["running_var"][...] = (1 - m) * self.buffers["running_var"] + m * var * (n / (n - 1))
        self.buffers["num_batches_tracked"][...] += 1
        return mean, 1.0 / np.sqrt(var + self.eps)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        mean, inv_std = self._statistics(x)
        return (x - mean) * inv_std * self.params["weight"] + self.params["bias"]

    # xhat = (x - mean) / sqrt(var + eps),   y = gamma xhat + beta
    def forward(self, x: np.ndarray):
        training = self.training
        mean, inv_std = self._statistics(x)
        xhat = (x - mean) * inv_std
        gamma = self.params["weight"]

        # dgamma = sum_B dy xhat,  dbeta = sum_B dy;
        # training: dx = inv_std (g - mean_B g - xhat mean_B(g xhat)) with g = dy gamma;  eval: dx = dy gamma inv_std
        def backward(dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
            np.sum(dy * xhat, axis=0, out=self.grads["weight"])
            np.sum(dy, axis=0, out=self.grads["bias"])
            if not need_dx:
                return None
            g = dy * gamma
            if not training:
                return g * inv_std
            return inv_std * (g - g.mean(axis=0) - xhat * (g * xhat).mean(axis=0))

        return xhat * gamma + self.params["bias"], backward

"""The math people come to read, one file per idea; every backward derived in docs/gradients.md.

    linear.py          Linear                           y = x W^T + b
    activations.py     ReLU, Sigmoid, Tanh, sigmoid()
    losses.py          BernoulliNLL (from logits), GaussianKL (to N(0, I))
    reparameterize.py  Reparameterize                   z = mu + eps exp(logvar / 2)
    head.py            GaussianHead                     fc_mu and fc_logvar as one matmul
    container.py       Sequential
    optimizers.py      Adam and SGD on one flat buffer, with torch.optim's semantics
    gradcheck.py       central finite differences

Every layer's ``forward`` returns its output and a ``backward`` closure holding
exactly what that backward needs; ``layer(x)`` is inference and keeps nothing.
"""
from .activations import ReLU, Sigmoid, Tanh, sigmoid
from .container import Sequential
from .head import GaussianHead
from .linear import Linear
from .losses import BernoulliNLL, GaussianKL
from .reparameterize import Reparameterize

__all__ = ["BernoulliNLL", "GaussianHead", "GaussianKL", "Linear", "ReLU", "Reparameterize", "Sequential", "Sigmoid",
           "Tanh", "sigmoid"]

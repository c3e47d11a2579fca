"""The math people come to read, one file per idea, in its plainest correct form (the reference);
every backward derived in docs/gradients.md.

    linear.py          Linear                           y = x W^T + b
    conv.py            Conv2d, ConvTranspose2d          NCHW, torch's weight layouts: a sum over the kernel's taps
    reshape.py         Flatten, Unflatten
    activations.py     ReLU, Sigmoid, Tanh, sigmoid()
    batchnorm.py       BatchNorm1d                      batch statistics in training, running ones in evaluation
    dropout.py         Dropout                          the keep-mask is an input
    functional.py      the probability math, each formula once: KL, likelihoods, log densities, reparameterization
    losses.py          BernoulliNLL (from logits), GaussianNLL (fixed variance), GaussianKL (to N(0, I))
    reparameterize.py  Reparameterize                   z = mu + eps exp(logvar / 2)
    head.py            GaussianHead                     fc_mu and fc_logvar as one matmul
    iwae_bound.py      LogMeanExp, LogPriorRatio        the importance-weighted bound's pieces
    container.py       Sequential
    optimizers.py      Adam and SGD on one flat buffer, torch.optim's updates written out
    gradcheck.py       central finite differences
    compare.py         cmp: a derived gradient against a reference, as one row of a table (the notebooks')

Every layer's ``forward`` returns its output and a ``backward`` closure holding
exactly what that backward needs; ``layer(x)`` is inference and keeps nothing.
Training runs tuned forms of the convolutions and of Adam by default, from numpy_vae.kernels
(proven equal to these by tests/test_kernels.py); ``vae train --kernels reference`` runs these.
"""
from .activations import ReLU, Sigmoid, Tanh, sigmoid
from .batchnorm import BatchNorm1d
from .container import Sequential
from .conv import Conv2d, ConvTranspose2d
from .dropout import Dropout
from .head import GaussianHead
from .linear import Linear
from .losses import BernoulliNLL, GaussianKL, GaussianNLL
from .optimizers import SGD, Adam
from .reparameterize import Reparameterize
from .reshape import Flatten, Unflatten

__all__ = ["Adam", "BatchNorm1d", "BernoulliNLL", "Conv2d", "ConvTranspose2d", "Dropout", "Flatten", "GaussianHead",
           "GaussianKL", "GaussianNLL", "Linear", "ReLU", "Reparameterize", "SGD", "Sequential", "Sigmoid", "Tanh", "Unflatten", "sigmoid"]

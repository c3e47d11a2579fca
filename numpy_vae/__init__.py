"""vae-from-scratch, the NumPy reference: a VAE with every gradient written by hand."""
from .model import InputError, MLPVAE, build_model, parameter_shapes
from .reparameterize import draw_eps

__all__ = ["InputError", "MLPVAE", "build_model", "draw_eps", "parameter_shapes"]

"""vae-from-scratch, the NumPy reference: a VAE with every gradient written by hand.

    numpy_vae.nn        the math: layers, losses, the container, optimizers, gradient checking
    numpy_vae.specs     architectures as data, read by this package and by torch_vae
    numpy_vae.model     the NumPy interpreter of a spec: VAE, build_model
    numpy_vae.hvae      several stochastic layers (Burda et al.'s two-layer model): HVAE
    numpy_vae.objectives  the importance-weighted bound as a training objective (iwae_loss)
    numpy_vae.inputs    the checks at every model entry point (InputError)
    numpy_vae.streams   the named random streams
    numpy_vae.config    TrainConfig, ConfigError and its validation
    numpy_vae.presets   the named configurations of `vae train --preset`
    numpy_vae.backends  the backend interface, the NumPy backend, the registry
    numpy_vae.training  the loop, the run folder, checkpoints, restoring a run
    numpy_vae.data      MNIST: IDX files, loading, fetching
    numpy_vae.evaluation, numpy_vae.report, numpy_vae.cli
"""
import os

# OpenBLAS's worker threads busy-wait 2^28 cycles (about 0.1 s) after every matmul before they
# sleep, holding a core that Adam's second thread needs between one step's matmuls and the next
# (measured here: a two-thread Adam right after a matmul ran no faster than one thread).  2^20
# cycles (~0.4 ms) still bridges the gaps between one step's matmuls.  This takes effect only
# when numpy_vae is imported before NumPy loads OpenBLAS (the `vae` command), and never
# overrides a value already set.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from .inputs import InputError  # noqa: E402
from .hvae import HVAE  # noqa: E402
from .model import VAE, build_model  # noqa: E402
from .specs import HVAESpec, VAESpec, make_spec, mlp_spec, parameter_shapes  # noqa: E402
from .streams import draw_eps  # noqa: E402

__all__ = ["HVAE", "HVAESpec", "InputError", "VAE", "VAESpec", "build_model", "draw_eps", "make_spec", "mlp_spec", "parameter_shapes"]

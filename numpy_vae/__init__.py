"""vae-from-scratch, the NumPy reference: a VAE with every gradient written by hand."""
import os

# OpenBLAS's worker threads busy-wait 2^28 cycles (about 0.1 s) after every matmul before they
# sleep, holding a core that Adam's second thread needs between one step's matmuls and the next
# (measured here: a two-thread Adam right after a matmul ran no faster than one thread).  2^20
# cycles (~0.4 ms) still bridges the gaps between one step's matmuls.  This takes effect only
# when numpy_vae is imported before NumPy loads OpenBLAS (the `vae` command), and never
# overrides a value already set.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from .model import InputError, MLPVAE, build_model, parameter_shapes  # noqa: E402
from .reparameterize import draw_eps  # noqa: E402

__all__ = ["InputError", "MLPVAE", "build_model", "draw_eps", "parameter_shapes"]

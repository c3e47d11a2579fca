"""Training backends: the interface (a Protocol), the NumPy backend, and the registry by name.

    interface.py      Backend, NonFiniteError, clip_coefficient
    numpy_backend.py  NumpyBackend: numpy_vae's model and Adam
    registry.py       available_backends, make_backend (others come in as entry points)
"""
from .interface import Backend, NonFiniteError, clip_coefficient
from .numpy_backend import NumpyBackend
from .registry import available_backends, make_backend

__all__ = ["Backend", "NonFiniteError", "NumpyBackend", "available_backends", "clip_coefficient", "make_backend"]

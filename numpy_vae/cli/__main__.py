"""``python -m numpy_vae.cli``: the ``vae`` command."""
import sys

from .main import main

sys.exit(main())

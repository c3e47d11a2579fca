"""``python -m benchmarks [options]``: the same as ``vae bench [options]``."""
import sys

from .cli import main

sys.exit(main())

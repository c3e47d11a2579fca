"""The ``vae`` command: one module per subcommand, the shared argument types in ``args.py``.

    main.py      the parser and main(): every error a user can cause is one line and a non-zero exit
    args.py      argument types shared by every subcommand (also torch_vae's and benchmarks')
    train.py, evaluate.py, report.py, data.py   the built-in subcommands
"""
from .main import main

__all__ = ["main"]

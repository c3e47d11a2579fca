"""Training: the loop, the run folder it writes, its checkpoints, and restoring a model from one.

    loop.py        train(), evaluate(), learning_rate(), TrainingError
    run_folder.py  config.json, metrics.csv, the folder's name, lock and resume state
    checkpoint.py  .npz checkpoints: atomic writes, reading that trusts nothing, checks
    restore.py     a backend from a checkpoint of either backend (vae evaluate, vae report)
"""
from .loop import TrainingError, evaluate, learning_rate, train

__all__ = ["TrainingError", "evaluate", "learning_rate", "train"]

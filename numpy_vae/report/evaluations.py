"""What `vae evaluate` leaves beside a checkpoint: the latest evaluation, and every one saved before it.

    evaluation.json    the latest evaluation (`vae report` shows it)
    evaluations.csv    one row per saved evaluation, oldest first: how the estimate moved as a long run
                       went on (the paper's table plots it; `vae paper-table`)

Both are written atomically: a crash leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..training.checkpoint import atomic_write

EVALUATION_FILE = "evaluation.json"
HISTORY_FILE = "evaluations.csv"
HISTORY_FIELDS = ["epoch", "k", "images", "seed", "test_set", "iwae_nll", "iwae_nll_se", "neg_elbo", "neg_elbo_se",
                  "seconds", "when", "checkpoint", "backend"]
_NUMERIC = {"epoch": int, "k": int, "images": int, "seed": int, "iwae_nll": float, "iwae_nll_se": float,
            "neg_elbo": float, "neg_elbo_se": float, "seconds": float}


def save_evaluation(folder: Path, record: dict) -> Path:
    """Write ``record`` as ``folder/evaluation.json`` and append it to ``folder/evaluations.csv``.

    The history is written first: a crash between the two leaves a history that already holds the
    record and the previous evaluation.json, never the reverse.
    """
    folder = Path(folder)
    text = json.dumps(record, indent=2, allow_nan=False)       # NaN is not JSON: never written
    rows = read_history(folder) + [{k: record.get(k, "") for k in HISTORY_FIELDS}]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(folder / HISTORY_FILE, lambda f: f.write(buf.getvalue().encode()))
    out = folder / EVALUATION_FILE
    atomic_write(out, lambda f: f.write(text.encode()))
    return out


def read_history(folder: Path) -> list[dict]:
    """The rows of ``folder/evaluations.csv`` (numbers as numbers; empty cells as None); [] where there is none.

    Raises ValueError naming the file and line for a row that is not a saved evaluation.
    """
    path = Path(folder) / HISTORY_FILE
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"epoch", "k", "images", "iwae_nll", "iwae_nll_se"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: not an evaluation history (its header is {reader.fieldnames}); "
                             f"delete it, and `vae evaluate` starts a new one")
        for line, row in enumerate(reader, start=2):
            try:
                rows.append({k: (_NUMERIC[k](v) if k in _NUMERIC and v not in ("", None) else (v or None))
                             for k, v in row.items() if k in HISTORY_FIELDS})
            except ValueError:
                raise ValueError(f"{path}, line {line}: not a number where one belongs ({row}); "
                                 f"correct or delete that line") from None
    return rows

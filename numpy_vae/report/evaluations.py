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
import math
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
        try:
            fieldnames = reader.fieldnames
            if fieldnames is None or not {"epoch", "k", "images", "iwae_nll", "iwae_nll_se"} <= set(fieldnames):
                raise ValueError(f"{path}: not an evaluation history (its header is {str(fieldnames)[:200]}); "
                                 f"delete it, and `vae evaluate` starts a new one")
            for line, row in enumerate(reader, start=2):
                try:
                    rows.append({k: (_NUMERIC[k](v) if k in _NUMERIC and v not in ("", None) else (v or None))
                                 for k, v in row.items() if k in HISTORY_FIELDS})
                except ValueError:
                    raise ValueError(f"{path}, line {line}: not a number where one belongs ({str(row)[:200]}); "
                                     f"correct or delete that line") from None
        except csv.Error as e:              # a field over the csv module's limit (131,072 characters), a NUL, ...
            raise ValueError(f"{path}, line {reader.line_num}: not a table row ({e}); correct or delete that "
                             f"line") from None
    return rows


#: evaluation.json's fields that the report shows, and what each must be
_SHOWN = {"k": int, "images": int, "iwae_nll": float, "iwae_nll_se": float, "neg_elbo": float, "neg_elbo_se": float}


def read_evaluation(path: Path) -> tuple[dict | None, str | None]:
    """(the evaluation, None) of an evaluation.json; (None, why) where it is not one `vae evaluate` wrote:
    unreadable, not JSON (NaN included), nested too deeply, not an object, or a shown field missing or not a
    finite number of its kind.  Never raises: the report leaves such a file out with a note."""
    try:
        value = json.loads(Path(path).read_text(), parse_constant=lambda c: float("nan"))
    except (OSError, ValueError, RecursionError) as e:
        kind = "is nested too deeply" if isinstance(e, RecursionError) else "is not readable JSON"
        return None, f"{path} {kind}"
    if not isinstance(value, dict):
        return None, f"{path} holds a JSON {type(value).__name__}, not an evaluation"
    for key, kind in _SHOWN.items():
        v = value.get(key)
        ok = (isinstance(v, int) if kind is int else isinstance(v, (int, float)) and math.isfinite(v))
        if isinstance(v, bool) or not ok:
            return None, (f"{path}: {key} is {json.dumps(v)[:40] if key in value else 'missing'}, not "
                          f"{'an integer' if kind is int else 'a finite number'}")
    if not isinstance(value.get("checkpoint"), str):
        return None, f"{path}: checkpoint is not a file name"
    return value, None

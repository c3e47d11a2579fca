"""Reporting a run: every diagnostic figure, and report.html that shows them with the run's numbers.

    report.py       write_report: the figures' data, drawn through the backend interface, and report.html
    figures.py      the matplotlib figures themselves
    evaluations.py  evaluation.json and evaluations.csv: what `vae evaluate` saves beside a checkpoint
    paper.py        the paper's table: committed runs beside Burda et al.'s figures, as a table and a figure
"""
from .evaluations import EVALUATION_FILE, HISTORY_FILE, read_history, save_evaluation
from .report import write_report

__all__ = ["EVALUATION_FILE", "HISTORY_FILE", "read_history", "save_evaluation", "write_report"]

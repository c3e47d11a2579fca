"""Reporting a run: every diagnostic figure, and report.html that shows them with the run's numbers.

    report.py   write_report: the figures' data, drawn through the backend interface, and report.html
    figures.py  the matplotlib figures themselves
"""
from .report import EVALUATION_FILE, write_report

__all__ = ["EVALUATION_FILE", "write_report"]

"""Plots and the HTML report of a demo run."""

from matryoshka.report.demo_report import write_report

__all__ = ["write_report"]

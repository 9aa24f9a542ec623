"""Plots and the HTML report of a demo run."""

from matryoshka.report.demo_report import write_report
from matryoshka.report.plots import per_dim_plot

__all__ = ["per_dim_plot", "write_report"]

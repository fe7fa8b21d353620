"""Interactive Plotly reports of study results (see `python -m analysis --help`)."""

from analysis.errors import ReportInputError
from analysis.report import build_report

__all__ = ["ReportInputError", "build_report"]

"""Executed notebooks as reports: parameters, headless execution, HTML, provenance.

``mlops-jupyter report NOTEBOOK -p name value --out DIR`` (:mod:`mlops_jupyter.notebook.reports.cli`)
and ``%mlops report`` call :func:`make_report`.
"""

from mlops_jupyter.notebook.reports.params import inject_parameters, parse_value
from mlops_jupyter.notebook.reports.report import make_report

__all__ = ["inject_parameters", "make_report", "parse_value"]

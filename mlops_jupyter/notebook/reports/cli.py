"""The ``report`` command: execute a notebook headless and log it as a report run.

Example:
    $ mlops-jupyter report notebooks/00-quickstart.ipynb -p n_estimators 50 --out reports/
    [1/20] cell 1: ok in 0.4s, elapsed 0.4s
    ...
    report: reports/00-quickstart.html  (run 3f2a..., experiment 'reports', status ok)

Exit status: 0 when every cell ran, 1 when a cell failed (the report is still written and
logged, marked failed at that cell), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_CELL_FAILED = 1


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "report",
        help="execute a notebook headless and log it (executed .ipynb + HTML) as a report run",
        description="Execute NOTEBOOK in a fresh kernel with parameters injected after its cell tagged "
        "'parameters' (as papermill does), write the executed .ipynb and a self-contained HTML "
        "(no network needed to open it) and log both, with a provenance bundle, as artifacts of "
        "a run tagged mlops.kind=report. Exits 1 if a cell failed (the report is still written).",
    )
    p.add_argument("notebook", metavar="NOTEBOOK", help="the .ipynb file to execute")
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a parameter (repeatable); VALUE is a Python literal or else a string",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="folder for NAME.ipynb and NAME.html (default: <home>/reports/NAME-<time>)",
    )
    p.add_argument("--tenant", metavar="T", default=None, help="tenant id (default: $MLOPS_TENANT or 'default')")
    p.add_argument("--home", metavar="PATH", default=None, help="storage folder (default: $MLOPS_HOME or ./.mlops)")
    p.add_argument(
        "--experiment", metavar="NAME", default=None, help="experiment of the report run (default 'reports')"
    )
    p.add_argument("--kernel", metavar="NAME", default=None, help="kernel name (default: the notebook's, else python3)")
    p.add_argument("--timeout", metavar="S", type=int, default=600, help="per-cell timeout in seconds (default 600)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run_report)
    return p


def run_report(args: argparse.Namespace) -> int:
    """Run ``mlops-jupyter report``; returns the exit status."""
    import os

    from mlops_jupyter.notebook.reports.params import parse_value
    from mlops_jupyter.notebook.reports.report import make_report

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    params = {name: parse_value(value) for name, value in args.parameter}

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = make_report(
        args.notebook,
        params,
        out=args.out,
        tenant=args.tenant,
        home=args.home,
        experiment=args.experiment,
        kernel_name=args.kernel,
        timeout=args.timeout,
        progress=None if args.quiet else progress,
    )
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        if result["failure"]:
            f = result["failure"]
            at = f" (In [{f['execution_count']}])" if f.get("execution_count") else ""
            print(f"FAILED at cell {f['cell_index']}{at}: {f.get('ename')}: {f.get('evalue')}", file=sys.stderr)
        print(
            f"report: {result['html']}\nexecuted notebook: {result['ipynb']}\n"
            f"run: {result['run_id']} (experiment {result['experiment_name']!r}, tenant {result['tenant']!r}, "
            f"status {result['status']}, {result['seconds']:.1f}s)"
        )
    return 0 if result["status"] == "ok" else EXIT_CELL_FAILED

"""The ``serve`` command: start, stop and inspect the serving gateway of a store home.

Wired into ``mlops-jupyter`` as ``serve`` (:func:`add_serve_parser`, :func:`run_serve`) and
``--foreground`` runs ``python -m mlops_jupyter.gateway`` in place of this process (the gateway
is a process of its own: nothing imports it).

Example:
    $ mlops-jupyter serve                 # start detached (or find the running one)
    $ mlops-jupyter serve status          # or: serve --status
    $ mlops-jupyter serve --stop          # or: serve stop
    $ mlops-jupyter serve --foreground --port 8080
    $ mlops-jupyter serve --workers 4     # serving processes (default $MLOPS_GATEWAY_WORKERS or one per core)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

ACTIONS = ("start", "stop", "status")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=ACTIONS, default=None, help="start (default), stop or status")
    p.add_argument("--stop", action="store_true", help="stop the running gateway")
    p.add_argument("--status", action="store_true", help="show whether the gateway runs, and where")
    p.add_argument("--home", default=None, help="storage home (default $MLOPS_HOME or ./.mlops)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; anything else exposes the gateway to the network)",
    )
    p.add_argument("--port", type=int, default=None, help="port to bind (default: last one if free, else any)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="serving worker processes sharing the port (default $MLOPS_GATEWAY_WORKERS, else one per core)",
    )
    p.add_argument("--foreground", action="store_true", help="run in this process instead of detached")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to an argparse ``subparsers`` object.

    Example:
        >>> sub = parser.add_subparsers(dest="command")
        >>> serve = add_serve_parser(sub)
        >>> serve.set_defaults(func=run_serve)
    """
    p = subparsers.add_parser(
        "serve",
        help="start, stop or inspect the model serving gateway",
        description="Start (detached), stop or inspect the serving gateway of a storage home.",
    )
    _add_arguments(p)
    p.set_defaults(func=run_serve)
    return p


def _home(args: argparse.Namespace) -> Any:
    from mlops_jupyter.config.settings import resolve_settings

    return resolve_settings(storage_path=args.home).home


def _print(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    print(json.dumps(result, indent=2, default=str) if args.json else text)


def run_serve(args: argparse.Namespace) -> int:
    """Carry out ``serve`` with parsed arguments; returns the exit code.

    Exit codes: 0 done (``status``: running), 1 ``status``: not running, 2 error.

    Example:
        >>> run_serve(argparse.Namespace(action="status", stop=False, status=False, home=None,
        ...                              host="127.0.0.1", port=None, foreground=False, json=True))
    """
    from mlops_jupyter.deployment.targets import local_process as process
    from mlops_jupyter.errors import MLOpsError

    wanted = {a for a, on in ((args.action, bool(args.action)), ("stop", args.stop), ("status", args.status)) if on}
    if len(wanted) > 1:
        print(f"mlops-jupyter serve: give one action, not {' and '.join(sorted(wanted))}.", file=sys.stderr)
        return 2
    action = wanted.pop() if wanted else "start"
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        print(f"mlops-jupyter serve: --workers must be at least 1, not {workers}.", file=sys.stderr)
        return 2
    try:
        home = _home(args)
        if action == "status":
            st = process.gateway_status(home)
            if st["running"]:
                text = (
                    f"gateway running at {st['url']} (pid {st['pid']}, {st['deployments']} deployment(s), "
                    f"home {st['home']})"
                )
            else:
                text = f"no gateway running for {st['home']}" + (f" ({st['state']})" if st.get("state") else "")
            _print(args, st, text)
            return 0 if st["running"] else 1
        if action == "stop":
            res = process.stop_gateway(home)
            _print(args, res, f"gateway (pid {res['pid']}) stopped" if res["stopped"] else res["reason"])
            return 0
        if args.foreground:
            cmd = [sys.executable, "-m", "mlops_jupyter.gateway", "--home", str(home), "--host", args.host]
            if args.port:
                cmd += ["--port", str(int(args.port))]
            if workers:
                cmd += ["--workers", str(int(workers))]
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, cmd)
        info = process.ensure_gateway(home, host=args.host, port=args.port, workers=workers)
        _print(args, info, f"gateway running at {info['url']} (pid {info['pid']}, home {info['home']})")
        return 0
    except MLOpsError as exc:
        print(f"mlops-jupyter serve: {exc}", file=sys.stderr)
        return 2

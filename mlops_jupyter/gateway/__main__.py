"""``python -m mlops_jupyter.gateway --home DIR [--host H] [--port P] [--workers N]``: run the
serving gateway in this process, which supervises N worker processes (the local deployment
target starts it this way; ``mlops-jupyter serve`` starts, stops and inspects it). The
supervisor starts its workers as ``python -m mlops_jupyter.gateway --worker I ...``.
Nothing imports this package: it is a process of its own."""

import argparse
import sys


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mlops_jupyter.gateway", description="Run the serving gateway of a storage home in this process."
    )
    p.add_argument("--home", required=True, help="storage home to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port to bind (default: last one if free, else any)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="serving worker processes (default $MLOPS_GATEWAY_WORKERS, else one per core)",
    )
    p.add_argument("--flush-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    # accepted and ignored: this process always runs in the foreground (the local target passes it)
    p.add_argument("--foreground", action="store_true", help=argparse.SUPPRESS)
    # a worker started by the supervisor (internal)
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--instance", default=None, help=argparse.SUPPRESS)
    p.add_argument("--supervisor", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--ready-fd", type=int, default=-1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        p.error(f"--workers must be at least 1, not {args.workers}")
    if args.worker is not None:
        import os

        from mlops_jupyter.gateway.worker import run_worker

        return run_worker(
            args.home,
            args.host,
            args.port,
            index=args.worker,
            workers=args.workers or 1,
            instance=args.instance,
            supervisor=args.supervisor or os.getppid(),
            ready_fd=args.ready_fd,
            flush_interval=args.flush_interval,
        )
    from mlops_jupyter.gateway.server import run_gateway

    return run_gateway(
        args.home, host=args.host, port=args.port, workers=args.workers, flush_interval=args.flush_interval
    )


if __name__ == "__main__":
    sys.exit(main())

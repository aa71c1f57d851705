"""``python -m mlops_jupyter.gateway --home DIR [--host H] [--port P]``: run the serving gateway
in this process (the local deployment target starts it this way; ``mlops-jupyter serve`` starts,
stops and inspects it). Nothing imports this package: it is a process of its own."""

import argparse
import sys

from mlops_jupyter.gateway.server import run_gateway


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mlops_jupyter.gateway", description="Run the serving gateway of a storage home in this process."
    )
    p.add_argument("--home", required=True, help="storage home to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port to bind (default: last one if free, else any)")
    # accepted and ignored: this process always runs in the foreground (the local target passes it)
    p.add_argument("--foreground", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return run_gateway(args.home, host=args.host, port=args.port)


if __name__ == "__main__":
    sys.exit(main())

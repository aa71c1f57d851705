"""The serving gateway process: one long-lived HTTP process serving every deployed model version.

Run it with ``mlops-jupyter serve`` (or ``python -m mlops_jupyter.gateway``); the first
``deploy_model`` starts it on demand. It binds 127.0.0.1 by default and records its pid
and port in ``{home}/gateway.json``; ``{home}/gateway.lock`` (an flock held for the
process' lifetime) makes sure one home has one gateway.

The process is made of:

- :mod:`.http`: the HTTP/1.1 protocol (parsing, keep-alive, limits, answers);
- :mod:`.app`: the :class:`~.app.Gateway`: routing, tokens, model routes, health, metrics;
- :mod:`.batching`: predictions, micro-batched within one event-loop turn;
- :mod:`.metrics`: counters and the Prometheus text;
- :mod:`.admin`: the control plane, changes made live by one swap, restore on start;
- :mod:`.target`: the gateway as a deployment target of itself, for alert actions;
- :mod:`.models`: loaded model versions (integrity check, input parsing, prediction);
- this module: the process' lifecycle (:func:`run_gateway`).

Start: take the lock, restore every stored deployment (before the port opens), start the
alert scheduler, bind (the last port if free, else any), write ``gateway.json``. Stop
(SIGTERM, SIGINT or ``POST /admin/shutdown``): stop accepting connections, stop the alert
scheduler while the event loop still runs (so a rollback it is making completes), let
requests already read get their answers, close the connections, flush the prediction log,
remove ``gateway.json`` and release the lock.

Alert rules are evaluated here too, off the request path: an
:class:`~mlops_jupyter.monitoring.alerts.scheduler.AlertScheduler` thread evaluates, every few
seconds (``$MLOPS_ALERT_INTERVAL``, default 5), the rules of the models that got traffic
since its last pass, so an alert fires (and a ``rollback`` or ``webhook:`` action runs) with
nobody calling ``check_drift``.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from mlops_jupyter.config.settings import GATEWAY_EXIT_ALREADY_RUNNING as EXIT_ALREADY_RUNNING
from mlops_jupyter.config.settings import GATEWAY_INFO_FILE as INFO_FILE
from mlops_jupyter.config.settings import GATEWAY_PORT_META as PORT_META
from mlops_jupyter.config.settings import connect_host, gateway_info_path, gateway_lock_path
from mlops_jupyter.deployment import tokens as auth
from mlops_jupyter.gateway.app import Gateway
from mlops_jupyter.gateway.http import HttpConnection

log = logging.getLogger("mlops_jupyter.gateway")


def _write_info(home: Path, info: dict[str, Any]) -> None:
    tmp = gateway_info_path(home).with_name(f".{INFO_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, gateway_info_path(home))


def _remove_info(home: Path, pid: int) -> None:
    f = gateway_info_path(home)
    try:
        if json.loads(f.read_text()).get("pid") == pid:
            f.unlink()
    except (OSError, ValueError):
        pass


def run_gateway(
    home: str | os.PathLike[str], host: str = "127.0.0.1", port: int | None = None, flush_interval: float = 1.0
) -> int:
    """Run the gateway in this process until SIGTERM/SIGINT or ``POST /admin/shutdown``.

    Args:
        home: the storage home to serve.
        host: address to bind (default 127.0.0.1: this machine only).
        port: port to bind; default: the port it had last time if free, else any free port.
        flush_interval: seconds between prediction-log flushes.

    Returns:
        The process exit code (0; 3 if another gateway already serves this home).

    Example:
        $ python -m mlops_jupyter.gateway --foreground --home ./.mlops
    """
    from mlops_jupyter.gateway.models import quiet_feature_name_warnings

    home = Path(home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(gateway_lock_path(home), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"mlops-jupyter: a gateway already serves {home} (see {gateway_info_path(home)}).", file=sys.stderr)
        os.close(lock_fd)
        return EXIT_ALREADY_RUNNING
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    quiet_feature_name_warnings()
    auth.admin_token(home)  # make sure the control plane's token exists
    gw = Gateway(home, flush_interval=flush_interval)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    gw.loop = loop
    gw.admin_lock = asyncio.Lock()
    gw.stopping = asyncio.Event()
    try:
        gw.restore()
        gw.alert_scheduler.start()
        gc.freeze()
        server = None
        if not port:
            last = gw.store.get_meta(PORT_META)
            if last:
                try:
                    server = loop.run_until_complete(
                        loop.create_server(lambda: HttpConnection(gw), host, int(last), backlog=1024)
                    )
                except OSError:
                    server = None
        if server is None:
            server = loop.run_until_complete(
                loop.create_server(lambda: HttpConnection(gw), host, port or 0, backlog=1024)
            )
        bound = server.sockets[0].getsockname()[1]
        gw.store.set_meta(PORT_META, str(bound))
        info = {
            "pid": os.getpid(),
            "host": host,
            "port": bound,
            "url": f"http://{connect_host(host)}:{bound}",
            "instance": gw.instance,
            "home": str(home),
            "started_at": time.time(),
            "python": sys.executable,
        }
        gw.info = info
        _write_info(home, info)
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("gateway: bound to %s: reachable from other machines (tokens still required)", host)
        log.info("gateway: serving %s on %s (pid %d)", home, info["url"], os.getpid())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, gw.stopping.set)
        loop.run_until_complete(gw.stopping.wait())
        log.info("gateway: stopping")
        server.close()  # no new connections; requests already read get their answers
        # a change the alert scheduler is making runs on this loop: let it finish first
        loop.run_until_complete(loop.run_in_executor(None, gw.alert_scheduler.stop))
        loop.run_until_complete(asyncio.sleep(0.1))
        for c in list(gw.connections):
            if c.transport is not None:
                c.transport.close()
    finally:
        _remove_info(home, os.getpid())
        gw.close()
        loop.close()
        os.close(lock_fd)
    return 0

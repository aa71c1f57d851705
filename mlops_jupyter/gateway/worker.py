"""One serving worker process of the gateway (started by the supervisor, :mod:`.server`).

Each worker is a whole gateway (:class:`~.app.Gateway`: routes, models, prediction log,
alert scheduler) with its own listening socket on the shared port (``SO_REUSEPORT``: the
kernel spreads new connections over the workers by a hash of their addresses). Start:
die with the supervisor (``PR_SET_PDEATHSIG``), fold the write-ahead segments of dead
workers into the prediction log, restore every stored deployment, listen, start the agent
(:class:`~.cluster.Agent`), tell the supervisor it is ready (one byte on ``ready_fd``).
Stop (SIGTERM from the supervisor): stop accepting, stop the alert scheduler while the
loop still runs, let requests already read get their answers, close the connections,
flush the prediction log (committing its segment) and write a last status.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from mlops_jupyter.config.settings import connect_host
from mlops_jupyter.gateway.app import Gateway
from mlops_jupyter.gateway.cluster import Agent
from mlops_jupyter.gateway.http import HttpConnection

log = logging.getLogger("mlops_jupyter.gateway")

BACKLOG = 1024
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (the supervisor) dies, so no
    orphaned worker keeps serving the port (its write-ahead log is replayed by the next)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux: the agent notices instead
        pass


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening socket on the shared port (``SO_REUSEPORT``: every worker binds its own)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def run_worker(
    home: str | os.PathLike[str],
    host: str,
    port: int,
    *,
    index: int,
    workers: int,
    instance: str,
    supervisor: int,
    ready_fd: int = -1,
    flush_interval: float = 1.0,
) -> int:
    """Serve as worker ``index`` of ``workers`` until SIGTERM/SIGINT (or the supervisor dies).

    Returns:
        The process exit code (0; 1 when the supervisor was already gone).
    """
    from mlops_jupyter.gateway.models import quiet_feature_name_warnings

    die_with_parent()
    if os.getppid() != supervisor:
        return 1
    home = Path(home).absolute()
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [worker {index} pid %(process)d] %(message)s",
        stream=sys.stderr,
    )
    quiet_feature_name_warnings()
    gw = Gateway(home, flush_interval=flush_interval)
    gw.instance, gw.worker_pid, gw.supervisor_pid, gw.workers_wanted = instance, os.getpid(), supervisor, workers
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    gw.loop = loop
    gw.admin_lock = asyncio.Lock()
    gw.stopping = asyncio.Event()
    agent = None
    try:
        gw.predlog.replay_orphans()
        gw.restore()
        gw.alert_scheduler.start()
        gc.freeze()
        server = loop.run_until_complete(
            loop.create_server(lambda: HttpConnection(gw), sock=listen_socket(host, port), backlog=BACKLOG)
        )
        gw.info = {
            "pid": supervisor,
            "host": host,
            "port": port,
            "url": f"http://{connect_host(host)}:{port}",
            "instance": instance,
            "home": str(home),
            "started_at": time.time(),
            "python": sys.executable,
        }
        agent = Agent(gw, index, supervisor)
        agent.start()
        if ready_fd >= 0:
            os.write(ready_fd, b"1")
            os.close(ready_fd)
        log.info("gateway: worker %d serving %s on port %d", index, home, port)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, gw.stopping.set)
        loop.run_until_complete(gw.stopping.wait())
        server.close()  # no new connections; requests already read get their answers
        # a change the alert scheduler is making runs on this loop: let it finish first
        loop.run_until_complete(loop.run_in_executor(None, gw.alert_scheduler.stop))
        loop.run_until_complete(asyncio.sleep(0.1))
        for c in list(gw.connections):
            if c.transport is not None:
                c.transport.close()
    finally:
        if agent is not None:
            agent.stop()
        gw.close()
        if agent is not None:
            agent.write_status(force=True)  # the final counters, for the supervisor to retire
        loop.close()
    return 0

"""The serving gateway: a supervisor process and N worker processes sharing one port.

Run it with ``mlops-jupyter serve`` (or ``python -m mlops_jupyter.gateway``); the first
``deploy_model`` starts it on demand. It binds 127.0.0.1 by default and records its pid
and port in ``{home}/gateway.json``; ``{home}/gateway.lock`` (an flock held for the
process' lifetime) makes sure one home has one gateway. "The gateway" is the supervisor:
``gateway.json`` names it, SIGTERM to it stops everything.

The modules:

- :mod:`.http`: the HTTP/1.1 protocol (parsing, keep-alive, limits, answers);
- :mod:`.app`: the :class:`~.app.Gateway`: routing, tokens, model routes;
- :mod:`.batching`: predictions, micro-batched, off the event loop;
- :mod:`.metrics`: counters and the Prometheus text; :mod:`.health`: ``/health``, ``/metrics``;
- :mod:`.admin`: the control plane, changes made live by one swap, restore on start,
  following the changes other workers made;
- :mod:`.cluster`: what spans the workers (status files, wake-ups, barriers, settings);
- :mod:`.target`: the gateway as a deployment target of itself, for alert actions;
- :mod:`.models`: loaded model versions (integrity check, input parsing, prediction);
- :mod:`.worker`: one worker process' lifecycle;
- this module: the supervisor (:func:`run_gateway`).

The worker model: the supervisor takes the lock, reserves the port (a socket bound with
``SO_REUSEPORT`` but never listening, so the port stays ours while workers come and go),
starts ``workers`` processes (``$MLOPS_GATEWAY_WORKERS``, default one per core), waits
until each listens, then writes ``gateway.json``. Each worker binds its own listening
socket on the port and the kernel spreads connections over them. A worker that dies is
started again (at once, or after a growing pause when it keeps dying young); its
predictions were logged ahead (:mod:`~mlops_jupyter.monitoring.predlog.wal`) and the new
worker replays them; its counters are folded into the retired sum so ``/metrics`` never
goes down. Workers die with the supervisor (even on SIGKILL). Stop (SIGTERM, SIGINT or
``POST /admin/shutdown`` to any worker): SIGTERM every worker (each answers what it has
read, flushes its prediction log), wait for them, remove ``gateway.json``, release the lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mlops_jupyter.config.settings import GATEWAY_EXIT_ALREADY_RUNNING as EXIT_ALREADY_RUNNING
from mlops_jupyter.config.settings import GATEWAY_INFO_FILE as INFO_FILE
from mlops_jupyter.config.settings import GATEWAY_PORT_META as PORT_META
from mlops_jupyter.config.settings import connect_host, gateway_info_path, gateway_lock_path
from mlops_jupyter.deployment import tokens as auth
from mlops_jupyter.errors import InvalidSettingError
from mlops_jupyter.gateway.cluster import RETIRED_FILE, pid_alive, retire, spool_size, worker_count, workers_dir
from mlops_jupyter.storage.state import open_embedded_store

log = logging.getLogger("mlops_jupyter.gateway")

READY_TIMEOUT = 600.0
"""Seconds a worker may take to restore every deployment and listen."""
STOP_TIMEOUT = 30.0
"""Seconds a worker may take to stop before it is killed."""
YOUNG = 10.0
"""A worker that dies younger than this many seconds is restarted after a growing pause."""


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


def reserve_port(host: str, port: int | None, fallback: bool) -> socket.socket:
    """A socket bound (``SO_REUSEPORT``, not listening) to ``port``, or to a free port when
    ``port`` is None or (with ``fallback``) taken. A plain bind probes first, so a port
    another gateway's workers listen on counts as taken."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(addr)
        except OSError:
            if not fallback:
                raise
            probe.bind((addr[0], 0, *addr[2:]))
        addr = probe.getsockname()
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    return sock


class Supervisor:
    """Starts, watches and stops the worker processes (see the module docstring)."""

    def __init__(self, home: Path, host: str, port: int, workers: int, flush_interval: float) -> None:
        self.home, self.host, self.port, self.workers = home, host, port, workers
        self.flush_interval = flush_interval
        self.instance = secrets.token_hex(8)
        self.procs: dict[int, subprocess.Popen] = {}  # index -> process
        self.born: dict[int, float] = {}
        self.pause: dict[int, float] = {}
        self.stop = threading.Event()

    def spawn(self, index: int, ready_fd: int = -1) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "-m",
            "mlops_jupyter.gateway",
            "--worker",
            str(index),
            "--workers",
            str(self.workers),
            "--home",
            str(self.home),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--instance",
            self.instance,
            "--flush-interval",
            str(self.flush_interval),
            "--supervisor",
            str(os.getpid()),
        ]
        if ready_fd >= 0:
            cmd += ["--ready-fd", str(ready_fd)]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, pass_fds=(ready_fd,) if ready_fd >= 0 else ())
        self.procs[index] = proc
        self.born[index] = time.monotonic()
        return proc

    def start_all(self) -> bool:
        """Start every worker and wait until each listens (False: one died or timed out)."""
        pipes = {}
        for i in range(self.workers):
            r, w = os.pipe()
            self.spawn(i, w)
            os.close(w)
            pipes[r] = i
        deadline = time.monotonic() + READY_TIMEOUT
        ok = True
        while pipes and ok and not self.stop.is_set():
            ready, _, _ = select.select(list(pipes), [], [], 0.2)
            for r in ready:
                if not os.read(r, 1):  # EOF before the byte: the worker died while starting
                    log.error("gateway: worker %d exited while starting", pipes[r])
                    ok = False
                os.close(r)
                del pipes[r]
            ok = ok and time.monotonic() < deadline
        for r in pipes:
            os.close(r)
        return ok and not pipes

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": self.host,
            "port": self.port,
            "url": f"http://{connect_host(self.host)}:{self.port}",
            "instance": self.instance,
            "home": str(self.home),
            "started_at": time.time(),
            "python": sys.executable,
            "workers": self.workers,
            "worker_pids": [p.pid for _, p in sorted(self.procs.items())],
        }

    def watch(self) -> None:
        """Restart workers that exit, until :attr:`stop` is set."""
        while not self.stop.wait(0.1):
            for i, proc in list(self.procs.items()):
                if proc.poll() is None:
                    continue
                retire(self.home, proc.pid)
                age = time.monotonic() - self.born[i]
                pause = min(max(self.pause.get(i, 0.25) * 2, 0.5), 30.0) if age < YOUNG else 0.0
                self.pause[i] = pause
                log.warning(
                    "gateway: worker %d (pid %d) exited with %s; restarting%s",
                    i,
                    proc.pid,
                    proc.returncode,
                    f" in {pause:.1f} s" if pause else "",
                )
                if self.stop.wait(pause):
                    return
                self.spawn(i)
                info = json.loads(gateway_info_path(self.home).read_text())
                _write_info(self.home, {**info, "worker_pids": [p.pid for _, p in sorted(self.procs.items())]})

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.procs.values():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error("gateway: worker pid %d did not stop in %.0f s; killing it", proc.pid, STOP_TIMEOUT)
                proc.kill()
                proc.wait()
            retire(self.home, proc.pid)


def _fresh_workers_dir(home: Path) -> None:
    """A new gateway starts its counters at zero: drop what earlier runs left."""
    folder = workers_dir(home)
    folder.mkdir(exist_ok=True)
    for f in folder.iterdir():
        if f.name == RETIRED_FILE or (f.stem.isdigit() and not pid_alive(int(f.stem))) or f.name.endswith(".tmp"):
            f.unlink(missing_ok=True)


def run_gateway(
    home: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int | None = None,
    flush_interval: float = 1.0,
    workers: int | None = None,
) -> int:
    """Run the gateway (this process supervises its workers) until SIGTERM/SIGINT or
    ``POST /admin/shutdown``.

    Args:
        home: the storage home to serve.
        host: address to bind (default 127.0.0.1: this machine only).
        port: port to bind; default: the port it had last time if free, else any free port.
        flush_interval: seconds between prediction-log flushes.
        workers: serving worker processes (default ``$MLOPS_GATEWAY_WORKERS``, else one per core).

    Returns:
        The process exit code (0; 1 if the port could not be bound or a worker could not
        start; 2 for a bad setting; 3 if another gateway already serves this home).

    Example:
        $ python -m mlops_jupyter.gateway --home ./.mlops --workers 2
    """
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
    sup = None
    try:
        try:
            workers = workers or worker_count()
            spool_size()  # the workers read it: refuse a bad value here, with one clear line
        except InvalidSettingError as exc:
            log.error("gateway: %s", exc)
            return 2
        auth.admin_token(home)  # make sure the control plane's token exists
        store = open_embedded_store(home)
        try:
            last = store.get_meta(PORT_META)
            try:
                reserved = reserve_port(host, port or (int(last) if last else None), fallback=not port)
            except OSError as exc:
                log.error("gateway: cannot bind %s:%s: %s", host, port, exc)
                return 1
            store.set_meta(PORT_META, str(reserved.getsockname()[1]))
        finally:
            store.close()
        _fresh_workers_dir(home)
        sup = Supervisor(home, host, reserved.getsockname()[1], workers, flush_interval)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: sup.stop.set())
        if not sup.start_all():
            log.error("gateway: the workers did not start; see the lines above")
            return 1
        _write_info(home, sup.info())
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("gateway: bound to %s: reachable from other machines (tokens still required)", host)
        log.info("gateway: serving %s on %s with %d worker(s) (pid %d)", home, sup.info()["url"], workers, os.getpid())
        sup.watch()
        log.info("gateway: stopping")
        return 0
    finally:
        if sup is not None:
            sup.stop_all()
        _remove_info(home, os.getpid())
        os.close(lock_fd)

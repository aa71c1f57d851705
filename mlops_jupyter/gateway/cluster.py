"""The gateway's workers seen from one of them: status files, wake-ups and barriers.

The gateway runs N worker processes (:mod:`.worker`) behind one port under a supervisor
(:mod:`.server`). Each worker answers on its own what it can (predictions, its routes)
and uses this module for what spans the workers:

* **status files**, ``{home}/gateway.workers/{pid}.json``: each worker's agent thread
  (:class:`Agent`) writes its counters, its prediction log's state and the monotonic time
  of its last *pass* (``synced``) and last flush (``flushed``); the supervisor folds a dead
  worker's last counters into ``retired.json`` so aggregated counters never go down;
* **balancing**: the status also carries the worker's busy connections of the last window,
  from which each agent decides how many of its own to close (:mod:`.balance`);
* **wake-ups**: a datagram on the worker's abstract Unix socket (``b"s"`` sync, ``b"f"``
  flush and sync) makes its agent run a pass at once instead of within :data:`POLL` s;
* **barriers** (:func:`wait_for_peers`): note the time, wake every other live worker, wait
  until each reports a pass (or flush) that *started* after that time. A pass started
  later saw every change committed and every answer counted before it, so:

  - a deployment change answers only once every worker serves it (the agent's pass
    compares the state DB's records, by revision, with its routes and rebuilds what
    differs: :meth:`~.admin.AdminRoutes.follow`);
  - ``POST /admin/flush`` returns once every worker's buffered predictions are readable;
  - ``GET /metrics`` counts every answer sent before it was asked, whichever worker sent it.

A pass drains every pending datagram before it notes its start time, so a request that
arrives during a pass is served by the next one (never lost between the two).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_jupyter.config.processes import pid_alive
from mlops_jupyter.config.settings import GATEWAY_INFO_FILE
from mlops_jupyter.gateway import inline
from mlops_jupyter.gateway.balance import Balancer
from mlops_jupyter.gateway.metrics import LATENCY_BUCKETS, Stats, StatsKey

if TYPE_CHECKING:
    from mlops_jupyter.gateway.app import Gateway

log = logging.getLogger("mlops_jupyter.gateway")

POLL = 0.5
"""Seconds between two passes of an agent that nobody wakes (it follows the state DB at this pace)."""
HEARTBEAT = 5.0
"""Seconds after which an idle agent rewrites its status file anyway."""
WORKERS_DIR = "gateway.workers"
RETIRED_FILE = "retired.json"


def workers_dir(home: str | os.PathLike[str]) -> Path:
    """Where the workers' status files live (next to ``gateway.json``)."""
    return Path(home) / WORKERS_DIR


def wake_address(pid: int) -> bytes:
    """The abstract Unix socket a worker's agent listens on (no file, gone with the process)."""
    return b"\0mlops-jupyter-gateway-worker-%d" % pid


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def peer_statuses(home: Path, exclude: int | None = None) -> dict[int, dict[str, Any]]:
    """The status of every live worker (but ``exclude``), by pid.

    The pids come from ``gateway.json`` (the supervisor lists its workers there) and from
    the folder: a directory listing taken while a status file is being replaced may miss
    it, so the folder alone is not enough; each file is then opened by name, which a
    rename never hides.
    """
    pids = {int(f.stem) for f in workers_dir(home).glob("*.json") if f.stem.isdigit()}
    info = read_json(Path(home) / GATEWAY_INFO_FILE) or {}
    pids.update(p for p in info.get("worker_pids") or () if isinstance(p, int))
    out = {}
    for pid in pids - {exclude}:
        st = read_json(workers_dir(home) / f"{pid}.json")
        if st is not None and pid_alive(pid):
            out[pid] = st
    return out


# -- counters as JSON: a worker's snapshot, the supervisor's retired sum, the aggregate -------
def snapshot_stats(stats: dict[StatsKey, Stats]) -> list[list[Any]]:
    """Rows ``[*key, requests, client errors, model errors, latency sum, buckets, executions]``
    (a row written before executions were counted has no last field: read as 0)."""
    return [
        [*k, s.requests, s.client_errors, s.model_errors, s.lat_sum, list(s.buckets), s.executions]
        for k, s in stats.items()
    ]


def _row(r: list[Any]) -> list[Any]:
    return [*r[:8], list(r[8]), r[9] if len(r) > 9 else 0]


def add_counters(into: dict[str, Any], snap: dict[str, Any]) -> dict[str, Any]:
    """Add one worker's counters (``stats``, ``codes``, ``dropped``, ``log_failures``) to ``into``.

    Example:
        >>> key = ["acme", "production", "iris", "1.0.0"]
        >>> old = {"stats": [[*key, 3, 0, 0, 0.01, [3, 0]]]}  # a row from before executions
        >>> new = {"stats": [[*key, 8, 1, 0, 0.02, [7, 1], 2]]}
        >>> add_counters(add_counters({}, old), new)["stats"]
        [['acme', 'production', 'iris', '1.0.0', 11, 1, 0, 0.03, [10, 1], 2]]
    """
    stats = {tuple(r[:4]): _row(r) for r in into.setdefault("stats", [])}
    for r in snap.get("stats") or []:
        cur = stats.get(tuple(r[:4]))
        if cur is None:
            stats[tuple(r[:4])] = _row(r)
        else:
            r = _row(r)
            for i in (4, 5, 6, 7, 9):
                cur[i] += r[i]
            cur[8] = [a + b for a, b in zip(cur[8], r[8])]
    into["stats"] = list(stats.values())
    codes = into.setdefault("codes", {})
    for c, n in (snap.get("codes") or {}).items():
        codes[str(c)] = codes.get(str(c), 0) + n
    for k in ("dropped", "log_failures", "send_timeouts", "outbound_closed", "rebalanced"):
        into[k] = into.get(k, 0) + (snap.get(k) or 0)
    return into


def stats_of(rows: list[list[Any]]) -> dict[StatsKey, Stats]:
    out = {}
    for r in rows:
        s = Stats()
        s.requests, s.client_errors, s.model_errors, s.lat_sum = r[4], r[5], r[6], r[7]
        s.executions = r[9] if len(r) > 9 else 0
        s.buckets = list(r[8]) + [0] * (len(LATENCY_BUCKETS) + 1 - len(r[8]))
        out[StatsKey(*r[:4])] = s
    return out


def log_state(predlog: Any) -> dict[str, Any]:
    return {"error": predlog.write_error, "spooled": predlog.spooled}


def own_counters(gw: Gateway) -> dict[str, Any]:
    return {
        "stats": snapshot_stats(dict(gw.stats)),
        "codes": {str(c): n for c, n in dict(gw.codes).items()},
        "dropped": gw.predlog.dropped,
        "log_failures": gw.predlog.write_failures,
        "send_timeouts": gw.http.send_timeouts,
        "outbound_closed": gw.http.outbound_closed,
        "rebalanced": gw.http.rebalanced,
    }


# -- waking and waiting ------------------------------------------------------------------------
def wake(pids: list[int], message: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for pid in pids:
            with contextlib.suppress(OSError):  # gone, or its queue is full (it has a pass coming)
                s.sendto(message, wake_address(pid))


async def wait_for_peers(
    gw: Gateway, message: bytes, field: str, timeout: float, include_self: bool = False
) -> dict[int, dict[str, Any]]:
    """Wake the other live workers (and this one's agent with ``include_self``) and wait
    until each reports a pass (``field`` "synced") or a flush ("flushed") started after
    now; returns their statuses (see the module docstring). A worker that does not answer
    within ``timeout`` s is counted as it last reported, and logged."""
    if gw.worker_pid is None:
        return {}
    t = time.monotonic()
    peers = peer_statuses(gw.home, exclude=None if include_self else gw.worker_pid)
    if not peers:
        return {}
    wake(list(peers), message)
    deadline = t + timeout
    done: dict[int, dict[str, Any]] = {}
    while True:
        for pid in list(peers):
            st = read_json(workers_dir(gw.home) / f"{pid}.json")
            if st is not None and st.get(field, 0) >= t:
                done[pid] = st
                del peers[pid]
            elif not pid_alive(pid):
                del peers[pid]
        if not peers:
            return done
        if time.monotonic() > deadline:
            log.warning("gateway: worker(s) %s did not answer within %.0f s", sorted(peers), timeout)
            return {**peers, **done}  # the late ones as they last reported
        await asyncio.sleep(0.002)


class Agent:
    """A worker's agent thread: follows the state DB, flushes when asked, writes its status.

    Args:
        gw: the worker's gateway.
        index: the worker's number (0..N-1), for humans.
        supervisor: the supervisor's pid; when it is gone the worker stops.
    """

    def __init__(self, gw: Gateway, index: int, supervisor: int) -> None:
        self.gw, self.index, self.supervisor = gw, index, supervisor
        self.path = workers_dir(gw.home) / f"{os.getpid()}.json"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(wake_address(os.getpid()))
        interval = gw.http.limits.balance_interval
        self.balancer = Balancer(gw.http, interval) if interval > 0 else None
        self.keep_reference = inline.ReferenceKeeper()  # the machine's usual speed, for inline's excuse
        self.wait = min(POLL, interval) if interval > 0 else POLL  # the longest sleep between two looks
        self.sock.settimeout(self.wait)
        self.synced = self.flushed = 0.0
        self.flushed_rows = 0
        self._last: Any = None
        self._written = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlops-gw-agent", daemon=True)

    def start(self) -> None:
        self.write_status(force=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        wake([os.getpid()], b"s")
        self._thread.join(10)
        self.sock.close()

    def _drain(self) -> bytes:
        """Wait for a wake-up (at most :data:`POLL` s, or the balancing interval when shorter),
        then take every pending one."""
        got = b""
        try:
            got += self.sock.recv(16)
            self.sock.setblocking(False)
            while True:
                got += self.sock.recv(16)
        except (BlockingIOError, TimeoutError):
            pass
        finally:
            self.sock.settimeout(self.wait)
        return got

    def _run(self) -> None:
        while not self._stop.is_set():
            got = self._drain()
            if self._stop.is_set():
                return
            if os.getppid() != self.supervisor:  # the supervisor died: nobody restarts or stops us
                log.error("gateway: the supervisor (pid %d) is gone; worker stopping", self.supervisor)
                self.gw.loop.call_soon_threadsafe(self.gw.stopping.set)
                return
            t0 = time.monotonic()
            try:
                if got or t0 - self.synced >= POLL - self.wait / 2:
                    if b"f" in got:
                        self.flushed_rows = self.gw.predlog.flush()
                        self.flushed = t0
                    self.follow()
                    self.synced = t0
                    self.write_status(force=bool(got))
                if self.balancer is not None and self.balancer.due(t0):
                    self.balance(t0)
                self.keep_reference(t0)
            except Exception:  # never let the agent die: the worker would stop following
                log.exception("gateway: worker agent pass failed")

    def balance(self, now: float) -> None:
        """End the balancing window, publish its busy count, close this worker's excess
        (see :mod:`.balance`)."""
        self.balancer.roll(now)
        self.write_status()
        self.balancer.decide(peer_statuses(self.gw.home, exclude=os.getpid()))

    def follow(self) -> None:
        """Rebuild the routes that differ from the state DB (by revision), on the loop."""
        gw = self.gw
        if gw.routes_differ(gw.served_records()):
            loop = gw.loop
            if loop is None or loop.is_closed():
                return
            asyncio.run_coroutine_threadsafe(gw.follow(), loop).result(timeout=600)

    def write_status(self, force: bool = False) -> None:
        gw = self.gw
        counters = own_counters(gw)
        state = log_state(gw.predlog)
        # a new balancing window is always written: peers wait for one after their decisions
        balance = self.balancer.status() if self.balancer is not None else {}
        key = (json.dumps(counters, sort_keys=True), json.dumps(state), len(gw.routes), json.dumps(balance))
        now = time.monotonic()
        if not force and key == self._last and now - self._written < HEARTBEAT:
            return
        self._last, self._written = key, now
        write_json(
            self.path,
            {
                "pid": os.getpid(),
                "index": self.index,
                "started_at": gw.started,
                "synced": self.synced,
                "flushed": self.flushed,
                "flushed_rows": self.flushed_rows,
                "deployments": len(gw.routes),
                "log": state,
                **balance,
                **counters,
            },
        )


def retire(home: Path, pid: int) -> None:
    """Fold a dead worker's last counters into ``retired.json`` and remove its status file
    (the supervisor calls it when it reaps the worker)."""
    path = workers_dir(home) / f"{pid}.json"
    st = read_json(path)
    if st is not None:
        retired_path = workers_dir(home) / RETIRED_FILE
        write_json(retired_path, add_counters(read_json(retired_path) or {}, st))
    path.unlink(missing_ok=True)


def aggregate(gw: Gateway, peers: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Every worker's counters added up (this worker's live ones, the others' last reported,
    the dead ones' retired sum)."""
    total = add_counters({}, own_counters(gw))
    for st in peers.values():
        add_counters(total, st)
    if gw.worker_pid is not None:
        add_counters(total, read_json(workers_dir(gw.home) / RETIRED_FILE) or {})
    return total


DEFAULT_SPOOL = 200_000
"""Requests a worker keeps in memory while its prediction log cannot be written."""


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def spool_size() -> int:
    """``$MLOPS_PREDLOG_SPOOL`` (requests kept while the log is unwritable) or :data:`DEFAULT_SPOOL`."""
    from mlops_jupyter.config import env

    return int_setting(env.MLOPS_PREDLOG_SPOOL, DEFAULT_SPOOL)


def worker_count() -> int:
    """``$MLOPS_GATEWAY_WORKERS`` or :func:`default_workers`."""
    from mlops_jupyter.config import env

    return int_setting(env.MLOPS_GATEWAY_WORKERS, default_workers())


def int_setting(var: str, default: int) -> int:
    """A positive integer from the environment variable ``var`` (unset or empty: ``default``).

    Raises:
        InvalidSettingError: it is set to something else (names it and its value).
    """
    from mlops_jupyter.errors import InvalidSettingError

    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
        if value < 1:
            raise ValueError(raw)
    except ValueError:
        raise InvalidSettingError(
            f"${var} is {raw!r}; it must be a positive integer.", value=raw, allowed="an integer >= 1"
        ) from None
    return value

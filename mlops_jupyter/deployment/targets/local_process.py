"""Starting, finding and stopping the gateway process of a storage home.

The gateway runs detached (its own session, so it outlives the kernel or shell that
started it), logs to ``{home}/gateway.log`` and writes ``{home}/gateway.json`` (pid,
port, URL, instance id) once it serves. Its pid is the supervisor's, which runs the
serving worker processes (``workers``, default ``$MLOPS_GATEWAY_WORKERS`` or one per
core) and stops them when it stops. ``{home}/gateway.lock`` is held (flock) by the
running gateway, which tells "running" from "a stale gateway.json" without trusting pids.

Example:
    >>> info = ensure_gateway("/tmp/store")      # starts one, or finds the running one
    >>> gateway_status("/tmp/store")["running"]
    True
    >>> stop_gateway("/tmp/store")["stopped"]
    True
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mlops_jupyter.config.processes import pid_alive
from mlops_jupyter.config.settings import GATEWAY_EXIT_ALREADY_RUNNING as EXIT_ALREADY_RUNNING
from mlops_jupyter.config.settings import connect_host, gateway_info_path, gateway_lock_path, gateway_log_path
from mlops_jupyter.errors import GatewayError

DEFAULT_HOST = "127.0.0.1"
START_TIMEOUT = 120.0


def read_info(home: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The content of ``{home}/gateway.json``, or None."""
    try:
        return json.loads(gateway_info_path(home).read_text())
    except (OSError, ValueError):
        return None


def lock_held(home: str | os.PathLike[str]) -> bool:
    """True if a gateway process holds the home's lock (running or starting)."""
    path = gateway_lock_path(home)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _is_gateway_pid(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"mlops_jupyter.gateway" in f.read()
    except OSError:
        return pid_alive(pid)


def _health(info: dict[str, Any], home: Path, timeout: float = 2.0) -> dict[str, Any] | None:
    """The gateway's ``/health`` with the details (asked with the admin token), or None
    when it does not answer or is another instance."""
    import http.client

    from mlops_jupyter.deployment import tokens as auth

    try:
        headers = {"Authorization": f"Bearer {auth.admin_token(home)}"}
        conn = http.client.HTTPConnection(connect_host(info.get("host")), int(info["port"]), timeout=timeout)
        try:
            conn.request("GET", "/health", headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            return None
        h = json.loads(data)
        return h if h.get("instance") == info.get("instance") else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def gateway_status(home: str | os.PathLike[str]) -> dict[str, Any]:
    """Whether the home's gateway runs, and where.

    Returns:
        ``{"running", "home", "pid", "url", "port", "host", "deployments", "uptime_s"}``
        (the last ones only when running).

    Example:
        >>> gateway_status(".mlops")
        {'running': False, 'home': '/work/.mlops'}
    """
    home = Path(home).absolute()
    info = read_info(home)
    out: dict[str, Any] = {"running": False, "home": str(home)}
    if info and pid_alive(int(info.get("pid", 0))):
        h = _health(info, home)
        if h is not None:
            out.update(
                running=True,
                pid=info["pid"],
                url=info["url"],
                port=info["port"],
                host=info["host"],
                deployments=h.get("deployments"),
                uptime_s=h.get("uptime_s"),
                log=str(gateway_log_path(home)),
            )
            return out
    if lock_held(home):
        out["state"] = "starting or not answering"
        if info:
            out["pid"] = info.get("pid")
    return out


def _reap(proc: subprocess.Popen) -> None:
    threading.Thread(target=proc.wait, name="mlops-gateway-reaper", daemon=True).start()


def _log_tail(home: Path, n: int = 20) -> str:
    try:
        return "\n".join(gateway_log_path(home).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def ensure_gateway(
    home: str | os.PathLike[str],
    host: str = DEFAULT_HOST,
    port: int | None = None,
    timeout: float = START_TIMEOUT,
    workers: int | None = None,
) -> dict[str, Any]:
    """Return the running gateway of ``home``, starting one (detached) if there is none.

    Args:
        home: the storage home.
        host: address to bind when starting (default 127.0.0.1).
        port: port to bind when starting (default: the last one if free, else any).
        timeout: seconds to wait for it to answer.
        workers: serving worker processes when starting (default ``$MLOPS_GATEWAY_WORKERS``,
            else one per core).

    Returns:
        The gateway's info (``pid``, ``host``, ``port``, ``url``, ``instance``, ``home``).

    Raises:
        GatewayError: it did not come up in time (the message has its log's last lines).

    Example:
        >>> ensure_gateway(".mlops")["url"]
        'http://127.0.0.1:41873'
    """
    home = Path(home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    proc: subprocess.Popen | None = None
    while True:
        info = read_info(home)
        if info and pid_alive(int(info.get("pid", 0))) and _health(info, home) is not None:
            return info
        if proc is not None and proc.poll() is not None:
            if proc.returncode != EXIT_ALREADY_RUNNING:
                raise GatewayError(
                    f"The gateway for {home} exited with code {proc.returncode} while starting. "
                    f"Last lines of {gateway_log_path(home)}:\n{_log_tail(home)}"
                )
            proc = None  # another one got the lock first: wait for it (or start again if it died)
        if proc is None and not lock_held(home):
            cmd = [sys.executable, "-m", "mlops_jupyter.gateway", "--foreground", "--home", str(home), "--host", host]
            if port:
                cmd += ["--port", str(int(port))]
            if workers:
                cmd += ["--workers", str(int(workers))]
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            with open(gateway_log_path(home), "ab") as logf:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    cwd=str(home),
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
            _reap(proc)
        if time.monotonic() > deadline:
            raise GatewayError(
                f"The gateway for {home} did not answer within {timeout:.0f} s. "
                f"Last lines of {gateway_log_path(home)}:\n{_log_tail(home)}"
            )
        time.sleep(0.05)


def stop_gateway(home: str | os.PathLike[str], timeout: float = 20.0) -> dict[str, Any]:
    """Stop the home's gateway (SIGTERM: it flushes the prediction log first).

    Deployments stay in the embedded store; the next start restores them.

    Returns:
        ``{"stopped": bool, "pid": ..., "home": ...}``; ``stopped`` is False if none ran.

    Raises:
        GatewayError: it did not stop, even after SIGKILL.

    Example:
        >>> stop_gateway(".mlops")
        {'stopped': True, 'pid': 4242, 'home': '/work/.mlops'}
    """
    home = Path(home).absolute()
    info = read_info(home) or {}
    pid = int(info.get("pid", 0) or 0)
    if not pid or not pid_alive(pid) or not _is_gateway_pid(pid):
        if not lock_held(home):
            gateway_info_path(home).unlink(missing_ok=True)
            return {"stopped": False, "pid": None, "home": str(home), "reason": "no gateway was running"}
        raise GatewayError(
            f"A gateway holds {gateway_lock_path(home)} but {gateway_info_path(home)} does not name it; "
            "it may still be starting. Try again in a moment."
        )
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid) or not lock_held(home):
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
        if pid_alive(pid):
            raise GatewayError(f"The gateway (pid {pid}) did not stop.")
    # wait for the process itself to be gone so the port and files are free
    end = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < end:
        time.sleep(0.02)
    return {"stopped": True, "pid": pid, "home": str(home)}

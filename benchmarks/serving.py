"""Serving speed: our gateway (1 worker, and one worker per core) vs ``mlflow models serve``
and MLServer, side by side in one run; and a fast route next to a slow one.

All serve the same scikit-learn model (a LogisticRegression on iris, the MLflow model
folder our versioning stored) on 127.0.0.1, loaded by the same load generator, ``wrk``:
a POST of a 1-row ``dataframe_split`` body with ``Authorization: Bearer <token>`` (MLflow
ignores the header; the gateway checks it, routes by traffic weight, logs every prediction
durably and applies its limits, as in production). MLServer 1.7.1 with mlserver-mlflow
(the runtime KServe uses for MLflow models; ``parallel_workers: 0``, its inference pool
crashed at start-up otherwise) gets the same row in its V2 protocol
(``/v2/models/iris/infer``); it runs from the side environment ``.venv-mlserver``
(``make mlserver-env``) and is skipped, with a note, when that is missing. The same model
also runs on the ``ray`` deployment target (issue 13: Ray Serve on a local Ray started here,
2 CPUs, one replica behind the ingress), loaded with the same script: the cost of the
distributed path (HTTP proxy -> ingress replica -> version replica, each a process) on one
machine, as a ratio to our 1-worker gateway. ``--no-ray`` leaves it out; it is skipped, with
a note, when the ``ray`` extra is not installed.

Measured: requests/s with 8 connections (``wrk -t1 -c8``), and p50/p99 latency with 1
connection (``wrk -t1 -c1 --latency``); for the gateway also requests/s with
:data:`SATURATION` connections, the scaling of workers where full micro-batches hide the
per-call cost of a prediction. The workers' scaling, at 8 connections and at
:data:`SATURATION`, is the median ratio of ``--rounds`` 1-worker / N-worker pairs measured
back to back (this machine's speed drifts by a third within minutes), and the gateway's
figure against the peers is the better setup's median over those rounds. For each gateway
run the mean micro-batch (requests per ``predict`` call, from ``/metrics``) is printed too:
fewer connections per worker make smaller batches, and each call costs scikit-learn about
100 us whatever its rows. Goals (issue 12): at least 20x both peers at 8 connections, p50
under 1 ms at 1 connection, one worker per core at least 1.6x one worker, and, while a
second route whose model takes 20 ms per call is loaded by 8 connections,
the fast route's p99 under 5 ms.

wrk runs as a ``SCHED_IDLE`` process with one thread unless ``--load-priority normal`` /
``--wrk-threads 2`` (see :data:`LOAD_PRIORITY`): it shares the machine's cores with the
server under test.

Usage: python benchmarks/serving.py [--duration 10] [--keep] [--workers N] [--no-ray] [--ray-replicas 1]
       [--load-priority idle|normal] [--wrk-threads 1] [--rounds 3]
Needs ``wrk`` (Debian package; ``make bench`` installs it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
"""
MLSERVER = Path(__file__).resolve().parent.parent / ".venv-mlserver" / "bin" / "mlserver"
RAY_START_TIMEOUT = "600"
"""Seconds the ray target may wait here for Ray's agents, Serve's replicas and its ingress
(``MLOPS_RAY_START_TIMEOUT``, unless set): generous, as wrk and the other servers load the machine."""
WORKERS_ENV = "MLOPS_GATEWAY_WORKERS"
"""The gateway's worker-count setting (read when a gateway starts)."""


class Slow20:
    """A classifier taking 20 ms per call (a model doing I/O or native work): the slow route."""

    def fit(self, X, y):
        import numpy as np

        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        return self

    def predict(self, X):
        import numpy as np

        time.sleep(0.02)
        return np.zeros(len(X), dtype=int)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ping(port: int, timeout: float = 120.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise SystemExit(f"the server exited with code {proc.returncode}:\n{tail}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/ping")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered /ping on port {port} within {timeout:.0f} s")


def predict_calls(gw_url: str, token: str) -> tuple[int, int]:
    """``(requests, predict calls)`` of the benchmark's iris version so far, from the gateway's
    ``/metrics`` (every worker's added up): requests over calls is the mean micro-batch."""
    m = re.match(r"http://([^:/]+):(\d+)", gw_url)
    c = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=30)
    c.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
    text = c.getresponse().read().decode()
    found = dict.fromkeys(("mlops_requests_total", "mlops_model_executions_total"), 0)
    for line in text.splitlines():
        name = line.split("{")[0]
        if name in found and 'model="iris"' in line and 'environment="production"' in line:
            found[name] += int(line.split()[-1])
    return found["mlops_requests_total"], found["mlops_model_executions_total"]


def mean_batch(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[0] - before[0]) / max(1, after[1] - before[1])


def check(url: str, body: str, token: str) -> str:
    """One request through http.client, to be sure both sides answer the same thing."""
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    c = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=30)
    c.request(
        "POST",
        m.group(3),
        body=body.encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    r = c.getresponse()
    out = r.read().decode()
    if r.status != 200:
        raise SystemExit(f"{url} answered {r.status}: {out}")
    return out


def to_ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value.strip())
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n if unit == "ms" else n * 1000


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from ``/proc/stat`` (all cores)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


def machine_tail(seconds: float = 3.0) -> dict[str, float]:
    """How this machine stretches a fixed piece of pure Python work (about 0.1 ms) run the way
    a server runs a request: after a short sleep, over and over. Its p99 over its p50 is how
    much the machine alone inflates a tail latency (on the 2-vCPU machine of the README's
    figures, idle, 5 runs: p50 0.08-0.11 ms, p99 0.27-0.84 ms, 3.3-7.6x)."""

    def work() -> int:
        total = 0
        for i in range(1500):
            total += i * i
        return total

    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
        time.sleep(0.0005)
    times.sort()
    p50, p99 = times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000
    return {"p50_ms": p50, "p99_ms": p99, "ratio": p99 / p50}


def children_cpu() -> float:
    """CPU seconds used so far by this script's finished child processes (the wrk runs)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


LOAD_PRIORITY = {"idle": "SCHED_IDLE", "normal": "the default priority"}
load_priority = "idle"
wrk_threads = 1
"""How wrk runs (``--load-priority``, ``--wrk-threads``). wrk shares the machine's cores with
the server under test, and how much it gets in the way depends on both:

- ``idle`` (the default): wrk is a ``SCHED_IDLE`` process, so it runs on what the server
  leaves and never preempts it. At ``normal`` priority each of its wake-ups preempts
  whichever server process is on that core: with two gateway workers, 0.7 involuntary
  context switches per request against 0.01, and 10-20 % more CPU per request;
- one thread (the default; far from its limit at these rates, and using 0.12-0.14 of a
  core): it sends each connection's next request in one burst per wake-up, where two idle
  threads each wake for half the connections. Measured with two gateway workers at idle
  priority: 126-153 us of CPU per request with one thread, 184-194 us with two.

The same for every server measured; ``--load-priority normal --wrk-threads 2`` is how this
benchmark ran before."""


def _lower_priority() -> None:
    if load_priority == "idle":
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def run_wrk(url: str, script: Path, connections: int, threads: int, duration: int) -> dict[str, float]:
    """One wrk run; besides its figures, how many cores the machine had busy meanwhile and how
    many of them wrk itself took (what was left for the server under test)."""
    busy0, total0 = machine_jiffies()
    wrk0, t0 = children_cpu(), time.perf_counter()
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=_lower_priority,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    if errors or sock:
        print(out)
        raise SystemExit(f"wrk saw errors against {url}")
    busy1, total1 = machine_jiffies()
    cores = (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)
    wrk = (children_cpu() - wrk0) / (time.perf_counter() - t0)
    return {"rps": rps, "p50_ms": to_ms(lat["50"]), "p99_ms": to_ms(lat["99"]), "busy_cores": cores, "wrk_cores": wrk}


SATURATION = 64
"""Connections of the gateway's extra run: enough to keep every worker's micro-batches full,
so the scaling of workers is also seen where it is not limited by 8 clients' round trips."""


def measure(
    name: str,
    url: str,
    script: Path,
    duration: int,
    saturate: bool = False,
    calls: Callable[[], tuple[int, int]] | None = None,
) -> dict[str, float]:
    """wrk at 8 connections, then 1 (and :data:`SATURATION` with ``saturate``); ``calls``: the
    gateway's :func:`predict_calls`, read around the 8-connection run for its mean micro-batch."""
    run_wrk(url, script, 8, wrk_threads, 2)  # warm-up
    before = calls() if calls else None
    many = run_wrk(url, script, 8, wrk_threads, duration)
    batch = mean_batch(before, calls()) if calls else None
    one = run_wrk(url, script, 1, 1, duration)
    res = {
        "rps_8": many["rps"],
        "p50_1_ms": one["p50_ms"],
        "p99_1_ms": one["p99_ms"],
        "rps_1": one["rps"],
        "p50_8_ms": many["p50_ms"],
        "p99_8_ms": many["p99_ms"],
        "busy_cores_8": many["busy_cores"],
        "wrk_cores_8": many["wrk_cores"],
        # the machine's CPU per answered request, less wrk's (whatever else ran on it is in too)
        "cpu_us_8": 1e6 * (many["busy_cores"] - many["wrk_cores"]) / many["rps"],
    }
    if batch is not None:
        res["batch_8"] = batch
    print(
        f"  {name:<8} 8 conns: {res['rps_8']:>8.0f} req/s (p50 {res['p50_8_ms']:.2f} ms, p99 "
        f"{res['p99_8_ms']:.2f} ms; {res['busy_cores_8']:.2f} cores busy, {res['wrk_cores_8']:.2f} of them wrk, "
        f"{res['cpu_us_8']:.0f} us of CPU per request besides wrk's"
        + (f"; mean micro-batch {batch:.2f} requests" if batch is not None else "")
        + ") "
        f"| 1 conn: {res['rps_1']:>6.0f} req/s, p50 {res['p50_1_ms']:.3f} ms, p99 {res['p99_1_ms']:.3f} ms",
        flush=True,
    )
    if saturate:
        sat = run_wrk(url, script, SATURATION, wrk_threads, duration)
        res.update(rps_sat=sat["rps"], p99_sat_ms=sat["p99_ms"], wrk_cores_sat=sat["wrk_cores"])
        print(
            f"  {'':<8} {SATURATION} conns: {sat['rps']:>7.0f} req/s (p99 {sat['p99_ms']:.2f} ms; "
            f"{sat['busy_cores']:.2f} cores busy, {sat['wrk_cores']:.2f} of them wrk)",
            flush=True,
        )
    return res


def start_mlflow(root: Path, model_dir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow_bin) if mlflow_bin.exists() else "mlflow", "models", "serve", "-m", str(model_dir)]
    cmd += ["--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)]
    log = open(root / "mlflow-serve.log", "wb")
    # MLflow runs `uvicorn` from PATH: put the venv's bin first, as an activated venv does
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    wait_ping(port, proc=proc, log=root / "mlflow-serve.log")
    return proc, port


def start_mlserver(root: Path, model_dir: Path) -> tuple[subprocess.Popen, int]:
    folder = root / "mlserver"
    (folder / "iris").mkdir(parents=True)
    port = free_port()
    settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}
    settings["parallel_workers"] = 0
    (folder / "settings.json").write_text(json.dumps(settings))
    model = {"name": "iris", "implementation": "mlserver_mlflow.MLflowRuntime", "parameters": {"uri": str(model_dir)}}
    (folder / "iris" / "model-settings.json").write_text(json.dumps(model))
    log = open(root / "mlserver.log", "wb")
    proc = subprocess.Popen(
        [str(MLSERVER), "start", str(folder)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"MLServer did not start:\n{(root / 'mlserver.log').read_text()[-2000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v2/models/iris/ready")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.3)


def goal(ok: bool) -> str:
    return "met" if ok else "NOT met"


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def restart_gateway(home: Path, workers: int) -> str:
    """Stop the home's gateway and start it with ``workers`` worker processes; its URL."""
    from mlops_jupyter.deployment.targets.local_process import ensure_gateway, stop_gateway

    stop_gateway(home)
    os.environ[WORKERS_ENV] = str(workers)
    return ensure_gateway(home, workers=workers)["url"]


def fast_next_to_slow(fast_url: str, slow_url: str, script: Path, duration: int) -> dict[str, float]:
    """The fast route at 1 connection while wrk loads the slow route with 8."""
    load = subprocess.Popen(
        ["wrk", "-t2", "-c8", f"-d{duration + 2}s", "-s", str(script), slow_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(1)  # let the slow route's load build up first
        fast = run_wrk(fast_url, script, 1, 1, duration)
    finally:
        out, _ = load.communicate(timeout=duration + 30)
    slow_rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"fast_p50_ms": fast["p50_ms"], "fast_p99_ms": fast["p99_ms"], "slow_rps": slow_rps}


def ray_row(home: Path, script: Path, body: str, token: str, answer: str, args: argparse.Namespace) -> dict | None:
    """The ``ray`` target's row: the same model version deployed on Ray Serve (environment
    ``ray``), checked to answer as the gateway did, then measured; Ray is stopped after."""
    try:
        import ray
        import ray.serve
    except ImportError as exc:
        print(f"  ray: skipped, the ray extra is not installed (pip install 'mlops-jupyter[ray]'): {exc}")
        return None
    from mlops_jupyter import create_model_deployment

    os.environ.setdefault("MLOPS_RAY_START_TIMEOUT", RAY_START_TIMEOUT)
    wait = os.environ["MLOPS_RAY_START_TIMEOUT"]
    print(
        f"  ray: starting a local Ray and Serve (waiting up to {wait} s for its agents, replicas, ingress)", flush=True
    )
    dep = create_model_deployment(storage_path=home, target="ray")
    try:
        t0 = time.monotonic()
        r = dep.deploy_model("iris", "1.0.0", environment="ray", config={"replicas": args.ray_replicas})
        if r["status"] != "deployed":
            raise SystemExit(f"the ray target did not deploy after {time.monotonic() - t0:.0f} s: {r['reason']}")
        url = r["endpoint"] + "/invocations"
        if json.loads(check(url, body, token)) != json.loads(answer):
            raise SystemExit(f"the ray target and the gateway disagree: {check(url, body, token)} vs {answer}")
        print(f"  ray: deployed in {time.monotonic() - t0:.0f} s (Ray {ray.__version__})", flush=True)
        return measure(f"ray {args.ray_replicas}rep", url, script, args.duration)
    finally:
        dep.stop_gateway()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers of the multi-worker run")
    ap.add_argument("--keep", action="store_true", help="keep the temp store")
    ap.add_argument("--no-ray", action="store_true", help="leave out the ray target's row")
    ap.add_argument("--ray-replicas", type=int, default=1, help="replicas of the version on Ray (default 1)")
    ap.add_argument(
        "--load-priority", choices=tuple(LOAD_PRIORITY), default="idle", help="wrk's scheduling (see LOAD_PRIORITY)"
    )
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk's threads for the 8- and 64-connection runs")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="1-worker / N-worker pairs at 8 connections whose median ratio is the workers' scaling (default 3)",
    )
    args = ap.parse_args()
    global load_priority, wrk_threads
    load_priority, wrk_threads = args.load_priority, args.wrk_threads
    if shutil.which("wrk") is None:
        print("benchmarks/serving.py needs wrk: apt-get install -y wrk (make bench does it)", file=sys.stderr)
        return 1

    import cloudpickle
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlops_jupyter import create_model_deployment, create_model_versioning

    class SlowClassifier(Slow20, ClassifierMixin, BaseEstimator):
        pass

    root = Path(tempfile.mkdtemp(prefix="mlops-bench-serving-"))
    home = root / "store"
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    versioning = create_model_versioning(storage_path=home)
    versioning.create_version("iris", model=model, reference_data=X)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    versioning.create_version("slow", model=SlowClassifier().fit(X, y), reference_data=X)
    deployment = create_model_deployment(storage_path=home)
    procs: list[subprocess.Popen] = []
    results: dict[str, dict[str, float]] = {}
    try:
        os.environ[WORKERS_ENV] = "1"
        r = deployment.deploy_model("iris", "1.0.0", environment="production")
        assert r["status"] == "deployed", r
        assert deployment.deploy_model("slow", "1.0.0", environment="production")["status"] == "deployed"
        token = deployment.get_token()
        model_dir = versioning.model_dir("iris", "1.0.0")
        route = "/tenants/default/production/models/iris/invocations"
        slow_route = "/tenants/default/production/models/slow/invocations"

        body = json.dumps({"dataframe_split": {"columns": list(X.columns), "data": [X.iloc[0].tolist()]}})
        script = root / "post.lua"
        script.write_text(LUA.format(body=body, token=token))
        v2 = {
            "inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [float(X.iloc[0][c])]} for c in X.columns]
        }
        v2["parameters"] = {"content_type": "pd"}
        v2_script = root / "v2.lua"
        v2_script.write_text(LUA.format(body=json.dumps(v2), token=token))

        import mlflow
        import sklearn

        print(
            f"serving benchmark: 1-row POST, wrk -t{wrk_threads} {args.duration}s per run at "
            f"{LOAD_PRIORITY[load_priority]}, "
            f"{os.cpu_count()} CPUs "
            f"(load average {os.getloadavg()[0]:.1f}: a shared machine makes these numbers noisy), "
            f"MLflow {mlflow.__version__}, scikit-learn {sklearn.__version__}",
            flush=True,
        )
        tail = machine_tail()
        print(
            f"  the machine alone: a fixed piece of Python work (about 0.1 ms) takes p50 {tail['p50_ms']:.3f} ms, "
            f"p99 {tail['p99_ms']:.3f} ms ({tail['ratio']:.1f}x its p50: what this machine adds to any p99)",
            flush=True,
        )
        gw_url = r["endpoint"].split("/tenants/")[0]
        check(gw_url + route, body, token)
        for name in ("iris", "slow"):
            served = deployment.client(name, "production").info()["versions"][0]
            where = "on the event loop" if served["inline"] else "in the inference pool"
            print(f"  {name} predicts {where} ({served['inline_reason']})", flush=True)
        calls = lambda: predict_calls(gw_url, token)  # noqa: E731 (gw_url: the gateway now running)
        results["gateway-1w"] = measure("gw 1 wkr", gw_url + route, script, args.duration, True, calls)
        side = fast_next_to_slow(gw_url + route, gw_url + slow_route, script, args.duration)
        print(
            f"  fast route next to a 20 ms route under 8 connections: p50 {side['fast_p50_ms']:.3f} ms, "
            f"p99 {side['fast_p99_ms']:.3f} ms (slow route {side['slow_rps']:.0f} req/s)",
            flush=True,
        )
        gw_url = restart_gateway(home, args.workers)
        gw_answer = check(gw_url + route, body, token)
        results[f"gateway-{args.workers}w"] = measure(
            f"gw {args.workers} wkr", gw_url + route, script, args.duration, True, calls
        )
        pairs = [(results["gateway-1w"]["rps_8"], results[f"gateway-{args.workers}w"]["rps_8"])]
        batches = [(results["gateway-1w"]["batch_8"], results[f"gateway-{args.workers}w"]["batch_8"])]
        saturated = [(results["gateway-1w"]["rps_sat"], results[f"gateway-{args.workers}w"]["rps_sat"])]
        for n in range(2, args.rounds + 1):  # more 1-worker / N-worker pairs, back to back
            pair, batch, sat = [], [], []
            for workers in (1, args.workers):
                gw_url = restart_gateway(home, workers)
                check(gw_url + route, body, token)
                run_wrk(gw_url + route, script, 8, wrk_threads, 2)  # warm-up
                before = calls()
                pair.append(run_wrk(gw_url + route, script, 8, wrk_threads, args.duration)["rps"])
                batch.append(mean_batch(before, calls()))
                sat.append(run_wrk(gw_url + route, script, SATURATION, wrk_threads, args.duration)["rps"])
            pairs.append((pair[0], pair[1]))
            batches.append((batch[0], batch[1]))
            saturated.append((sat[0], sat[1]))
            print(
                f"  round {n}: 8 conns, 1 worker {pair[0]:.0f} req/s, {args.workers} workers {pair[1]:.0f} req/s: "
                f"{pair[1] / pair[0]:.2f}x (mean micro-batch {batch[0]:.2f} vs {batch[1]:.2f} requests); "
                f"{SATURATION} conns: {sat[0]:.0f} vs {sat[1]:.0f} req/s: {sat[1] / sat[0]:.2f}x",
                flush=True,
            )
        deployment.stop_gateway()

        proc, port = start_mlflow(root, model_dir)
        procs.append(proc)
        ours, theirs = gw_answer, check(f"http://127.0.0.1:{port}/invocations", body, token)
        if json.loads(ours) != json.loads(theirs):
            raise SystemExit(f"the two servers disagree: ours {ours}, mlflow {theirs}")
        results["mlflow"] = measure("mlflow", f"http://127.0.0.1:{port}/invocations", script, args.duration)
        stop(proc)
        if MLSERVER.exists():
            proc, port = start_mlserver(root, model_dir)
            procs.append(proc)
            check(f"http://127.0.0.1:{port}/v2/models/iris/infer", json.dumps(v2), token)
            results["mlserver"] = measure(
                "mlserver", f"http://127.0.0.1:{port}/v2/models/iris/infer", v2_script, args.duration
            )
            stop(proc)
        else:
            print(f"  mlserver: skipped, {MLSERVER} is missing (make mlserver-env)")
        if args.no_ray:
            print("  ray: skipped (--no-ray)")
        else:
            ray_res = ray_row(home, script, body, token, gw_answer, args)
            if ray_res is not None:
                results["ray"] = ray_res

        one, many = results["gateway-1w"], results[f"gateway-{args.workers}w"]
        # the gateway's figure against the peers: the better of its two setups, each the median
        # of its rounds (one round's outlier, e.g. a neighbour's burst, does not decide it)
        best = max(statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs))
        print()
        for peer in ("mlflow", "mlserver"):
            if peer in results:
                ratio = best / results[peer]["rps_8"]
                print(
                    f"throughput at 8 connections: {ratio:.1f}x {peer} ({best:.0f} req/s, the median of the gateway's "
                    f"{len(pairs)} rounds; goal >= 20x: {goal(ratio >= 20)})"
                )
        scales = sorted(b / a for a, b in pairs)
        scale = statistics.median(scales)
        print(
            f"{args.workers} workers vs 1: {scale:.2f}x, the median of {len(pairs)} back-to-back pairs "
            f"({', '.join(f'{x:.2f}x' for x in scales)}) (goal >= 1.6x: {goal(scale >= 1.6)})"
        )
        print(
            f"  mean micro-batch at 8 connections (requests per predict call): 1 worker "
            f"{statistics.median(b[0] for b in batches):.2f}, {args.workers} workers "
            f"{statistics.median(b[1] for b in batches):.2f} (medians of the {len(batches)} pairs; each predict "
            "call costs scikit-learn about 100 us whatever its rows)"
        )
        sat_scales = sorted(b / a for a, b in saturated)
        print(
            f"  at {SATURATION} connections: {statistics.median(sat_scales):.2f}x, the median of {len(saturated)} "
            f"pairs ({', '.join(f'{x:.2f}x' for x in sat_scales)}; wrk took {many['wrk_cores_sat']:.2f} of the "
            f"{os.cpu_count()} cores in the first)"
        )
        ncpu = os.cpu_count() or 1
        left = ncpu - one["busy_cores_8"]
        print(
            f"  the 1-worker run kept {one['busy_cores_8']:.2f} of {ncpu} cores busy (wrk {one['wrk_cores_8']:.2f}), "
            f"so more workers had {left:.2f} core(s) to add; {args.workers} workers: "
            f"{many['busy_cores_8']:.2f} busy (wrk {many['wrk_cores_8']:.2f}); CPU per request besides wrk's: "
            f"1 worker {one['cpu_us_8']:.0f} us, {args.workers} workers {many['cpu_us_8']:.0f} us"
        )
        print(f"p50 at 1 connection: {one['p50_1_ms']:.3f} ms (goal < 1 ms: {goal(one['p50_1_ms'] < 1)})")
        print(
            f"fast route p99 next to the 20 ms route: {side['fast_p99_ms']:.3f} ms "
            f"(goal < 5 ms: {goal(side['fast_p99_ms'] < 5)}; alone at 1 connection {one['p99_1_ms']:.3f} ms; "
            f"the machine stretches a fixed piece of work {tail['ratio']:.1f}x at p99)"
        )
        if "ray" in results:
            on_ray = results["ray"]
            print(
                f"ray target (the distributed path on one machine): {on_ray['rps_8']:.0f} req/s at 8 connections = "
                f"{on_ray['rps_8'] / one['rps_8']:.2f}x the 1-worker gateway's; p50 at 1 connection "
                f"{on_ray['p50_1_ms']:.3f} ms = {on_ray['p50_1_ms'] / one['p50_1_ms']:.1f}x the gateway's"
            )
        print(json.dumps({**results, "fast_next_to_slow": side, "machine_tail": tail}))
    finally:
        for proc in procs:
            stop(proc)
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        deployment.stop_gateway()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
